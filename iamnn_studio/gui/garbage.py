"""Python's cyclic garbage collector, run on the UI thread only.

Automatic collection runs in whichever thread happens to allocate past a threshold: a worker thread (training,
model sizing, evaluation) may then free Qt objects that belong to the UI thread while that thread paints or builds
widgets. That crashed the process (a segfault "Garbage-collecting" in the model-sizing thread while the UI thread
built the system plots). So automatic collection is switched off while the app runs and a timer on the UI thread
collects instead, generation by generation as the collector's own thresholds ask.

Once the engine is loaded, what is alive then (torch, the views: ~390,000 objects) is frozen out of the collector's
sight (``gc.freeze``): a full collection walked all of it, a 250 ms stall of the UI thread each time; frozen, the
same collection takes about 1 ms.
"""
from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

#: How often the UI thread looks at the collector's counts (a collection of generation 0 takes well under 1 ms).
CHECK_INTERVAL_MS = 500


_frozen = False


def freeze_long_lived() -> None:
    """Move every object alive now into the collector's permanent generation, once per process: later collections
    no longer walk them. Call it when start-up's objects are made (they live as long as the app). Without a
    collection first (a 250 ms stall): what cyclic garbage start-up left stays, once."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()


class UiThreadGarbageCollector(QObject):
    """While it runs, cyclic garbage is collected on the thread that made it (the UI thread), never elsewhere."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = CHECK_INTERVAL_MS) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        self._thresholds = gc.get_threshold()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect_due)
        self._timer.start()

    def collect_due(self) -> int:
        """Collect the generations whose counts passed their thresholds, youngest first; the objects freed."""
        freed = 0
        for generation in range(3):
            if gc.get_count()[generation] <= self._thresholds[generation]:
                break
            freed += gc.collect(generation)
        return freed

    def stop(self) -> None:
        """Collect what is left here and give the collector back its automatic runs (as they were)."""
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()
