"""Cyclic garbage is collected on the UI thread, never by a worker thread that happens to allocate."""
from __future__ import annotations

import gc
import threading

import pytest

pytest.importorskip("pytestqt")

from iamnn_studio.gui.garbage import UiThreadGarbageCollector  # noqa: E402

pytestmark = pytest.mark.gui


class Cycle:
    def __init__(self, freed_in: list) -> None:
        self.me, self.freed_in = self, freed_in

    def __del__(self) -> None:
        self.freed_in.append(threading.current_thread().name)


def test_cycles_a_worker_thread_leaves_are_freed_on_the_ui_thread(qtbot):
    freed_in: list = []
    collector = UiThreadGarbageCollector(interval_ms=10)  # the fixture's is running too: both collect here
    try:
        assert not gc.isenabled()

        def worker() -> None:  # 2,000 objects in cycles, past generation 0's threshold: automatic gc runs here
            for _ in range(1000):
                Cycle(freed_in)  # unreachable at once, freed only by a collection

        thread = threading.Thread(target=worker, name="worker")
        thread.start()
        thread.join()
        assert freed_in == []  # nothing collected in the worker
        qtbot.waitUntil(lambda: len(freed_in) == 1000, timeout=5000)
        assert set(freed_in) == {threading.main_thread().name}
    finally:
        collector.stop()
    assert not gc.isenabled()  # the fixture's collector still holds it off; its stop gives it back


def test_stopping_gives_the_collector_its_automatic_runs_back():
    was = gc.isenabled()
    gc.enable()
    try:
        collector = UiThreadGarbageCollector()
        assert not gc.isenabled()
        collector.stop()
        assert gc.isenabled()
    finally:
        gc.enable() if was else gc.disable()


def test_a_window_freezes_what_lives_as_long_as_the_app_once_its_engine_is_ready(qtbot, styled_app, tmp_runs,
                                                                                  monkeypatch):
    """Once per process, when the engine is ready: start-up's objects leave the collector's sight (a full collection
    walking torch and the views stalled the UI thread 250 ms)."""
    from PySide6.QtCore import QSettings

    from iamnn_studio.gui import garbage
    from iamnn_studio.gui.main_window import MainWindow

    from .conftest import ENGINE_TIMEOUT_MS

    freezes: list[int] = []
    monkeypatch.setattr(garbage, "_frozen", False)  # as in a fresh process (the suite froze its start-up already)
    monkeypatch.setattr(gc, "freeze", lambda: freezes.append(len(gc.get_objects())))
    QSettings().clear()
    win = MainWindow(runs_dir=str(tmp_runs))
    try:
        win.show()
        assert freezes == []  # not before the engine and the views are there
        qtbot.waitUntil(lambda: win.engine_ready, timeout=ENGINE_TIMEOUT_MS)
        assert len(freezes) == 1
        garbage.freeze_long_lived()
        assert len(freezes) == 1  # once per process
    finally:
        win.training.form.wait_for_background()
        win.close()
        win.deleteLater()
        qtbot.wait(10)

