"""``iamnn-studio``: the command-line face of the engine.

Without arguments it opens the desktop app. Subcommands: ``train``, ``evaluate``, ``predict``,
``export``, ``runs``, ``info`` (and ``gui``). Every user error ends in one ``error: ...`` line on
stderr, never a traceback; an unexpected failure prints one line plus the path of a log file
holding the traceback. ``--json`` output is valid JSON on stdout and nothing else is printed there.

Exit codes: 0 ok, 1 the run or command failed (``predict``: no image could be classified), 2 usage or
settings error, 3 some inputs failed (e.g. one image of several; the others are printed), 130 interrupted
(Ctrl-C), 141 the reader of the output closed it (``| head``), silently, as a Unix tool killed by SIGPIPE.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shlex
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, TextIO

from .crash_log import write_error_log
from .engine.tradeoff import halting_tradeoff, one_iteration_halting
from .malloc_tuning import tune_malloc
from .path_options import checkpoint_option, file_option, folder_option
from .split_words import epoch_split_word, evaluation_word, split_named

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: 128 + SIGPIPE: what the shell reports for ``seq 9999 | head -1``'s seq; not a failure of the command
EXIT_PIPE_CLOSED = 141


class UsageError(ValueError):
    """A wrong combination of options; exit code 2."""


#: Options of the desktop app, accepted without the ``gui`` command.
GUI_OPTIONS = ("--runs-dir",)


# --------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] == "gui":  # argparse's REMAINDER would refuse the app's own --options
        return _open_gui(argv[1:])
    if argv[0].split("=", 1)[0] in GUI_OPTIONS:  # `iamnn-studio --runs-dir DIR` opens the app too
        return _open_gui(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage (exit 2) or help (exit 0)
        return int(exc.code or 0)
    args.argv = argv  # the order the options were given in, for messages that name several
    _show_engine_notes()
    tune_malloc()
    global _json_stdout
    try:
        if getattr(args, "json", False):
            _json_stdout = sys.stdout
            with contextlib.redirect_stdout(sys.stderr):
                return args.handler(args)
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout piped into `head` and closed: stop quietly, as a Unix tool does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the exit's flush of what is still buffered would fail again
        return EXIT_PIPE_CLOSED
    except ValueError as exc:  # CheckpointError, ImageError, ExportError, config errors
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # a bug: one line here, the traceback in a file
        log_path = write_error_log(type(exc), exc, exc.__traceback__, heading=f"iamnn-studio {' '.join(argv)}")
        blame = _plugin_at_fault(exc)
        where = f" in {blame}" if blame else ""
        print(f"error: unexpected {type(exc).__name__}{where}: {_one_line(exc)} (details in {log_path})",
              file=sys.stderr)
        return EXIT_FAILED
    finally:
        _json_stdout = None


CKPT_HELP = "a checkpoint file, or a run folder (its checkpoints/best.pt, else checkpoints/last.pt)"


def _plugin_at_fault(exc: BaseException) -> str | None:
    """The plugin whose code raised ``exc`` ("plugin x (at x.py:9)"), where plugins were loaded at all."""
    plugins = sys.modules.get("iamnn_studio.engine.plugins")
    return plugins.plugin_at_fault(exc) if plugins is not None else None


def checkpoint_path(text: str | Path) -> Path:
    """A run folder stands for its best checkpoint, or its last one when no epoch has ended yet
    (a note on stderr says so); anything else is taken as the file itself."""
    from .engine.checkpoint import CheckpointError, run_checkpoint

    try:
        path = run_checkpoint(text)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    if path.name == "last.pt" and Path(text).is_dir():
        print(f"note: no best.pt yet in {text}; using checkpoints/last.pt", file=sys.stderr)
    return path


def check_device(text: str, *, auto: bool = False, on_this_machine: bool = True) -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` (and ``auto`` where ``auto``) that this machine has, lower-cased; a
    UsageError otherwise (before anything loads). ``on_this_machine=False`` checks the spelling only (a
    settings file may be meant for another machine)."""
    device = text.strip().lower()
    if device == "cpu" or (auto and device == "auto"):
        return device
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not (index.isascii() and index.isdigit())) or device.endswith(":"):
        choices = "auto, cpu, cuda or cuda:N" if auto else "cpu, cuda or cuda:N"
        raise UsageError(f"device: must be {choices} (N a GPU number), got {text!r}")
    if not on_this_machine:
        return device
    import torch

    if not torch.cuda.is_available():
        raise UsageError("device: CUDA was asked for but no CUDA GPU is available; choose cpu")
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise UsageError(f"device: {device} was asked for but this machine has {count} CUDA GPU(s) "
                         f"(cuda:0 to cuda:{count - 1})")
    return device


class _HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help where it has a default worth showing (not None, not
    off) and the help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" not in text and action.option_strings and action.default is not None
                and action.default is not False and action.default is not argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def _positive_int(text: str) -> int:
    """An argparse type: refused before anything loads (a dataset can take minutes to read)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


PREDICT_EXIT_CODES = ("exit codes: 0 every image classified; 3 some images failed (each named on stderr, the others "
                      "printed); 1 no image could be classified; 2 bad options or checkpoint")

EXPORT_FORMATS_HELP = "onnx, torchscript, or a plugin's format such as pt2 (`iamnn-studio info` lists the plugins)"


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse's own errors in one line, as the CLI's other user errors (README): argparse printed the whole
    multi-line usage above "argument --width: invalid int value: 'nan'". Sub-commands' parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="iamnn-studio",
        description="Train, inspect and use IamNN image classifiers. Without a command, opens the app.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    gui = commands.add_parser("gui", help="open the desktop app (the default)")  # main() opens it: see gui_parser
    gui.add_argument("gui_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    gui.set_defaults(handler=lambda a: _open_gui(a.gui_args))

    _add_train(commands)

    evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint on its test split",
                                   formatter_class=_HelpFormatter)
    evaluate.add_argument("checkpoint", metavar="CKPT", type=checkpoint_option, help=CKPT_HELP)
    evaluate.add_argument("--dataset", help="dataset to evaluate on (default: the one it was trained on)")
    evaluate.add_argument("--data-root", metavar="DIR", type=folder_option, help="folder with the dataset's files")
    evaluate.add_argument("--download", action="store_true", help="allow downloading the dataset")
    evaluate.add_argument("--split", choices=("test", "val", "train"), default="test", help="which images")
    evaluate.add_argument("--batch-size", type=_positive_int, default=256, help="images per forward pass")
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    evaluate.add_argument("--no-sweep", action="store_true", help="skip the threshold and fixed-iteration curves")
    evaluate.add_argument("--json", action="store_true", help="print eval.json-style JSON on stdout")
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = commands.add_parser("predict", help="classify image files", formatter_class=_HelpFormatter,
                                  epilog=PREDICT_EXIT_CODES)
    predict.add_argument("checkpoint", metavar="CKPT", type=checkpoint_option, help=CKPT_HELP)
    predict.add_argument("images", metavar="IMAGE", nargs="+", type=file_option,
                         help="image files, or folders of them (their subfolders too)")
    predict.add_argument("--threshold", type=float, help="halting threshold in (0, 1] (default: the calibrated one)")
    predict.add_argument("--mode", help="adaptive, fixed:N or max (default: the checkpoint's)")
    predict.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    predict.add_argument("--json", action="store_true", help="print JSON on stdout")
    predict.set_defaults(handler=cmd_predict)

    export = commands.add_parser("export", help="export a checkpoint to ONNX, TorchScript or a plugin's format",
                                 formatter_class=_HelpFormatter)
    export.add_argument("checkpoint", metavar="CKPT", type=checkpoint_option, help=CKPT_HELP)
    export.add_argument("--format", required=True, dest="fmt", metavar="FORMAT", help=EXPORT_FORMATS_HELP)
    export.add_argument("--out", required=True, metavar="FILE", type=file_option, help="the file to write")
    export.add_argument("--force", "--overwrite", action="store_true",
                        help="replace the --out file if it exists (without it, an existing file is never replaced)")
    export.add_argument("--batch-size", type=int, default=1, help="example batch (the fixed batch if it cannot be dynamic)")
    export.add_argument("--mode", help="adaptive, fixed:N or max, baked into the export (default: the checkpoint's)")
    export.add_argument("--threshold", type=float, help="halting threshold in (0, 1] for the mode adaptive, baked "
                                                        "into the export (default: the checkpoint's)")
    export.add_argument("--json", action="store_true", help="print JSON on stdout: the file written, its halting, "
                                                            "the notes and warning (the app's export dialog reads it)")
    export.set_defaults(handler=cmd_export)

    runs = commands.add_parser("runs", help="list training runs", formatter_class=_HelpFormatter)
    runs.add_argument("--runs-dir", default="runs", type=folder_option, metavar="DIR", help="folder holding the runs")
    runs.add_argument("--json", action="store_true", help="print JSON on stdout")
    runs.set_defaults(handler=cmd_runs)

    info = commands.add_parser("info", help="versions, devices, datasets and plugins")
    info.add_argument("--json", action="store_true", help="print JSON on stdout")
    info.set_defaults(handler=cmd_info)
    return parser


def _add_train(commands: Any) -> None:
    from .engine.config import RunConfig

    d = RunConfig()  # what applies where neither --config nor an option sets a value
    train = commands.add_parser(
        "train", help="train a model", formatter_class=_HelpFormatter,
        description="Train a model. Settings come from --config (TOML), then the options given here; "
                    "the defaults shown apply where neither sets a value.",
    )
    train.add_argument("--config", metavar="FILE", type=file_option,
                       help="run settings (TOML), e.g. from --save-config")
    data = train.add_argument_group("data")
    data.add_argument("--dataset", help=f"fashion-mnist, mnist, cifar10, synthetic, ... (see `info`; default: {d.data.name})")
    data.add_argument("--data-root", metavar="DIR", type=folder_option,
                      help="folder with the dataset's files (default: its usual places)")
    data.add_argument("--download", action="store_true", default=None, help="allow downloading the dataset")
    data.add_argument("--val-fraction", type=float, metavar="F",
                      help=f"share of the training images held out to validate and calibrate the halting "
                           f"(default: {d.data.val_fraction})")
    data.add_argument("--val-split", metavar="HOW",
                      help=f"how the held-out share is drawn: per-class (the same share of every class) or random "
                           f"(over all images, as runs before this setting; default: {d.data.val_split})")
    data.add_argument("--augment", metavar="STEPS",
                      help="training augmentation: none, or crop, flip and erase (random erasing) joined by '-' "
                           "in that order, e.g. crop-flip-erase (default: the dataset's own: crop-flip, crop for digits)")
    model = train.add_argument_group("model")
    model.add_argument("--depth", type=int, help=f"ResNet depth: 18, 34, 50, 101 or 152 (default: {d.model.depth})")
    model.add_argument("--width", type=int, help=f"channels of the stem (default: {d.model.width})")
    model.add_argument("--mode", help=f"adaptive, fixed:N or max (default: {d.model.mode})")
    model.add_argument("--halting", help=f"calibrated or act (default: {d.model.halting})")
    model.add_argument("--architecture", help=f"iamnn or resnet (the unshared baseline; default: {d.model.architecture})")
    model.add_argument("--block", metavar="NAME",
                       help=f"IamNN's processing block: bottleneck or one a plugin adds, e.g. depthwise (see `info`; "
                            f"default: {d.model.block})")
    optim = train.add_argument_group("training")
    optim.add_argument("--epochs", type=int, help=f"passes over the training images (default: {d.epochs})")
    optim.add_argument("--batch-size", type=int, help=f"images per step (default: {d.batch_size})")
    optim.add_argument("--lr", type=float, help=f"learning rate (default: {d.lr})")
    optim.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (default: the epochs "
                                                     "decide; 0: no limit, even if --config sets one)")
    optim.add_argument("--no-calibrate", dest="calibrate_halting", action="store_false", default=None,
                       help="do not fit the halting head after training (calibrated halting; it then runs at full "
                            "depth): for a dataset with too few images held out to calibrate it")
    optim.add_argument("--device", help=f"auto, cpu, cuda or cuda:N (default: {d.device}: cuda when there is a GPU)")
    optim.add_argument("--seed", type=int, help=f"random seed (default: {d.seed})")
    optim.add_argument("--init-from", metavar="CHECKPOINT", type=checkpoint_option,
                       help="start from these weights (a checkpoint or run folder; a new run with its own "
                            "schedule, e.g. to train a finished model longer). Without --config the model and data "
                            "settings are the checkpoint's; options given still change them")
    run = train.add_argument_group("run folder")
    run.add_argument("--name", help=f"the run's name, and its folder's under --runs-dir (default: {d.name})")
    run.add_argument("--runs-dir", default="runs", type=folder_option, metavar="DIR",
                     help="where new runs get their folder")
    run.add_argument("--run-dir", type=folder_option, metavar="DIR",
                     help="exact folder for this run (or the run to --resume)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --run-dir from its last checkpoint, as it was configured")
    run.add_argument("--save-config", metavar="FILE", type=file_option,
                     help="write the resolved settings to FILE and exit")
    dist = train.add_argument_group("several processes (torchrun-style)")
    dist.add_argument("--nproc-per-node", type=int, default=1, help="processes on this machine")
    dist.add_argument("--nnodes", type=int, default=1, help="machines")
    dist.add_argument("--node-rank", type=int, default=0, help="this machine's number, from 0")
    dist.add_argument("--master-addr", default="127.0.0.1", help="address of machine 0")
    dist.add_argument("--master-port", type=int, default=29500, help="port on machine 0")
    train.set_defaults(handler=cmd_train)


# --------------------------------------------------------------------------- train
#: Command-line option -> (section, field) of RunConfig; section None = the run itself.
TRAIN_OVERRIDES = {
    "dataset": ("data", "name"), "data_root": ("data", "root"), "download": ("data", "download"),
    "val_fraction": ("data", "val_fraction"), "val_split": ("data", "val_split"), "augment": ("data", "augment"),
    "depth": ("model", "depth"), "width": ("model", "width"), "mode": ("model", "mode"),
    "halting": ("model", "halting"), "architecture": ("model", "architecture"), "block": ("model", "block"),
    "epochs": (None, "epochs"), "batch_size": (None, "batch_size"), "lr": (None, "lr"),
    "max_steps": (None, "max_steps"), "device": (None, "device"), "seed": (None, "seed"), "name": (None, "name"),
    "init_from": (None, "init_from"), "calibrate_halting": (None, "calibrate_halting"),
}


def train_config(args: argparse.Namespace):
    """The RunConfig that ``train`` runs: the --config file (or defaults), then the options given."""
    from .engine.config import RunConfig, read_settings_file

    if args.max_steps is not None and args.max_steps < 0:  # the config's "positive" would hide that 0 is fine
        raise UsageError(f"--max-steps: must be a whole number >= 0 (0 clears the limit), got {args.max_steps}")
    # read once: a pipe (``--config <(...)``) has nothing left for a second read
    settings = read_settings_file(args.config) if args.config else None
    config = RunConfig() if settings is None else RunConfig.from_toml(settings)
    if args.init_from and not args.config:
        _take_checkpoint_settings(config, args.init_from, keep_data=args.dataset is not None)
    for option, (section, name) in TRAIN_OVERRIDES.items():
        value = getattr(args, option)
        if value is not None:
            setattr(config if section is None else getattr(config, section), name, value)
    _check_resnet_options(args, config.model.architecture)
    if args.block is not None:
        _check_block(args.block)
    if args.max_steps == 0:
        config.max_steps = None
    if (args.dataset is not None and args.augment is None
            and not (settings is not None and _config_sets(settings, "data", "augment"))):
        from .engine.data import default_augment

        config.data.augment = default_augment(args.dataset)  # digits must not be mirrored
    return config.validate()


#: IamNN's own options, which the ResNet baseline has nothing to apply to: option -> what it has not.
IAMNN_ONLY_OPTIONS = {"mode": ("iterations", "the mode"), "halting": ("halting", "the halting"),
                      "block": ("shared processing block", "the block")}


def _check_resnet_options(args: argparse.Namespace, architecture: str) -> None:
    """An IamNN-only option given for a ResNet is refused rather than recorded and ignored (a settings file's
    values for them are the defaults every config holds, and still load)."""
    if architecture != "resnet":
        return
    given = [name for name in IAMNN_ONLY_OPTIONS if getattr(args, name) is not None]
    if given:
        name = _in_given_order([f"--{n}" for n in given], getattr(args, "argv", None) or [])[0][2:]
        missing, setting = IAMNN_ONLY_OPTIONS[name]
        raise UsageError(f"--{name}: a ResNet baseline has no {missing} to choose; {setting} applies to IamNN")


def _check_block(name: str) -> None:
    """``--block``: a processing block registered now, the plugins' included (they load here first)."""
    from .engine.layers import BLOCKS
    from .engine.plugins import load_plugins

    load_plugins()
    if name not in BLOCKS:
        raise UsageError(f"--block: unknown processing block {name!r} (known: {', '.join(BLOCKS.names())}; a "
                         "plugin's block is known only while its plugin loads: see `iamnn-studio info`)")


def _take_checkpoint_settings(config, init_from: str, *, keep_data: bool) -> None:
    """``train --init-from RUN`` trains RUN's network on RUN's data, not the defaults' (whose weights would not
    fit): the model settings, and the data settings unless --dataset names other data."""
    from .engine.checkpoint import CheckpointError, checkpoint_settings
    from .engine.config import DataConfig

    try:
        config.model, data = checkpoint_settings(init_from)
        if data is not None and not keep_data:
            config.data = DataConfig.from_dict(data)
    except (CheckpointError, ValueError, TypeError) as exc:
        raise UsageError(f"--init-from: {exc}") from None


def _config_sets(settings: str, section: str, key: str) -> bool:
    """Whether the settings file's text sets ``section.key`` itself (not left to the default)."""
    import tomllib

    try:
        return key in tomllib.loads(settings.removeprefix("\ufeff")).get(section, {})
    except ValueError:
        return False


#: Options that --resume accepts besides the run folder: where to run may change, what to train may
#: not (the trainer continues with the run's stored settings and takes only the device from ours).
RESUME_ACCEPTS = ("device",)


def _check_resume(args: argparse.Namespace) -> None:
    if not args.run_dir:
        raise UsageError("--resume needs --run-dir: the folder of the run to continue")
    if args.save_config:
        raise UsageError(f"--save-config does not combine with --resume: the run's settings are in "
                         f"{Path(args.run_dir) / 'config.toml'}")
    given = [name for name in ("config", *TRAIN_OVERRIDES)
             if name not in RESUME_ACCEPTS and getattr(args, name) is not None]
    if given:
        flags = _in_given_order([_flag(name) for name in given], getattr(args, "argv", None) or [])
        raise UsageError(f"--resume continues {args.run_dir} as it was configured; drop {', '.join(flags)} "
                         "(start a new run to change them)")


def _flag(option: str) -> str:
    """The command-line spelling of a ``train`` option: ``max_steps`` is --max-steps."""
    return "--no-calibrate" if option == "calibrate_halting" else "--" + option.replace("_", "-")


def _in_given_order(flags: list[str], argv: list[str]) -> list[str]:
    """``flags`` sorted by where they appear in ``argv`` (abbreviations included); unfound ones last."""
    def position(flag: str) -> int:
        for i, token in enumerate(argv):
            name = token.split("=", 1)[0]
            if len(name) > 2 and name.startswith("--") and flag.startswith(name):
                return i
        return len(argv)

    return sorted(flags, key=position)


def _check_distributed(args: argparse.Namespace) -> None:
    """The launcher's own checks, made for every run (a single process ignores the options otherwise)."""
    for flag, value in (("--nproc-per-node", args.nproc_per_node), ("--nnodes", args.nnodes)):
        if value < 1:
            raise UsageError(f"{flag}: must be an integer >= 1, got {value}")
    if not 0 <= args.node_rank < args.nnodes:
        raise UsageError(f"--node-rank: must be in [0, {args.nnodes - 1}] with --nnodes {args.nnodes}, "
                         f"got {args.node_rank}")
    if not 1 <= args.master_port <= 65535:
        raise UsageError(f"--master-port: must be a port number in [1, 65535], got {args.master_port}")


def _save_config(config: Any, target: Path) -> None:
    if target.is_dir():
        raise UsageError(f"--save-config: {target} is a folder; give a file name such as run.toml")
    from .engine.runs import output_file

    try:
        target = output_file(target)
    except ValueError as exc:
        raise UsageError(f"--save-config: cannot write {target}: {exc}") from None
    blocked = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise UsageError(f"--save-config: cannot write {target}: {blocked} is a file, not a folder")
    try:
        config.save(target)
    except OSError as exc:  # the message would name the temporary file written first
        raise UsageError(f"--save-config: cannot write {target}: {exc.strerror or exc}") from None


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        _check_resume(args)
    _check_distributed(args)
    if args.device is not None:  # the spellings evaluate and predict take, refused as they refuse them
        args.device = check_device(args.device, auto=True, on_this_machine=not args.save_config)
        if args.device.startswith("cuda:") and (args.nproc_per_node > 1 or args.nnodes > 1):
            raise UsageError(f"--device: {args.device} names one GPU, and each of several processes takes its own: "
                             "give cuda")
    config = train_config(args)
    if args.save_config:  # absolute paths, as in a run's config.toml: the file means the same from any folder
        _save_config(config.make_paths_absolute(), Path(args.save_config))
        print(f"settings written to {args.save_config}")
        return EXIT_OK
    if args.nproc_per_node > 1:  # before any process starts: each takes hundreds of MB
        from .engine.distributed import check_process_count, started_by_torchrun

        if not started_by_torchrun():  # then torchrun chose the count
            check_process_count(config, args.nproc_per_node, flag="--nproc-per-node")
    # the trainer refuses such a folder too, but only once the data has loaded; machine 0 alone, as it alone
    # makes the folder (on a shared disk the others may find it made already)
    if args.run_dir and not args.resume and args.node_rank == 0:
        from .engine.runs import claim_refusal

        refusal = claim_refusal(args.run_dir)
        if refusal is not None:
            raise UsageError(refusal)

    progress = TrainingProgress(sys.stderr)
    distributed = args.nproc_per_node > 1 or args.nnodes > 1
    with _graceful_interrupts() as interrupts:
        if distributed:
            from .engine.distributed import launch

            interrupts.on_first = lambda: None  # every worker hears Ctrl-C itself and stops with a checkpoint
            result = launch(
                config, args.nproc_per_node, runs_dir=args.runs_dir, nnodes=args.nnodes, node_rank=args.node_rank,
                master_addr=args.master_addr, master_port=args.master_port, resume=args.resume,
                run_dir=args.run_dir, listeners=[progress],
            )
        else:
            from .engine.data import downloading, stop_downloads
            from .engine.trainer import Trainer

            trainer = Trainer(config, runs_dir=args.runs_dir, run_dir=args.run_dir, resume=args.resume,
                              listeners=[progress])

            def stop() -> None:
                trainer.stop()  # also ends the run's dataset download at once (no wait for a silent server)
                stop_downloads()  # and one a provider runs in a thread of its own

            interrupts.on_first = stop
            interrupts.first_message = lambda: ("stopping the dataset download" if downloading()
                                                else progress.stop_message())
            result = trainer.run()
    progress.close()

    if result.state == "stopped" and result.message:  # stopped while its dataset downloaded (also a --resume):
        print(result.message, file=sys.stderr)  # asked for, no error; nothing trained to summarise
        return EXIT_INTERRUPTED
    if result.state == "failed":
        print(f"error: {result.reason}", file=sys.stderr)
        # a run that failed before its folder was made failed on its input (data missing, too few
        # held-out images, a model too big for the memory): bad input, as for the other commands
        started = result.run_dir is not None or result.reason.startswith("unexpected error")
        return EXIT_FAILED if started else EXIT_USAGE
    _print_run_summary(result, processes=_launcher_flags(args))
    # several processes: torch's launcher hears Ctrl-C before our handler does, so the count stays 0
    return EXIT_INTERRUPTED if interrupts.count or result.state == "stopped" else EXIT_OK


def _ending_text(reason: Any) -> str:
    """The trainer's ending as ``runs`` writes it: "max_steps" reads "completed (step limit)"."""
    from .engine.runs import STEP_LIMIT_REASON, status_text

    return status_text("completed", STEP_LIMIT_REASON) if reason == "max_steps" else str(reason)


def _launcher_flags(args: argparse.Namespace) -> tuple[str, ...]:
    """The launch options of a distributed run, which its resume must repeat: the process counts (the trainer
    refuses another count) and, across machines, where this one joins the job (without them a resume would
    start a job of its own, waiting for ever for the other machines)."""
    flags: list[str] = []
    if args.nproc_per_node > 1:
        flags += ["--nproc-per-node", str(args.nproc_per_node)]
    if args.nnodes > 1:
        flags += ["--nnodes", str(args.nnodes), "--node-rank", str(args.node_rank),
                  "--master-addr", args.master_addr, "--master-port", str(args.master_port)]
    return tuple(flags)


def _print_run_summary(result: Any, processes: tuple[str, ...] = ()) -> None:
    lines = [f"run: {result.run_dir} · {_ending_text(result.reason)}"]  # no "(completed (step limit))"
    if result.run_dir and result.reason != "completed":  # cut short: say how far it got
        status = _read_json(Path(result.run_dir) / "status.json") or {}
        from .engine.runs import epochs_text, steps_per_epoch

        done = epochs_text(status.get("epochs_done"), status.get("total_epochs"), status.get("step"),
                           steps_per_epoch(result.run_dir), prose=True)
        if done:
            lines.append(done)
    if result.best_accuracy is not None:
        lines.append(f"best validation accuracy: {result.best_accuracy:.2%}")
    evaluation = _read_json(Path(result.run_dir) / "eval.json") if result.run_dir else None
    if evaluation and evaluation.get("top1") is not None:
        macs = evaluation.get("macs") or {}
        lines.append(f"{evaluation_word(evaluation)} top-1: {evaluation['top1']:.2%}, mean MACs {format_macs(macs.get('mean'))}")
    if result.reason == "stopped" and result.run_dir:
        command = shlex.join(["iamnn-studio", "train", "--run-dir", str(result.run_dir), "--resume", *processes])
        machines = " (on every machine, each with its own --node-rank)" if "--node-rank" in processes else ""
        lines.append(f"continue it from its last checkpoint{machines}: {command}")
    print("\n".join(lines))


PHASE_LABELS = {
    "calibrating": "calibrating the halting head",
    "evaluating": "evaluating the best model (accuracy, MACs, threshold sweep)",  # its split: in the result line
}
#: What a first Ctrl-C does in the phases after training (the trainer stops them at their next batch).
PHASE_STOP_MESSAGES = {
    "calibrating": "stopping the calibration; the trained checkpoints are kept (resume the run to calibrate it)",
    "evaluating": "stopping the evaluation; the checkpoints are kept (resume the run to evaluate it)",
}


class TrainingProgress:
    """Shows trainer events: one line rewritten with ``\\r`` on a terminal, a line per epoch otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.total_epochs: int | None = None
        self.steps_per_epoch: int | None = None
        self.started = False  # the run has its folder and data: a Ctrl-C now stops after a step
        self.phase: str | None = None  # calibrating or evaluating, once training is over
        self._bar_shown = False
        self._lock = threading.Lock()  # distributed runs report from a follower thread

    def __call__(self, event: Any) -> None:
        with self._lock:
            handler = getattr(self, f"_on_{event.kind}", None)
            if handler is not None:
                handler(event.data)

    def close(self) -> None:
        with self._lock:
            self._end_bar()

    # ----------------------------------------------------------------- events
    def _on_started(self, d: dict) -> None:
        self.started = True
        self.total_epochs = d.get("total_epochs")
        self.steps_per_epoch = d.get("steps_per_epoch")
        resumed = f", resumed after step {d['resumed_from_step']}" if d.get("resumed_from_step") is not None else ""
        data = d.get("dataset") or {}
        self._line(f"training in {d.get('run_dir')} on {d.get('device')}: {data.get('name')} "
                   f"({data.get('train')} train images), {_count(d.get('total_steps'), 'step')}, "
                   f"recipe {d.get('recipe')}{resumed}")

    def _on_step(self, d: dict) -> None:
        if not self.live:
            return
        text = (f"epoch {d.get('epoch')}/{self.total_epochs or '?'}  step {d.get('step')}/{d.get('total_steps')}  "
                f"loss {_number(d.get('loss'))}  acc {_percent(d.get('accuracy'), 1)}  "
                f"{d.get('images_per_s') or 0:.0f} img/s  iterations {_iterations(d.get('iterations'))}")
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r" + text[:width].ljust(width))
        self.stream.flush()
        self._bar_shown = True

    def _on_epoch(self, d: dict) -> None:
        val = "" if d.get("val_accuracy") is None else \
            f"  {epoch_split_word(d.get('val_split'))} loss {_number(d.get('val_loss'))} acc {_percent(d['val_accuracy'])}"
        self._line(f"epoch {d.get('epoch')}/{d.get('total_epochs') or self.total_epochs or '?'}  "
                   f"step {d.get('step')}{self._cut_short(d)}  train loss {_number(d.get('train_loss'))} acc {_percent(d.get('train_accuracy'))}"
                   f"{val}  {d.get('images_per_s') or 0:.0f} img/s  iterations {_iterations(d.get('iterations'))}  "
                   f"MACs {format_macs(d.get('macs'))}")

    def _cut_short(self, d: dict) -> str:
        """`` (cut short: 30 of its 422 steps)`` for an epoch that --max-steps ended early."""
        spe, step, epoch = self.steps_per_epoch, d.get("step"), d.get("epoch")
        if not (isinstance(spe, int) and isinstance(step, int) and isinstance(epoch, int)) or spe <= 0:
            return ""
        done = step - (epoch - 1) * spe
        return f" (cut short: {done} of its {spe} steps)" if 0 < done < spe else ""

    def stop_message(self) -> str:
        """What a first Ctrl-C does now, in words."""
        if not self.started:
            return "stopping before training starts"
        return PHASE_STOP_MESSAGES.get(str(self.phase), "stopping after this step, keeping a checkpoint")

    def _on_phase_progress(self, d: dict) -> None:
        self.phase = d.get("phase")
        if not self.live:  # logs get the phase's start and result lines only
            return
        label = PHASE_LABELS.get(str(d.get("phase")), str(d.get("phase")))
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r" + f"{label}: {int(float(d.get('fraction') or 0) * 100):3d}%"[:width].ljust(width))
        self.stream.flush()
        self._bar_shown = True

    def _on_calibrated(self, d: dict) -> None:
        limits = d.get("halting_caps")
        self._line(f"halting head calibrated: threshold {_number(d.get('threshold'), 3)}, "
                   + (f"at most {','.join(map(str, limits))} iterations per block (the most accurate fixed "
                      f"setting on held-out images), " if limits else "")
                   + f"validation accuracy {_percent(d.get('val_accuracy'))}, MACs {format_macs(d.get('val_macs'))}")

    def _on_evaluated(self, d: dict) -> None:
        macs = d.get("macs") or {}
        self._line(f"evaluated on {split_named(d.get('split'))}: top-1 {_percent(d.get('top1'))}, "
                   f"top-5 {_percent(d.get('top5'))}, mean MACs {format_macs(macs.get('mean'))}")

    def _on_paused(self, d: dict) -> None:
        self._line(f"paused at step {d.get('step')}")

    def _on_resumed(self, d: dict) -> None:
        self._line(f"resumed at step {d.get('step')}")

    def _on_log(self, d: dict) -> None:
        self._line(("warning: " if d.get("level") == "warning" else "") + str(d.get("message")))

    def _on_finished(self, d: dict) -> None:
        if d.get("message"):  # a stopped download: its sentence is the command's closing line
            self._end_bar()
            return
        self._line(f"finished: {_ending_text(d.get('reason'))}")

    def _on_failed(self, d: dict) -> None:
        self._end_bar()  # the reason itself is printed once, as the command's error line

    # ----------------------------------------------------------------- output
    def _line(self, text: str) -> None:
        self._end_bar()
        self.stream.write(text + "\n")
        self.stream.flush()

    def _end_bar(self) -> None:
        if self._bar_shown:
            self.stream.write("\n")
            self._bar_shown = False


class _Interrupts:
    """Counts Ctrl-C presses (and SIGTERM, what ``kill`` and ``timeout`` send); the first calls
    ``on_first`` (a graceful stop) after saying ``first_message``, the second raises."""

    def __init__(self) -> None:
        self.count = 0
        self.on_first: Callable[[], None] | None = None
        #: what training does; a callable is asked at the time (what is running then)
        self.first_message: str | Callable[[], str] = "stopping after this step, keeping a checkpoint"
        #: asked at the first Ctrl-C: False, and it interrupts at once as the second does (nothing to stop gracefully)
        self.only_when: Callable[[], bool] | None = None

    def handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count == 1 and self.on_first is not None and (self.only_when is None or self.only_when()):
            cause = "terminated: " if signum == signal.SIGTERM else ""
            message = self.first_message() if callable(self.first_message) else self.first_message
            print(f"\n{cause}{message} (Ctrl-C again to quit at once)", file=sys.stderr, flush=True)
            self.on_first()
            return
        raise KeyboardInterrupt


@contextlib.contextmanager
def _graceful_interrupts() -> Iterator[_Interrupts]:
    interrupts = _Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield interrupts  # signals can only be caught in the main thread
        return
    previous = {sig: signal.signal(sig, interrupts.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupts
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    args.device = check_device(args.device)
    args.checkpoint = checkpoint_path(args.checkpoint)
    from .engine.checkpoint import load_checkpoint
    from .engine.evaluate import evaluate, evaluation_split

    checkpoint = load_checkpoint(args.checkpoint, map_location=args.device)
    trained_on = _data_identity(checkpoint.run_config.data) if checkpoint.run_config is not None else None
    data_config = _evaluation_data(checkpoint, args)
    own_data = trained_on is not None and _data_identity(data_config) == trained_on
    seed = checkpoint.run_config.seed if checkpoint.run_config else 0
    bundle = _load_evaluation_data(data_config, seed)
    if bundle is None:  # a first Ctrl-C stopped the dataset download: said, not an error
        return EXIT_INTERRUPTED
    for note in getattr(bundle, "notes", ()):  # e.g. an image folder without test/: its test split is val
        print(f"note: {note}", file=sys.stderr)
    _check_dataset_fits(bundle, checkpoint)
    # "test" of a dataset without test images of its own is its validation split: recorded as that, as the
    # trainer records it (they chose the model; eval.json must not call them a test of it)
    # (only the checkpoint's own training data: another folder's validation images chose nothing)
    name, images, recorded = (evaluation_split(bundle, chose_the_model=own_data) if args.split == "test"
                              else (args.split, bundle.split(args.split), {"split": args.split}))
    split = _in_checkpoint_labels(bundle, checkpoint, images)
    if len(split) == 0:
        raise ValueError(f"the {args.split} split of {bundle.name} has no images")

    stop = threading.Event()
    show = _Fraction(sys.stderr, f"evaluating {_count(len(split), name + ' image')}")
    with _graceful_interrupts() as interrupts:
        interrupts.on_first = stop.set
        interrupts.first_message = "stopping the evaluation after this batch; the results so far follow"
        result = evaluate(
            checkpoint.model, split, mean=checkpoint.mean, std=checkpoint.std, classes=checkpoint.classes,
            device=args.device, batch_size=args.batch_size, sweep=not args.no_sweep,
            should_stop=stop.is_set, progress=show,
            calibrate_halting=checkpoint.run_config is None or checkpoint.run_config.calibrate_halting,
        )
    show.close()
    result.update(recorded)
    result["checkpoint"] = str(args.checkpoint)
    if args.json:
        emit_json(result)
    else:
        print(format_evaluation(result))
    return EXIT_INTERRUPTED if result.get("stopped") else EXIT_OK


def _load_evaluation_data(data_config: Any, seed: int) -> Any:
    """The dataset to evaluate on; None when a first Ctrl-C stopped its download, which is said as ``train``
    says it. A Ctrl-C while nothing downloads interrupts at once, as before."""
    from .engine.data import DownloadStopped, downloading, load_dataset, stop_downloads

    stopped = threading.Event()

    def stop() -> None:
        if stop_downloads():  # at once: the download would go on, or wait up to 30 s for a silent server
            stopped.set()
        else:  # it ended meanwhile: nothing to stop gracefully
            raise KeyboardInterrupt

    try:
        with _graceful_interrupts() as interrupts:
            interrupts.on_first = stop
            interrupts.only_when = downloading
            interrupts.first_message = "stopping the dataset download"
            bundle = load_dataset(data_config, seed=seed)
        if stopped.is_set():  # the stop landed between two transfers (while extracting): still a stop
            print("the dataset download was stopped", file=sys.stderr)
            return None
        return bundle
    except DownloadStopped as exc:
        if not stopped.is_set():
            raise
        print(exc, file=sys.stderr)  # what the user asked for, not an error
        return None


def _data_identity(data: Any) -> tuple[str, str | None]:
    """(dataset name, resolved root): the same for the data a checkpoint was trained on and the same data again."""
    root = getattr(data, "root", None)
    return data.name, None if root is None else str(Path(root).expanduser().resolve())


def _evaluation_data(checkpoint: Any, args: argparse.Namespace):
    from .engine.config import DataConfig

    if checkpoint.run_config is not None:
        data = checkpoint.run_config.data
    elif args.dataset is None:
        raise UsageError("the checkpoint does not say which dataset it was trained on: give --dataset")
    else:
        data = DataConfig()
    if args.dataset is not None and args.dataset != data.name:
        data = DataConfig(name=args.dataset, val_fraction=data.val_fraction)
    if args.data_root is not None:
        data.root = args.data_root
    if args.download:
        data.download = True
    data.image_size = checkpoint.model_config.image_size  # resized like the training images
    data.augment = "none"  # evaluation never augments: a note on training augmentation would not apply
    return data.validate()


def _check_dataset_fits(bundle: Any, checkpoint: Any) -> None:
    config = checkpoint.model_config
    if bundle.in_channels != config.in_channels or bundle.num_classes != config.num_classes:
        raise ValueError(
            f"{bundle.name} has {bundle.in_channels}-channel images in {bundle.num_classes} classes; "
            f"the model takes {config.in_channels}-channel images in {config.num_classes} classes"
        )


def _in_checkpoint_labels(bundle: Any, checkpoint: Any, split: Any) -> Any:
    """``split`` with labels that mean the checkpoint's classes: the same classes in another order (an
    image folder sorts its class folders by name) are matched by name, ignoring case and punctuation
    ("T-shirt_top" is "T-shirt/top"); classes only numbered ("0", "1", ...) on one side are taken in
    order; other classes are refused: scores against them would mean nothing."""
    import re

    import torch

    from .engine.data.bundle import ImageTensors

    ours, theirs = list(bundle.classes), list(checkpoint.classes)
    if ours == theirs:
        return split
    unnamed = [str(i) for i in range(len(theirs))]
    if unnamed in ([str(c) for c in ours], [str(c) for c in theirs]):  # one side only numbers its classes
        print(f"note: {'the checkpoint' if [str(c) for c in theirs] == unnamed else bundle.name} only numbers its "
              "classes: the labels are taken in order", file=sys.stderr)
        return split
    key = {name: re.sub(r"[^0-9a-z]", "", str(name).lower()) for name in ours + theirs}
    by_key = {key[name]: index for index, name in enumerate(theirs)}
    if sorted(key[n] for n in ours) == sorted(by_key) and len(by_key) == len(theirs):
        order = torch.tensor([by_key[key[name]] for name in ours], dtype=torch.long)
        print(f"note: {bundle.name}'s classes are the checkpoint's, matched by name", file=sys.stderr)
        return ImageTensors(split.images, order[split.labels])
    raise ValueError(
        f"{bundle.name}'s classes ({_class_list(ours)}) are not the checkpoint's ({_class_list(theirs)}): "
        "its labels would not mean the model's classes. Evaluate on the dataset the model was trained on, "
        "or on an image folder whose class folders are named after the checkpoint's classes"
    )


def _class_list(names: list[str], shown: int = 4) -> str:
    head = ", ".join(map(str, names[:shown]))
    return head + (f", ... {len(names)} in all" if len(names) > shown else "")


class _Fraction:
    """``\\rlabel 42%`` on a terminal; silent otherwise (the result follows anyway)."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream, self.label = stream, label
        self.live = stream.isatty()
        self._last = -1

    def __call__(self, fraction: float) -> None:
        percent = int(fraction * 100)
        if self.live and percent != self._last:
            self._last = percent
            self.stream.write(f"\r{self.label}: {percent:3d}%")
            self.stream.flush()

    def close(self) -> None:
        if self.live and self._last >= 0:
            self.stream.write("\n")


def format_evaluation(result: dict[str, Any]) -> str:
    macs = result.get("macs") or {}
    lines = [
        _count(result.get("images"), f"{result.get('split', 'test')} image")
        + ("  (stopped early: partial results)" if result.get("stopped") else ""),
        f"top-1 {_percent(result.get('top1'))}   top-5 {_percent(result.get('top5'))}",
    ]
    if result.get("split_note"):  # held-out images standing in for a test split: the accuracy is optimistic
        lines.append(f"note: {result['split_note']}")
    if result.get("full_depth_note"):  # --no-calibrate: why an adaptive model was evaluated at full depth
        lines.append(f"note: {result['full_depth_note']}")
    if macs:
        lines.append(
            f"MACs per image: mean {format_macs(macs.get('mean'))}, min {format_macs(macs.get('min'))}, "
            f"p10 {format_macs(macs.get('p10'))}, p90 {format_macs(macs.get('p90'))}, max {format_macs(macs.get('max'))} "
            f"(p90/p10 {_number(macs.get('p90_over_p10'), 2)}, max/min {_number(macs.get('max_over_min'), 2)})"
        )
    full = result.get("full_depth") or {}
    if full and result.get("mode") != "max":
        lines.append(f"full depth: top-1 {_percent(full.get('top1'))} at {format_macs(full.get('mean_macs'))}")
    iterations = result.get("iterations")
    if iterations:
        limits = result.get("halting_caps")
        lines.append(f"iterations per block (mean / {'halting limit' if limits else 'cap'}): " + "  ".join(
            f"{m:.2f}/{c}" for m, c in zip(iterations["mean"], limits or iterations["caps"])))
    adaptivity = result.get("adaptivity")
    if adaptivity:
        collapse = adaptivity.get("collapse") or {}
        lines.append(f"Spearman(MACs, full-depth loss) {_number(adaptivity.get('spearman_macs_vs_loss'), 3)}; "
                     f"MACs wrong {format_macs(adaptivity.get('macs_wrong'))} vs right {format_macs(adaptivity.get('macs_right'))}")
        if collapse.get("alarm") and not one_iteration_halting(result):  # one iteration allowed: no collapse
            lines.append("collapse alarm: " + "; ".join(collapse.get("reasons", [])))
        control = adaptivity.get("random_allocation") or {}
        if control.get("top1") is not None:
            lines.append(f"random allocation of the same iterations: top-1 {_percent(control['top1'])}")
    sweep = result.get("sweep") or {}
    if sweep.get("threshold"):
        lines.append("threshold   mean MACs   top-1")
        for point in sweep["threshold"]:
            mark = "  <- evaluated" if point.get("evaluated") else ""
            lines.append(f"{point['threshold']:>9.6g}   {format_macs(point['mean_macs']):>9}   {_percent(point['top1'])}{mark}")
    if sweep.get("fixed"):
        lines.append("fixed iterations   mean MACs   top-1")
        for point in sweep["fixed"]:
            setting = ",".join(str(n) for n in point["iterations"])
            lines.append(f"{setting:>16}   {format_macs(point['mean_macs']):>9}   {_percent(point['top1'])}")
    tradeoff = halting_tradeoff(result)
    if result.get("halting_calibrated") is False:  # a verdict on an unfitted head would mislead
        lines.append("The halting head was never calibrated (its run stopped before calibration): the adaptive "
                     f"iterations say nothing yet; resume the run ({_resume_command(result.get('checkpoint'))}) "
                     "to calibrate it.")
    elif tradeoff is not None:
        lines.append(tradeoff["verdict"])
    return "\n".join(lines)


def _resume_command(checkpoint: Any) -> str:
    """``iamnn-studio train --run-dir RUN --resume`` for the run holding ``checkpoint`` (RUN where it is
    in no run folder), its path shell-quoted so that the command can be pasted."""
    path = Path(str(checkpoint)) if checkpoint else None
    if path is None or path.parent.name != "checkpoints":
        return "iamnn-studio train --run-dir RUN --resume"
    return shlex.join(["iamnn-studio", "train", "--run-dir", str(path.parent.parent), "--resume"])


# --------------------------------------------------------------------------- predict
def cmd_predict(args: argparse.Namespace) -> int:
    args.device = check_device(args.device)
    args.checkpoint = checkpoint_path(args.checkpoint)
    from .engine.inference import Prediction, PredictionFailure, Predictor

    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
    architecture = predictor.checkpoint.architecture
    if architecture == "resnet" and (args.mode is not None or args.threshold is not None):
        raise UsageError("--mode/--threshold: this checkpoint is a ResNet baseline; "
                         "it has no iterations to choose or halting")
    try:
        if args.mode is not None:
            predictor.mode = args.mode
        if args.threshold is not None:
            if not predictor.halts:
                raise UsageError(f"--threshold: the halting threshold applies to the mode adaptive, not {predictor.mode}")
            predictor.threshold = args.threshold
    except ValueError as exc:
        raise _naming_the_option(exc, HALTING_OPTIONS) from None
    if predictor.uncalibrated and predictor.halts:
        print("note: this model's halting head was never calibrated (its run stopped before calibration), so its "
              "iteration counts mean little; resume the run to calibrate it, or use --mode max", file=sys.stderr)
    images, folder_problems = _images_of(args.images)
    results = predictor.predict_files(images) + [PredictionFailure(*problem) for problem in folder_problems]
    failures = [r for r in results if not isinstance(r, Prediction)]
    classified_none = bool(failures) and len(failures) == len(results)
    if classified_none and len(failures) == 1:  # one line says both what failed and that nothing was classified
        print(f"error: no image could be classified: {_naming_the_path(failures[0].message, failures[0].source)}",
              file=sys.stderr)
    else:
        for failure in failures:
            print(f"error: {_naming_the_path(failure.message, failure.source)}", file=sys.stderr)
        if classified_none:
            print(f"error: no image could be classified: all {len(failures)} inputs failed", file=sys.stderr)
    if args.json:
        emit_json({
            "checkpoint": str(args.checkpoint),
            "mode": predictor.mode,
            "threshold": predictor.threshold if predictor.halts else None,
            "predictions": [r.to_dict() for r in results if isinstance(r, Prediction)],
            "errors": [{**r.to_dict(), "error": _naming_the_path(r.message, r.source)} for r in failures],
        })
    else:
        blocks = [format_prediction(r, architecture=architecture) for r in results if isinstance(r, Prediction)]
        if blocks:
            print("\n\n".join(blocks))
    if classified_none:  # not a partial result: a script must not read an empty answer as "some worked"
        return EXIT_FAILED
    return EXIT_PARTIAL if failures else EXIT_OK


#: A folder given to ``predict`` stands for at most this many of its images (and its subfolders').
PREDICT_FOLDER_LIMIT = 100_000


def _images_of(paths: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Folders replaced by the images in them (sorted, subfolders too), as the app takes a dropped
    folder; (images, (folder, problem) for folders with no image inside or that cannot be read, subfolders
    too)."""
    from .image_files import unreadable_folder_reason

    images: list[str] = []
    problems: list[tuple[str, str]] = []
    for path in paths:
        if not os.path.isdir(path):
            if _names_a_folder(path) and os.path.lexists(path.rstrip("/" + os.sep)):
                # "ok.png/" is no folder: the shell refuses it, though Path drops the slash and would open the file
                problems.append((path, f"cannot read {path}: not a folder"))
            else:
                images.append(path)
            continue
        unreadable = unreadable_folder_reason(path)
        if unreadable:
            problems.append((path, f"cannot read {path}: {unreadable}"))
            continue
        inside, more, unreadable_inside = _folder_images(path)
        problems += unreadable_inside
        if not inside and not unreadable_inside:  # else its images may be in the folder it cannot read
            problems.append((path, f"no images in the folder {path}"))
        elif more:
            print(f"note: {path} holds more than {PREDICT_FOLDER_LIMIT:,} images: the first are classified",
                  file=sys.stderr)
        images += inside
    return images, problems


def _folder_images(path: str) -> tuple[list[str], bool, list[tuple[str, str]]]:
    """The images in the folder ``path`` and its subfolders, whether there are more, and (subfolder, problem)
    for each subfolder whose files cannot be read: named as a failed input, not skipped without a word."""
    from .image_files import folder_images

    unreadable: list[tuple[str, str]] = []
    images, more = folder_images(path, PREDICT_FOLDER_LIMIT, on_unreadable=lambda folder, reason:
                                 unreadable.append((folder, f"cannot read {folder}: {reason}")))
    return images, more, unreadable


def _names_a_folder(path: str) -> bool:
    """Whether ``path`` ends in a separator, which says the user means a folder."""
    return path.endswith("/") or path.endswith(os.sep)


def _naming_the_path(message: str, source: str) -> str:
    """An image's error names the file as the user gave it (``photos/a/cat.png``), not its bare name
    (``cat.png``), which would not say which of two same-named files failed."""
    if source in message:
        return message
    name = Path(source).name
    for verb in ("cannot read ", "cannot feed "):
        if message.startswith(f"{verb}{name}:"):
            return f"{verb}{source}{message[len(verb) + len(name):]}"
    return f"{source}: {message}"


#: The settings predict and export take as options of the same name.
HALTING_OPTIONS = ("mode", "threshold")


def _naming_the_option(exc: ValueError, options: tuple[str, ...]) -> ValueError:
    """An engine error about a setting given as an option names the option, as the other option errors
    do: "threshold: must be in (0, 1], got 1.5" reads "--threshold: must be in (0, 1], got 1.5"."""
    message = str(exc)
    for name in options:
        if message.startswith(f"{name}: "):
            return UsageError(f"--{name}: {message[len(name) + 2:]}")
    return exc


def _fixed_iterations(mode: str, caps: Any) -> list[int]:
    """Iterations per block that ``max`` or ``fixed:N`` runs (N is held to each block's cap)."""
    from .engine.config import fixed_setting  # the engine's rule, which export's metadata also says

    return list(fixed_setting(mode, caps) or ())


def _fixed_mode_text(mode: str, caps: list[int]) -> str:
    """``fixed:4`` -> ``fixed:4 runs 3-4-4-3: no block runs past its cap`` when a cap holds it back."""
    if not mode.startswith("fixed:"):
        return mode
    n, setting = int(mode.split(":", 1)[1]), _fixed_iterations(mode, caps)
    if all(n <= c for c in caps):
        return mode
    if setting == list(caps):
        return f"{mode} runs at most the caps {'-'.join(map(str, caps))}"
    return f"{mode} runs {'-'.join(map(str, setting))}: no block runs past its cap"


def format_prediction(prediction: Any, *, architecture: str = "iamnn") -> str:
    width = max(len(label) for label, _ in prediction.top)
    lines = [prediction.source]
    lines += [f"  {rank}. {label:<{width}}  {p:7.2%}" for rank, (label, p) in enumerate(prediction.top, 1)]
    if architecture == "resnet":  # no shared iterations, no caps, nothing halts
        lines.append("  units       " + "  ".join(str(n) for n in prediction.iterations) + "  (per block)")
        lines.append("  halting     none (a ResNet baseline: every image runs every unit)")
    else:
        lines.append("  iterations  " + "  ".join(f"{n}/{c}" for n, c in zip(prediction.iterations, prediction.caps)))
        if prediction.threshold is not None:
            lines.append(f"  halting (score -> cumulative, threshold {prediction.threshold:.3g})")
            reached = list(getattr(prediction, "reached", None) or [])
            for b, (scores, cumulative) in enumerate(zip(prediction.halting, prediction.cumulative), 1):
                steps = "  ".join(f"{h:.3f}->{c:.3f}" for h, c in zip(scores, cumulative))
                # the model's own float32 comparison (Prediction.reached), not the 3 decimals shown: 0.69996
                # prints 0.700 under a threshold of 0.7 and did not reach it
                at = reached[b - 1] if b <= len(reached) else None
                capped = prediction.iterations[b - 1] == prediction.caps[b - 1]
                end = f"  (reached at iteration {at})" if at is not None else "  (cap)" if capped else ""
                lines.append(f"    block {b}: {steps or '-'}{end}")
        else:
            lines.append(f"  halting     off (mode {_fixed_mode_text(prediction.mode, list(prediction.caps))})")
    low, high = prediction.macs_range
    possible = "" if low == high else f"  (possible {format_macs(low)} to {format_macs(high)})"
    lines.append(f"  MACs        {format_macs(prediction.macs)}{possible}")
    if getattr(prediction, "notes", None):
        lines.append("  input       " + "; ".join(prediction.notes))
    return "\n".join(lines)


# --------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    from .engine.checkpoint import load_checkpoint
    from .engine.export import (EXPORTERS, MAX_EXAMPLE_BATCH, PluginExporterError, describe_halting, export_caveats,
                                export_checkpoint, suffix_mismatch)

    if not 1 <= args.batch_size <= MAX_EXAMPLE_BATCH:
        raise UsageError(f"--batch-size: must be an integer in [1, {MAX_EXAMPLE_BATCH}], got {args.batch_size}")
    args.checkpoint = checkpoint_path(args.checkpoint)
    if args.fmt not in EXPORTERS:  # a plugin's format: its suffix is known once the plugins are loaded
        from .engine.plugins import load_plugins

        load_plugins()
    from .engine.runs import output_file

    try:  # a folder or a device is refused as such, not for its suffix
        output_file(args.out)
    except ValueError as exc:
        raise UsageError(f"cannot write {args.out}: {exc}") from None
    if _same_existing_file(args.out, args.checkpoint):  # before "exists": --force would not help
        raise UsageError(f"--out: {args.out} is the checkpoint being exported: choose another file name")
    mismatch = suffix_mismatch(args.fmt, args.out)
    if mismatch and os.path.lexists(args.out):  # most likely another kind of file named by mistake (run.toml)
        raise UsageError(f"--out: {args.out} exists and its suffix is not that of {args.fmt} files: not replaced "
                         "(remove it first, or choose another name)")
    replacing = os.path.lexists(args.out)
    if replacing and not args.force:  # the app asks first; a command cannot, so it needs to be told
        raise UsageError(f"--out: {args.out} exists: not replaced (give --force to replace it, or choose another name)")
    if mismatch:  # a warning, not a refusal: the name is the user's choice
        print(f"warning: {mismatch}", file=sys.stderr)
    try:
        loaded = load_checkpoint(args.checkpoint)  # read once: the export, its caveats and its halting words
        caveats = export_caveats(loaded, mode=args.mode)
        with _graceful_interrupts():  # SIGTERM (kill, timeout) interrupts as Ctrl-C does: no temporary file left
            out = export_checkpoint(args.checkpoint, args.fmt, args.out, batch_size=args.batch_size,
                                    mode=args.mode, threshold=args.threshold, loaded=loaded)
    except PluginExporterError as exc:  # the plugin's fault, not the user's input: said, with its traceback kept
        cause = exc.__cause__
        if cause is None:  # it raised nothing (it wrote nothing): no traceback of the plugin's to keep
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        log_path = write_error_log(type(cause), cause, cause.__traceback__,
                                   heading=f"iamnn-studio {' '.join(getattr(args, 'argv', []))}")
        print(f"error: {exc} (details in {log_path})", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as exc:
        raise _naming_the_option(exc, HALTING_OPTIONS) from None
    if args.json:  # the halting the file carries: the checkpoint's, or the --mode / --threshold applied to it
        emit_json({"path": str(out), "format": args.fmt, "bytes": out.stat().st_size, "replaced": replacing,
                   "halting": describe_halting(loaded.model_config), "caveats": caveats, "warning": mismatch})
        return EXIT_OK
    print(f"exported {args.fmt} to {out} ({out.stat().st_size / 1e6:.1f} MB"
          + ("; replaced the file that was there)" if replacing else ")"))
    return EXIT_OK



def _same_existing_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


# --------------------------------------------------------------------------- runs
def cmd_runs(args: argparse.Namespace) -> int:
    from .engine.runs import list_runs

    if Path(args.runs_dir).exists() and not Path(args.runs_dir).is_dir():
        raise UsageError(f"--runs-dir: {args.runs_dir} is a file, not a folder of runs")

    runs = list_runs(args.runs_dir)
    if args.json:
        emit_json([r.to_dict() for r in runs])
        return EXIT_OK
    if not runs:
        missing = not Path(args.runs_dir).exists()  # a typo, or nothing trained yet: as the Runs tab says
        print(f"no runs: {args.runs_dir} does not exist yet" if missing else f"no runs in {args.runs_dir}")
        return EXIT_OK
    # VAL ACC: the best epoch's validation accuracy (status.json); TEST ACC: eval.json's top-1, "(val)" after it
    # where that evaluation was on the validation images (no test split: they also chose the model)
    rows = [("NAME", "STATUS", "VAL ACC", "TEST ACC", "EPOCHS", "MODEL", "DATASET")]
    for r in runs:
        test = _percent(r.test_accuracy) + (" (val)" if r.test_split == "val" else "")
        rows.append((r.name, r.status_text, _percent(r.best_accuracy), test, r.epochs_text(),
                     r.model, r.dataset))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print("\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows))
    unexplained = [f"{r.name}: {r.status}, {_shortened(r.reason)}" for r in runs
                   if r.status in UNEXPLAINED_STATES and r.reason]
    unexplained += [f"{r.name}: no test accuracy, eval.json is unreadable: {_shortened(r.evaluation_problem)}"
                    for r in runs if r.evaluation_problem]  # a damaged file, not a run never evaluated
    unexplained += [f"{r.name}: model and dataset unknown, config.toml is unreadable: {_shortened(r.config_problem)}"
                    for r in runs if r.config_problem]  # its status.json still tells how the run went
    if unexplained:  # "unknown" alone says nothing of what to look at
        print("\n" + "\n".join(unexplained))
    return EXIT_OK


#: States a runs-list row cannot explain by itself: the reason follows the table.
UNEXPLAINED_STATES = ("unknown", "unreadable")
#: The longest reason shown after the runs list (a damaged settings file's message quotes the TOML error).
MAX_REASON_CHARS = 120


def _shortened(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= MAX_REASON_CHARS else line[:MAX_REASON_CHARS - 1] + "…"


# --------------------------------------------------------------------------- info
def cmd_info(args: argparse.Namespace) -> int:
    with _without_plugin_skip_notes():  # info lists every plugin, a failed one too: once, in its list
        info = collect_info()
    if args.json:
        emit_json(info)
    else:
        print(format_info(info))
    return EXIT_OK


def collect_info() -> dict[str, Any]:
    import platform

    import torch

    from . import __version__
    from .engine.data import dataset_availability
    from .engine.plugins import load_plugins
    from .engine.system import SystemMonitor

    cuda = torch.cuda.is_available()
    with SystemMonitor() as monitor:
        system = monitor.describe()
    reports = load_plugins()
    return {
        "iamnn_studio": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": {
            "available": cuda,
            "version": torch.version.cuda,
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        },
        "system": system,
        "datasets": {name: {"offline": ok, "reason": why} for name, (ok, why) in dataset_availability().items()},
        "plugins": [
            {"name": r.name, "ok": r.ok, "source": r.source, "error": r.error,
             "contributes": [list(c) for c in r.contributes], "seconds": round(r.seconds, 3)}
            for r in reports
        ],
    }


def format_info(info: dict[str, Any]) -> str:
    cuda, system = info["cuda"], info["system"]
    lines = [
        f"IamNN Studio {info['iamnn_studio']} (Python {info['python']}, torch {info['torch']})",
        "CUDA: " + (f"{cuda['version']}, " + ", ".join(cuda["devices"]) if cuda["available"] else "not available"),
        "GPU (NVML): " + (system.get("gpu_message") or "none")
        + (f" - {system['reason']}" if system.get("reason") and not system.get("gpu_available") else ""),
        f"CPU: {system.get('cpu_count')} logical cores, RAM {system.get('ram_total', 0) / 2**30:.1f} GiB",
        "datasets:",
    ]
    lines += [f"  {name:<16} {'ready' if d['offline'] else 'missing':<8} {d['reason']}" for name, d in info["datasets"].items()]
    plugins = info["plugins"]
    lines.append("plugins: none" if not plugins else "plugins:")
    from .engine.plugins import PluginReport

    for p in plugins:  # the same line as the GUI and the log show
        report = PluginReport(name=p["name"], source=p["source"], ok=p["ok"], error=p.get("error"),
                              contributes=tuple(tuple(c) for c in p["contributes"]), seconds=p.get("seconds", 0.0))
        lines.append("  " + report.line())
    return "\n".join(lines)


# --------------------------------------------------------------------------- helpers
def gui_parser() -> argparse.ArgumentParser:
    """The app's own parser (``gui.app.build_parser``, no Qt import), used strictly before the app opens:
    the app itself passes unknown options on to Qt, which ignores them."""
    from .gui.app import build_parser as app_parser

    return app_parser()


def _open_gui(argv: list[str]) -> int:
    try:
        gui_parser().parse_args(argv)
    except SystemExit as exc:  # help (exit 0), or usage and the error (exit 2): the app does not open
        return int(exc.code or 0)
    from .gui.app import main as gui_main

    return int(gui_main(argv) or 0)


def _show_engine_notes() -> None:
    """Warnings the engine logs (e.g. an export fallback) reach stderr as ``note:`` lines."""
    logger = logging.getLogger("iamnn_studio")
    if not any(getattr(h, "_iamnn_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("note: %(message)s"))
        handler.setLevel(logging.WARNING)
        handler._iamnn_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


@contextlib.contextmanager
def _without_plugin_skip_notes() -> Iterator[None]:
    """Meanwhile the ``note:`` lines leave out the plugins skipped (see ``plugins.SKIPPED_RECORD``)."""
    from .engine.plugins import SKIPPED_RECORD

    def keep(record: logging.LogRecord) -> bool:
        return not getattr(record, SKIPPED_RECORD, False)

    handlers = [h for h in logging.getLogger("iamnn_studio").handlers if getattr(h, "_iamnn_cli", False)]
    for handler in handlers:
        handler.addFilter(keep)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(keep)


def emit_json(value: Any) -> None:
    """Print ``value`` as JSON on the real stdout: while a --json command runs, everything else that
    prints (a plugin's loader, a dataset reader) goes to stderr, so stdout stays parseable."""
    stream = _json_stdout or sys.stdout
    stream.write(to_json(value) + "\n")
    stream.flush()


_json_stdout = None  # set while a --json command runs


def to_json(value: Any) -> str:
    """Strict JSON (no NaN/Infinity, which most parsers reject): non-finite numbers become null."""
    return json.dumps(_finite(value), indent=2, allow_nan=False, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, KeyError) and text.startswith("'"):
        text = text.strip("'")
    return text.splitlines()[0] if text else type(exc).__name__


def format_macs(value: float | int | None) -> str:
    from .numbers import si

    text = si(value)
    return "n/a" if text is None else text


def _count(n: Any, noun: str) -> str:
    """``1 step``, ``2 steps``: the noun agrees with the number."""
    return f"{n} {noun}" if n == 1 and not isinstance(n, bool) else f"{n} {noun}s"


def _percent(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}%}"


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _iterations(values: list[float] | None) -> str:
    return "n/a" if not values else " ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":  # python -m iamnn_studio.cli, as python -m iamnn_studio
    raise SystemExit(main())
