"""Load torch and the engine once, in the background, after the first window is shown.

Importing torch takes seconds, and importing it from two threads at once can fail
(pytorch#182560), so exactly one thread imports everything the GUI will need; every other
piece of the GUI waits for ``ready`` before touching the engine. The loader is shared by the
whole process (``shared_loader()``): the engine is imported once however many windows exist.
"""
from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

#: Without these the GUI cannot train or show anything: their failure is the engine's failure.
REQUIRED_MODULES = ("torch", "iamnn_studio.engine")
#: Parts the views use; one that fails to import disables only what needs it.
OPTIONAL_MODULES = (
    "torchvision",
    "iamnn_studio.engine.data",
    "iamnn_studio.engine.trainer",
    "iamnn_studio.engine.system",
    "iamnn_studio.engine.checkpoint",
    "iamnn_studio.engine.runs",
    "iamnn_studio.engine.evaluate",
    "iamnn_studio.engine.inference",
    "iamnn_studio.engine.export",
    "iamnn_studio.engine.plugins",
)


@dataclass
class EngineInfo:
    """What the loaded engine can do here."""

    torch_version: str
    cuda_available: bool
    device_name: str  # "NVIDIA H100 80GB HBM3" or "CPU, 2 threads"
    seconds: float  # how long the imports took
    missing: dict[str, str] = field(default_factory=dict)  # optional module -> why it failed
    plugin_lines: list[str] = field(default_factory=list)  # one per plugin, loaded or not
    plugin_failures: list[str] = field(default_factory=list)

    def has(self, module: str) -> bool:
        return module not in self.missing

    @property
    def summary(self) -> str:
        device = f"GPU: {self.device_name}" if self.cuda_available else self.device_name
        return f"Engine ready · {device} · torch {self.torch_version}"


def _import_engine() -> EngineInfo:
    start = time.perf_counter()
    for name in REQUIRED_MODULES:
        importlib.import_module(name)
    missing: dict[str, str] = {}
    for name in OPTIONAL_MODULES:
        try:
            importlib.import_module(name)
        except Exception as error:  # a half-installed optional part must not take the app down
            missing[name] = f"{type(error).__name__}: {error}"
    plugin_lines, plugin_failures = _load_plugins() if "iamnn_studio.engine.plugins" not in missing else ([], [])
    import torch

    # This CPU's matmul rate for the run form's time estimate: measured here, ~30 ms, while no
    # preview or model-size job competes for the cores (the result is cached for the process).
    importlib.import_module("iamnn_studio.engine.estimate").cpu_matmul_flops_per_second()
    cuda = bool(torch.cuda.is_available())
    if cuda:
        device_name = torch.cuda.get_device_name(0)
    else:
        device_name = f"CPU, {torch.get_num_threads()} threads"
    return EngineInfo(
        torch_version=torch.__version__.split("+")[0],
        cuda_available=cuda,
        device_name=device_name,
        seconds=time.perf_counter() - start,
        missing=missing,
        plugin_lines=plugin_lines,
        plugin_failures=plugin_failures,
    )


def _load_plugins() -> tuple[list[str], list[str]]:
    """Load plugins once (they register datasets, blocks, exporters): (one line each, failures)."""
    plugins = importlib.import_module("iamnn_studio.engine.plugins")
    try:
        reports = plugins.load_plugins()
    except Exception as error:
        message = f"plugins could not be loaded: {error}"
        return [message], [message]
    lines = [report.line() if hasattr(report, "line") else str(report) for report in reports]
    failures = [line for report, line in zip(reports, lines) if not getattr(report, "ok", True)]
    return lines, failures


class _ImportThread(QThread):
    loaded = Signal(object)  # EngineInfo
    crashed = Signal(str)

    def run(self) -> None:
        try:
            info = _import_engine()
        except BaseException as error:  # noqa: BLE001 - any failure becomes one message in the status bar
            self.crashed.emit(f"{type(error).__name__}: {error}")
            return
        self.loaded.emit(info)


class EngineLoader(QObject):
    """Imports the engine in one background thread; ``ready(EngineInfo)`` or ``failed(str)`` follows.

    ``start()`` is idempotent: once loaded, a later ``start()`` replays the result (queued), so a
    window created after the engine loaded still gets its ``ready``.
    """

    ready = Signal(object)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: _ImportThread | None = None
        self.info: EngineInfo | None = None
        self.error: str | None = None

    @property
    def is_ready(self) -> bool:
        return self.info is not None

    @property
    def is_loading(self) -> bool:
        return self._thread is not None and self.info is None and self.error is None

    def start(self) -> None:
        if self.info is not None or self.error is not None:
            QTimer.singleShot(0, self._replay)
            return
        if self._thread is not None:
            return
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads must not spin
        self._thread = _ImportThread(self)
        self._thread.loaded.connect(self._on_loaded)
        self._thread.crashed.connect(self._on_crashed)
        self._thread.start()

    def wait(self, timeout_ms: int = 60_000) -> bool:
        """Block until the import thread ended (only at exit: never on a live window)."""
        return self._thread.wait(timeout_ms) if self._thread is not None else True

    @Slot()
    def _replay(self) -> None:
        if self.info is not None:
            self.ready.emit(self.info)
        elif self.error is not None:
            self.failed.emit(self.error)

    @Slot(object)
    def _on_loaded(self, info: EngineInfo) -> None:
        self.info = info
        self.ready.emit(info)

    @Slot(str)
    def _on_crashed(self, message: str) -> None:
        self.error = message
        self.failed.emit(message)


_shared: EngineLoader | None = None


def shared_loader() -> EngineLoader:
    """The process-wide loader (created on first use; needs a QCoreApplication)."""
    global _shared
    if _shared is None:
        _shared = EngineLoader()
    return _shared
