"""Grab every view of the real app to PNG for the README.

    python -m iamnn_studio.gui.screenshots [--out resources/screenshots] [--run RUN_DIR] [--keep]

Offline and self-contained: it opens the app's main window (offscreen unless ``--show``) with
settings and runs in a temp folder, trains a small IamNN on the built-in synthetic shapes
through the Train tab (about a minute on two CPU cores; again with the next seed if that run's
halting collapsed to one iteration everywhere), grabs the Train tab mid-run, then the
Runs, Study and Use tabs on the finished run (the Use tab classifies a few of the run's easiest
and hardest test images) and the export dialog. ``--run`` skips training and uses a finished run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

WINDOW_SIZE = (1280, 800)
TRAIN_TIMEOUT_S = 600
#: Demo runs tried (with seeds 0, 1, ...) until one adapts its compute per image.
TRAIN_ATTEMPTS = 3
#: How many of the easiest and of the hardest test images the Use tab shows.
USE_IMAGES = 2


def demo_config(name: str = "shapes-iamnn") -> Any:
    """A run that trains in about a minute on two cores and shows real per-image adaptivity."""
    from iamnn_studio.engine.config import DataConfig, ModelConfig, RunConfig

    return RunConfig(
        name=name,
        data=DataConfig(name="synthetic", options={"train_size": 3000, "test_size": 500, "difficulty": 0.8}),
        model=ModelConfig(depth=18, iterations=(2, 3, 4, 2), width=8),
        optimizer="adamw", lr=0.004, weight_decay=1e-4, batch_size=64, epochs=4, device="cpu",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m iamnn_studio.gui.screenshots", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="resources/screenshots", help="folder for the PNG files")
    parser.add_argument("--run", help="use this finished run folder instead of training one")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder with the run (its path is printed)")
    parser.add_argument("--show", action="store_true", help="show the window instead of rendering offscreen")
    return parser.parse_args(argv)


class Tour:
    """Drives the real main window step by step, spinning the Qt event loop while it waits."""

    def __init__(self, out: Path, workdir: Path) -> None:
        from PySide6.QtCore import QCoreApplication, QSettings
        from PySide6.QtWidgets import QApplication

        from .app import APPLICATION, ORGANIZATION

        QCoreApplication.setOrganizationName(ORGANIZATION)
        QCoreApplication.setApplicationName(APPLICATION)
        # The user's remembered window, tab and runs folder must neither leak in nor be overwritten.
        for fmt in (QSettings.Format.IniFormat, QSettings.Format.NativeFormat):
            for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
                QSettings.setPath(fmt, scope, str(workdir / "settings"))
        self.app = QApplication.instance() or QApplication([sys.argv[0]])
        from .main_window import MainWindow
        from .style import apply_style

        apply_style(self.app)
        self.out, self.workdir = out, workdir
        self.window = MainWindow(runs_dir=str(workdir / "runs"))
        self.window.resize(*WINDOW_SIZE)
        self.window.show()
        self.started = time.monotonic()
        self.written: list[Path] = []

    # ---------------------------------------------------------------- helpers
    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {text}", flush=True)

    def wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        from PySide6.QtCore import QEventLoop, QTimer

        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            loop = QEventLoop()
            QTimer.singleShot(50, loop.quit)
            loop.exec()

    def pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        self.wait(lambda: time.monotonic() >= end, seconds + 5, "a pause")

    def select(self, tab: str) -> None:
        tabs = self.window.tabs
        for index in range(tabs.count()):
            if tabs.tabText(index) == tab:
                tabs.setCurrentIndex(index)
        self.pause(0.3)

    def grab(self, name: str, widget: Any = None) -> Path:
        self.pause(0.4)  # let the 250 ms plot refresher and layouts settle
        path = self.out / f"{name}.png"
        (widget or self.window).grab().save(str(path))
        self.written.append(path)
        self.say(f"wrote {path}")
        return path

    # ---------------------------------------------------------------- steps
    def wait_for_engine(self) -> None:
        self.say("loading the engine…")
        self.wait(lambda: self.window.engine_ready, 180, "the engine to load")

    def train_adaptive(self, attempts: int = TRAIN_ATTEMPTS) -> Path:
        """Train the demo; CPU training is not bit-reproducible and a 4-epoch model sometimes learns to stop
        every image after one iteration ("Collapsed"), which would not show what the app is for: then say
        so and train again with the next seed."""
        for seed in range(attempts):
            run_dir = self.train(seed)
            collapse = (_read_json(run_dir / "eval.json").get("adaptivity") or {}).get("collapse") or {}
            if not collapse.get("alarm"):
                return run_dir
            self.say(f"{run_dir.name} collapsed ({'; '.join(collapse.get('reasons') or [])}): training again")
            if seed + 1 < attempts:
                shutil.rmtree(run_dir)  # the Runs and Study screenshots show the run that adapts, alone
        return run_dir

    def train(self, seed: int = 0) -> Path:
        training = self.window.training
        config = demo_config()
        config.seed = seed
        training.form.set_config(config)
        training.form.wait_for_background()
        self.select("Train")
        self.wait(training.header.start.isEnabled, 30, "Start")  # the folder's verdict, delivered to the form
        if not training.start_run():
            raise RuntimeError(f"the Train tab refused to start: {training.header.subtitle.text()}")
        self.say("training (about a minute on two cores)…")
        status = lambda: _read_json(Path(training.last_run_dir or "") / "status.json") if training.last_run_dir else {}
        self.wait(lambda: (status().get("epochs_done") or 0) >= 2, TRAIN_TIMEOUT_S, "two epochs")
        self.pause(1.5)
        self.grab("train")
        self.wait(lambda: not training.is_running, TRAIN_TIMEOUT_S, "the run to finish")
        run_dir = Path(training.last_run_dir)
        if not (run_dir / "eval.json").is_file():
            raise RuntimeError(f"the run ended without eval.json: {training.header.subtitle.text()}")
        self.say(f"trained {run_dir.name}")
        return run_dir

    def runs(self, run_dir: Path) -> None:
        view = self.window.view("Runs")
        self.select("Runs")
        view.set_runs_dir(str(run_dir.parent))
        self.wait(lambda: view.table.rowCount() > 0 and not view._runner.is_busy(), 30, "the runs list")
        view.select_run(str(run_dir))
        self.grab("runs")

    def study(self, run_dir: Path) -> None:
        view = self.window.view("Study")
        self.window.open_run_in_study(str(run_dir))
        self.wait(lambda: view.report is not None and view.report.path == run_dir and not view.is_busy(), 120,
                  "the Study tab")
        self.pause(0.5)
        view.page.verticalScrollBar().setValue(0)
        self.grab("study")
        view.page.ensureWidgetVisible(view.confusion_section, 0, 0)
        view.page.verticalScrollBar().setValue(view.sweep_section.y() - 8)
        self.grab("study-figures")
        view.page.verticalScrollBar().setValue(view.page.verticalScrollBar().maximum())
        self.grab("study-compare")
        view.page.verticalScrollBar().setValue(0)

    def use(self, run_dir: Path) -> None:
        images = self._test_images(run_dir)
        view = self.window.view("Use")
        checkpoint = run_dir / "checkpoints" / "best.pt"
        self.window.open_checkpoint(str(checkpoint))
        self.wait(lambda: view.predictor is not None and not view.is_busy(), 60, "the checkpoint")
        view.clear()
        view.add_image_files([str(p) for p in images])
        self.wait(lambda: len(view.cards) == len(images) and not view.is_busy(), 60, "the predictions")
        view.scroll.verticalScrollBar().setValue(0)
        self.grab("use")

    def export(self, run_dir: Path) -> None:
        from .export_dialog import ExportDialog

        dialog = ExportDialog(str(run_dir / "checkpoints" / "best.pt"), self.window)
        dialog.resize(680, 300)
        dialog.show()
        self.wait(lambda: not dialog.is_busy(), 60, "the export formats")
        dialog.set_format("onnx")
        self.grab("export", dialog)
        dialog.close()

    def _test_images(self, run_dir: Path) -> list[Path]:
        """Write a few of the run's easiest and hardest test images as PNG files, as a user would drop them."""
        from PIL import Image

        from iamnn_studio.engine.data import load_dataset
        from iamnn_studio.engine.runs import RunDirectory

        evaluation = _read_json(run_dir / "eval.json")
        config = RunDirectory(run_dir).read_config()
        test = load_dataset(config.data, seed=config.seed).test
        folder = self.workdir / "images"
        folder.mkdir(exist_ok=True)
        paths = []
        for kind in ("easiest", "hardest"):
            for entry in (evaluation.get(kind) or [])[:USE_IMAGES]:
                array = test.images[int(entry["index"])].permute(1, 2, 0).numpy()
                image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
                path = folder / f"{entry['label'].replace(' ', '-')}-{int(entry['index'])}.png"
                image.save(path)
                paths.append(path)
        return paths

    def close(self) -> None:
        training = self.window.training
        if training.is_running:
            training.stop_run()
            self.wait(lambda: not training.is_running, 60, "the run to stop")
        self.window.close()
        self.window.loader.wait()


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not args.show:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="iamnn-screenshots-"))
    tour = None
    try:
        tour = Tour(out, workdir)
        tour.wait_for_engine()
        if args.run:
            source = Path(args.run).resolve()
            run_dir = workdir / "runs" / source.name
            shutil.copytree(source, run_dir)
            tour.select("Train")
            tour.grab("train")
        else:
            run_dir = tour.train_adaptive()
        tour.runs(run_dir)
        tour.study(run_dir)
        tour.use(run_dir)
        tour.export(run_dir)
        tour.say(f"done: {len(tour.written)} screenshots in {out}")
        return 0
    except Exception as error:  # one line, not a traceback: this is a tool people run by hand
        print(f"screenshots failed: {error}", file=sys.stderr)
        return 1
    finally:
        if tour is not None:
            tour.close()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
