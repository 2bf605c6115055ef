"""Export a checkpoint to ONNX or TorchScript (registry ``EXPORTERS``; plugins add more formats).

Both formats carry the *masked fixed graph* (``model(x, compact=False)``): every iteration of
every block is computed for every image and the halting decisions are applied as masks inside
the graph. The answers (logits, iterations, MACs) equal the adaptive model's, but the exported
model saves no compute; ``docs/export.md`` explains why and what the alternative would cost.

The exported graph takes ``images``: float32 [batch, C, H, W] with values in [0, 1] (the
checkpoint's normalisation is inside the graph) and returns ``logits`` [batch, classes],
``iterations`` [batch, 4] (int64) and ``macs`` [batch] (int64: what the adaptive model would
spend). Class names, normalisation and halting settings travel as metadata.

The halting is baked into the graph: ``export_checkpoint(..., mode=, threshold=)`` exports another
mode or threshold than the checkpoint's own (what the user chose on the Use tab), and the metadata
says which (``halting``, and ``model_config``). A model trained with ``--no-calibrate`` exports at
full depth (mode ``max``) unless told otherwise, as evaluate and predict run it.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .. import __version__
from .checkpoint import Checkpoint, load_checkpoint
from .config import fixed_setting
from .io import give_usual_permissions, temp_prefix
from .runs import output_file
from .registry import Registry

log = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "iterations", "macs")


class ExportError(ValueError):
    """An export cannot be done; the message is one sentence for the user."""


class PluginExporterError(ExportError):
    """A plugin's exporter raised: the message names the exporter and its plugin; ``__cause__`` is what it raised."""


@dataclass(frozen=True)
class Exporter:
    """One entry of the export menu: a callable ``(checkpoint, path, *, batch_size) -> None`` with a label.

    Plugins register either an ``Exporter`` or a bare function of the same signature.
    """

    name: str
    label: str
    suffix: str
    export: Callable[..., None]

    def __call__(self, checkpoint: Checkpoint, path: Path, *, batch_size: int = 1) -> None:
        self.export(checkpoint, path, batch_size=batch_size)


EXPORTERS: Registry[Exporter] = Registry("exporter")


class FixedGraph(nn.Module):
    """What gets exported: normalisation, then the masked fixed-depth forward, as three plain tensors."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__()
        self.model = checkpoint.model
        channels = len(checkpoint.mean)
        self.register_buffer("mean", torch.tensor(checkpoint.mean, dtype=torch.float32).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(checkpoint.std, dtype=torch.float32).view(1, channels, 1, 1))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        output = self.model((images - self.mean) / self.std, compact=False)
        return output.logits, output.iterations, output.macs


#: Suffixes a format's files also carry besides its exporter's own (TorchScript's is .pt).
OTHER_SUFFIXES = {"torchscript": (".ts", ".torchscript", ".ptl")}


def suffix_mismatch(fmt: str, path: str | Path) -> str | None:
    """A note when ``path`` does not end in a suffix of ``fmt``'s files (``model.onnx.txt`` or ``model``
    for ONNX, ``model.onnx`` for TorchScript), else None. The export goes ahead: only a warning.

    Pure: reads the registry as it is (the caller loads plugins first); an unknown format, or an
    exporter without a suffix, gets None.
    """
    entry = EXPORTERS.get(fmt) if fmt in EXPORTERS else None
    usual = getattr(entry, "suffix", "") or ""
    if not usual:
        return None
    name = Path(path).name.lower()
    if any(name.endswith(s.lower()) for s in (usual, *OTHER_SUFFIXES.get(fmt, ()))):
        return None
    kind = (getattr(entry, "label", "") or fmt).split(" (", 1)[0]
    actual = Path(path).suffix
    if actual:
        return f"{path} ends in {actual}, not {usual}, the usual suffix of {kind} files: it is written as {kind} all the same"
    return f"{path} has no suffix ({kind} files usually end in {usual}): it is written as {kind} all the same"


#: The largest example batch an export traces: the batch axis stays dynamic where a format allows,
#: so a larger example only costs memory.
MAX_EXAMPLE_BATCH = 4096


def export_checkpoint(ckpt_path: str | Path, fmt: str, out_path: str | Path, *, batch_size: int = 1,
                      mode: str | None = None, threshold: float | None = None,
                      loaded: Checkpoint | None = None) -> Path:
    """Export the checkpoint at ``ckpt_path`` as ``fmt`` ("onnx", "torchscript", or a plugin's) to ``out_path``.

    ``batch_size`` is the example batch traced; formats that support it keep the batch axis dynamic.
    ``mode`` ("adaptive", "fixed:N", "max") and ``threshold`` (adaptive only) replace the checkpoint's
    own halting settings in the exported graph and its metadata; None keeps the checkpoint's (``max`` for a
    head left unfitted on purpose: ``own_mode``).
    ``loaded``: the checkpoint at ``ckpt_path`` as the caller already loaded it (not read again; the
    halting override then changes it). The file appears atomically: a failed export leaves nothing behind.
    """
    if fmt not in EXPORTERS:
        from .plugins import load_plugins  # a plugin may provide the format

        load_plugins()
    exporter = EXPORTERS.get(fmt)  # ValueError naming the known formats
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_EXAMPLE_BATCH:
        raise ExportError(f"batch size must be an integer in [1, {MAX_EXAMPLE_BATCH}], got {batch_size!r}")
    out_path = Path(out_path)
    with _made_folders_removed_on_failure(out_path.parent):  # a refused or failed export leaves none
        _check_writable(out_path)
        if _same_file(out_path, Path(ckpt_path)):
            raise ExportError(f"cannot write {out_path}: it is the checkpoint being exported; "
                              "choose another file name")
        try:
            out_path = output_file(out_path)
        except ValueError as exc:
            raise ExportError(f"cannot write {out_path}: {exc}") from None
        checkpoint = load_checkpoint(ckpt_path) if loaded is None else loaded
        # before the override: a threshold fits no head, yet the head counts as fitted once one is set
        caveats = export_caveats(checkpoint, mode=mode)
        _check_threshold_has_halting(checkpoint, mode, threshold)
        apply_halting(checkpoint, mode=own_mode(checkpoint, mode), threshold=threshold)
        _check_free_space(out_path, Path(ckpt_path))
        for caveat in caveats:
            log.warning("%s", caveat)  # the CLI prints warnings as notes; the GUI asks export_caveats itself
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(out_path), suffix=".tmp", dir=out_path.parent)
        except OSError as exc:
            raise ExportError(f"cannot write {out_path}: {exc.strerror or exc}") from None
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _run_exporter(fmt, exporter, checkpoint, tmp, out_path, batch_size)
            _check_written(fmt, exporter, tmp)
            give_usual_permissions(tmp)
            os.replace(tmp, out_path)
        except OSError as exc:
            raise ExportError(f"cannot write {out_path}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
            _remove_strays(tmp)
        return out_path


@contextlib.contextmanager
def _made_folders_removed_on_failure(folder: Path):
    """The folders the export makes for its output (``_check_writable``) are removed again, if still empty, when
    it fails or is refused: a bad ``--threshold`` left an empty ``new/sub`` behind."""
    try:
        made = None if folder.exists() else folder
        while made is not None and not made.parent.exists():
            made = made.parent  # the outermost missing one
    except (OSError, ValueError):  # a name the system refuses: the export's own checks say so
        made = None
    try:
        yield
    except BaseException:
        if made is not None:
            with contextlib.suppress(OSError):  # one no longer empty (or never made) stays
                for path in (folder, *folder.parents):
                    path.rmdir()
                    if path == made:
                        break
        raise


def _run_exporter(fmt: str, exporter: Any, checkpoint: Checkpoint, tmp: Path, out_path: Path,
                  batch_size: int) -> None:
    """Call the exporter on the temporary file; a plugin's failure, whatever it raises (SystemExit too), names
    the exporter and its plugin, while a failure to write the output keeps the output's own message."""
    try:
        exporter(checkpoint, tmp, batch_size=batch_size)
    except ExportError:  # the exporter's own sentence for the user
        raise
    except KeyboardInterrupt:  # the user's Ctrl-C
        raise
    except OSError as exc:
        if fmt in BUILT_IN_FORMATS or _is_output_error(exc, tmp):
            raise ExportError(f"cannot write {out_path}: {exc.strerror or exc}") from None
        raise _plugin_failed(fmt, exporter, exc) from exc
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, MemoryError) or "alloc" in str(exc).lower():
            raise ExportError(f"not enough memory to trace an example batch of {batch_size} images; use a smaller "
                              "batch size (formats with a dynamic batch axis take any size later)") from None
        if fmt in BUILT_IN_FORMATS:
            raise  # the studio's own bug
        raise _plugin_failed(fmt, exporter, exc) from exc
    except BaseException as exc:  # a plugin's sys.exit() is its failure, not the command's exit status
        if fmt in BUILT_IN_FORMATS:
            raise
        raise _plugin_failed(fmt, exporter, exc) from exc


#: Errors of writing the output itself, whoever writes it: no exporter could do better there.
_OUTPUT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def _is_output_error(exc: OSError, tmp: Path) -> bool:
    """Whether ``exc`` is about the output (the temporary file, its folder, a full disk), not the plugin's own
    files (a settings file it reads, a tool it runs)."""
    if exc.errno in _OUTPUT_ERRNOS:
        return True
    named = [name for name in (exc.filename, exc.filename2) if isinstance(name, (str, bytes, os.PathLike))]
    return any(Path(os.fsdecode(name)).absolute() in (tmp.absolute(), tmp.parent.absolute()) for name in named)


def _check_written(fmt: str, exporter: Any, tmp: Path) -> None:
    """An exporter that returns without writing its file (or writes another one) fails, not an empty export."""
    try:
        written = tmp.is_file() and tmp.stat().st_size > 0
    except OSError:
        written = False
    if written:
        return
    what = "wrote nothing to the file it was given"
    if fmt in BUILT_IN_FORMATS:
        raise ExportError(f"the {fmt} exporter {what}")
    raise _plugin_failed(fmt, exporter, None, what)


def _remove_strays(tmp: Path) -> None:
    """Remove the files an exporter wrote beside the temporary file under its name (``tmp`` + ".tmp2" and the
    like): the name is unique to this export, so they are its leftovers, useless once ``tmp`` is renamed."""
    with contextlib.suppress(OSError):
        for stray in tmp.parent.glob(glob_escape(tmp.name) + "?*"):
            if stray.is_file() or stray.is_symlink():
                stray.unlink(missing_ok=True)


#: The formats the studio itself exports; any other exporter comes from a plugin.
BUILT_IN_FORMATS = ("onnx", "torchscript")


def _plugin_failed(fmt: str, exporter: Any, exc: BaseException | None, what: str = "") -> PluginExporterError:
    """A plugin exporter's failure, naming the exporter and the plugin that registered it (its file): what it
    raised, ``exc``, or else ``what`` it did wrong."""
    from .plugins import plugin_reports

    plugin = next((r for r in plugin_reports() if ("exporters", fmt) in r.contributes), None)
    whose = f"of plugin {plugin.name}" if plugin is not None else "of a plugin"
    if exc is not None:
        message = " ".join(str(exc).split()) or "(no message)"
        if len(message) > 300:
            message = message[:297] + "..."
        log.debug("exporter %s failed", fmt, exc_info=exc)
        what = f"failed: {type(exc).__name__}: {message}"
    return PluginExporterError(f"the {fmt} exporter {whose} {what}"
                               + (f" [{plugin.source}]" if plugin is not None else ""))


def _check_writable(out_path: Path) -> None:
    if out_path.is_dir():
        raise ExportError(f"cannot write {out_path}: it is a folder; give a file name")
    for parent in out_path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ExportError(f"cannot write {out_path}: {parent} is a file, not a folder")
            break
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_path.parent):
            pass
    except OSError as exc:
        raise ExportError(f"cannot write {out_path}: {exc.strerror or exc}") from None


#: The note on a default export of a model trained with --no-calibrate (evaluate's ``full_depth_note``, and then).
LEFT_UNFITTED_NOTE = ("trained with --no-calibrate (calibrate_halting = false): its halting head was never fitted, "
                      "so the model runs at full depth, and so does the export (mode max), as evaluate and "
                      "predict run it")


def own_mode(checkpoint: Checkpoint, mode: str | None = None) -> str | None:
    """The mode an export carries: ``mode`` where the user chose one, else ``max`` for an adaptive model whose
    run left its halting head unfitted on purpose (as ``Predictor`` and ``evaluate`` run it), else None: the
    checkpoint's own."""
    if mode is None and checkpoint.halting_left_unfitted and checkpoint.model_config.mode == "adaptive":
        return "max"
    return mode


def _check_threshold_has_halting(checkpoint: Checkpoint, mode: str | None, threshold: float | None) -> None:
    """A threshold alone on a model that runs at full depth (``--no-calibrate``) is refused as ``predict``
    refuses it, with what to do: the mode adaptive is a choice of its own there."""
    if threshold is not None and mode is None and own_mode(checkpoint) == "max":
        raise ExportError("threshold: the halting threshold applies to the mode adaptive, not max, the mode of a "
                          "model trained with --no-calibrate (its halting head was never fitted); choose the mode "
                          "adaptive as well to export its halting all the same")


def export_caveats(checkpoint: Checkpoint, *, mode: str | None = None) -> list[str]:
    """What the user should know about exporting this checkpoint as it is (or in ``mode``), in sentences."""
    config = checkpoint.model_config
    chosen = own_mode(checkpoint, mode)
    if chosen == "max" and mode is None:
        return [LEFT_UNFITTED_NOTE]
    if (chosen or config.mode) != "adaptive" or not config.halting_uncalibrated:
        return []
    if checkpoint.halting_left_unfitted:  # the adaptive halting chosen all the same: no resume fits its head
        return ["this model's halting head was never fitted (its run was trained with --no-calibrate), so the "
                "export's adaptive iterations mean little; export it in mode max or fixed:N instead, or train "
                "a run that calibrates its halting"]
    return ["this model's halting head was never calibrated (its run stopped before calibration), so the "
            "export's adaptive iterations mean little; resume the run to calibrate it, then export"]


def apply_halting(checkpoint: Checkpoint, *, mode: str | None = None, threshold: float | None = None) -> None:
    """Set the mode and threshold the export carries instead of the checkpoint's own (None: keep it).

    Raises ``ExportError`` for a setting the model cannot take, and leaves the model as it was then.
    """
    if mode is None and threshold is None:
        return
    config = checkpoint.model_config
    if config.architecture != "iamnn":
        raise ExportError("this checkpoint is a ResNet baseline: it has no iterations to choose or halting, "
                          "so it takes no mode or threshold")
    model = checkpoint.model
    previous = (config.mode, config.threshold)
    try:
        if mode is not None:
            model.set_mode(mode)
        if threshold is not None:
            if config.mode != "adaptive":
                raise ValueError(f"threshold: the halting threshold applies to the mode adaptive, not {config.mode}")
            model.set_threshold(threshold)
    except ValueError as exc:  # set_mode and set_threshold store before they validate: put the old back
        config.mode, config.threshold = previous
        raise ExportError(str(exc)) from None


def describe_halting(config: Any) -> str:
    """The halting an exported graph applies, in words: "adaptive, threshold 0.930", and for the fixed
    modes the iterations each block really runs, a block's cap holding N back: "fixed:2 (iterations
    1-2-2-2)" on caps 1-2-3-2 (``fixed:99`` there runs 1-2-3-2), "max (iterations 1-2-3-2)"."""
    if config.architecture != "iamnn":
        return "none (ResNet baseline: every unit of every block)"
    if config.mode == "adaptive":
        return f"adaptive, threshold {config.halting_threshold:.3f}"
    setting = fixed_setting(config.mode, config.caps)
    return f"{config.mode} (iterations {'-'.join(map(str, setting))})" if setting else config.mode


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


#: An export holds the checkpoint's weights (once, in float32) plus a graph of a few hundred kB.
EXPORT_SIZE_MARGIN = 2**20


def _check_free_space(out_path: Path, ckpt_path: Path) -> None:
    """Refuse an export that cannot fit: some exporters' C++ writers abort the whole process (the
    app included) when the disk fills up in the middle of a file, instead of raising."""
    try:
        needed = ckpt_path.stat().st_size + EXPORT_SIZE_MARGIN
        free = shutil.disk_usage(out_path.parent).free
    except OSError:
        return  # cannot tell: the write itself will say
    if free < needed:
        raise ExportError(f"cannot write {out_path}: about {_size(needed)} is needed and {_size(free)} is free there")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.0f} kB"


def metadata(checkpoint: Checkpoint) -> dict[str, str]:
    """What a consumer of the exported file needs to know, as strings (ONNX metadata, TorchScript extra file)."""
    config = checkpoint.model_config
    return {
        "producer": f"IamNN Studio {__version__}",
        "classes": json.dumps(checkpoint.classes),
        "input": f"{INPUT_NAME}: float32 [batch, {config.in_channels}, {config.image_size}, {config.image_size}] "
                 "in [0, 1]; normalisation is inside the graph",
        "outputs": "logits [batch, classes]; iterations [batch, 4] int64; macs [batch] int64 "
                   "(the adaptive model's MACs; this graph computes every iteration)",
        "mean": json.dumps(list(checkpoint.mean)),
        "std": json.dumps(list(checkpoint.std)),
        "halting": describe_halting(config),
        "model_config": json.dumps(config.to_dict()),
    }


def prepare_graph(checkpoint: Checkpoint, batch_size: int) -> tuple[FixedGraph, Tensor]:
    """The module to export (CPU, eval mode) and an example batch of ``batch_size`` images."""
    graph = FixedGraph(checkpoint).cpu().eval()
    config = checkpoint.model_config
    example = torch.rand(batch_size, config.in_channels, config.image_size, config.image_size)
    with torch.no_grad():
        graph(example)  # eager warm-up: fills lazy caches (the baseline's MAC count) outside the trace
    return graph, example


# --------------------------------------------------------------------------- ONNX
def export_onnx(checkpoint: Checkpoint, path: Path, *, batch_size: int = 1) -> None:
    """``torch.onnx.export(dynamo=True)`` with a dynamic batch axis, or a fixed batch if that fails."""
    import onnx

    # torch.export specialises a batch of 1, so trace at least 2 images for a dynamic axis.
    graph, example = prepare_graph(checkpoint, max(batch_size, 2))
    batch = "dynamic"
    try:
        _onnx_export(graph, example, path, dynamic=True)
    except OSError:  # the file could not be written: a fixed batch would not help
        raise
    except Exception as exc:  # noqa: BLE001 - any exporter failure: fall back, say why
        log.warning("ONNX export with a dynamic batch failed (%s); exported with a fixed batch of %d",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, batch_size)
        graph, example = prepare_graph(checkpoint, batch_size)
        try:
            _onnx_export(graph, example, path, dynamic=False)
        except Exception as exc2:  # noqa: BLE001
            raise ExportError(f"ONNX export failed: {str(exc2).strip().splitlines()[0]}") from None
        batch = f"fixed:{batch_size}"
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {**metadata(checkpoint), "batch": batch})
    onnx.save(model, str(path))


#: The loggers of the ONNX exporter and the libraries it drives (their notes, e.g. "Skipped
#: deduplication of initializer", are about the exporter's internals, not the user's model).
EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")
#: Warnings from these modules are the exporter's own chatter while it traces.
EXPORTER_WARNING_MODULES = r"(torch|onnx|onnxscript|onnx_ir)(\.|$)"


def _onnx_export(graph: nn.Module, example: Tensor, path: Path, *, dynamic: bool) -> None:
    dynamic_shapes = {"images": {0: torch.export.Dim("batch")}} if dynamic else None
    # verbose=False is what keeps stdout clean (for --json): the exporter then prints no progress lines.
    # sys.stdout is not redirected, since that would swallow every other thread's prints too (the app's).
    with _quiet_loggers(EXPORTER_LOGGERS), warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=EXPORTER_WARNING_MODULES)
        program = torch.onnx.export(
            graph, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            dynamic_shapes=dynamic_shapes, verbose=False,
        )
        program.save(str(path))


@contextlib.contextmanager
def _quiet_loggers(names: tuple[str, ...], level: int = logging.ERROR):
    """Raise these loggers (and their children that have no level of their own) to ``level`` meanwhile:
    only their records are dropped, not those of the rest of the process."""
    loggers = [logging.getLogger(name) for name in names]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(level, logger.level))
    try:
        yield
    finally:
        for logger, old in zip(loggers, previous):
            logger.setLevel(old)


# --------------------------------------------------------------------------- TorchScript
def export_torchscript(checkpoint: Checkpoint, path: Path, *, batch_size: int = 1) -> None:
    """``torch.jit.trace`` of the same fixed graph; metadata in the extra file ``iamnn_studio.json``.

    TorchScript is deprecated in favour of ``torch.export`` (.pt2); it is kept because C++
    (libtorch) and mobile runtimes still load it. Only its deprecation warnings are silenced, here.
    """
    graph, example = prepare_graph(checkpoint, batch_size)
    # In inference form: the saved parameters need no grad, so the outputs have none (``.numpy()`` works
    # without ``.detach()``); the checkpoint's own model gets its flags back once the file is in memory.
    with without_grad(graph), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*deprecated")
        # Unit MAC costs are Python numbers turned into tensors: constants in the trace, as intended.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, message=r"torch\.tensor results")
        # No check_trace: it traces the whole graph a second time on the same example and compares, which
        # cannot see a data-dependent branch (the same input takes the same one) and was 60 % of an export.
        traced = torch.jit.trace(graph, (example,), check_trace=False)
        extra = {"iamnn_studio.json": json.dumps({**metadata(checkpoint), "batch": "dynamic"})}
        # Into memory first: TorchScript's C++ writer aborts the process if the disk fills mid-file;
        # Python's own write raises OSError instead.
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files=extra)
        path.write_bytes(buffer.getvalue())


@contextlib.contextmanager
def without_grad(module: nn.Module):
    """No parameter of ``module`` requires grad meanwhile, and no autograd is recorded; restored after.
    An exporter traces and saves inside it, so the file's parameters (and outputs) need no grad."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


EXPORTERS.register("onnx", Exporter("onnx", "ONNX (onnxruntime and most runtimes)", ".onnx", export_onnx))
EXPORTERS.register("torchscript", Exporter("torchscript", "TorchScript (libtorch, deprecated)", ".pt", export_torchscript))


def read_torchscript_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata stored beside a TorchScript export (also a check that the file loads)."""
    extra = {"iamnn_studio.json": ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*deprecated")
        torch.jit.load(str(path), _extra_files=extra)
    return json.loads(extra["iamnn_studio.json"])
