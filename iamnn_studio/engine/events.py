"""Events the trainer emits to any listener (a plain callback: no Qt here).

Kinds and their ``data`` keys:
- ``started``: run_dir, config (dict), total_steps, device, resumed_from_epoch
- ``step``: epoch, step, total_steps, loss, accuracy, lr, images_per_s, iterations (4 floats: mean per block),
  macs (mean per image), progress (0..1). Throttled to <= 10 per second.
- ``epoch``: epoch, step, train_loss, train_accuracy, val_loss, val_accuracy, iterations, macs, images_per_s, lr
- ``checkpoint``: path, epoch, step, best (bool), calibrated (bool: the model holds its fitted halting head);
  ``refreshed_norm_statistics: true`` where the same step's checkpoint is saved again, its model's batchnorm
  statistics recomputed (a stop saves last.pt at once, then again once they are)
- ``paused`` / ``resumed``: step
- ``phase_progress``: phase ("calibrating" or "evaluating"), fraction (0..1) of that after-training
  phase done. Throttled to <= 4 per second; not written to the run folder.
- ``calibrated``: threshold, per_block_accuracy ..., curve (list of {threshold, macs, accuracy})
- ``evaluated``: the eval.json summary (top1, top5, macs stats)
- ``finished``: reason ("completed", "stopped", "max_steps"), best_accuracy, run_dir, epoch, step; and
  message where a stop ended the run before training began (a stopped dataset download: what was stopped)
- ``failed``: reason (one human sentence), run_dir; ``download_stopped: true`` where a process of a run of several
  failed because its dataset download was stopped (Ctrl-C), which the launcher reads as a stop
- ``log``: message (a sentence for the run's log), level ("warning" where something was lost or refused and
  the run goes on, e.g. a result the run folder could not take; absent: information)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

EVENT_KINDS = (
    "started", "step", "epoch", "checkpoint", "paused", "resumed",
    "phase_progress", "calibrated", "evaluated", "finished", "failed", "log",
)


@dataclass
class Event:
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, "time": self.time, **self.data}


Listener = Callable[[Event], None]
