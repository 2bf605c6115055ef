"""What a dataset provider is, the registry that lists them, and where downloaded data lives."""
from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

from ..registry import Registry

if TYPE_CHECKING:
    from ..config import DataConfig
    from .bundle import DatasetBundle

#: Environment variable that moves the download/cache folder (tests point it at a temp dir).
DATASETS_ENV = "IAMNN_STUDIO_DATASETS"
#: Seconds a download waits for the server on each connect or read (not for the whole file). torchvision
#: opens its URLs with no timeout, so a network that drops packets (a firewall, a dead proxy) hung forever.
DOWNLOAD_TIMEOUT_S = 30.0


def datasets_root() -> Path:
    """torchvision's root for downloads and decompressed copies: ``~/.cache/iamnn-studio/datasets``."""
    override = os.environ.get(DATASETS_ENV)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "iamnn-studio" / "datasets"


class InputShape(NamedTuple):
    """What a dataset feeds a model: image channels, the square side in pixels, the number of classes."""

    channels: int
    size: int
    classes: int


class DatasetProvider(ABC):
    """One entry of the dataset drop-down: knows where its files live and decodes them into a bundle.

    Plugins subclass this and register an instance from their ``register(api)``:
    ``api.datasets.register(name, provider)`` (docs/plugins.md).
    """

    name: str
    label: str  # shown in the GUI
    description: str
    default_augment: str = "crop-flip"  # digits override this: a mirrored 2 is not a 2
    options: Mapping[str, Any] = {}  # accepted ``DataConfig.options`` and their defaults
    downloadable: bool = True  # False where there is nothing to download (your own images, generated data)
    #: The shape every copy of this dataset has (MNIST: 1x28x28, 10 classes), so a model can be sized
    #: before anything is decoded; None where only loading can tell (an image folder).
    shape: InputShape | None = None

    def input_shape(self, cfg: "DataConfig | None" = None) -> InputShape | None:
        """The shape ``load`` will give for ``cfg``, from metadata alone (cheap: no file is read)."""
        return self.shape

    @abstractmethod
    def available_offline(self, root: str | None) -> tuple[bool, str]:
        """Whether ``load`` would work without downloading, and a sentence saying why."""

    @abstractmethod
    def load(self, cfg: "DataConfig", *, seed: int) -> "DatasetBundle":
        """Decode every split into memory; raise ``ValueError`` with a human message on user errors."""

    def find_or_download(self, cfg, find):
        """``find(root)``'s result; when nothing is there and downloads are allowed, download first.
        Raises the provider's "not found" sentence (``_not_found(root)``) when it stays missing."""
        found = find(cfg.root)
        if found is None and cfg.download:
            with download_timeout():
                self._download(Path(cfg.root).expanduser() if cfg.root else datasets_root())
            found = find(cfg.root)
        if found is None:
            raise ValueError(self._not_found(cfg.root))
        return found


DATASETS: Registry[DatasetProvider] = Registry("dataset")


@contextmanager
def download_timeout():
    """Sockets opened inside give up after ``DOWNLOAD_TIMEOUT_S`` of silence (unless a timeout is set already)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(previous if previous is not None else DOWNLOAD_TIMEOUT_S)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def incomplete_folder(folders: list[Path], needed: list[str], present) -> tuple[Path, list[str]] | None:
    """The first of ``folders`` holding some but not all of the ``needed`` files (``present(path)`` tells),
    with the names it lacks: a copy missing one file must name that file, not list all of them."""
    for folder in folders:
        missing = [name for name in needed if not present(folder / name)]
        if 0 < len(missing) < len(needed):
            return folder, missing
    return None


def missing_files(label: str, folder: Path, missing: list[str]) -> str:
    return f"{label} is incomplete in {folder}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"


def join_places(places: list[Path]) -> str:
    return ", ".join(str(p) for p in places) or "nowhere"


def download_failed(label: str, root: Path, exc: BaseException, hint: str = "") -> ValueError:
    """A one-line error for a failed download (torchvision's own message spans several lines)."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if len(reason) > 200:
        reason = reason[:197] + "..."
    advice = f"; without a network, {hint}" if hint else ""
    return ValueError(f"downloading {label} into {root} failed ({reason}){advice}")
