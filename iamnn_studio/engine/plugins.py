"""Plugin discovery: code outside the engine that adds processing blocks, datasets or exporters.

A plugin is anything that ends in a ``register(api)`` call. It is found in three places, in order:

1. the repository's top-level ``plugins/`` folder (a checkout only; a wheel has none);
2. the user's plugin folders: ``$IAMNN_STUDIO_PLUGINS`` (``os.pathsep``-separated) or, when it
   is unset, ``~/.config/iamnn-studio/plugins``; then any ``extra_dirs`` the caller names;
3. entry points in the group ``iamnn_studio.plugins`` of installed distributions (napari/npe2
   style), each naming a module with ``register(api)`` or the ``register`` callable itself.

A folder plugin is a ``.py`` file or a package directory, imported under a private module name.
``api`` (a :class:`PluginAPI`) exposes the registries a plugin may extend. What a plugin
registers is staged and only reaches the real registries when its ``register`` returns, so a
plugin that fails half-way leaves nothing behind. A broken plugin never stops the app: it is
logged and reported in one line (:func:`plugin_reports`, shown by ``iamnn-studio info`` and the GUI).
The user's Ctrl-C while plugins load is no plugin's failure: it stops the loading (KeyboardInterrupt).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import itertools
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator

import iamnn_studio

from .registry import Registry

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "iamnn_studio.plugins"
PLUGINS_ENV = "IAMNN_STUDIO_PLUGINS"
USER_PLUGIN_DIR = Path("~/.config/iamnn-studio/plugins")

#: Where each extensible registry lives. Imported only when a plugin touches it, so a plugin
#: that adds a block does not pull in torchvision's datasets or ONNX.
REGISTRY_HOMES: dict[str, tuple[str, str]] = {
    "blocks": ("iamnn_studio.engine.layers", "BLOCKS"),
    "datasets": ("iamnn_studio.engine.data", "DATASETS"),
    "exporters": ("iamnn_studio.engine.export", "EXPORTERS"),
}

_MAX_ERROR_CHARS = 300
#: Set on the log record of a skipped (or slow) plugin: the same news as its ``PluginReport``'s line.
SKIPPED_RECORD = "iamnn_plugin_skipped"
#: A plugin that takes longer to load is named with its time: every command, and the app's start, wait for it.
SLOW_LOAD_SECONDS = 2.0


@dataclass(frozen=True)
class PluginReport:
    """What happened to one plugin. ``contributes`` lists ``(registry, name)`` pairs it added."""

    name: str
    source: str  # a file or folder path, or "entry point <value> (<distribution>)"
    ok: bool
    error: str | None = None  # one human line when ``ok`` is False
    contributes: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0  # how long importing and registering it took

    @property
    def slow(self) -> bool:
        return self.seconds >= SLOW_LOAD_SECONDS

    def line(self) -> str:
        """One line for ``iamnn-studio info``, the GUI and logs."""
        took = f", took {self.seconds:.1f} s to load" if self.slow else ""
        if not self.ok:
            return f"{self.name}: FAILED{took}, {self.error} [{self.source}]"
        added = ", ".join(f"{registry[:-1]} {name!r}" for registry, name in self.contributes)
        return f"{self.name}: ok{took}, adds {added or 'nothing'} [{self.source}]"


# --------------------------------------------------------------------------- the plugin's API
#: ``register(name)`` without an item: the decorator form (None is an item, and a wrong one).
_AS_DECORATOR = object()


class StagedRegistry:
    """What a plugin sees as ``api.blocks`` and the like: reads see the real registry plus this
    plugin's additions; additions wait here until the plugin's ``register`` has returned."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.staged: dict[str, Any] = {}
        self._target: Registry | None = None

    @property
    def target(self) -> Registry:
        if self._target is None:
            module_name, attribute = REGISTRY_HOMES[self.key]
            self._target = getattr(importlib.import_module(module_name), attribute)
        return self._target

    @property
    def kind(self) -> str:
        return self.target.kind

    def register(self, name: str, item: Any = _AS_DECORATOR):
        """Add ``item`` under ``name``; works as a call or, without ``item``, as a decorator.

        Plugins cannot replace an existing entry: a name clash fails the plugin.
        """

        def add(obj: Any) -> Any:
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"{self.key}: a name must be a non-empty string, got {name!r}")
            if name in self.staged or name in self.target:
                raise ValueError(f"{self.target.kind} {name!r} is already registered {self._owner(name)}: pick "
                                 "another name")
            _check_entry(self.key, name, obj)
            self.staged[name] = obj
            return obj

        return add if item is _AS_DECORATOR else add(item)  # register(name, None) is checked, not a decorator

    def _owner(self, name: str) -> str:
        """Who registered ``name``: a stale copy of a plugin in another folder clashes with itself, so its
        file is named too."""
        if name in self.staged:
            return "by this plugin"
        owner = next((report for report in _loaded.values() if (self.key, name) in report.contributes), None)
        return f"by plugin {owner.name} [{owner.source}]" if owner is not None else "(a built-in one)"

    def get(self, name: str) -> Any:
        return self.staged[name] if name in self.staged else self.target.get(name)

    def names(self) -> list[str]:
        return [*self.target.names(), *self.staged]

    def __contains__(self, name: object) -> bool:
        return name in self.staged or name in self.target

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _check_entry(key: str, name: str, obj: Any) -> None:
    """Catch the obvious mistakes at load time rather than when the user picks the entry."""
    if key == "datasets":
        if isinstance(obj, type):  # its methods are there, but load(cfg, seed=) would miss `self`
            raise TypeError(f"dataset {name!r} is a class: register an instance: {obj.__name__}()")
        missing = [m for m in ("load", "available_offline") if not callable(getattr(obj, m, None))]
        if missing:
            raise TypeError(f"dataset {name!r} is not a dataset provider (no {', '.join(missing)})")
    elif key == "exporters":
        if not callable(getattr(obj, "export", None)):
            raise TypeError(f"exporter {name!r} needs an export(checkpoint, path, *, batch_size) method")
    elif not callable(obj):
        raise TypeError(f"block {name!r} must be callable, got {type(obj).__name__}")
    else:
        _check_block(name, obj)


#: What a block is tried with at registration: the first block of the default model (width 16), on 8x8 maps.
_TRIAL_BLOCK = {"in_channels": 16, "channels": 64, "width": 16, "iterations": 2}
_TRIAL_SIZE = 8
_BLOCK_DOCS = "see docs/plugins.md"


def _check_block(name: str, factory: Callable[..., Any]) -> None:
    """Refuse a block that definitely breaks what the engine calls on it; a block that would only fail later,
    in the middle of a training run.

    What is read without running the plugin's code is always checked: ``factory`` takes ``(in_channels,
    channels, width, iterations)``; a class is an ``nn.Module`` with its own ``forward``, a ``macs`` method, and
    ``prepare`` wherever ``step`` is offered. Then the block is tried: built and ``macs(8, 8)`` on the meta device
    (no memory), ``forward(x, iteration)`` on the CPU with its weights filled in where they take at most
    ``CPU_TRIAL_BYTES`` (else on the meta device too). Whatever of that cannot run there (a statistic
    of the initial weights, ``.item()``, ``.numpy()``, a layer that does not fit the trial's sizes) is not tried,
    at debug level, and the block is accepted: only a result that is definitely wrong refuses it (a ``macs``
    that is not a whole number >= 0, a ``forward`` of the wrong shape or dtype)."""
    import torch
    from torch import nn

    in_channels, channels, width, iterations = _TRIAL_BLOCK.values()
    maker = getattr(factory, "__name__", type(factory).__name__)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read (a builtin, some C extension): only trying tells
        signature = None
    if signature is not None:
        try:
            signature.bind(in_channels, channels, width, iterations)
        except TypeError as exc:
            raise TypeError(f"block {name!r} ({maker}) cannot be called as factory(in_channels, channels, width, "
                            f"iterations): {exc}; {_BLOCK_DOCS}") from None

    def broken(kind: str, what: str) -> TypeError:
        return TypeError(f"block {name!r} ({kind}) {what}; {_BLOCK_DOCS}")

    def check_kind(kind: str, cls: type, obj: Any) -> None:
        if not issubclass(cls, nn.Module):
            raise broken(kind, "is not a torch.nn.Module: factory(in_channels, channels, width, iterations) must "
                               "return one, so that its weights are trained and saved")
        missing = []
        if getattr(cls, "forward", None) is nn.Module.forward and "forward" not in getattr(obj, "__dict__", {}):
            missing.append("no forward(x, iteration) method")  # nn.Module's own raises NotImplementedError
        if not callable(getattr(obj, "macs", None)):
            missing.append("no macs(height, width) method (the engine counts each iteration's multiply-accumulates)")
        if callable(getattr(obj, "step", None)) and not callable(getattr(obj, "prepare", None)):
            missing.append("step() without prepare(x0) (the engine calls both, or forward alone)")
        if missing:
            raise broken(kind, "has " + " and ".join(missing))

    def not_tried(what: str, exc: BaseException) -> None:
        logger.debug("block %r: %s not tried (%s: %s); accepted as it is",
                     name, what, type(exc).__name__, " ".join(str(exc).split()))

    if isinstance(factory, type):  # a class: its contract is read without building it
        check_kind(factory.__name__, factory, factory)
    call = f"factory({in_channels}, {channels}, {width}, {iterations})"
    try:
        with torch.device("meta"):
            block = factory(in_channels, channels, width, iterations)
    except Exception as exc:  # noqa: BLE001 - code that needs real weights, or other sizes: it may work for real
        not_tried(call, exc)
        return
    kind = type(block).__name__
    check_kind(kind, type(block), block)
    size = _TRIAL_SIZE
    try:
        macs = block.macs(size, size)
    except Exception as exc:  # noqa: BLE001
        not_tried(f"macs({size}, {size})", exc)
    else:
        if not (isinstance(macs, torch.Tensor) and macs.device.type == "meta") and _macs_count(macs) is None:
            raise broken(kind, f"macs({size}, {size}) returned {macs!r}, not a whole number >= 0")
    shape, want = (2, in_channels + channels, size, size), (2, channels, size, size)

    def wrong_forward(trial: Any, x: Any) -> str | None:
        """What is definitely wrong with ``trial``'s forward on ``x``; None when right or not tried."""
        for iteration in range(iterations):
            try:
                out = trial(x, iteration)
            except Exception as exc:  # noqa: BLE001 - data-dependent code (.item(), .numpy(), torch.unique), kernels
                not_tried(f"forward(x, {iteration}) for x of shape {tuple(x.shape)}", exc)
                return None
            if not isinstance(out, torch.Tensor):
                return f"forward returned {type(out).__name__}, not a tensor of shape {want}"
            if tuple(out.shape) != want:
                return (f"forward returned shape {tuple(out.shape)}, not {want}: the result must have `channels` "
                        "channels and the input's height and width")
            if out.dtype != x.dtype:  # a float64 result fails the next layer mid-run; an integer one never learns
                return (f"forward returned a tensor of {out.dtype}, not {x.dtype} (its input's): the result must "
                        "have the input's dtype")
        return None

    on_cpu = _on_the_cpu(block)
    if on_cpu is None:
        problem = wrong_forward(block, torch.empty(shape, device="meta"))
    else:
        # forward on the CPU at the trial's sizes (milliseconds): a meta forward's first call imported ~900 modules
        # of torch (3-4 s) at every command and every start of the app. The global RNG is left as it was (a
        # dropout must not change a seeded run's weights), and no gradients are kept.
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            problem = wrong_forward(on_cpu, torch.full(shape, _TRIAL_VALUE))
        if problem is not None:  # the trial's made-up values (a buffer's 0.01) may have decided a shape: ask meta
            try:
                with torch.device("meta"):
                    block = factory(in_channels, channels, width, iterations)
            except Exception as exc:  # noqa: BLE001
                not_tried(call, exc)
                return
            problem = wrong_forward(block, torch.empty(shape, device="meta"))
    if problem is not None:
        raise broken(kind, problem)


#: A block whose weights take at most this many bytes is tried on the CPU, filled with ``_TRIAL_VALUE`` (its own
#: initialisation ran on the meta device, without memory); a bigger one only on the meta device.
CPU_TRIAL_BYTES = 64 << 20
_TRIAL_VALUE = 0.01


def _on_the_cpu(block: Any) -> Any:
    """The meta-built ``block`` with its weights on the CPU, each ``_TRIAL_VALUE`` (integers 1); None where they
    would take more than ``CPU_TRIAL_BYTES`` or cannot be moved (it is then tried on the meta device)."""
    import torch

    try:
        tensors = list(itertools.chain(block.parameters(), block.buffers()))
        if not all(t.is_meta for t in tensors):  # weights the plugin made elsewhere (shared, pretrained): not ours
            return None
        if sum(t.numel() * t.element_size() for t in tensors) > CPU_TRIAL_BYTES:
            return None
        # not to_empty(): its empty_like of a meta tensor takes the same slow path as a meta forward
        block = block._apply(lambda t: torch.empty(tuple(t.shape), dtype=t.dtype, device="cpu"))
        with torch.no_grad():
            for tensor in itertools.chain(block.parameters(), block.buffers()):
                tensor.fill_(_TRIAL_VALUE if tensor.is_floating_point() or tensor.is_complex() else 1)
        return block
    except Exception:  # noqa: BLE001 - a module of odd tensors or its own to_empty: the meta device then
        return None


def _macs_count(value: Any) -> int | None:
    """``value`` as a count of multiply-accumulates, or None where it is none: an int, a float with a whole value
    (``h * w * c * 9 / 1``), numpy's or a 0-d tensor's, >= 0; never a bool."""
    import operator

    if isinstance(value, bool):
        return None
    try:
        count = operator.index(value)
    except TypeError:
        try:
            number = float(value)
        except (TypeError, ValueError, RuntimeError, OverflowError):
            return None
        if not number.is_integer() or number != value:
            return None
        count = int(number)
    return count if count >= 0 else None


class PluginAPI:
    """The object handed to ``register(api)``.

    Attributes:
        blocks: processing blocks, ``factory(in_channels, channels, width, iterations)``.
        datasets: dataset provider instances (``iamnn_studio.engine.data.DatasetProvider``).
        exporters: ``iamnn_studio.engine.export.Exporter(name, label, suffix, export)``.
        version: the IamNN Studio version, e.g. ``"0.1.0"``.
    """

    version: str = iamnn_studio.__version__

    def __init__(self) -> None:
        self._staged = {key: StagedRegistry(key) for key in REGISTRY_HOMES}

    @property
    def blocks(self) -> StagedRegistry:
        return self._staged["blocks"]

    @property
    def datasets(self) -> StagedRegistry:
        return self._staged["datasets"]

    @property
    def exporters(self) -> StagedRegistry:
        return self._staged["exporters"]

    def commit(self) -> tuple[tuple[str, str], ...]:
        """Move the staged entries into the real registries; returns what was added."""
        added = []
        for key, staged in self._staged.items():
            for name, obj in staged.staged.items():
                staged.target.register(name, obj)
                added.append((key, name))
        return tuple(added)


# --------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class _Candidate:
    name: str
    source: str
    resolve: Callable[[], Callable[[PluginAPI], Any]]  # imports the plugin, returns register(api)
    root: Path | None  # where its code lives, to point error messages at the plugin's own line


class MissingBlockError(ValueError):
    """A model names a processing block that no plugin loaded here provides: its plugin is not installed here (or
    did not load). The message is a settings check's; ``needs`` says what a checkpoint of such a model needs."""

    def __init__(self, block: str, known: Iterable[str]) -> None:
        self.block, self.known_blocks = block, tuple(known)
        self.known = ", ".join(self.known_blocks)
        super().__init__(f"block: unknown processing block {block!r} (known: {self.known})")

    def __reduce__(self):  # pickled with its arguments (an error may cross to another process)
        return type(self), (self.block, self.known_blocks)

    @property
    def needs(self) -> str:
        """"needs processing block 'x', from a plugin that is not installed here ...: put that plugin in FOLDER
        ...", to follow a checkpoint's name. Plugins load when a program starts (the app caches what it read), so
        it says to start again, not to try again; a plugin that is there but failed to load is named instead."""
        failed = [report for report in plugin_reports() if not report.ok]
        if failed:
            listed = "; ".join(f"{report.name} ({report.error})" for report in failed)
            return (f"needs processing block {self.block!r}, which no plugin loaded here provides (blocks here: "
                    f"{self.known}); plugins that failed to load: {listed}: `iamnn-studio info` says more")
        folders = " or ".join(str(folder) for folder in user_plugin_dirs()) or f"a folder named in ${PLUGINS_ENV}"
        return (f"needs processing block {self.block!r}, from a plugin that is not installed here (blocks here: "
                f"{self.known}): put that plugin in {folders} ({_BLOCK_DOCS}), then start the program again")


def repository_plugin_dir() -> Path | None:
    """``plugins/`` next to the package in a checkout.

    Guarded by ``pyproject.toml``: an installed package's parent is site-packages, where a
    ``plugins`` folder would belong to some other distribution.
    """
    root = Path(iamnn_studio.__file__).resolve().parents[1]
    folder = root / "plugins"
    return folder if folder.is_dir() and (root / "pyproject.toml").is_file() else None


def user_plugin_dirs() -> list[Path]:
    """``$IAMNN_STUDIO_PLUGINS`` folders, or the default user folder when the variable is unset."""
    value = os.environ.get(PLUGINS_ENV)
    if value is None:
        return [USER_PLUGIN_DIR.expanduser()]
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]


def _folder_candidates(folder: Path, *, named: bool) -> list[_Candidate]:
    """The plugins in ``folder``; a missing folder is only worth a warning if someone ``named`` it."""
    try:
        entries = sorted(folder.iterdir())
    except FileNotFoundError:
        if named:
            logger.warning("plugin folder %s does not exist", folder)
        return []
    except OSError as exc:
        logger.warning("plugin folder %s cannot be read: %s", folder, exc)
        return []
    found = []
    for path in entries:
        if path.name.startswith(("_", ".")):
            continue
        try:
            candidate = _entry_candidate(path)
        except OSError as exc:  # e.g. a lost+found/ nobody may read: that entry fails, the other plugins load
            name = path.stem if path.suffix == ".py" else path.name
            candidate = _Candidate(name, str(path), _raiser(exc), path)
        if candidate is not None:
            found.append(candidate)
    return found


def _entry_candidate(path: Path) -> _Candidate | None:
    """``path`` as a plugin (a ``.py`` file or a package directory), or None; raises what stat raises."""
    if path.is_file() and path.suffix == ".py":
        return _Candidate(path.stem, str(path), _file_loader(path, path), path)
    if path.is_dir() and (path / "__init__.py").is_file():
        return _Candidate(path.name, str(path), _file_loader(path / "__init__.py", path), path)
    return None


def _raiser(exc: BaseException) -> Callable[[], Callable[[PluginAPI], Any]]:
    """A loader that fails with ``exc``: a folder entry that could not be read is reported like any failed plugin."""
    def load() -> Callable[[PluginAPI], Any]:
        raise exc

    return load


def _private_module_name(path: Path) -> str:
    """Unique per file, so two folders may both hold a ``my_block.py``."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"iamnn_studio_plugin_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"


def _file_loader(init_file: Path, location: Path) -> Callable[[], Callable[[PluginAPI], Any]]:
    def load() -> Callable[[PluginAPI], Any]:
        module_name = _private_module_name(location)
        is_package = location.is_dir()
        spec = importlib.util.spec_from_file_location(
            module_name, init_file, submodule_search_locations=[str(location)] if is_package else None
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {init_file}")
        module = importlib.util.module_from_spec(spec)
        # Registered before running so dataclasses, pickling and relative imports find it.
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            _forget_module(module_name)
            raise
        return _register_function(module)

    return load


def _forget_module(module_name: str) -> None:
    for name in [n for n in sys.modules if n == module_name or n.startswith(module_name + ".")]:
        del sys.modules[name]


def _register_function(module: ModuleType) -> Callable[[PluginAPI], Any]:
    register = getattr(module, "register", None)
    if not callable(register):
        raise AttributeError(
            "no register(api) function: define one that adds to api.blocks, api.datasets or api.exporters"
        )
    return register


def _entry_point_candidates() -> list[_Candidate]:
    try:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception as exc:  # a damaged distribution's metadata must not stop the app
        logger.warning("plugin entry points cannot be listed: %s", exc)
        return []
    found = []
    for entry_point in sorted(entry_points, key=lambda e: e.name):
        distribution = getattr(entry_point.dist, "name", None) or "unknown distribution"
        source = f"entry point {entry_point.value} ({distribution})"
        found.append(_Candidate(entry_point.name, source, _entry_point_loader(entry_point), None))
    return found


def _entry_point_loader(entry_point: importlib.metadata.EntryPoint) -> Callable[[], Callable[[PluginAPI], Any]]:
    def load() -> Callable[[PluginAPI], Any]:
        target = entry_point.load()
        if isinstance(target, ModuleType):
            return _register_function(target)
        if not callable(target):
            raise TypeError(f"{entry_point.value} is neither a module nor a register(api) callable")
        return target

    return load


def _discover(extra_dirs: Iterable[str | os.PathLike] | None) -> list[_Candidate]:
    from_env = PLUGINS_ENV in os.environ
    folders = [(repository_plugin_dir(), False), *((d, from_env) for d in user_plugin_dirs())]
    folders += [(Path(d).expanduser(), True) for d in extra_dirs or ()]
    seen: set[Path] = set()
    candidates = []
    for folder, named in folders:
        if folder is None or folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        candidates += _folder_candidates(folder, named=named)
    return candidates + _entry_point_candidates()


# --------------------------------------------------------------------------- loading
def _one_line(exc: BaseException, root: Path | None) -> str:
    """``Type: message (at file.py:line)``, pointing at the plugin's own code when possible."""
    message = " ".join(str(exc).split()) or "(no message)"
    line = f"{type(exc).__name__}: {message}"
    found = _innermost_frame(exc, [(None, root)] if root is not None else [])
    if found is not None:
        line += f" (at {found[1]})"
    return line if len(line) <= _MAX_ERROR_CHARS else line[: _MAX_ERROR_CHARS - 3] + "..."


def _innermost_frame(exc: BaseException, roots: list[tuple[Any, Path]]) -> tuple[Any, str] | None:
    """(the tag of the root, "file.py:LINE") of the innermost frame of ``exc``'s traceback in the code under one of
    ``roots`` (tag, file or folder); None where none is."""
    resolved = [(tag, root.resolve()) for tag, root in roots]
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename).resolve()
        for tag, root in resolved:
            if path == root or root in path.parents:
                return tag, f"{path.name}:{frame.lineno}"
    return None


def _code_root(register: Callable[..., Any]) -> Path | None:
    """Where an entry point's code lives: its top-level package's folder, or its module's file where that is a
    lone module (its folder is site-packages, which holds torch too: every torch frame would be the plugin's)."""
    module = sys.modules.get(getattr(register, "__module__", "") or "")
    top = sys.modules.get(module.__name__.split(".")[0]) if module is not None else None
    try:
        path = Path(inspect.getfile(top if top is not None else register)).resolve()
    except (TypeError, OSError):
        return None
    return path.parent if path.name == "__init__.py" else path


def _load_one(candidate: _Candidate, ctrl_c: threading.Event) -> PluginReport:
    started = time.perf_counter()
    report = _register_one(candidate, ctrl_c)
    report = PluginReport(report.name, report.source, report.ok, report.error, report.contributes,
                          seconds=time.perf_counter() - started)
    if report.slow:  # else silent: a slow import (a big library) slowed every command without a word
        logger.warning("plugin %s took %.1f s to load (every command and the app's start wait for it) [%s]",
                       report.name, report.seconds, report.source, extra={SKIPPED_RECORD: True})
    return report


def _register_one(candidate: _Candidate, ctrl_c: threading.Event) -> PluginReport:
    root = candidate.root
    try:
        register = candidate.resolve()
        root = root or _code_root(register)
        if root is not None:
            _code_roots[candidate.source] = root
        api = PluginAPI()
        register(api)
        contributes = api.commit()
    except BaseException as exc:  # a plugin may raise anything (sys.exit, KeyboardInterrupt too): it must never
        # take the app down, and is skipped with the same one line as any other failure
        if isinstance(exc, KeyboardInterrupt) and ctrl_c.is_set():
            raise  # the user's Ctrl-C, not the plugin's doing
        error = _one_line(exc, root)
        # marked, so that a caller that lists the reports itself (``iamnn-studio info``) can leave this out
        logger.warning("plugin %s skipped: %s [%s]", candidate.name, error, candidate.source,
                       extra={SKIPPED_RECORD: True})
        logger.debug("plugin %s traceback", candidate.name, exc_info=True)
        return PluginReport(candidate.name, candidate.source, False, error)
    logger.info("plugin %s loaded from %s: %s", candidate.name, candidate.source, contributes)
    return PluginReport(candidate.name, candidate.source, True, None, contributes)


_lock = threading.RLock()
_loaded: dict[str, PluginReport] = {}  # by source, in load order
_code_roots: dict[str, Path] = {}  # by source: the plugin's file or folder, to find its frames in a traceback
_reports: list[PluginReport] = []
_done = False


def load_plugins(extra_dirs: Iterable[str | os.PathLike] | None = None, *, force: bool = False) -> list[PluginReport]:
    """Find and load every plugin once per process; returns one report per plugin.

    A later call returns the same reports without loading anything again, except that new
    plugins in ``extra_dirs`` are loaded. ``force=True`` unloads every plugin's entries and
    loads all of them afresh (e.g. after the user dropped a file into the plugin folder).
    """
    global _done, _reports
    with _lock:
        if _done and not force and not extra_dirs:
            return list(_reports)
        if force:
            unload_plugins()
        # A plugin that prints while it loads must not corrupt what the CLI writes on stdout (JSON).
        with contextlib.redirect_stdout(sys.stderr), _noting_ctrl_c() as ctrl_c:
            for candidate in _discover(extra_dirs):
                if candidate.source not in _loaded:
                    _loaded[candidate.source] = _load_one(candidate, ctrl_c)
                    if ctrl_c.is_set():  # a plugin swallowed the user's KeyboardInterrupt: the user still quits
                        raise KeyboardInterrupt
        _reports = list(_loaded.values())
        _done = True
        return list(_reports)


@contextlib.contextmanager
def _noting_ctrl_c() -> Iterator[threading.Event]:
    """An event set when the SIGINT handler raised KeyboardInterrupt during the block: a real Ctrl-C, which
    must quit, unlike a plugin that raises KeyboardInterrupt itself. The handler in place still decides (the
    CLI's first Ctrl-C during training only asks the run to stop); only the main thread receives signals."""
    ctrl_c = threading.Event()
    handler = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(handler):
        yield ctrl_c  # SIG_IGN or SIG_DFL: Ctrl-C raises nothing here
        return

    def noting(signum, frame):
        try:
            handler(signum, frame)
        except KeyboardInterrupt:
            ctrl_c.set()
            raise

    signal.signal(signal.SIGINT, noting)
    try:
        yield ctrl_c
    finally:
        signal.signal(signal.SIGINT, handler)


def plugin_at_fault(error: BaseException) -> str | None:
    """"plugin NAME (at file.py:LINE)" where ``error`` came from a loaded plugin's own code (its innermost frame
    there), for the one line a failure gets: a block that fails in use said only "RuntimeError: boom". None where no
    plugin's code is on the traceback."""
    with _lock:
        roots = [(report.name, _code_roots[source]) for source, report in _loaded.items()
                 if report.ok and source in _code_roots]
    found = _innermost_frame(error, roots)
    return None if found is None else f"plugin {found[0]} (at {found[1]})"


def plugin_reports() -> list[PluginReport]:
    """The reports of the last :func:`load_plugins` (empty before the first)."""
    with _lock:
        return list(_reports)


def unload_plugins() -> None:
    """Remove every entry plugins added and forget them; the next ``load_plugins`` starts over."""
    global _done, _reports
    with _lock:
        for report in _loaded.values():
            for key, name in report.contributes:
                module_name, attribute = REGISTRY_HOMES[key]
                registry: Registry = getattr(importlib.import_module(module_name), attribute)
                if name in registry:
                    registry.unregister(name)
        _loaded.clear()
        _code_roots.clear()
        _reports = []
        _done = False
