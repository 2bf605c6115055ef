"""UI lag while training: how late a 10 ms timer fires in the real app window while a run trains.

The app's ``MainWindow`` is created and shown (offscreen), the engine loads in the background as
it does for a user, a run config is loaded into the Train tab (``MainWindow.load_config_file``)
and started with the Start button's slot (``TrainingView.start_run``): the engine's Trainer runs
in the GUI's QThread worker and its events drive the live plots, labels, log and system panel.
A ``Qt.PreciseTimer`` fires every 10 ms in the UI thread; each tick's lag is how much later than
10 ms after the previous tick it fired. Lag is recorded from the run's first step event for
``seconds`` seconds, then the run is stopped. An idle stretch before the run gives the baseline.

QSettings are redirected to a temporary folder, so the benchmark never reads or changes the
user's remembered window state or forms.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_arguments, finish, hardware, median, percentile, verdict  # noqa: E402

TARGET_P99_MS = 50.0
TICK_MS = 10
LATE_MS = 20  # ticks at least this late are attributed to what the UI thread did just before


class LagProbe:
    """A 10 ms precise timer in the UI thread that records how late each tick fires."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.recording = False
        self.lags_ms: list[float] = []
        self.late_ticks: list[tuple[float, float]] = []  # (time the late interval began, lag ms)
        self._last: float | None = None

    def start(self) -> None:
        self._last = None
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.recording and self._last is not None:
            lag = max(0.0, (now - self._last) * 1000.0 - TICK_MS)
            self.lags_ms.append(lag)
            if lag >= LATE_MS:
                self.late_ticks.append((self._last, lag))
        self._last = now

    def record(self, seconds: float, app) -> list[float]:
        """Run the event loop for ``seconds`` and return the lags of the ticks in that time."""
        self.lags_ms = []
        self.late_ticks = []
        self._last = None
        self.recording = True
        wait(app, lambda: False, seconds)
        self.recording = False
        return list(self.lags_ms)


def wait(app, done, timeout: float) -> bool:
    """Run a real Qt event loop (as ``app.exec()`` does) until ``done()`` or ``timeout`` seconds.

    A loop of ``processEvents()`` and sleeps would itself make the timer late; an event loop
    blocks on the next event, like the app's own.
    """
    from PySide6.QtCore import QEventLoop, QTimer

    if done():
        return True
    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(20)
    poll.timeout.connect(lambda: done() and loop.quit())
    deadline = QTimer()
    deadline.setSingleShot(True)
    deadline.timeout.connect(loop.quit)
    poll.start()
    deadline.start(int(timeout * 1000))
    loop.exec()
    poll.stop()
    deadline.stop()
    return done()


def lag_stats(lags_ms: list[float], seconds: float) -> dict[str, Any]:
    if not lags_ms:
        return {"ticks": 0}
    return {
        "p50_ms": percentile(lags_ms, 50),
        "p90_ms": percentile(lags_ms, 90),
        "p99_ms": percentile(lags_ms, 99),
        "max_ms": max(lags_ms),
        "ticks": len(lags_ms),
        "ticks_expected": int(seconds * 1000 / TICK_MS),
    }


def attribute_late_ticks(late: list[tuple[float, float]], events: list[float], refreshes: list[float]) -> dict:
    """How many late ticks follow an engine event or a plot refresh handled in the UI thread.

    A tick is late because the UI thread was busy (or not scheduled) between the previous tick
    and it: if an event or a refresh was handled in that interval, it is a suspect; if neither
    was, the thread was waiting for the GIL (the training thread's Python) or for a CPU core.
    """
    counts = {"after_engine_event": 0, "after_plot_refresh": 0, "neither": 0}
    for begin, lag in late:
        end = begin + (TICK_MS + lag) / 1000.0
        if any(begin <= t <= end for t in events):
            counts["after_engine_event"] += 1
        elif any(begin <= t <= end for t in refreshes):
            counts["after_plot_refresh"] += 1
        else:
            counts["neither"] += 1
    return {"late_ticks": len(late), "late_ms": LATE_MS, **counts}


def isolate_settings(folder: Path) -> None:
    """Point QSettings at ``folder`` (the app's organisation and name, as in tests/conftest.py)."""
    from PySide6.QtCore import QCoreApplication, QSettings

    from iamnn_studio.gui.app import APPLICATION, ORGANIZATION

    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for fmt in (QSettings.Format.IniFormat, QSettings.Format.NativeFormat):
        for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
            QSettings.setPath(fmt, scope, str(folder))


def run_config(*, dataset: str, width: int, depth: int, batch_size: int):
    from iamnn_studio.engine import DataConfig, ModelConfig, RunConfig

    return RunConfig(
        name="ui-lag", data=DataConfig(name=dataset), model=ModelConfig(width=width, depth=depth),
        batch_size=batch_size, epochs=1, seed=0, device="cpu",
    )


def measure_ui_lag(
    *,
    seconds: float = 35.0,
    idle_seconds: float = 3.0,
    dataset: str = "fashion-mnist",
    width: int = 16,
    depth: int = 50,
    batch_size: int = 128,
    engine_timeout: float = 180.0,
) -> dict[str, Any]:
    """Train in the real window for ``seconds`` while probing the UI thread's lag."""
    from PySide6.QtWidgets import QApplication

    work = Path(tempfile.mkdtemp(prefix="iamnn-ui-lag-"))
    isolate_settings(work / "settings")
    app = QApplication.instance() or QApplication([sys.argv[0]])

    from iamnn_studio.gui.main_window import MainWindow

    window = MainWindow(runs_dir=str(work / "runs"))
    window.resize(1280, 800)
    window.show()
    probe = LagProbe()
    probe.start()
    if not wait(app, lambda: window.engine_ready, engine_timeout):
        raise RuntimeError(f"the engine did not load within {engine_timeout:.0f} s")
    idle = probe.record(idle_seconds, app)

    config = run_config(dataset=dataset, width=width, depth=depth, batch_size=batch_size)
    config_path = work / "ui-lag.toml"
    config.save(config_path)
    if not window.load_config_file(str(config_path)):
        raise RuntimeError("the window refused the run config")
    steps: list[dict] = []
    failures: list[str] = []
    if not window.training.start_run():
        raise RuntimeError(f"the run did not start: {window.run_label.text()}")

    event_times: list[float] = []
    refresh_times: list[float] = []
    window.training.refresher.on_refresh(lambda: refresh_times.append(time.perf_counter()))

    def on_event(kind: str, data: dict) -> None:
        event_times.append(time.perf_counter())  # after the view handled it (connected first)
        if kind == "step":
            steps.append(data)
        elif kind == "failed":
            failures.append(str(data.get("reason")))

    window.training.session.event.connect(on_event)
    if not wait(app, lambda: bool(steps) or bool(failures) or window.training.session is None, engine_timeout):
        raise RuntimeError("the run sent no step event in time")
    if failures:
        raise RuntimeError(f"the run failed: {failures[0]}")
    load_before = _load_average()
    training = probe.record(seconds, app)
    late = attribute_late_ticks(probe.late_ticks, event_times, refresh_times)
    load_after = _load_average()
    steps_seen = len(steps)
    window.training.stop_run()
    stopped = wait(app, lambda: window.training.session is None, 120.0)
    probe.timer.stop()
    window.close()
    window.loader.wait()

    images_per_s = [s["images_per_s"] for s in steps if s.get("images_per_s")]
    stats = lag_stats(training, seconds)
    return {
        "value": stats.get("p99_ms"),
        "p50_ms": stats.get("p50_ms"),
        "target_p99_ms": TARGET_P99_MS,
        "verdict": verdict(stats.get("p99_ms"), TARGET_P99_MS, higher_is_better=False),
        "training": stats,
        "idle": lag_stats(idle, idle_seconds),
        "train_images_per_s": median(images_per_s) if images_per_s else None,
        "step_events": steps_seen,
        "late_tick_causes": late,
        "load_average_before_after": [load_before, load_after],
        "stopped_cleanly": stopped,
        "arrangement": "real MainWindow (offscreen), Train tab, run started with TrainingView.start_run: the "
                       "engine Trainer in the GUI's QThread worker (gui/worker.py TrainingSession)",
        "setting": {"dataset": dataset, "width": width, "depth": depth, "batch_size": batch_size,
                    "seconds": seconds, "idle_seconds": idle_seconds, "tick_ms": TICK_MS},
        "hardware": hardware(),
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def describe(result: dict[str, Any]) -> list[str]:
    t, i = result["training"], result["idle"]
    return [
        "UI lag while training",
        f"  {result['arrangement']}",
        f"  {result['setting']['dataset']}, width {result['setting']['width']}, depth {result['setting']['depth']}, "
        f"batch {result['setting']['batch_size']}; {t['ticks']} ticks in {result['setting']['seconds']:.0f} s of "
        f"training ({result['step_events']} step events, {result['train_images_per_s'] or 0:.0f} img/s)",
        f"  lag p50 {t['p50_ms']:.2f} ms, p99 {t['p99_ms']:.2f} ms, max {t['max_ms']:.1f} ms "
        f"(idle window: p99 {i.get('p99_ms', float('nan')):.2f} ms)",
        f"  ticks >= {result['late_tick_causes']['late_ms']} ms late: {result['late_tick_causes']['late_ticks']} "
        f"({result['late_tick_causes']['after_engine_event']} after an engine event, "
        f"{result['late_tick_causes']['after_plot_refresh']} after a plot refresh, "
        f"{result['late_tick_causes']['neither']} after neither); load average "
        f"{result['load_average_before_after'][0]} -> {result['load_average_before_after'][1]} on "
        f"{result['hardware']['cores']} cores",
        f"  p99 {result['value']:.2f} ms (target <= {result['target_p99_ms']:.0f} ms: {result['verdict']})",
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = bench_arguments(__doc__.splitlines()[0]).parse_args(argv)
    if args.quick:
        result = measure_ui_lag(seconds=4, idle_seconds=1, dataset="synthetic", width=4, depth=18, batch_size=32)
    else:
        result = measure_ui_lag()
    finish(result, args.json, describe(result))
    return result


if __name__ == "__main__":
    main()
