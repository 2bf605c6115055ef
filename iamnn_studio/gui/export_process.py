"""An export in a child process: ``python -m iamnn_studio export ... --json``, the CLI's own command.

torch.export and the ONNX exporter hold the GIL for up to a second at a time: run in one of the app's
threads they froze the window. In a child the window stays live, Cancel can really stop the work (the
child is killed, and the temp file it was writing removed), and a C++ abort in an exporter ends the child,
not the app. The child answers in JSON on stdout, or fails with the CLI's one ``error:`` line on stderr.
A Cancel that comes after the child replaced the target (it then spends a while tearing torch down) finds
the file changed: that export had finished, and ``cancel`` says so.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, QProcess, QProcessEnvironment, Signal

from iamnn_studio.child_process import package_environment

#: The same interpreter, the same package: the CLI's export command.
EXPORT_COMMAND = (sys.executable, "-m", "iamnn_studio", "export")
#: A killed child is gone at once; this only bounds the wait for the system to say so.
KILL_WAIT_MS = 5_000


@dataclass(frozen=True)
class ExportRequest:
    """What the dialog checked and the user confirmed; both paths absolute."""

    checkpoint: Path
    fmt: str
    target: Path
    replace: bool  # the user agreed to replace an existing file (the CLI's --force)
    mode: str | None = None  # the halting baked in instead of the checkpoint's own
    threshold: float | None = None

    def arguments(self) -> list[str]:
        """The CLI's options; ``--out=`` and absolute paths, so no name is ever read as an option."""
        args = [str(self.checkpoint), "--format", self.fmt, f"--out={self.target}", "--json"]
        if self.replace:
            args.append("--force")
        if self.mode is not None:
            args.append(f"--mode={self.mode}")
        if self.threshold is not None:
            args.append(f"--threshold={self.threshold!r}")
        return args


@dataclass(frozen=True)
class ExportOutcome:
    """The child's JSON answer: the file written, the halting it carries, notes for the user."""

    path: str
    halting: str
    caveats: tuple[str, ...]
    warning: str | None  # the suffix does not suit the format (written all the same)


@dataclass(frozen=True)
class Cancelled:
    """What a Cancel stopped: ``finished`` is the export's answer when the child had already written the
    target (Cancel came too late to stop it), else None."""

    finished: ExportOutcome | None


class ExportProcess(QObject):
    """Runs one export at a time in a child; ``succeeded(ExportOutcome)`` or ``failed(message)`` in the UI
    thread, nothing after ``cancel``."""

    succeeded = Signal(object)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._process: QProcess | None = None
        self._request: ExportRequest | None = None
        self._target_before: FileState = None  # the target as it was at the start: has the child written it?
        self._earlier_temp_files: set[Path] = set()
        app = QCoreApplication.instance()
        if app is not None:  # quitting mid-export: stop the child and leave no temp file
            app.aboutToQuit.connect(self.cancel)

    def start(self, request: ExportRequest) -> None:
        if self.is_running():
            raise RuntimeError("an export is already running")
        from iamnn_studio.engine.io import temp_files  # no torch: a plain file helper

        self._request = request
        self._target_before = file_state(request.target)
        self._earlier_temp_files = temp_files(request.target)  # another export's, if any: not ours to remove
        process = self._process = QProcess(self)
        process.setProgram(EXPORT_COMMAND[0])
        process.setArguments([*EXPORT_COMMAND[1:], *request.arguments()])
        process.setProcessEnvironment(child_environment())
        process.finished.connect(lambda code, status: self._on_finished(process, code, status))
        process.errorOccurred.connect(lambda error: self._on_error(process, error))
        process.start()
        process.closeWriteChannel()  # it reads nothing

    def is_running(self) -> bool:
        return self._process is not None

    def pid(self) -> int | None:
        return self._process.processId() if self._process is not None else None

    def cancel(self) -> Cancelled | None:
        """Kill the child and remove the temp file it was writing; None when none was running. A target
        changed since the start means the child had finished its work: ``Cancelled.finished`` says what it
        wrote (its JSON answer, when it had printed it)."""
        process, self._process = self._process, None
        if process is None:
            return None
        process.blockSignals(True)  # its end is no success or failure to report
        process.kill()
        process.waitForFinished(KILL_WAIT_MS)
        process.deleteLater()
        self._remove_temp_files()
        return Cancelled(self._finished_outcome(process))

    # ---------------------------------------------------------------- private
    def _on_finished(self, process: QProcess, code: int, status: QProcess.ExitStatus) -> None:
        if process is not self._process:
            return
        self._process = None
        process.deleteLater()
        out = bytes(process.readAllStandardOutput()).decode("utf-8", "replace")
        err = bytes(process.readAllStandardError()).decode("utf-8", "replace")
        if status == QProcess.ExitStatus.NormalExit and code == 0:
            try:
                outcome = parse_outcome(out)
            except ValueError as error:
                self.failed.emit(f"the export process gave an answer that could not be read ({error})")
            else:
                self.succeeded.emit(outcome)
            return
        self._remove_temp_files()  # a crash (an exporter's C++ abort) runs no clean-up
        self.failed.emit(error_line(err, code, status))

    def _on_error(self, process: QProcess, error: QProcess.ProcessError) -> None:
        if process is not self._process or error != QProcess.ProcessError.FailedToStart:
            return  # a crash is reported by finished
        self._process = None
        process.deleteLater()
        self.failed.emit(f"could not start the export process ({process.errorString()})")

    def _finished_outcome(self, process: QProcess) -> ExportOutcome | None:
        """The export's outcome if the killed child had already replaced the target, else None."""
        request = self._request
        if request is None or file_state(request.target) == self._target_before:
            return None
        out = bytes(process.readAllStandardOutput()).decode("utf-8", "replace")
        try:
            return parse_outcome(out)
        except ValueError:  # killed before (or while) it printed its answer: the file is all we know
            return ExportOutcome(str(request.target), "", (), None)

    def _remove_temp_files(self) -> None:
        if self._request is None:
            return
        from iamnn_studio.engine.io import temp_files

        for path in temp_files(self._request.target) - self._earlier_temp_files:
            try:
                path.unlink()
            except OSError:
                pass  # gone already, or not ours to remove


#: A file's identity and content stamp (device, inode, modification time, size), or None where there is none.
FileState = tuple[int, int, int, int] | None


def file_state(path: Path) -> FileState:
    """What tells a replaced or rewritten file from the one that was there: ``os.replace`` gives a new inode."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size


def parse_outcome(stdout: str) -> ExportOutcome:
    """The CLI's ``export --json`` answer (ValueError if it is not one)."""
    answer = json.loads(stdout)
    if not isinstance(answer, dict) or not isinstance(answer.get("path"), str):
        raise ValueError("no file named")
    return ExportOutcome(answer["path"], str(answer.get("halting") or ""), tuple(answer.get("caveats") or ()),
                         answer.get("warning") or None)


def error_line(stderr: str, code: int, status: QProcess.ExitStatus) -> str:
    """The CLI's last ``error:`` line, without ``error:``; else what ended the child, in words."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("error: ") or ": error: " in line:  # the CLI's, or argparse's "PROG: error: ..."
            return line.partition("error: ")[2].strip()
    if status == QProcess.ExitStatus.CrashExit:
        return "the export process crashed (an exporter may have aborted); no file was written"
    return f"the export process stopped with exit status {code}; no file was written"


def child_environment() -> QProcessEnvironment:
    """``child_process.package_environment`` as Qt's process takes it."""
    env = QProcessEnvironment()
    for name, value in package_environment().items():
        env.insert(name, value)
    return env
