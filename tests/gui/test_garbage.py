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
