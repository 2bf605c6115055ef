"""The training loop: one ``RunConfig`` in, a run folder and a stream of events out.

``Trainer.run()`` blocks; ``stop()``, ``pause()`` and ``resume()`` may be called from any
thread and take effect between two optimiser steps. Expected failures (a missing dataset, a
diverging loss, running out of GPU memory, a full disk) end the run with a ``failed`` event
and a one-sentence reason; ``run()`` returns rather than raises.

What a run does, in order (docs/architecture.md, "Training recipes"):

1. load the dataset and fill the model's input channels, image size and classes from it;
2. train for ``epochs`` (or ``max_steps``), validating after every epoch and keeping
   ``last.pt`` and ``best.pt``;
3. for the calibrated recipe, fit the halting heads of the best model on held-out images;
4. evaluate the final model on the test split and write ``eval.json``.

Reproducibility: every random choice of the loop comes from generators seeded by
``config.seed`` (the epoch's data order from the seed and the epoch number, augmentation and
the anytime exits from their own generators), and every generator's state is saved in the
checkpoint, so a run stopped at any step and resumed from ``last.pt`` trains exactly as an
uninterrupted one on the same device.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import math
import os
import random
import shlex
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data.distributed import DistributedSampler

from .config import ModelConfig, RunConfig, calibrates_halting, training_recipe
from .distributed import Collective
from .events import Event, Listener
from .optim import build_optimizer, build_scheduler, planned_steps
from .io import unsaved_reason, unwritable_reason
from .runs import STEP_LIMIT_REASON, TRAINING_STATE_VERSION, RunDirectory, nothing_left_to_resume
from ..split_words import epoch_split_word, split_named

log = logging.getLogger(__name__)

TRAINER_STATES = ("idle", "running", "paused", "stopping", "stopped", "completed", "failed")
#: Step events are aggregated over windows of at least this many seconds (<= 10 events/s).
STEP_EVENT_INTERVAL = 0.1
#: Seconds between ``phase_progress`` events during calibration and evaluation.
PHASE_PROGRESS_INTERVAL_S = 0.25
#: With several processes, metrics and stop requests are combined every this many steps.
SYNC_EVERY_STEPS = 10
#: Datasets up to this size are moved to the GPU once, so batches never cross the bus.
GPU_DATASET_BYTES = 2 << 30


class TrainingFailed(Exception):
    """An expected failure; the message is the sentence the user sees."""


class _DownloadStoppedInAJob(TrainingFailed):
    """A stopped download in a run of several processes: the run fails, which ends the others' wait for the
    data; its "failed" event says ``download_stopped`` so the launcher can read the job as stopped."""


class _StopRequested(Exception):
    """The user stopped the run during calibration or evaluation."""


class _DownloadStopped(Exception):
    """The run's dataset download was stopped (its Stop, Ctrl-C): the run ends as stopped before training;
    the message is the download's sentence."""


@dataclass
class RunResult:
    """How a run ended."""

    run_dir: Path | None
    reason: str  # "completed", "max_steps", "stopped", or why it failed
    best_accuracy: float | None  # validation accuracy of the best epoch; once calibrated, as the saved model runs
    state: str = "completed"  # completed | stopped | failed
    #: sha256 of the trained parameters per global rank (distributed runs check they agree).
    parameter_digests: dict[int, str] = field(default_factory=dict)
    #: What the user is told where ``reason`` alone does not say it: for a run stopped while its dataset
    #: downloaded, "the download of X into Y was stopped; no partial file was kept". Empty otherwise.
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.state != "failed"


# --------------------------------------------------------------------------- metrics
class _Totals:
    """Sums of training metrics kept on the device, so recording a step never waits for the GPU.

    Layout: loss, ponder, correct, images, macs, then iterations per block (all summed over images).
    """

    LOSS, PONDER, CORRECT, IMAGES, MACS, ITERATIONS = range(6)

    def __init__(self, blocks: int, device: torch.device) -> None:
        self.blocks = blocks
        self.values = torch.zeros(self.ITERATIONS + blocks, dtype=torch.float64, device=device)

    @staticmethod
    def summary(values: Tensor, blocks: int) -> dict[str, Any]:
        """Means per image from (host) sums."""
        v = values.tolist()
        images = v[_Totals.IMAGES]
        if images <= 0:
            return {}
        return {
            "loss": v[_Totals.LOSS] / images,
            "accuracy": v[_Totals.CORRECT] / images,
            "ponder_cost": v[_Totals.PONDER] / images,
            "macs": v[_Totals.MACS] / images,
            "iterations": [v[_Totals.ITERATIONS + b] / images for b in range(blocks)],
            "images": int(images),
        }


# --------------------------------------------------------------------------- the trainer
class Trainer:
    """Trains one run; see the module docstring.

    ``Trainer(config)`` starts a new run in ``runs_dir/<config.name>`` (numbered if taken), or
    exactly in ``run_dir`` when given. ``Trainer(config, run_dir=path, resume=True)`` continues a
    run from its ``last.pt`` with the settings it was started with (``config`` may then be None;
    only its device and thread settings are taken).
    """

    def __init__(
        self,
        config: RunConfig | None,
        *,
        runs_dir: str | Path = "runs",
        run_dir: str | Path | None = None,
        resume: bool = False,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if config is None and not resume:
            raise ValueError("config: a new run needs a RunConfig")
        if resume and run_dir is None:
            raise ValueError("run_dir: resuming needs the run folder")
        self.config: RunConfig | None = None if config is None else copy.deepcopy(config).validate()
        self.runs_dir = Path(runs_dir)
        self.resuming = resume
        self._requested_run_dir = None if run_dir is None else Path(run_dir)
        self._listeners: list[Listener] = list(listeners)
        self._comm = Collective.current()
        self._rank, self._world_size = self._comm.rank, self._comm.world_size  # _comm shrinks after training
        self._processes_per_node = self._comm.local_world_size

        self._state = "idle"
        # re-entrant: stop() also runs in a signal handler, which may land while this thread holds it
        self._state_lock = threading.RLock()
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None  # the one running run(): stop() ends its downloads
        self._unpaused = threading.Event()
        self._unpaused.set()

        self.run_dir: RunDirectory | None = None  # rank 0 only: the other processes write nothing
        self._run_path: Path | None = None
        self.device = torch.device("cpu")
        self.epoch = 0  # epochs completed
        self.step = 0  # optimiser steps taken
        self.best_accuracy: float | None = None
        # the validation accuracy of the best epoch once its halting head is calibrated: what the saved
        # model scores as it runs (best_accuracy is the same weights' full-depth score, before calibration)
        self.calibrated_accuracy: float | None = None
        self.best_epoch: int | None = None
        self._batches_done = 0  # in the current epoch
        self._halting_fitted = False
        # training's batchnorm moving averages while the model holds refreshed statistics (after a validation,
        # in a saved model): put back before training goes on (``norm_statistics``)
        self._moving_averages: dict[str, Tensor] | None = None
        self._last_good_checkpoint: Path | None = None
        # What the checkpoints on disk hold: (epochs, steps) of last.pt, the accuracy of best.pt. A
        # status written after an interruption says this, not what was computed after the last save.
        self._saved_progress: tuple[int, int] | None = None
        self._saved_best: float | None = None
        self._unsaved_files: set[Path] = set()  # run files already said to be unwritable (said once each)

    # ------------------------------------------------------------ commands
    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def stop(self) -> None:
        """Finish the current step, save ``last.pt`` and end the run (thread-safe). A dataset download in
        progress ends at once, and the run ends stopped (not failed) with a message saying so."""
        self._stop_requested.set()
        with self._state_lock:
            if self._state in ("running", "paused"):
                self._state = "stopping"
        self._unpaused.set()  # a paused loop must wake up to stop
        if self._thread is not None:  # a dataset still downloading: stop it now, not after its next answer
            from .data import stop_downloads

            stop_downloads(self._thread)

    def pause(self) -> None:
        """Hold the loop between two steps until ``resume()`` (thread-safe)."""
        if not self._stop_requested.is_set():
            self._unpaused.clear()

    def resume(self) -> None:
        self._unpaused.set()

    @property
    def state(self) -> str:
        """idle, running, paused, stopping, stopped, completed or failed."""
        return self._state

    def _set_state(self, state: str) -> None:
        with self._state_lock:
            if self._state == "stopping" and state in ("running", "paused"):
                return
            self._state = state
            if state in ("running", "paused") and self._stop_requested.is_set():
                self._state = "stopping"  # a stop() from a signal handler that landed inside this method

    # ------------------------------------------------------------------ run
    def run(self) -> RunResult:
        """Train to the end (or until stopped or failed); never raises for expected failures."""
        if self._state != "idle":
            raise RuntimeError("a Trainer runs once; make a new one (with resume=True to continue the run)")
        self._set_state("running")
        self._thread = threading.current_thread()
        try:
            self._prepare()
            reason = self._train()
            if reason != "stopped":
                reason = self._after_training(reason)
            return self._finish(reason)
        except _DownloadStopped as exc:
            return self._stop_before_training(str(exc))
        except TrainingFailed as exc:
            return self._fail(str(exc), download_stopped=isinstance(exc, _DownloadStoppedInAJob))
        except torch.cuda.OutOfMemoryError:
            self._release_gpu_memory()
            return self._fail(self._out_of_memory_reason("GPU memory"))
        except KeyboardInterrupt:  # may land between an epoch's result and its checkpoints
            self._fail(f"interrupted; {self._kept_checkpoint_sentence()}")
            raise
        except Exception as exc:
            if _is_cpu_out_of_memory(exc):
                self._release_gpu_memory()
                return self._fail(self._out_of_memory_reason("memory"))
            # a bug: say so in one line; the traceback goes to train.log, or a temp file before the run
            # folder exists (the logger keeps it out of the CLI's stderr: debug level)
            where = self._keep_traceback(exc)
            log.debug("training failed", exc_info=True)
            from .plugins import plugin_at_fault

            blame = plugin_at_fault(exc)  # a plugin's block or dataset failing is named as such
            return self._fail(f"unexpected error{f' in {blame}' if blame else ''}: {type(exc).__name__}: "
                              f"{_first_line(exc)} (details in {where})")
        finally:
            self._thread = None  # a later stop() must not stop another run's download in a pooled thread

    # ------------------------------------------------------------ preparing
    def _prepare(self) -> None:
        checkpoint = self._open_run_for_resume() if self.resuming else None
        config = self.config
        self.recipe = training_recipe(config.model)
        self.device = self._choose_device(config)
        self._setup_notes: list[str] = []  # said in the log once the run has started
        if self.device.type == "cpu" and config.num_threads is not None:
            torch.set_num_threads(self._cpu_threads(config.num_threads))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        _seed_everything(config.seed)

        self.data = self._load_data(config)
        self._check_calibration_images(config)
        self.model = self._build_model(config, checkpoint)
        self.train_model: nn.Module = self.model
        if self._comm.distributed:
            from torch.nn.parallel import DistributedDataParallel

            from .model import IamNN

            # The adaptive forward skips iterations (and, before calibration, every halting head):
            # which parameters get gradients changes from batch to batch.
            self.train_model = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=isinstance(self.model, IamNN),
            )

        self.steps_per_epoch = self._steps_per_epoch()
        self.total_steps = planned_steps(config, self.steps_per_epoch)
        self.total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = build_scheduler(self.optimizer, config, self.total_steps)
        self._step_lr: float | None = None  # the learning rate the latest step used (the scheduler has moved on)
        self.augment_generator = torch.Generator().manual_seed(config.seed * 1000 + 1 + self._comm.rank)
        # Identical on every process: all ranks run the same exits, so DDP sees the same graph.
        self.exit_generator = torch.Generator().manual_seed(config.seed * 1000 + 2)
        self.totals = _Totals(len(self.model.caps), self.device)

        if checkpoint is not None:
            self._restore_training_state(checkpoint.training_state)
            if self._comm.is_main:
                self.run_dir = RunDirectory(self._run_path)
                self._write_status("running")
        else:
            self._create_run_dir(config)
        self._emit_started(resumed=checkpoint is not None)

    def _cpu_threads(self, requested: int) -> int:
        """``requested`` threads, at most this machine's cores: the settings may be another machine's, and
        more threads than cores only compete for them."""
        cores = usable_cores()
        if requested <= cores:
            return requested
        self._setup_notes.append(f"num_threads {requested} is more than the {cores} cores this computer gives "
                                  f"the run: using {cores}")
        return cores

    def _open_run_for_resume(self):
        """Load ``last.pt`` of the run folder; the run's own settings win over the given ones."""
        from .checkpoint import CheckpointError, load_checkpoint

        try:
            run = RunDirectory.open(self._requested_run_dir)
        except ValueError as exc:
            raise TrainingFailed(f"cannot resume: {exc}") from None
        name = run.name
        if run.is_being_trained():
            raise TrainingFailed(f"cannot resume {name}: another process is training it right now")
        if not run.last_checkpoint.exists():
            raise TrainingFailed(f"cannot resume {name}: it has no checkpoint yet (it ended before its first epoch "
                                 f"did); {_start_again_advice(run)}")
        try:
            checkpoint = load_checkpoint(run.last_checkpoint)
        except CheckpointError as exc:
            raise TrainingFailed(f"cannot resume {name}: {exc}") from None
        state = checkpoint.training_state
        if not isinstance(state, dict) or state.get("version") != TRAINING_STATE_VERSION:
            raise TrainingFailed(f"cannot resume {name}: its last checkpoint holds no training state to continue from")
        saved = checkpoint.run_config
        if saved is None:
            try:
                saved = run.read_config()
            except ValueError as exc:
                raise TrainingFailed(f"cannot resume {name}: {exc}") from None
        if self.config is not None:  # where to run may change; what to train may not
            for name_ in ("device", "amp", "channels_last", "num_threads"):
                setattr(saved, name_, getattr(self.config, name_))
        self.config = saved
        world = int(state.get("world_size", 1))
        if world != self._comm.world_size:
            raise TrainingFailed(
                f"cannot resume {name}: it was trained by {_count(world, 'process', 'processes')}; resume it with the "
                f"same number ({_launch_options(world, state.get('processes_per_node'))}; now {self._comm.world_size})"
            )
        if nothing_left_to_resume(state, saved, evaluated=run.eval_path.exists()):
            capped = saved.max_steps is not None and int(state.get("step") or 0) >= saved.max_steps
            epochs = state.get("epoch")
            done = (f"reached its step limit ({_count(saved.max_steps, 'step')})" if capped
                    else f"already completed {'its' if epochs == 1 else 'all'} {_count(epochs, 'epoch')}")
            raise TrainingFailed(
                f"{name} {done} and its evaluation: nothing to resume; to train it longer, start a new run from "
                f"its weights with its settings ({train_longer_command(run.path, saved)}, with a name for NEW and the "
                "epochs for N; in the app: Runs > Train longer)"
            )
        if self._comm.is_main:  # the only writer: a folder it cannot write would lose what the resume trains
            unwritable = unwritable_reason(run.last_checkpoint.parent)
            if unwritable:
                raise TrainingFailed(f"cannot resume {name}: its folder cannot be written ({unwritable}); "
                                     "copy the run to a folder you can write and resume the copy")
        self._run_path = run.path  # self.run_dir waits until the run really continues: until then a
        self._last_good_checkpoint = run.last_checkpoint  # failed attempt leaves the folder as it was
        self._saved_progress, self._saved_best = _checkpoint_progress(state)  # said by a stop while data downloads
        return checkpoint

    @staticmethod
    def _needs_calibration(config: RunConfig) -> bool:
        return calibrates_halting(config)

    def _choose_device(self, config: RunConfig) -> torch.device:
        if config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available()):
            if not torch.cuda.is_available():
                raise TrainingFailed("device: CUDA was asked for but no CUDA GPU is available; choose cpu or auto")
            _, _, number = config.device.partition(":")
            if self._comm.distributed:  # each process has its own GPU, whatever number a single process would take
                return torch.device("cuda", self._comm.local_rank)
            if number and int(number) >= torch.cuda.device_count():
                count = torch.cuda.device_count()
                raise TrainingFailed(f"device: {config.device} was asked for but this machine has {count} CUDA "
                                     f"GPU(s) (cuda:0 to cuda:{count - 1})")
            return torch.device("cuda", int(number) if number else torch.cuda.current_device())
        return torch.device("cpu")

    def _load_data(self, config: RunConfig):
        from .data import DownloadStopped, load_dataset
        from .data.base import downloads_stop_when

        try:
            with downloads_stop_when(self._stop_requested.is_set):  # a Stop before the download began
                bundle = load_dataset(config.data, seed=config.seed)
        except DownloadStopped as exc:
            if self._comm.distributed:  # the other processes do not hear of this stop: fail, which ends them all
                raise _DownloadStoppedInAJob(str(exc)) from None
            raise _DownloadStopped(str(exc)) from None  # asked for (Stop, Ctrl-C): a stop, not a failure
        except ValueError as exc:
            raise TrainingFailed(str(exc)) from None
        if len(bundle.train) == 0:
            raise TrainingFailed(f"data: {bundle.name} has no training images")
        model = config.model
        filled = {"in_channels": bundle.in_channels, "image_size": bundle.image_size, "num_classes": bundle.num_classes}
        if self.resuming:
            changed = [f"{k} {getattr(model, k)} -> {v}" for k, v in filled.items() if getattr(model, k) != v]
            if changed:
                raise TrainingFailed(f"cannot resume: the dataset no longer matches the model ({', '.join(changed)})")
        replaced = [] if self.resuming else _replaced_model_settings(model, filled)
        for key, value in filled.items():
            setattr(model, key, value)
        if self.device.type == "cuda":
            size = sum(s.images.numel() for s in (bundle.train, bundle.val, bundle.test))
            if size <= GPU_DATASET_BYTES:
                bundle = bundle.to(self.device)
        self.classes, self.mean, self.std = list(bundle.classes), tuple(bundle.mean), tuple(bundle.std)
        self._data_notes = list(bundle.notes)
        if replaced:  # a config file's [model] values, else taken without a word
            self._data_notes.append(f"the dataset decides the model's input and classes: {', '.join(replaced)} "
                                    "(data.image_size resizes the images)")
        return bundle

    def _build_model(self, config: RunConfig, checkpoint) -> nn.Module:
        from .model import build_model

        self._model_notes: list[str] = []  # said in the log once the run has started
        if checkpoint is not None:
            model = checkpoint.model
            config.model = model.config  # one config object: a fitted threshold lands in both
        else:
            try:
                self._check_model_fits(config)
                model = build_model(config.model)
            except ValueError as exc:
                raise TrainingFailed(str(exc)) from None
            if config.init_from:
                self._start_from_weights(model, config)
        model.to(self.device)
        if self.device.type == "cuda" and config.channels_last:
            model.to(memory_format=torch.channels_last)
        model.train()
        return model

    def _start_from_weights(self, model: nn.Module, config: RunConfig) -> None:
        """Copy the weights of ``config.init_from`` into the new ``model``, which must be the same network."""
        from .checkpoint import CheckpointError, load_checkpoint, run_checkpoint

        try:
            path = run_checkpoint(config.init_from)
            source = load_checkpoint(path)
        except (CheckpointError, ValueError) as exc:
            raise TrainingFailed(f"init_from: {exc}") from None
        if not weights_fit(model, config.model, source):
            raise TrainingFailed(f"init_from: {weights_mismatch(path, source, config.model)}")
        model.load_state_dict(source.model.state_dict())
        self._model_notes.append(f"started from the weights of {path} (new optimiser and schedule)")
        if list(source.classes) != list(self.classes):
            self._model_notes.append(f"{path.name} was trained on other classes ({', '.join(source.classes[:5])}"
                                    f"{', ...' if len(source.classes) > 5 else ''}): its classifier starts from them")

    def _check_calibration_images(self, config: RunConfig) -> None:
        """Too few held-out images to calibrate is said before training, not after the last epoch."""
        from .calibration import calibration_images_problem
        from .data import class_counts

        if self.recipe != "calibrated" or not config.calibrate_halting:
            return
        pool = [t + v for t, v in zip(class_counts(self.data.train, self.data.num_classes),
                                      class_counts(self.data.val, self.data.num_classes))]
        # As the bundle drew its split: a plugin that passes no val_split draws at random, whatever the setting.
        drawn = self.data.val_split or config.data.val_split
        problem = calibration_images_problem(len(self.data.train), len(self.data.val), val_carved=self.data.val_carved,
                                             class_sizes=pool, val_split=drawn)
        if problem:
            raise TrainingFailed(f"data.val_fraction: {problem} (--no-calibrate, or calibrate_halting = false in a "
                                 "settings file)")

    def _check_model_fits(self, config: RunConfig) -> None:
        """A model too big for this machine is a clear message, not a process killed for memory."""
        from .estimate import available_memory_bytes, memory_problem, training_memory

        where = "of this GPU" if self.device.type == "cuda" else "free on this computer"
        data = getattr(self, "data", None)
        images = len(data.train) if data is not None else None
        problem = memory_problem(training_memory(config.model), available_memory_bytes(self.device), where,
                                 batch_size=config.batch_size, training_images=images)
        if problem:
            raise ValueError(problem)

    def _create_run_dir(self, config: RunConfig) -> None:
        """Rank 0 makes the folder (numbered if the name is taken) and tells the others its path."""
        path = None
        if self._comm.is_main:
            try:
                if self._requested_run_dir is not None:
                    self.run_dir = RunDirectory.claim(self._requested_run_dir)
                    if self.run_dir.reclaimed:
                        self._setup_notes.append("started again in this folder: the earlier attempt (its log lines "
                                                 "above) ended before its first checkpoint")
                else:
                    self.run_dir = RunDirectory.create(self.runs_dir, config.name)
                self.run_dir.write_config(config.make_paths_absolute())
                self._write_status("running")
            except (ValueError, OSError) as exc:
                path = exc
            else:
                path = str(self.run_dir.path)
        path = self._comm.broadcast_object(path)
        if isinstance(path, BaseException):
            raise TrainingFailed(str(path))
        self._run_path = Path(path)

    def _steps_per_epoch(self) -> int:
        return max(1, len(self._batch_starts(self._epoch_indices(0))))

    # ------------------------------------------------------------- the data
    def _epoch_indices(self, epoch: int) -> list[int]:
        """This process's share of the epoch's shuffled training set (a DistributedSampler)."""
        sampler = DistributedSampler(
            range(len(self.data.train)), num_replicas=self._comm.world_size, rank=self._comm.rank,
            shuffle=True, seed=self.config.seed,
        )
        sampler.set_epoch(epoch)
        indices = list(sampler)
        if len(indices) % self.config.batch_size == 1 and len(indices) > 1:
            indices = indices[:-1]  # a batch of one image has no batch statistics
        return indices

    def _batch_starts(self, indices: list[int]) -> range:
        return range(0, len(indices), self.config.batch_size)

    def _epoch_batches(self, epoch: int, skip: int) -> Iterator[tuple[Tensor, Tensor]]:
        from .data import iterate_batches

        indices = self._epoch_indices(epoch)[skip * self.config.batch_size:]
        yield from iterate_batches(self.data.train, self.config.batch_size, shuffle=False, indices=indices)

    # -------------------------------------------------------------- training
    def _train(self) -> str:
        """Run the epochs; returns "completed", "max_steps" or "stopped"."""
        config = self.config
        capped = config.max_steps is not None and self.total_steps < config.epochs * self.steps_per_epoch
        self._last_emit = time.monotonic()
        self._reported = _to_host(self.totals.values)
        self._pending_losses: list[Tensor] = []
        self._pending_first_step = self.step + 1
        self._sync_countdown = SYNC_EVERY_STEPS

        while self.epoch < self.total_epochs and self.step < self.total_steps:
            epoch_started = time.monotonic()
            self._train_from_moving_averages()
            self._epoch_images_at_start = self.totals.values[_Totals.IMAGES].item()
            for images, labels in self._epoch_batches(self.epoch, self._batches_done):
                if self._should_stop_before_step():
                    return self._stop_mid_epoch()
                self._train_step(images, labels)
                self.step += 1
                self._batches_done += 1
                if self._sync_due():
                    if self._synchronise():
                        return self._stop_mid_epoch()
                if self.step >= self.total_steps:
                    break
            stop = self._synchronise(force_emit=True)
            self._end_epoch(time.monotonic() - epoch_started)  # saves last.pt
            if stop or (self._stop_requested.is_set() and not self._comm.distributed):
                return "stopped"
        return "max_steps" if capped else "completed"

    def _should_stop_before_step(self) -> bool:
        if not self._unpaused.is_set() and not self._stop_requested.is_set():
            self._wait_while_paused()
        # With several processes the stop request is honoured at the next synchronisation.
        return self._stop_requested.is_set() and not self._comm.distributed

    def _wait_while_paused(self) -> None:
        """Block (without spinning) until resumed or stopped; says so in events and status."""
        if self._pending_losses and not self._comm.distributed:  # a collective here would deadlock
            self._synchronise(force_emit=True)
        self._set_state("paused")
        self._emit("paused", step=self.step, epoch=self.epoch + 1)
        self._write_status("paused")
        while not self._unpaused.wait(timeout=1.0):
            pass
        if not self._stop_requested.is_set():
            self._set_state("running")
            self._emit("resumed", step=self.step, epoch=self.epoch + 1)
            self._write_status("running")

    def _train_step(self, images: Tensor, labels: Tensor) -> None:
        from .data import augment_batch, normalize

        config, model = self.config, self.train_model
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        x = normalize(augment_batch(images, config.data.augment, self.augment_generator), self.mean, self.std)
        if self.device.type == "cuda" and config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        with self._autocast():
            if self.recipe == "calibrated":
                from .calibration import sample_exits

                out = model(x, exits=sample_exits(self.model.caps, self.exit_generator))
            else:
                out = model(x)
            loss = F.cross_entropy(out.logits.float(), labels, label_smoothing=config.label_smoothing)
            ponder = out.ponder_cost.float().mean()
            if self.recipe == "act":
                loss = loss + self._ponder_weight() * ponder

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._step_lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self._record(loss, ponder, out, labels)

    def _used_lr(self) -> float:
        """The learning rate of the latest step: the optimizer's holds the next step's already."""
        return self.optimizer.param_groups[0]["lr"] if self._step_lr is None else self._step_lr

    def _ponder_weight(self) -> float:
        """ACT's tau, ramped linearly from 0 over ``ponder_warmup_epochs``."""
        tau, warmup = self.config.model.tau, self.config.ponder_warmup_epochs
        if warmup <= 0:
            return tau
        progress = self.epoch + self._batches_done / self.steps_per_epoch
        return tau * min(1.0, progress / warmup)

    def _autocast(self):
        if self.device.type == "cuda" and self.config.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _record(self, loss: Tensor, ponder: Tensor, out, labels: Tensor) -> None:
        batch = labels.shape[0]
        loss = loss.detach()
        step = torch.cat([
            torch.stack([
                loss.double() * batch,
                ponder.detach().double() * batch,
                (out.logits.detach().argmax(1) == labels).sum().double(),
                loss.new_full((), float(batch), dtype=torch.float64),
                out.macs.double().sum(),
            ]),
            out.iterations.double().sum(0),
        ])
        if self._comm.distributed:
            self._pending = step if not self._pending_losses else self._pending + step
        else:
            self.totals.values += step  # step by step: the sums do not depend on when we look
        self._pending_losses.append(loss.float())

    def _sync_due(self) -> bool:
        if self._comm.distributed:
            self._sync_countdown -= 1
            return self._sync_countdown <= 0
        return time.monotonic() - self._last_emit >= STEP_EVENT_INTERVAL

    def _synchronise(self, *, force_emit: bool = False) -> bool:
        """Combine the pending steps (across processes), check the loss, maybe emit a step event.

        Returns whether the run should stop now (a stop request seen by any process).
        """
        self._sync_countdown = SYNC_EVERY_STEPS
        losses = torch.stack(self._pending_losses) if self._pending_losses else torch.zeros(0, device=self.device)
        first_step = self._pending_first_step
        self._pending_losses = []
        self._pending_first_step = self.step + 1
        stop = self._stop_requested.is_set()
        if self._comm.distributed:
            has_pending = len(losses) > 0
            pending = self._pending if has_pending else torch.zeros_like(self.totals.values)
            flags = torch.tensor([float(stop)], dtype=torch.float64, device=self.device)
            combined = torch.cat([pending, losses.double(), flags])
            self._comm.all_reduce_sum(combined)
            width = len(self.totals.values)
            self.totals.values += combined[:width]
            losses = combined[width:width + len(losses)]
            stop = bool(combined[-1].item() > 0)
        host_losses = losses.cpu()
        bad = torch.nonzero(~torch.isfinite(host_losses)).flatten()
        if len(bad):
            value = host_losses[bad[0]].item()
            what = "NaN" if math.isnan(value) else "infinite"
            raise TrainingFailed(
                f"loss became {what} at epoch {self.epoch + 1} step {first_step + int(bad[0])}; "
                f"{self._kept_checkpoint_sentence()} (try a lower learning rate than {self.config.lr:g})"
            )
        now = time.monotonic()
        if self._comm.is_main and (force_emit or now - self._last_emit >= STEP_EVENT_INTERVAL):
            self._emit_step(now)
        return stop

    def _emit_step(self, now: float) -> None:
        values = _to_host(self.totals.values)
        window = _Totals.summary(values - self._reported, self.totals.blocks)
        elapsed = max(now - self._last_emit, 1e-9)
        self._reported, self._last_emit = values, now
        if not window:
            return
        data = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "total_steps": self.total_steps,
            "loss": window["loss"],
            "accuracy": window["accuracy"],
            "lr": self._used_lr(),
            "images_per_s": window["images"] / elapsed,
            "iterations": window["iterations"],
            "macs": window["macs"],
            "progress": self.step / self.total_steps,
        }
        if self.recipe == "act":
            data["ponder_cost"], data["tau"] = window["ponder_cost"], self._ponder_weight()
        self._emit("step", **data)

    def _stop_mid_epoch(self) -> str:
        self._synchronise(force_emit=True)
        metrics = self._epoch_metrics_so_far()
        self._save_last(metrics)  # the progress first: what follows takes a forward pass over up to 1024 images
        if self._comm.is_main:
            # a run stopped in its first epoch has last.pt as its model: eval mode needs statistics that fit it
            self._emit("log", message="recomputing the saved model's batchnorm statistics at its weights")
            self._refresh_norm_statistics()
            # the training state keeps the moving averages: a resume trains on from them
            self._save_last(metrics, refreshed_norm_statistics=True)
        return "stopped"

    def _epoch_metrics_so_far(self) -> dict[str, Any]:
        train = _Totals.summary(self.totals.values.cpu(), self.totals.blocks)
        return {"epoch": self.epoch, "step": self.step, "train_loss": train.get("loss"),
                "train_accuracy": train.get("accuracy"), "best_accuracy": self.best_accuracy}

    # ------------------------------------------------------------ epoch end
    def _end_epoch(self, train_seconds: float) -> None:
        train = _Totals.summary(self.totals.values.cpu(), self.totals.blocks)
        images = train.get("images", 0) - self._epoch_images_at_start
        self._refresh_norm_statistics()
        val = self._validate()
        self.epoch += 1
        self._batches_done = 0
        accuracy = val.get("accuracy")
        # Only a validation split chooses the best epoch: chosen on the test split, the test result
        # reported at the end would be optimistic. Without one, the latest epoch is the model.
        selects = val.get("split") == "val"
        improved = selects and accuracy is not None and (self.best_accuracy is None or accuracy > self.best_accuracy)
        if improved:
            self.best_accuracy, self.best_epoch = accuracy, self.epoch
        metrics = {
            "epoch": self.epoch,
            "step": self.step,
            "total_epochs": self.total_epochs,
            "train_loss": train.get("loss"),
            "train_accuracy": train.get("accuracy"),
            "val_loss": val.get("loss"),
            "val_accuracy": accuracy,
            "val_split": val.get("split"),
            "val_policy": val.get("policy"),
            "iterations": val.get("iterations"),
            "macs": val.get("macs"),
            "train_iterations": train.get("iterations"),
            "train_macs": train.get("macs"),
            "images_per_s": max(images, 0) / max(train_seconds, 1e-9),
            "lr": self._used_lr(),
            "best_accuracy": self.best_accuracy,
        }
        if self.recipe == "act":
            metrics["ponder_cost"] = train.get("ponder_cost")
        self.totals.values.zero_()
        self._reported = _to_host(self.totals.values)
        self._emit("epoch", **metrics)
        self._save_last(metrics)
        if improved or not selects:
            self._save_checkpoint("best", metrics)
        self._write_status("running")

    @torch.no_grad()
    def _validate(self) -> dict[str, Any]:
        """Loss, accuracy, iterations and MACs on the validation split (test if there is none: then
        they are reported for monitoring, as the test split's, and choose nothing)."""
        from .data import iterate_batches

        split = "val" if len(self.data.val) else "test"
        data = self.data.split(split)
        if len(data) == 0:
            return {}
        full_depth = self.recipe == "calibrated" and not self._halting_fitted
        exits = self.model.caps if full_depth else None
        model = self.model
        model.eval()
        indices = range(self._comm.rank, len(data), self._comm.world_size)
        sums = torch.zeros(3 + len(model.caps), dtype=torch.float64, device=self.device)
        for images, labels in iterate_batches(data, self._eval_batch_size(), shuffle=False, indices=indices):
            x, labels = self._model_input(images), labels.to(self.device, non_blocking=True)
            with self._autocast():
                out = model(x, exits=exits)
            sums[0] += F.cross_entropy(out.logits.float(), labels, reduction="sum").double()
            sums[1] += (out.logits.argmax(1) == labels).sum()
            sums[2] += out.macs.double().sum()
            sums[3:] += out.iterations.double().sum(0)
        model.train()
        self._comm.all_reduce_sum(sums)
        n = len(data)
        v = sums.cpu().tolist()
        return {
            "split": split,
            "policy": "full depth" if full_depth else model.config.mode,
            "loss": v[0] / n,
            "accuracy": v[1] / n,
            "macs": v[2] / n,
            "iterations": [s / n for s in v[3:]],
        }

    def _model_input(self, images: Tensor) -> Tensor:
        """Unaugmented uint8 images as the model takes them: on the device, normalised, in its layout."""
        from .data import normalize

        x = normalize(images.to(self.device, non_blocking=True), self.mean, self.std)
        if self.device.type == "cuda" and self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _refresh_norm_statistics(self) -> None:
        """Batchnorm statistics averaged at the current weights, before the model is validated or saved as
        a stop left it: the moving averages lag the weights early in a run (``norm_statistics``). The moving
        averages are kept aside for training, which goes on from them (``_train_from_moving_averages``)."""
        from .norm_statistics import (REFRESH_BATCH_MIN, every_exit, moving_averages, refresh_batches, refresh_images,
                                      refresh_norm_statistics)

        if self._moving_averages is None:  # else the model holds refreshed statistics already: keep training's
            self._moving_averages = moving_averages(self.model)
        images = self.data.train.images
        # sized like training's batches (without autograd a batch of max(batch_size, 32) needs less than a
        # training step), not validation's: >= 256 on a GPU could exceed what a smaller batch_size was chosen to fit
        batch_size = max(self.config.batch_size, REFRESH_BATCH_MIN)
        chunks = refresh_batches(refresh_images(len(images), self.config.seed), batch_size)
        batches = (self._model_input(images.index_select(0, chunk.to(images.device))) for chunk in chunks)
        forward = None
        if self.recipe == "calibrated":  # exits drawn as training draws them, from a generator of its own
            from .calibration import sample_exits

            draws = torch.Generator().manual_seed(self.config.seed)
            forward = every_exit(self.model, lambda: sample_exits(self.model.caps, draws))
        with self._autocast():
            refresh_norm_statistics(self.model, batches, forward)

    def _train_from_moving_averages(self) -> None:
        """Training goes on from the batchnorms' moving averages, not from refreshed statistics: it normalises
        with them where a batch has one value per channel, and must train as if no refresh had happened (a
        resumed run as an uninterrupted one)."""
        from .norm_statistics import put_back_moving_averages

        if self._moving_averages is not None:
            put_back_moving_averages(self.model, self._moving_averages)
            self._moving_averages = None

    def _eval_batch_size(self) -> int:
        return max(self.config.batch_size, 256) if self.device.type == "cuda" else self.config.batch_size * 2

    # ----------------------------------------------------------- checkpoints
    def _training_state(self) -> dict[str, Any]:
        state = {
            "version": TRAINING_STATE_VERSION,
            "epoch": self.epoch,
            "batches_done": self._batches_done,
            "step": self.step,
            "total_steps": self.total_steps,
            "world_size": self._world_size,
            "processes_per_node": self._processes_per_node,  # how a resume launches the same world on as many machines
            "training_done": self.step >= self.total_steps or self.epoch >= self.total_epochs,
            "halting_fitted": self._halting_fitted,
            "best_accuracy": self.best_accuracy,
            "calibrated_accuracy": self.calibrated_accuracy,
            "best_epoch": self.best_epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch_totals": _to_host(self.totals.values),
            "generators": {"augment": self.augment_generator.get_state(), "exits": self.exit_generator.get_state()},
            "norm_moving_averages": {key: _to_host(value) for key, value in self._training_moving_averages().items()},
            "rng": _rng_states(),
        }
        return state

    def _training_moving_averages(self) -> dict[str, Tensor]:
        """The batchnorm statistics training goes on from: kept aside while the model holds refreshed ones."""
        from .norm_statistics import moving_averages

        return self._moving_averages if self._moving_averages is not None else moving_averages(self.model)

    def _save_last(self, metrics: dict[str, Any], refreshed_norm_statistics: bool = False) -> None:
        if self._comm.is_main:
            self._save_checkpoint("last", metrics, refreshed_norm_statistics=refreshed_norm_statistics)

    def _save_checkpoint(self, which: str, metrics: dict[str, Any], refreshed_norm_statistics: bool = False) -> None:
        """Save last.pt or best.pt and say so; ``refreshed_norm_statistics``: the same step's checkpoint again, its
        model's batchnorm statistics recomputed (a stop saves twice: the log must not read as one save said twice)."""
        from .checkpoint import CheckpointError, save_checkpoint

        if not self._comm.is_main:
            return
        path = self.run_dir.last_checkpoint if which == "last" else self.run_dir.best_checkpoint
        try:
            save_checkpoint(
                path, self.model, run_config=self.config, classes=self.classes, mean=self.mean, std=self.std,
                metrics={k: v for k, v in metrics.items() if v is not None},
                training_state=self._training_state(),
            )
        except CheckpointError as exc:
            raise TrainingFailed(f"{exc}; {self._kept_checkpoint_sentence()}") from None
        if which == "last":
            self._last_good_checkpoint = path
            self._saved_progress = (self.epoch, self.step)
        else:
            self._saved_best = self._model_accuracy()
        again = {"refreshed_norm_statistics": True} if refreshed_norm_statistics else {}
        # saved again once calibrated: the same step, a fitted head
        self._emit("checkpoint", path=str(path), epoch=self.epoch, step=self.step, best=which == "best",
                   calibrated=self._halting_fitted, **again)

    def _restore_training_state(self, state: dict[str, Any]) -> None:
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.epoch, self.step = int(state["epoch"]), int(state["step"])
            self._batches_done = int(state["batches_done"])
            self.best_accuracy, self.best_epoch = state.get("best_accuracy"), state.get("best_epoch")
            self._halting_fitted = bool(state.get("halting_fitted"))
            self.calibrated_accuracy = state.get("calibrated_accuracy") if self._halting_fitted else None
            self._saved_progress, self._saved_best = (self.epoch, self.step), self._model_accuracy()
            self.totals.values.copy_(state["epoch_totals"].to(self.device))
            self.augment_generator.set_state(state["generators"]["augment"])
            self.exit_generator.set_state(state["generators"]["exits"])
            self._restore_moving_averages(state)
            _set_rng_states(state["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise TrainingFailed(
                f"cannot resume {self._run_path.name}: its training state is damaged ({_first_line(exc)})"
            ) from None
        if int(state.get("total_steps", self.total_steps)) != self.total_steps:
            raise TrainingFailed(
                f"cannot resume {self._run_path.name}: the dataset gives {_count(self.total_steps, 'step')} now, "
                f"{state['total_steps']} when it was started"
            )

    def _restore_moving_averages(self, state: dict[str, Any]) -> None:
        """last.pt's model holds refreshed batchnorm statistics; training goes on from the moving averages its
        training state keeps (absent from runs saved before they were kept: those go on from the model's)."""
        from .norm_statistics import check_moving_averages

        averages = state.get("norm_moving_averages")
        if averages is not None:
            check_moving_averages(self.model, averages)
            self._moving_averages = averages

    def _model_accuracy(self) -> float | None:
        """The validation accuracy a run reports: the saved model's as it runs (calibrated once it is)."""
        return self.calibrated_accuracy if self.calibrated_accuracy is not None else self.best_accuracy

    def _kept_checkpoint_sentence(self) -> str:
        if self._last_good_checkpoint is not None and self._last_good_checkpoint.exists():
            return f"last good checkpoint kept: {self._last_good_checkpoint}"
        return "no checkpoint was saved yet"

    # ------------------------------------------------ calibration and evaluation
    def _after_training(self, reason: str) -> str:
        """Distributed helpers leave here; rank 0 calibrates, evaluates and reports."""
        self._digest = _parameter_digest(self.model)
        if self._comm.distributed:
            self._comm.barrier()
            if not self._comm.is_main:
                return reason
            self._comm = Collective()  # rank 0 goes on alone: no more collectives from here
        try:
            self._use_best_weights()
            if self._needs_calibration(self.config) and not self._halting_fitted:
                self._calibrate()
            self._evaluate()
        except _StopRequested:
            if self._needs_calibration(self.config) and not self._halting_fitted:
                self._emit("log", message="stopped before the halting head was calibrated: the checkpoints halt "
                                          "as trained, uncalibrated; resuming the run calibrates it")
            return "stopped"
        return reason

    def _use_best_weights(self) -> None:
        """The final model is the epoch with the best validation accuracy."""
        best = self.run_dir.best_checkpoint
        if self.best_epoch is None or self.best_epoch == self.epoch or not best.exists():
            return
        from .checkpoint import CheckpointError, load_checkpoint

        try:
            checkpoint = load_checkpoint(best, map_location=self.device)
        except CheckpointError as exc:
            raise TrainingFailed(f"cannot read back the best model: {exc}") from None
        self.model.load_state_dict(checkpoint.model.state_dict())
        self.model.config.threshold = checkpoint.model_config.threshold
        self._emit("log", message=f"final model: epoch {self.best_epoch}, the best validation accuracy "
                                  f"({self.best_accuracy:.2%})")

    def _calibrate(self) -> None:
        from .calibration import FALLBACK_CALIBRATION_SHARE, fit_halting
        from .data import split_off

        data, where = self.data.val, "the validation split"
        if len(data) == 0:
            # drawn over all images, as ``calibration_images`` counts them (the backbone trained on each)
            _, data = split_off(self.data.train, FALLBACK_CALIBRATION_SHARE, self.config.seed, "random")
            where = (f"{len(data)} training images, because the validation split is empty: the backbone has seen them, "
                     "so the threshold may be optimistic (set data.val_fraction > 0 to calibrate on unseen images)")
            self._emit("log", message=f"calibrating the halting head on {where}")
        self.model.eval()
        try:
            summary = fit_halting(
                self.model, data, mean=self.mean, std=self.std, device=self.device,
                batch_size=self._eval_batch_size(), seed=self.config.seed,
                should_stop=self._should_abort_phase, progress=self._phase_reporter("calibrating"),
            )
        except ValueError as exc:
            if self._stop_requested.is_set():
                raise _StopRequested() from None
            raise TrainingFailed(str(exc)) from None
        except RuntimeError:
            if self._stop_requested.is_set():  # fit_halting stopped half-way
                raise _StopRequested() from None
            raise
        if self._stop_requested.is_set():
            raise _StopRequested()
        self._halting_fitted = True
        val = self._validate()  # the accuracy and compute of the calibrated model
        self.calibrated_accuracy = val.get("accuracy") if val.get("split") == "val" else None
        self._emit("calibrated", **{**summary, "calibration_split": where, "val_accuracy": val.get("accuracy"),
                                    "val_split": val.get("split"),
                                    "val_macs": val.get("macs"), "val_iterations": val.get("iterations")})
        metrics = {"epoch": self.epoch, "best_accuracy": self.best_accuracy, "threshold": summary.get("threshold"),
                   "calibrated_val_accuracy": val.get("accuracy"), "calibrated_val_macs": val.get("macs")}
        try:
            self._save_checkpoint("best", metrics)
            self._save_checkpoint("last", metrics)
        except TrainingFailed as exc:
            # Evaluating on would report a calibrated model no file holds. last.pt still says the halting head is
            # not fitted, so resuming calibrates and evaluates again.
            raise TrainingFailed(f"training finished, but the calibrated halting head could not be saved: {exc}; "
                                 "resume the run once its folder can be written to calibrate and evaluate it") from None

    def _evaluate(self) -> None:
        from .evaluate import evaluate, evaluation_split

        split, data, described = evaluation_split(self.data)  # no test images of its own: the validation ones, said
        if len(data) == 0:
            self._emit("log", message="no test or validation images: evaluation skipped")
            return
        self.model.eval()
        try:
            result = evaluate(
                self.model, data, mean=self.mean, std=self.std, classes=self.classes, device=self.device,
                batch_size=self._eval_batch_size(), sweep=True, should_stop=self._should_abort_phase,
                progress=self._phase_reporter("evaluating"), calibrate_halting=self.config.calibrate_halting,
            )
        except ValueError as exc:
            raise TrainingFailed(f"evaluation failed: {exc}") from None
        finally:
            self.model.train()
        if self._stop_requested.is_set():
            raise _StopRequested()
        result = {**result, **described}
        summary = {k: result[k] for k in ("top1", "top5", "macs") if k in result}
        try:
            self.run_dir.write_eval(result)
        except OSError as exc:  # a read-only or full disk must not cost the results: the evaluated event has them
            self._emit("evaluated", **summary, split=split, path=None)
            self._warn_unsaved(f"the {split} evaluation", self.run_dir.eval_path, exc,
                               "the numbers are in this log only")
            return
        self._emit("evaluated", **summary, split=split, path=str(self.run_dir.eval_path))

    def _phase_reporter(self, phase: str) -> Callable[[float], None]:
        """A progress callback for an after-training phase: ``phase_progress`` events, at most 4 a second."""
        last = [float("-inf"), -1.0]  # time and fraction of the last event

        def report(fraction: float) -> None:
            now = time.monotonic()
            if fraction >= 1.0 or (now - last[0] >= PHASE_PROGRESS_INTERVAL_S and fraction > last[1]):
                last[:] = [now, fraction]
                self._emit("phase_progress", phase=phase, fraction=min(max(float(fraction), 0.0), 1.0))

        return report

    def _should_abort_phase(self) -> bool:
        """``should_stop`` for calibration and evaluation: also where a pause there takes hold."""
        if not self._unpaused.is_set() and not self._stop_requested.is_set():
            self._wait_while_paused()
        return self._stop_requested.is_set()

    # --------------------------------------------------------------- endings
    def _finish(self, reason: str) -> RunResult:
        digest = getattr(self, "_digest", None) or _parameter_digest(self.model)
        run_path = self._run_path
        state = "stopped" if reason == "stopped" else "completed"
        if self._comm.is_main:
            sentence = {
                "completed": "completed",
                "max_steps": f"{STEP_LIMIT_REASON} ({_count(self.total_steps, 'step')})",
                "stopped": f"stopped at epoch {self.epoch + (1 if self._batches_done else 0)} step {self.step}",
            }
            self._write_status(state, reason=sentence[reason])
            self._emit("finished", reason=reason, best_accuracy=self._model_accuracy(), run_dir=str(run_path),
                       epoch=self.epoch, step=self.step)
        self._set_state(state)
        return RunResult(run_dir=run_path, reason=reason, best_accuracy=self._model_accuracy(), state=state,
                         parameter_digests={self._rank: digest})

    def _stop_before_training(self, message: str) -> RunResult:
        """End the run as stopped while its dataset downloaded: the user's own stop, as one during training
        is ("finished" with reason "stopped", state "stopped"), with ``message`` saying what was stopped. A new
        run has no folder yet; a resumed one reads "stopped" with the progress its checkpoints hold."""
        run_path = self._run_path
        epoch, step = self._saved_progress if self._saved_progress is not None else (None, None)
        best = self._saved_best
        run = RunDirectory(run_path) if run_path is not None and self._comm.is_main else None
        if run is not None and not run.is_being_trained():  # unless another process took the run
            # meanwhile (its status.json is its own now)
            previous = run.read_status() or {}
            try:  # the progress as the folder had it (the checkpoint's where its status.json is gone)
                run.write_status(
                    "stopped", reason=message,
                    best_accuracy=previous.get("best_accuracy", best),
                    epochs_done=previous.get("epochs_done", epoch or 0),
                    total_epochs=previous.get("total_epochs", self.config.epochs if self.config else None),
                    step=previous.get("step", step or 0),
                )
            except OSError as exc:
                self._warn_unsaved("the run's status", run.status_path, exc,
                                   "the run list may show an older state for this run")
        if self._comm.is_main:
            self._emit("finished", reason="stopped", message=message, best_accuracy=best,
                       run_dir=None if run_path is None else str(run_path), epoch=epoch, step=step)
        self._set_state("stopped")
        return RunResult(run_dir=run_path, reason="stopped", best_accuracy=best, state="stopped", message=message)

    def _fail(self, reason: str, *, download_stopped: bool = False) -> RunResult:
        run_path = self._run_path
        if self._comm.is_main:
            # the progress a failed run keeps is its checkpoint's: the steps after it are lost (a resume
            # starts there), and a run that diverged before its first checkpoint kept none
            self._write_status("failed", reason=reason, as_saved=True)
            flag = {"download_stopped": True} if download_stopped else {}
            self._emit("failed", reason=reason, run_dir=None if run_path is None else str(run_path), **flag)
        self._set_state("failed")
        return RunResult(run_dir=run_path, reason=reason, best_accuracy=self._model_accuracy(), state="failed")

    def _out_of_memory_reason(self, memory: str) -> str:
        batch = self.config.batch_size
        data = getattr(self, "data", None)
        if data is None:  # the data set itself did not fit
            return (f"out of {memory} while loading the data set {self.config.data.name!r}: choose fewer or smaller "
                    f"images (its size options); {self._kept_checkpoint_sentence()}")
        used = min(batch, len(data.train)) if len(data.train) else batch  # a batch is at most the set
        return (f"out of {memory} at epoch {self.epoch + 1} step {self.step} with batch size {batch}: "
                f"try a smaller batch size (e.g. {max(1, used // 2)}), width or image size; "
                f"{self._kept_checkpoint_sentence()}")

    def _keep_traceback(self, exc: BaseException) -> str:
        """Write the traceback where the user can find it; returns that place."""
        if self.run_dir is not None and self._comm.is_main:
            self._log_text(traceback.format_exc())
            return str(self.run_dir.log_path)
        from iamnn_studio.crash_log import write_error_log

        return write_error_log(type(exc), exc, exc.__traceback__, heading="IamNN Studio training")

    def _release_gpu_memory(self) -> None:
        for name in ("train_model", "optimizer"):
            if hasattr(self, name):
                delattr(self, name)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ events
    def _emit_started(self, *, resumed: bool) -> None:
        from .estimate import trainable_macs_range

        # the range the form showed: calibration, still ahead, may stop blocks before any halting head
        low, high = trainable_macs_range(self.model, self._needs_calibration(self.config) and not self._halting_fitted)
        self._emit(
            "started",
            run_dir=str(self.run_dir.path) if self.run_dir else None,
            config=self.config.to_dict(),
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            total_epochs=self.total_epochs,
            device=str(self.device),
            world_size=self._comm.world_size,
            recipe=self.recipe,
            resumed_from_epoch=self.epoch if resumed else None,
            resumed_from_step=self.step if resumed else None,
            parameters=sum(p.numel() for p in self.model.parameters()),
            macs_range=[low, high],
            dataset={"name": self.data.name, "train": len(self.data.train), "val": len(self.data.val),
                     "test": len(self.data.test), "classes": self.classes},
        )
        for note in self._data_notes:
            self._emit("log", message=f"data: {note}")
        for note in (*self._setup_notes, *self._model_notes):
            self._emit("log", message=note)
        if self.recipe == "calibrated" and self.config.calibrate_halting:
            self._emit("log", message="calibrated halting: training an anytime backbone; validation runs at full "
                                      "depth until the halting head is fitted after the last epoch")
        elif self.recipe == "calibrated":
            self._emit("log", message="calibrated halting: training an anytime backbone; calibrate_halting = false, "
                                      "so the halting head is never fitted and validation runs at full depth")

    def _emit(self, kind: str, **data: Any) -> None:
        """Send an event to metrics.jsonl, train.log and every listener (rank 0 only)."""
        if not self._comm.is_main:
            return
        event = Event(kind, data)
        if self.run_dir is not None and kind != "phase_progress":  # a transient display: not a record
            try:
                self.run_dir.append_metrics(event.to_dict())
                if kind != "step":
                    self.run_dir.log(_describe(event))
            except OSError as exc:
                unwritable = Path(exc.filename) if exc.filename else self.run_dir.metrics_path
                self._warn_unsaved("the training events", unwritable, exc,
                                   "from here on they are shown but not recorded in the run folder")
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("a training listener failed on a %s event", kind)
                self._log_text(f"a listener failed on a {kind} event:\n{traceback.format_exc()}")

    def _write_status(self, state: str, reason: str = "", *, as_saved: bool = False) -> None:
        """status.json; ``as_saved``: the progress and best accuracy the checkpoints on disk hold (none
        before the first checkpoint)."""
        if self.run_dir is None or not self._comm.is_main:
            return
        epoch, step, best = self.epoch, self.step, self._model_accuracy()
        if as_saved:
            (epoch, step), best = self._saved_progress or (0, 0), self._saved_best
        # whole epochs only: one cut short by a step limit or a stop ends (and is validated) but is not done
        per_epoch = getattr(self, "steps_per_epoch", None)
        epochs_done = min(epoch, step // per_epoch) if per_epoch else epoch
        try:
            self.run_dir.write_status(
                state, reason=reason, best_accuracy=best, epochs_done=epochs_done,
                total_epochs=getattr(self, "total_epochs", self.config.epochs if self.config else None), step=step,
            )
        except OSError as exc:
            self._warn_unsaved("the run's status", self.run_dir.status_path, exc,
                               "the run list may show an older state for this run")

    def _warn_unsaved(self, what: str, path: Path, error: OSError, consequence: str) -> None:
        """One warning line per run file that cannot be written (a read-only or full disk): the run goes on.

        Once per file, as the warning is itself an event that cannot be recorded there either.
        """
        if path in self._unsaved_files:
            return
        self._unsaved_files.add(path)
        self._emit("log", level="warning",
                   message=f"could not save {what} to {path}: {unsaved_reason(error)}; {consequence}")

    def _log_text(self, text: str) -> None:
        if self.run_dir is not None and self._comm.is_main:
            try:
                self.run_dir.log(text.rstrip())
            except OSError:
                pass


# --------------------------------------------------------------------------- helpers
def _start_again_advice(run: RunDirectory) -> str:
    """How to start again a run that ended before its first checkpoint: in its folder, with its settings (the
    folder is taken over, as nothing in it can be lost)."""
    try:
        run.read_config().validate()
    except (ValueError, TypeError) as exc:
        return f"its settings cannot be read either ({exc}); delete the folder and start a new run"
    command = shlex.join(["iamnn-studio", "train", "--config", str(run.config_path), "--run-dir", str(run.path)])
    return f"start it again in its folder with its settings: {command}"


def usable_cores() -> int:
    """The CPU cores this process may run on (a container or ``taskset`` may allow fewer than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def weights_fit(model: nn.Module, config: ModelConfig, source) -> bool:
    """Whether ``model`` (built from ``config``; on the meta device is enough) can start from the weights of
    ``source`` (a loaded ``Checkpoint``): the same architecture, and the same weights by name and shape. The
    one test of ``init_from``, here and wherever a run is checked before it is offered to train longer."""
    ours, theirs = model.state_dict(), source.model.state_dict()
    return source.architecture == config.architecture and ours.keys() == theirs.keys() and all(
        ours[key].shape == theirs[key].shape for key in ours)


def weights_mismatch(path: Path, source, config: ModelConfig) -> str:
    """Why a run of ``config`` cannot start from the checkpoint ``source`` read from ``path`` (``weights_fit``
    said no), with what to change."""
    return (f"{path} holds {_network(source.model_config)} for {len(source.classes)} classes; this run builds "
            f"{_network(config)} for {config.num_classes} classes: choose the same architecture, depth, iterations "
            "and width, and a dataset of the same image size, channels and class count")


def _network(model: ModelConfig) -> str:
    """"an IamNN (caps 3·4·6·3) of width 16 on 1x28x28 images", to compare two networks in one sentence; a ResNet
    has "units", as the run form and the Use tab say."""
    resnet = model.architecture == "resnet"
    kind = "a ResNet" if resnet else "an IamNN"
    if not resnet and model.block != "bottleneck":  # a plugin's processing block
        kind += f" with {model.block} blocks"
    caps = f"{'units' if resnet else 'caps'} {'·'.join(str(n) for n in model.caps)}"
    return f"{kind} ({caps}) of width {model.width} on {model.in_channels}x{model.image_size}x{model.image_size} images"


def train_longer_command(run_path: str | Path, config: RunConfig | None) -> str:
    """The command that trains the run in ``run_path`` longer: a new run from its weights with its
    settings (its own step limit lifted). Paths are shell-quoted, so it works pasted into a shell.
    ``config`` None: the run's config.toml is of no use (unreadable, or another network than its checkpoint's),
    and the command takes the network and the data from the checkpoint itself (``train --init-from`` without
    ``--config``)."""
    argv = ["iamnn-studio", "train"]
    if config is not None:
        argv += ["--config", str(Path(run_path) / "config.toml")]
    command = shlex.join([*argv, "--init-from", str(run_path)]) + " --name NEW --epochs N"  # placeholders, unquoted
    return command + (" --max-steps 0" if config is not None and config.max_steps is not None else "")


def _count(n: Any, noun: str, plural: str | None = None) -> str:
    """``1 step``, ``2 steps``: the noun agrees with the number."""
    return f"{n} {noun}" if n == 1 and not isinstance(n, bool) else f"{n} {plural or noun + 's'}"


def _launch_options(world: int, per_node: Any) -> str:
    """The command-line options that launch ``world`` processes as a run had them, ``per_node`` on each machine
    (None: a checkpoint from before it was recorded)."""
    if world == 1:
        return "one process: without --nproc-per-node or --nnodes"
    if not isinstance(per_node, int) or isinstance(per_node, bool) or per_node < 1 or world % per_node:
        return f"--nproc-per-node P on each of --nnodes N machines, P x N = {world}"
    if per_node == world:
        return f"--nproc-per-node {world}"
    return (f"--nnodes {world // per_node} --nproc-per-node {per_node}, with each machine's --node-rank and "
            "machine 0's --master-addr and --master-port")


def _replaced_model_settings(model: ModelConfig, filled: dict[str, int]) -> list[str]:
    """``model.num_classes 3 -> 10`` for each setting given (not left at its default) that the dataset's differs
    from. A setting left at its default says nothing: the dataset always fills it."""
    defaults = ModelConfig()
    return [f"model.{key} {getattr(model, key)} -> {value}" for key, value in filled.items()
            if getattr(model, key) not in (value, getattr(defaults, key))]


def _is_cpu_out_of_memory(exc: BaseException) -> bool:
    """PyTorch's CPU allocator raises a plain RuntimeError when an allocation fails."""
    text = str(exc)
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and ("DefaultCPUAllocator" in text or "can't allocate memory" in text))


def _describe(event: Event) -> str:
    """One human line per event for train.log."""
    d = event.data
    if event.kind == "epoch":
        split = epoch_split_word(d.get("val_split"))
        val = "" if d.get("val_accuracy") is None else f", {split} loss {d['val_loss']:.4f} acc {d['val_accuracy']:.2%}"
        return (f"epoch {d['epoch']}/{d.get('total_epochs')}: train loss {d['train_loss']:.4f} "
                f"acc {d['train_accuracy']:.2%}{val}, {d['images_per_s']:.0f} img/s")
    if event.kind == "checkpoint":
        return (f"saved {'best' if d.get('best') else 'last'} checkpoint {d['path']}"
                + (" again with refreshed batchnorm statistics" if d.get("refreshed_norm_statistics") else "")
                + (" with the calibrated halting head" if d.get("calibrated") else ""))
    if event.kind in ("finished", "failed"):
        return f"{event.kind}: {d.get('reason')}"
    if event.kind == "log":
        return str(d.get("message"))
    if event.kind == "started":
        return (f"started on {d['device']} ({_count(d['world_size'], 'process', 'processes')}): "
                f"{_count(d['total_steps'], 'step')}, {_count(d['total_epochs'], 'epoch')}, recipe {d['recipe']}"
                + (f", resumed after epoch {d['resumed_from_epoch']} step {d['resumed_from_step']}"
                   if d.get("resumed_from_epoch") is not None else ""))
    if event.kind == "calibrated":
        return f"calibrated the halting head: threshold {d.get('threshold')}"
    if event.kind == "evaluated":
        top1 = d.get("top1")
        return f"evaluated on {split_named(d.get('split'))}: top-1 " + (f"{top1:.2%}" if isinstance(top1, float) else str(top1))
    return f"{event.kind}: {d}"


def _to_host(tensor: Tensor) -> Tensor:
    """A CPU copy (``.cpu()`` of a CPU tensor is the tensor itself, which later in-place sums would change)."""
    return tensor.detach().to("cpu", copy=True)


def _checkpoint_progress(state: dict[str, Any]) -> tuple[tuple[int, int] | None, float | None]:
    """(epochs, steps) and the model's accuracy a checkpoint's training state holds; None where unreadable
    (restoring the state says what is wrong with it)."""
    try:
        progress = (int(state["epoch"]), int(state["step"]))
    except (KeyError, TypeError, ValueError):
        progress = None
    best = state.get("calibrated_accuracy") if state.get("halting_fitted") else None
    best = best if best is not None else state.get("best_accuracy")
    return progress, float(best) if isinstance(best, (int, float)) and not isinstance(best, bool) else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_states() -> dict[str, Any]:
    """Every global RNG as plain tensors and lists (the weights-only unpickler accepts nothing else)."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": list(state), "gauss": gauss},
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = states["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"]))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def _parameter_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for param in model.parameters():
        digest.update(param.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
