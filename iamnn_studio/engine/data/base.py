"""What a dataset provider is, the registry that lists them, and where downloaded data lives.

Downloads (torchvision's, inside ``dataset_download``) can be stopped at once from any thread or a
signal handler with ``stop_downloads``: the sockets they read are shut down, which wakes a read
that waits for a silent server, and the download ends in ``DownloadStopped``. Each file is written
under a temporary name and renamed when complete, so a stopped or failed download leaves no
half-written file that a later run would take for the dataset.
"""
from __future__ import annotations

import contextlib
import http.client
import os
import socket
import threading
import urllib.request
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, NamedTuple

from ..registry import Registry

if TYPE_CHECKING:
    from ..config import DataConfig
    from .bundle import DatasetBundle

#: Environment variable that moves the download/cache folder (tests point it at a temp dir).
DATASETS_ENV = "IAMNN_STUDIO_DATASETS"
#: Seconds a download waits for the server on each connect or read (not for the whole file). torchvision
#: opens its URLs with no timeout, so a network that drops packets (a firewall, a dead proxy) hung forever.
DOWNLOAD_TIMEOUT_S = 30.0


def user_folder(root: str) -> Path:
    """The folder a user gave, as an absolute path: a relative one is relative to the working folder, which
    nothing shows in the app ("looked in svhn" did not say where that was)."""
    return Path(root).expanduser().absolute()


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

    def evaluation_split(self, cfg: "DataConfig") -> str | None:
        """The split an evaluation on ``cfg`` measures, from a glance (nothing decoded): "test", or "val" where the
        dataset has no test images of its own (``evaluate.evaluation_split``); None where only loading can tell."""
        return None

    @abstractmethod
    def available_offline(self, root: str | None) -> tuple[bool, str]:
        """Whether ``load`` would work without downloading, and a sentence saying why."""

    @abstractmethod
    def load(self, cfg: "DataConfig", *, seed: int) -> "DatasetBundle":
        """Decode every split into memory; raise ``ValueError`` with a human message on user errors."""

    def find_or_download(self, cfg, find):
        """``find(root)``'s result; when nothing is there and downloads are allowed, download first.
        Raises the provider's "not found" sentence (``_not_found(root)``) when it stays missing."""
        if cfg.root and user_folder(cfg.root).is_file():  # "looked in photo.png" would not say what is wrong
            raise ValueError(f"data.root: {user_folder(cfg.root)} is a file, not a folder: give the folder that holds "
                             f"{self.label}'s files")
        found = find(cfg.root)
        if found is None and cfg.download:
            root = user_folder(cfg.root) if cfg.root else datasets_root()
            with dataset_download(self.label, root):
                self._download(root)
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


class DownloadStopped(ValueError):
    """A dataset download stopped on request (``stop_downloads``: Ctrl-C, a Stop button); nothing
    half-downloaded was kept."""


class _Download:
    """One dataset download in progress: whether it was asked to stop, and the sockets it reads."""

    def __init__(self, label: str, root: Path) -> None:
        self.label, self.root = label, root
        self.thread = threading.current_thread()  # whose download it is (a trainer stops its own only)
        self.stopped = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.RLock()  # re-entrant: stop() may run in a signal handler of the same thread

    def stop(self) -> None:
        self.stopped.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _wake(sock)

    def check(self) -> None:
        if self.stopped.is_set():
            raise DownloadStopped(f"the download of {self.label} into {self.root} was stopped; "
                                  "no partial file was kept")

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
        if self.stopped.is_set():  # stopped while it connected
            _wake(sock)

    def forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def create_connection(self, address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, *args):
        """``socket.create_connection`` whose socket is tracked before it connects: shutting it down also
        ends a connection attempt to a host that does not answer."""
        self.check()
        host, port = address
        error: OSError | None = None
        for family, kind, proto, _, where in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            self.track(sock)
            try:
                if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(where)
                return sock
            except OSError as exc:
                self.forget(sock)
                sock.close()
                self.check()
                error = exc
        raise error or OSError(f"cannot resolve {host}")

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib's usual opener (proxies from the environment, redirects), its connections tracked."""
        download = self

        def tracked(connection_class):
            def connection(host, **kwargs):
                conn = connection_class(host, **kwargs)
                conn._create_connection = download.create_connection
                connect = conn.connect

                def connect_and_track() -> None:  # HTTPS wraps the socket: the wrapper is what reads
                    connect()
                    download.track(conn.sock)

                conn.connect = connect_and_track
                return conn
            return connection

        class Http(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(tracked(http.client.HTTPConnection), req)

        class Https(urllib.request.HTTPSHandler):
            def https_open(self, req):
                return self.do_open(tracked(http.client.HTTPSConnection), req, context=self._context)

        return urllib.request.build_opener(Http(), Https())

    def open(self, url: str):
        from torchvision.datasets.utils import USER_AGENT

        try:
            return self.opener().open(urllib.request.Request(url, headers={"User-Agent": USER_AGENT}))
        except Exception:
            self.check()  # a connection shut down on purpose reads as a network error: say what happened
            raise

    def read(self, response, size: int) -> bytes:
        """Up to ``size`` bytes: what has arrived, not waiting for all of them (one read of the socket)."""
        try:
            chunk = response.read1(size)
        except Exception:
            self.check()
            raise
        self.check()  # a shut-down socket reads as the end of the file
        return chunk


def _wake(sock: socket.socket) -> None:
    """Shut the socket down: a read or connect blocked on it returns at once. The plain socket's method,
    also for an SSL socket, whose own would touch its TLS state from this thread."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_downloads: list[_Download] = []  # in progress, in any thread
_downloads_lock = threading.RLock()
_this_thread = threading.local()  # .download: the download the current thread runs (torchvision calls back)


def stop_downloads(thread: threading.Thread | None = None) -> bool:
    """Stop every dataset download in progress now, or only those ``thread`` runs (thread-safe; fine in a
    signal handler). Each ends in ``DownloadStopped``, leaving no partial file. Whether any was stopped."""
    with _downloads_lock:
        running = [d for d in _downloads if thread is None or d.thread is thread]
    for download in running:
        download.stop()
    return bool(running)


def downloading() -> bool:
    """Whether a dataset download is in progress."""
    with _downloads_lock:
        return bool(_downloads)


@contextmanager
def dataset_download(label: str, root: Path) -> Iterator[None]:
    """Run a provider's download inside: torchvision's file transfers write under a temporary name and
    rename when complete, can be stopped with ``stop_downloads`` and give up after ``DOWNLOAD_TIMEOUT_S``
    of silence. A download stopped on the way raises ``DownloadStopped``, whatever the provider made of
    the error it saw."""
    _route_torchvision_downloads()
    download = _Download(label, root)
    previous = getattr(_this_thread, "download", None)
    _this_thread.download = download
    with _downloads_lock:
        _downloads.append(download)
    try:
        # a stop asked for before this download was listed (stop_downloads found nothing): stop now. Checked
        # after listing it, so a stop asked for meanwhile is seen here or finds the download listed.
        should_stop = getattr(_this_thread, "should_stop", None)
        if should_stop is not None and should_stop():
            download.stop()
        download.check()
        with download_timeout():
            yield
    except Exception:
        download.check()  # e.g. a provider's "downloading X failed (...)" about the socket we shut down
        raise
    finally:
        _this_thread.download = previous
        with _downloads_lock:
            _downloads.remove(download)


@contextmanager
def downloads_stop_when(should_stop: Callable[[], bool]) -> Iterator[None]:
    """Dataset downloads this thread begins inside end at once in ``DownloadStopped`` when ``should_stop()``
    is already true (e.g. a trainer's Stop that came before the download began, when ``stop_downloads``
    had nothing to stop yet)."""
    previous = getattr(_this_thread, "should_stop", None)
    _this_thread.should_stop = should_stop
    try:
        yield
    finally:
        _this_thread.should_stop = previous


_routed = False


def _route_torchvision_downloads() -> None:
    """Once: torchvision's two URL openers go through the current thread's ``_Download`` (the originals
    where a thread downloads outside ``dataset_download``, e.g. a plugin's own dataset)."""
    global _routed
    with _downloads_lock:
        if _routed:
            return
        import torchvision.datasets.utils as tv

        original_retrieve, original_redirect = tv._urlretrieve, tv._get_redirect_url

        def urlretrieve(url, filename, chunk_size: int = 1024 * 32) -> None:
            download = getattr(_this_thread, "download", None)
            if download is None:
                return original_retrieve(url, filename, chunk_size)
            _retrieve(download, url, Path(filename), chunk_size)

        def get_redirect_url(url: str, max_hops: int = 3) -> str:
            download = getattr(_this_thread, "download", None)
            if download is None:
                return original_redirect(url, max_hops=max_hops)
            with download.open(url) as response:  # urllib follows the redirects itself
                return response.url or url

        tv._urlretrieve, tv._get_redirect_url = urlretrieve, get_redirect_url
        _routed = True


def _retrieve(download: _Download, url: str, target: Path, chunk_size: int) -> None:
    """Fetch ``url`` into ``target`` through a hidden temporary file beside it, renamed when complete."""
    from torch.utils.model_zoo import tqdm

    from ..io import atomic_write

    def fetch(fh) -> None:
        with download.open(url) as response, tqdm(total=response.length, unit="B", unit_scale=True) as bar:
            received = 0
            while chunk := download.read(response, chunk_size):
                fh.write(chunk)
                fh.flush()  # what arrived is on disk (chunks are small when the network is slow)
                bar.update(len(chunk))
                received += len(chunk)
            if response.length:  # http.client reads a connection closed early as the end of the file
                raise OSError(f"the connection closed after {received} of {received + response.length} bytes")
        download.check()

    atomic_write(target, fetch, suffix=".part")


def incomplete_folder(folders: list[Path], needed: list[str], present) -> tuple[Path, list[str]] | None:
    """The first of ``folders`` holding some but not all of the ``needed`` files (``present(path)`` tells),
    with the names it lacks: a copy missing one file must name that file, not list all of them."""
    for folder in folders:
        missing = [name for name in needed if not present(folder / name)]
        if 0 < len(missing) < len(needed):
            return folder, missing
    return None


#: The advice for a dataset that is not on this computer, naming the switch that allows the download in both
#: faces of the program (the app's checkbox, the command line's option).
ALLOW_DOWNLOADS = "allow downloads (--download; in the app, Allow download)"


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
