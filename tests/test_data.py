"""Dataset providers, splits, statistics, batching and augmentation (tiny files made here, no downloads)."""
from __future__ import annotations

import gzip
import importlib.util
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iamnn_studio.engine.config import DataConfig
from iamnn_studio.engine.data import (
    AUGMENT_MODES,
    DATASETS,
    DatasetBundle,
    ImageTensors,
    augment_batch,
    channel_stats,
    class_counts,
    crop_padding,
    dataset_availability,
    declared_input_shape,
    default_augment,
    iterate_batches,
    load_dataset,
    normalize,
    preview,
    split_off,
)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
HAS_SCIPY = importlib.util.find_spec("scipy") is not None


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Downloads and decompressed copies go to a temp folder, never to the user's ~/.cache."""
    monkeypatch.setenv("IAMNN_STUDIO_DATASETS", str(tmp_path_factory.mktemp("cache")))


def _images(n: int, c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- CIFAR
def _pickle(path: Path, obj) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _fake_cifar10(root: Path, per_batch: int = 3) -> tuple[np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images, labels = _images(6 * per_batch, 3, 32, 32), [i % 10 for i in range(6 * per_batch)]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        part = slice(b * per_batch, (b + 1) * per_batch)
        _pickle(folder / name, {"batch_label": name, "labels": labels[part],
                                "data": images[part].reshape(per_batch, -1), "filenames": ["x.png"] * per_batch})
    _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072})
    return images, labels


def test_fake_cifar10_loads_with_shapes_labels_and_class_names(tmp_path):
    images, labels = _fake_cifar10(tmp_path)
    bundle = load_dataset(DataConfig(name="cifar10", root=str(tmp_path), val_fraction=0.0))
    assert bundle.classes == [f"class{i}" for i in range(10)]
    assert bundle.train.images.shape == (15, 3, 32, 32) and bundle.test.images.shape == (3, 3, 32, 32)
    assert len(bundle.val) == 0
    # Rows are channel-major (1024 R, then G, then B): pixels must come back exactly where they were.
    assert torch.equal(bundle.train.images, torch.from_numpy(images[:15]))
    assert torch.equal(bundle.test.images, torch.from_numpy(images[15:]))
    assert bundle.train.labels.tolist() == labels[:15] and bundle.test.labels.dtype == torch.int64
    assert (bundle.in_channels, bundle.image_size, bundle.num_classes) == (3, 32, 10)


def test_cifar_pickles_that_would_run_code_are_refused(tmp_path):
    _fake_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    _pickle(tmp_path / "cifar-10-batches-py" / "test_batch", {"data": Evil(), "labels": []})
    with pytest.raises(ValueError, match="test_batch"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))


def test_fake_cifar100_loads_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images = _images(7, 3, 32, 32)
    fine = [0, 99, 5, 42, 7, 1, 64]
    _pickle(folder / "train", {"data": images[:5].reshape(5, -1), "fine_labels": fine[:5], "coarse_labels": [0] * 5})
    _pickle(folder / "test", {"data": images[5:].reshape(2, -1), "fine_labels": fine[5:], "coarse_labels": [1] * 2})
    _pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                              "coarse_label_names": [f"c{i}" for i in range(20)]})
    bundle = load_dataset(DataConfig(name="cifar100", root=str(tmp_path), val_fraction=0.0))
    assert bundle.num_classes == 100 and bundle.classes[99] == "f99"
    assert bundle.train.labels.tolist() == fine[:5] and bundle.test.labels.tolist() == fine[5:]
    assert torch.equal(bundle.test.images, torch.from_numpy(images[5:]))


def test_missing_cifar_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(ValueError, match="allow downloads") as err:
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path / "nowhere")))
    assert str(tmp_path / "nowhere") in str(err.value)


class StallingProxy:
    """An HTTP proxy that answers every request with the start of a long file, then goes silent: a download
    that has begun and then waits on the network (no real network is used)."""

    def __init__(self) -> None:
        import socket
        import threading

        self.server = socket.create_server(("127.0.0.1", 0))
        self.connections: list = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:  # closed
                return
            self.connections.append(connection)
            connection.recv(65536)  # the request
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"\x1f" * 4096)

    def close(self) -> None:
        self.server.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def stalling_proxy(monkeypatch):
    proxy = StallingProxy()
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, proxy.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    yield proxy
    proxy.close()


def partial_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


@pytest.mark.timeout(60)
def test_stopping_a_download_ends_it_at_once_and_keeps_no_partial_file(tmp_path, stalling_proxy):
    """It used to go on until the server answered (up to the 30 s read timeout), writing the dataset's own
    file name, where a half-written file passed for the dataset on the next run."""
    import threading
    import time

    from iamnn_studio.engine.data import DownloadStopped, downloading, stop_downloads
    from iamnn_studio.engine.data.base import DOWNLOAD_TIMEOUT_S

    assert DOWNLOAD_TIMEOUT_S >= 30  # had the stop not worked, the read would time out: another message

    def stop_once_bytes_arrived() -> None:
        while not any(p.stat().st_size for p in partial_files(tmp_path) if p.exists()):
            time.sleep(0.05)
        assert downloading()
        assert stop_downloads()

    stopper = threading.Thread(target=stop_once_bytes_arrived, daemon=True)
    stopper.start()
    with pytest.raises(DownloadStopped) as stopped:
        load_dataset(DataConfig(name="fashion-mnist", root=str(tmp_path), download=True))
    stopper.join()
    assert str(stopped.value) == (f"the download of Fashion-MNIST into {tmp_path} was stopped; "
                                  "no partial file was kept")
    assert partial_files(tmp_path) == []  # neither the dataset's file nor the temporary one
    assert not downloading() and not stop_downloads()  # nothing left in progress


def first_ctrl_c_during_download(arguments: list[str], watched: Path) -> tuple[int, str, str]:
    """Run ``iamnn-studio ARGUMENTS``, send one SIGINT (a first Ctrl-C) once the download has written bytes
    under ``watched``; (exit code, stdout, stderr without download progress lines)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    job = subprocess.Popen([sys.executable, "-m", "iamnn_studio", *arguments], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size for p in partial_files(watched) if p.exists()):
            assert job.poll() is None and time.monotonic() < deadline, job.communicate()[1][-3000:]
            time.sleep(0.1)
        job.send_signal(signal.SIGINT)
        out, err = job.communicate(timeout=20)  # not after the 30 s the silent server could keep it waiting
    finally:
        if job.poll() is None:
            job.kill()
    lines = [line for line in err.splitlines() if line.strip() and "%" not in line]  # no download progress bar
    return job.returncode, out, "\n".join(lines)


def download_stopped_lines(root: Path) -> str:
    return ("stopping the dataset download (Ctrl-C again to quit at once)\n"
            f"the download of Fashion-MNIST into {root} was stopped; no partial file was kept")


@pytest.mark.timeout(90)
def test_first_ctrl_c_during_a_download_stops_train_with_one_line_and_exit_130(tmp_path, stalling_proxy):
    root = tmp_path / "data"
    code, _, err = first_ctrl_c_during_download(
        ["train", "--dataset", "fashion-mnist", "--data-root", str(root), "--download",
         "--runs-dir", str(tmp_path / "runs"), "--device", "cpu"], tmp_path)
    assert (code, err) == (130, download_stopped_lines(root))
    assert partial_files(tmp_path) == [] and not (tmp_path / "runs").exists()


@pytest.mark.timeout(90)
def test_first_ctrl_c_during_a_download_stops_evaluate_with_trains_words_and_exit_130(tmp_path, stalling_proxy):
    """evaluate --download used to print only "interrupted": the same Ctrl-C during train's download says
    what was stopped and that no partial file was kept."""
    from tiny_models import save_varied_checkpoint

    save_varied_checkpoint(tmp_path / "model.pt")
    root = tmp_path / "data"
    code, out, err = first_ctrl_c_during_download(
        ["evaluate", str(tmp_path / "model.pt"), "--dataset", "fashion-mnist", "--data-root", str(root),
         "--download"], root)
    assert (code, err) == (130, download_stopped_lines(root))
    assert out == "" and partial_files(root) == []


def test_a_download_through_a_network_that_never_answers_fails_instead_of_hanging(tmp_path, monkeypatch):
    import socket
    import threading
    import time

    from iamnn_studio.engine.data import base

    # A proxy that accepts connections and never answers: a firewall dropping packets looks like this.
    silent = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.extend(silent.accept() for _ in range(4)), daemon=True).start()
    proxy = f"http://127.0.0.1:{silent.getsockname()[1]}"
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setattr(base, "DOWNLOAD_TIMEOUT_S", 0.5)
    started = time.monotonic()
    try:
        with pytest.raises(ValueError, match=r"downloading CIFAR-10 into .* failed \(.*timed out"):
            load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=True))
    finally:
        silent.close()
    assert time.monotonic() - started < 20
    assert socket.getdefaulttimeout() is None  # the timeout is the download's, not the whole process's


def serve_once(body: bytes, declared: int) -> str:
    """A local HTTP server that answers one request with ``body`` under a Content-Length of ``declared``
    bytes, then closes the connection (fewer bytes than declared: a transfer cut short); its URL."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % declared + body)
        server.close()

    threading.Thread(target=answer, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/file.gz"


def retrieve(url: str, target: Path) -> None:
    """What torchvision's ``download_url`` does to fetch one file, inside a dataset download."""
    import torchvision.datasets.utils as tv

    from iamnn_studio.engine.data.base import dataset_download

    with dataset_download("Test data", target.parent):
        tv._urlretrieve(url, str(target))


@pytest.fixture
def no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)


def test_a_downloaded_file_is_complete_and_gets_the_usual_permissions(tmp_path, no_proxy):
    import os

    body = bytes(range(256)) * 300
    retrieve(serve_once(body, len(body)), tmp_path / "file.gz")
    assert (tmp_path / "file.gz").read_bytes() == body
    assert partial_files(tmp_path) == [tmp_path / "file.gz"]  # no temporary file left beside it
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "file.gz").stat().st_mode & 0o777 == 0o666 & ~umask  # not the temp file's private 0600


def test_a_transfer_cut_short_fails_and_keeps_no_partial_file(tmp_path, no_proxy):
    """The connection closing before the declared length read as the end of the file: the truncated file was
    kept under the dataset's own name (torchvision's checksum then failed, and the next run read it)."""
    with pytest.raises(OSError, match="the connection closed after 4096 of 100000 bytes"):
        retrieve(serve_once(b"\x1f" * 4096, 100_000), tmp_path / "file.gz")
    assert partial_files(tmp_path) == []


# ------------------------------------------------------------------------------------------------ idx
def _write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def _fake_idx(root: Path, n_train: int = 8, n_test: int = 4, compress: bool = True) -> dict[str, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": _images(n_train, 1, 28, 28)[:, 0],
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": _images(n_test, 1, 28, 28, seed=1)[:, 0],
        "t10k-labels-idx1-ubyte": (np.arange(n_test) + 3) % 10,
    }
    for name, array in arrays.items():
        _write_idx(root / name, array, compress)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_load_as_fashion_mnist_from_the_given_root(tmp_path, compress):
    arrays = _fake_idx(tmp_path / "fm", compress=compress)
    bundle = load_dataset(DataConfig(name="fashion-mnist", root=str(tmp_path / "fm"), val_fraction=0.0))
    assert bundle.classes[0] == "T-shirt/top" and bundle.classes[9] == "Ankle boot" and bundle.num_classes == 10
    assert bundle.train.images.shape == (8, 1, 28, 28) and bundle.test.images.shape == (4, 1, 28, 28)
    assert torch.equal(bundle.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert bundle.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert any(str(tmp_path / "fm") in note for note in bundle.notes)


def test_idx_files_load_as_mnist_in_torchvisions_layout(tmp_path):
    arrays = _fake_idx(tmp_path / "MNIST" / "raw")
    bundle = load_dataset(DataConfig(name="mnist", root=str(tmp_path), val_fraction=0.25))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (6, 2, 4)
    assert bundle.classes == [str(d) for d in range(10)]
    assert torch.equal(bundle.test.images[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert bundle.default_augment == default_augment("mnist") == "crop"  # digits must not be mirrored


def test_mnist_with_flip_augmentation_is_noted(tmp_path):
    _fake_idx(tmp_path)
    bundle = load_dataset(DataConfig(name="mnist", root=str(tmp_path), augment="crop-flip"))
    assert any("mirrors" in note for note in bundle.notes)


def test_corrupt_idx_file_names_the_file(tmp_path):
    _fake_idx(tmp_path, compress=False)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        load_dataset(DataConfig(name="mnist", root=str(tmp_path)))


@pytest.mark.parametrize("content, said", [
    (b"", "the file is empty"),
    (b"\x00\x00\x08\x03\x00\x00", "the file is too short to be an idx file (6 bytes)"),
])
def test_an_empty_or_cut_short_idx_file_says_so(tmp_path, content, said):
    _fake_idx(tmp_path, compress=False)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(content)
    # QA: "not a valid idx file (invalid literal for int() with base 16: b'')"
    with pytest.raises(ValueError) as refused:
        load_dataset(DataConfig(name="mnist", root=str(tmp_path)))
    assert str(refused.value) == f"cannot read {tmp_path / 't10k-images-idx3-ubyte'}: {said}"


def test_idx_labels_outside_the_classes_are_refused_before_training(tmp_path):
    _fake_idx(tmp_path, compress=False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 200, 3, 4, 5, 6, 7]), compress=False)
    # QA: loaded, then training ended in "unexpected error: IndexError: Target 200 is out of bounds"
    with pytest.raises(ValueError, match=r"^mnist: its train labels run from 0 to 200, but its 10 classes are "
                                         r"numbered 0 to 9: the label files are damaged or of another dataset$") as raised:
        load_dataset(DataConfig(name="mnist", root=str(tmp_path)))
    assert str(pickle.loads(pickle.dumps(raised.value))) == str(raised.value)  # with its cause


@pytest.mark.parametrize("classes, said", [([], "has 0 classes"), (["only"], "has 1 class")])
def test_a_bundle_of_fewer_than_two_classes_is_refused_up_front(classes, said):
    # QA: 0 classes said "its 0 classes are numbered 0 to -1"; 1 class trained a "classifier" of one answer
    train = ImageTensors(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError) as refused:
        DatasetBundle.from_splits("tiny", classes, train, None, val_fraction=0.25)
    assert str(refused.value) == f"tiny {said}: a classifier needs at least 2"
    again = pickle.loads(pickle.dumps(refused.value))  # a run's error may cross to another process
    assert type(again) is type(refused.value) and str(again) == str(refused.value)


def test_an_idx_file_with_a_wrong_header_says_so_not_empty_brackets(tmp_path):
    _fake_idx(tmp_path, compress=False)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x09" + b"\x00" * 36)  # 9 dimensions
    with pytest.raises(ValueError) as caught:
        load_dataset(DataConfig(name="mnist", root=str(tmp_path)))
    assert str(caught.value).endswith("not a valid idx file (its header is not that of an idx file)")


def test_missing_mnist_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(DATASETS.get("mnist"), "system_dirs", ())
    with pytest.raises(ValueError, match="allow downloads") as err:
        load_dataset(DataConfig(name="mnist", root=str(tmp_path / "nowhere")))
    assert str(tmp_path / "nowhere") in str(err.value)
    available, reason = DATASETS.get("mnist").available_offline(str(tmp_path / "nowhere"))
    assert not available and "not found" in reason


def test_a_folder_missing_one_file_names_that_file(tmp_path):
    _fake_idx(tmp_path / "mnist")  # gzipped, as torchvision keeps them
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    _fake_cifar10(tmp_path / "cifar")
    (tmp_path / "cifar" / "cifar-10-batches-py" / "data_batch_3").unlink()
    (tmp_path / "svhn").mkdir()
    (tmp_path / "svhn" / "train_32x32.mat").write_bytes(b"")
    for name, folder, expected in (
        ("mnist", tmp_path / "mnist", "t10k-labels-idx1-ubyte[.gz] is missing"),
        ("cifar10", tmp_path / "cifar", "data_batch_3 is missing"),
        ("svhn", tmp_path / "svhn", "test_32x32.mat is missing"),
    ):
        available, reason = DATASETS.get(name).available_offline(str(folder))
        assert not available and expected in reason, reason
        with pytest.raises(ValueError, match=re.escape(expected)):
            load_dataset(DataConfig(name=name, root=str(folder)))
    # A folder with none of the files still says where it looked for which files.
    assert "looked in" in DATASETS.get("mnist").available_offline(str(tmp_path / "cifar"))[1]


def test_a_given_folder_without_the_files_is_not_passed_over_for_another_copy(tmp_path, monkeypatch):
    elsewhere = tmp_path / "system"
    _fake_idx(elsewhere, compress=False)
    monkeypatch.setattr(DATASETS.get("mnist"), "system_dirs", (str(elsewhere),))
    assert DATASETS.get("mnist").available_offline(None)[0]  # no folder given: the system copy
    typed = tmp_path / "typo"
    available, reason = DATASETS.get("mnist").available_offline(str(typed))
    assert not available and str(typed) in reason and str(elsewhere) not in reason
    with pytest.raises(ValueError, match="not found"):
        load_dataset(DataConfig(name="mnist", root=str(typed)))


def test_image_size_resizes_builtin_datasets(tmp_path):
    _fake_idx(tmp_path)
    bundle = load_dataset(DataConfig(name="mnist", root=str(tmp_path), image_size=32))
    assert bundle.image_size == 32 and bundle.test.images.shape == (4, 1, 32, 32)
    assert any("resized" in note for note in bundle.notes)


@pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_real_fashion_mnist_loads_60000_and_10000_images():
    bundle = load_dataset(DataConfig(name="fashion-mnist", val_fraction=0.0))
    assert (len(bundle.train), len(bundle.test), bundle.num_classes) == (60000, 10000, 10)
    assert bundle.train.images.shape[1:] == (1, 28, 28)
    assert class_counts(bundle.test) == [1000] * 10
    assert bundle.mean[0] == pytest.approx(0.2860, abs=1e-3) and bundle.std[0] == pytest.approx(0.3530, abs=1e-3)


# ---------------------------------------------------------------------------------------------- SVHN
@pytest.mark.skipif(not HAS_SCIPY, reason="scipy is not installed: SVHN's .mat files cannot be written or read")
@pytest.mark.parametrize("name", ["svhn", "cifar10", "mnist", "imagefolder"])
def test_a_relative_folder_is_named_by_its_absolute_path(tmp_path, monkeypatch, name):
    """QA: a folder typed as "svhn" said "looked for ... in svhn": relative to what, the app does not show."""
    monkeypatch.chdir(tmp_path)
    available, reason = DATASETS.get(name).available_offline("svhn")
    assert not available and str(tmp_path / "svhn") in reason, reason
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "svhn"))):
        load_dataset(DataConfig(name=name, root="svhn"))


def test_fake_svhn_mat_files_load_with_digit_zero_as_label_zero(tmp_path):
    import scipy.io

    images = _images(5, 3, 32, 32)
    for name, part, y in (("train_32x32.mat", images[:3], [10, 1, 2]), ("test_32x32.mat", images[3:], [3, 10])):
        scipy.io.savemat(tmp_path / name, {"X": part.transpose(2, 3, 1, 0), "y": np.array(y, np.uint8)[:, None]})
    bundle = load_dataset(DataConfig(name="svhn", root=str(tmp_path), val_fraction=0.0))
    assert bundle.train.labels.tolist() == [0, 1, 2] and bundle.test.labels.tolist() == [3, 0]
    assert torch.equal(bundle.train.images, torch.from_numpy(images[:3]))


@pytest.mark.skipif(not HAS_SCIPY, reason="scipy is not installed: SVHN's .mat files cannot be written or read")
@pytest.mark.parametrize("damage, why", [("text", "Mat file appears to be truncated"), ("labels", "labels run from"),
                                         ("no X", "no 'X' entry")])
def test_damaged_svhn_files_are_one_sentence(tmp_path, damage, why):
    import scipy.io

    X, y = _images(3, 3, 32, 32).transpose(2, 3, 1, 0), np.array([[10], [1], [12 if damage == "labels" else 2]])
    for name in ("train_32x32.mat", "test_32x32.mat"):
        scipy.io.savemat(tmp_path / name, {"Z" if damage == "no X" else "X": X, "y": y.astype(np.uint8)})
    if damage == "text":  # QA: scipy's MatReadError escaped as an unexpected error
        (tmp_path / "train_32x32.mat").write_text("not a mat file")
    with pytest.raises(ValueError, match=why):
        load_dataset(DataConfig(name="svhn", root=str(tmp_path), val_fraction=0.0))


@pytest.mark.skipif(HAS_SCIPY, reason="scipy is installed")
def test_svhn_without_scipy_says_what_to_install(tmp_path):
    with pytest.raises(ValueError, match="scipy"):
        load_dataset(DataConfig(name="svhn", root=str(tmp_path)))


# -------------------------------------------------------------------------------------- image folder
COLOURS = {"apple": (220, 30, 30), "leaf": (30, 200, 40), "sky": (40, 60, 230)}


def _image_folder(root: Path, per_class: int = 4, mode: str = "RGB") -> None:
    for name, colour in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = Image.new("RGB", (40 + 8 * i, 24), colour).convert(mode)  # not square: must be fitted
            img.save(folder / (f"{i}.png" if i % 2 else f"{i}.jpg"))


def _dominant_channel(images: torch.Tensor) -> list[int]:
    return images.float().mean(dim=(2, 3)).argmax(dim=1).tolist()


def test_image_folder_splits_by_fraction_and_skips_broken_files(tmp_path):
    _image_folder(tmp_path)
    (tmp_path / "leaf" / "broken.png").write_bytes(b"this is not a PNG")
    bundle = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path), val_fraction=0.25, image_size=16), seed=3)
    assert bundle.classes == ["apple", "leaf", "sky"]
    assert (len(bundle.train), len(bundle.val)) == (9, 3) and bundle.test is bundle.val
    assert bundle.train.images.shape[1:] == (3, 16, 16)
    assert any("skipped 1 unreadable" in note and "broken.png" in note for note in bundle.notes)
    # Labels follow the folder names: apple images are red, leaf green, sky blue.
    assert _dominant_channel(bundle.train.images) == bundle.train.labels.tolist()


def test_image_folder_uses_train_and_val_subfolders(tmp_path):
    _image_folder(tmp_path / "train", per_class=3)
    _image_folder(tmp_path / "val", per_class=2)
    bundle = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path), val_fraction=0.5))
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (9, 6, 6)
    assert bundle.image_size == 32  # the default size
    assert class_counts(bundle.val, bundle.num_classes) == [2, 2, 2]
    assert _dominant_channel(bundle.val.images) == bundle.val.labels.tolist()


def test_image_folder_of_grayscale_images_has_one_channel(tmp_path):
    _image_folder(tmp_path, mode="L")
    bundle = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path)))
    assert bundle.in_channels == 1 and len(bundle.mean) == 1


def test_a_glance_at_an_image_folder_tells_its_classes_and_only_colour_for_sure(tmp_path):
    from iamnn_studio.engine.data import known_channels_and_classes

    def glance(folder):
        return known_channels_and_classes(DataConfig(name="imagefolder", root=str(folder)))

    _image_folder(tmp_path / "colour")
    (tmp_path / "colour" / "apple" / "0.jpg").write_bytes(b"not an image: skipped, as loading skips it")
    _image_folder(tmp_path / "grey", mode="L")  # grey first: a colour image further on would make the set colour
    _image_folder(tmp_path / "split" / "train", mode="L")
    (tmp_path / "split" / "train" / "pear").mkdir()  # classes are train/'s folders, empty or not
    _image_folder(tmp_path / "split" / "val", per_class=1)
    (tmp_path / "one" / "only").mkdir(parents=True)
    assert glance(tmp_path / "colour") == (3, 3)
    assert glance(tmp_path / "grey") == (None, 3)
    assert glance(tmp_path / "split") == (None, 4)
    assert glance(tmp_path / "one") == glance(tmp_path / "missing") == (None, None)  # loading says what is wrong
    assert known_channels_and_classes(DataConfig(name="synthetic")) == (1, 10)  # a declared shape


def test_image_folder_with_one_class_is_refused(tmp_path):
    folder = tmp_path / "only"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    with pytest.raises(ValueError, match="at least 2 class") as err:
        load_dataset(DataConfig(name="imagefolder", root=str(tmp_path)))
    assert "'only'" in str(err.value)


def test_missing_image_folder_names_the_path(tmp_path):
    with pytest.raises(ValueError, match="not found") as err:
        load_dataset(DataConfig(name="imagefolder", root=str(tmp_path / "photos")))
    assert str(tmp_path / "photos") in str(err.value)
    with pytest.raises(ValueError, match="data.root"):
        load_dataset(DataConfig(name="imagefolder"))
    (tmp_path / "photo.png").write_bytes(b"")  # a file given as the folder is called a file
    with pytest.raises(ValueError, match="is a file, not a folder"):
        load_dataset(DataConfig(name="imagefolder", root=str(tmp_path / "photo.png")))
    assert DATASETS.get("imagefolder").available_offline(str(tmp_path / "photo.png"))[1].startswith("not a folder")


def test_image_folder_without_readable_images_is_refused(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "notes.txt").write_text("no pictures here")
    with pytest.raises(ValueError, match="no readable images"):
        load_dataset(DataConfig(name="imagefolder", root=str(tmp_path)))


def test_image_folder_where_one_class_only_has_readable_images_is_refused(tmp_path):
    # QA: two class folders, one of them unreadable files only, trained a "2-class" model with a note
    (tmp_path / "cat").mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (200, 10 * i, 0)).save(tmp_path / "cat" / f"{i}.png")
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "0.png").write_bytes(b"not a PNG")
    with pytest.raises(ValueError, match=r"only the class 'cat' has readable training images .*needs 2 "
                                         r"\(the images of 'dog' could not be read\)"):
        load_dataset(DataConfig(name="imagefolder", root=str(tmp_path)))
    Image.new("RGB", (8, 8)).save(tmp_path / "dog" / "1.png")  # one readable dog: trains, the broken file noted
    assert load_dataset(DataConfig(name="imagefolder", root=str(tmp_path), val_fraction=0.25)).classes == ["cat", "dog"]


@pytest.mark.parametrize("locked, unreadable, where", [
    ("leaf", "the class folder {}", "train/leaf"),
    ("deeper", "the folder {} of the class 'sky'", "train/sky/deeper"),
    ("train", "the folder {}", "train"),
    ("val", "the folder {}", "val"),
])
def test_an_image_folder_part_that_cannot_be_listed_is_named_not_skipped(tmp_path, lock_folders_named, locked,
                                                                         unreadable, where):
    # QA: a class folder that could not be listed trained a model that never saw the class, with a grey note
    _image_folder(tmp_path / "train")
    (tmp_path / "train" / "sky" / "deeper").mkdir()
    Image.new("RGB", (8, 8), COLOURS["sky"]).save(tmp_path / "train" / "sky" / "deeper" / "0.png")
    _image_folder(tmp_path / "val", per_class=1)
    lock_folders_named(locked)
    with pytest.raises(ValueError) as err:
        load_dataset(DataConfig(name="imagefolder", root=str(tmp_path)))
    folder = tmp_path.joinpath(*where.split("/"))
    assert str(err.value) == f"image folder: cannot read {unreadable.format(folder)}: permission denied"


def test_the_image_folder_check_names_a_folder_it_cannot_list(tmp_path, lock_folders_named):
    _image_folder(tmp_path)
    check = DATASETS.get("imagefolder").available_offline
    assert check(str(tmp_path)) == (True, f"3 classes in {tmp_path}")
    lock_folders_named("leaf")
    # its other verdicts' words ("folder not found: ..."), shown after "Image folder: " in the app
    assert check(str(tmp_path)) == (False, f"cannot read the class folder {tmp_path / 'leaf'}: permission denied")
    lock_folders_named(tmp_path.name)
    assert check(str(tmp_path)) == (False, f"cannot read the folder {tmp_path}: permission denied")


# ------------------------------------------------------------------------------------------ synthetic
def _synthetic(seed: int = 0, **options) -> DatasetBundle:
    options = {"train_size": 300, "test_size": 200, **options}
    return load_dataset(DataConfig(name="synthetic", val_fraction=0.1, options=options), seed=seed)


def test_synthetic_is_deterministic_per_seed():
    a, b, c = _synthetic(seed=1), _synthetic(seed=1), _synthetic(seed=2)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images, c.train.images)
    assert (len(a.train), len(a.val), len(a.test), a.image_size, a.in_channels) == (270, 30, 200, 28, 1)
    assert class_counts(a.test) == [20] * 10


def _roughness(images: torch.Tensor) -> float:
    x = images.float() / 255
    return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean())


def test_higher_synthetic_difficulty_gives_noisier_images():
    easy, hard = _synthetic(difficulty=0.0), _synthetic(difficulty=1.0)
    assert _roughness(hard.test.images) > 2 * _roughness(easy.test.images)
    difficulty = hard.extras["difficulty"]
    assert difficulty.shape == (200,) and 0 <= difficulty.min() and difficulty.max() <= 1
    assert float(easy.extras["difficulty"].max()) == 0.0
    # Within one dataset, images drawn harder are rougher too: difficulty varies per image.
    order = difficulty.argsort()
    assert _roughness(hard.test.images[order[-50:]]) > 1.5 * _roughness(hard.test.images[order[:50]])


def test_synthetic_options_are_checked():
    assert _synthetic(channels=3, image_size=20).train.images.shape[1:] == (3, 20, 20)
    with pytest.raises(ValueError, match="difficulty"):
        _synthetic(difficulty=2)
    with pytest.raises(ValueError, match="data.options.colour"):
        _synthetic(colour="red")


# ------------------------------------------------------------------------------------------- registry
def test_availability_reports_every_dataset():
    status = dataset_availability()
    assert {"fashion-mnist", "mnist", "cifar10", "cifar100", "svhn", "imagefolder", "synthetic"} <= set(status)
    assert all(isinstance(ok, bool) and isinstance(why, str) and why for ok, why in status.values())
    assert status["synthetic"][0] and not status["imagefolder"][0]
    for name in status:
        provider = DATASETS.get(name)
        assert provider.label and provider.description


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="fashion-mnist"):
        load_dataset(DataConfig(name="imagenet-22k"))


# ------------------------------------------------------------------------------- splits and statistics
def test_val_split_is_deterministic_and_disjoint_from_train():
    data = ImageTensors(torch.zeros(100, 1, 4, 4, dtype=torch.uint8), torch.arange(100))
    train, val = split_off(data, 0.2, seed=5)
    again, val_again = split_off(data, 0.2, seed=5)
    assert torch.equal(val.labels, val_again.labels) and torch.equal(train.labels, again.labels)
    assert len(val) == 20 and not set(train.labels.tolist()) & set(val.labels.tolist())
    assert sorted(train.labels.tolist() + val.labels.tolist()) == list(range(100))
    assert not torch.equal(split_off(data, 0.2, seed=6)[1].labels, val.labels)
    assert len(split_off(data, 0.0, seed=5)[1]) == 0


def test_the_validation_split_holds_out_some_of_every_class(tmp_path):
    # QA: 3 classes of 20 images at 10 % gave 17/3/3, 20/0/0, 17/3/3: one class never validated, nor tested
    _image_folder(tmp_path, per_class=20)
    bundle = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path), val_fraction=0.1, image_size=8))
    assert class_counts(bundle.val, 3) == [2, 2, 2] and class_counts(bundle.train, 3) == [18, 18, 18]
    assert class_counts(bundle.test, 3) == [2, 2, 2]  # no test/ folder: the held-out images are the test split
    assert not any("no validation image" in note for note in bundle.notes)


def test_a_per_class_split_is_fixed_by_its_seed_and_holds_one_of_each_class_that_has_two():
    labels = torch.tensor([0] * 2 + [1] * 9 + [2] * 1 + [3] * 40)
    data = ImageTensors(torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1, 1), labels)
    train, val = split_off(data, 0.05, seed=4, method="per-class")
    assert class_counts(val, 4) == [1, 1, 0, 2] and len(train) + len(val) == len(data)
    assert not set(train.images.flatten().tolist()) & set(val.images.flatten().tolist())
    assert torch.equal(split_off(data, 0.05, seed=4, method="per-class")[1].images, val.images)
    assert len(split_off(data, 0.0, seed=4, method="per-class")[1]) == 0
    one_each = ImageTensors(torch.zeros(5, 1, 1, 1, dtype=torch.uint8), torch.arange(5))
    assert len(split_off(one_each, 0.1, seed=0, method="per-class")[1]) == 1  # asked for: never silently empty


def test_a_per_class_split_holds_out_the_requested_total_shared_by_class_size():
    from iamnn_studio.engine.data import held_out_count, held_out_total

    sizes = [410] * 6 + [409] * 4  # 25 % of 4,096 is 1,024: 102.5 and 102.25 per class, the larger remainders first
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    data = ImageTensors(torch.zeros(len(labels), 1, 1, 1, dtype=torch.uint8), labels)
    _, val = split_off(data, 0.25, seed=0, method="per-class")
    assert class_counts(val, 10) == [103] * 4 + [102] * 6 and len(val) == held_out_count(4096, 0.25) == 1024
    assert held_out_total(sizes, 0.25, "per-class") == 1024
    assert held_out_total([6] * 10, 0.1, "per-class") == 10  # one of every class, though 10 % of 60 is 6


def test_the_random_split_of_older_runs_is_unchanged():
    """Runs saved before data.val_split draw at random over all images: a resume must see the same split."""
    data = ImageTensors(torch.zeros(60, 1, 1, 1, dtype=torch.uint8), torch.arange(60))
    order = torch.randperm(60, generator=torch.Generator().manual_seed(7))  # what split_off always drew
    assert split_off(data, 0.1, seed=7, method="random")[1].labels.tolist() == sorted(order[:6].tolist())
    assert DataConfig.from_dict({"name": "synthetic", "val_fraction": 0.1}).val_split == "random"
    assert DataConfig().val_split == "per-class"
    assert DataConfig.from_dict(DataConfig().to_dict()).val_split == "per-class"  # a new run's config.toml says so


def test_a_random_split_that_misses_a_class_says_so(tmp_path):
    _image_folder(tmp_path, per_class=20)
    config = DataConfig.from_dict({"name": "imagefolder", "root": str(tmp_path), "val_fraction": 0.1, "image_size": 8})
    bundle = load_dataset(config)  # an older run's settings: drawn at random, "leaf" gets no held-out image
    assert class_counts(bundle.val, 3)[1] == 0
    assert any(note.startswith("no validation image of class 'leaf': the split is drawn at random")
               for note in bundle.notes), bundle.notes


def test_a_dataset_that_does_not_split_per_class_says_so_not_what_its_settings_say():
    """Review: a plugin that calls from_splits without val_split draws at random while the new run's config.toml
    says "per-class"; the note blamed data.val_split = "random", which the settings do not say."""
    labels = torch.tensor([0] * 49 + [1] * 49 + [2] * 2)
    train = ImageTensors(torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), labels)
    plugin = DatasetBundle.from_splits("plugin", ["a", "b", "rare"], train, None, val_fraction=0.1, seed=0)
    assert plugin.val_split == "random" and class_counts(plugin.val, 3)[2] == 0
    assert plugin.notes == ["no validation image of class 'rare': the split is drawn at random over all images: "
                            "the dataset does not split per class"]
    older = DatasetBundle.from_splits("plugin", ["a", "b", "rare"], train, None, val_fraction=0.1, val_split="random",
                                      seed=0)  # a provider passing an older run's setting: the setting is the cause
    assert older.val_split == "random" and 'data.val_split = "random"' in older.notes[0]
    per_class = DatasetBundle.from_splits("plugin", ["a", "b", "rare"], train, None, val_fraction=0.1,
                                          val_split="per-class", seed=0)
    assert per_class.val_split == "per-class" and per_class.notes == []
    own = DatasetBundle.from_splits("plugin", ["a", "b", "rare"], train, None, val=train, val_fraction=0.1)
    assert own.val_split is None  # the dataset brought its validation images: nothing was drawn


def test_a_per_class_split_that_holds_out_more_than_asked_says_so():
    """QA: 40 classes of 3 images at 10 % held out 40 images (33 %), one of every class, without a word."""
    labels = torch.arange(40).repeat_interleave(3)
    train = ImageTensors(torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), labels)
    names = [f"c{i}" for i in range(40)]
    small = DatasetBundle.from_splits("plugin", names, train, None, val_fraction=0.1, val_split="per-class", seed=0)
    assert len(small.val) == 40 and small.notes == [
        "the per-class validation split holds out 40 of 120 images (33 %) where 10 % was asked: every class with "
        "two images or more gives one; data.val_split = \"random\" holds out 10 % but may leave classes out"]
    labels = torch.arange(4).repeat_interleave(30)  # 10 % of 30 is 3 of every class: as asked, no note
    train = ImageTensors(torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), labels)
    even = DatasetBundle.from_splits("plugin", names[:4], train, None, val_fraction=0.1, val_split="per-class", seed=0)
    assert len(even.val) == 12 and even.notes == []


def test_an_unknown_split_method_is_named():
    with pytest.raises(ValueError, match="data.val_split: must be per-class or random, got 'stratified'"):
        DataConfig(val_split="stratified").validate()


def test_normalisation_stats_come_from_the_train_split():
    images = torch.randint(0, 256, (50, 3, 6, 6), dtype=torch.uint8)
    mean, std = channel_stats(images)
    x = images.double() / 255
    assert mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), abs=1e-9)
    assert std == pytest.approx(x.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-9)

    train = ImageTensors(torch.full((4, 1, 2, 2), 255, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    test = ImageTensors(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    bundle = DatasetBundle.from_splits("toy", ["a", "b"], train, test, val_fraction=0.0)
    assert bundle.mean == (1.0,)  # the all-black test split must not leak into the statistics

    # a plugin dataset may name its classes with numbers: everything downstream (eval.json) gets text
    numbered = DatasetBundle.from_splits("toy", [0, 1, 2], train, test, val_fraction=0.0)
    assert numbered.classes == ["0", "1", "2"]


def test_normalize_gives_zero_mean_unit_std_float32():
    images = torch.randint(0, 256, (64, 2, 8, 8), dtype=torch.uint8)
    mean, std = channel_stats(images)
    out = normalize(images, mean, std)
    assert out.dtype == torch.float32 and out.shape == images.shape
    assert out.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (out.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-4
    assert torch.allclose(normalize(images.float() / 255, mean, std), out, atol=1e-5)


# --------------------------------------------------------------------------------------- augmentation
def test_augment_keeps_shape_dtype_and_none_is_identity():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    for mode in AUGMENT_MODES:
        for batch in (x, x.float() / 255):
            out = augment_batch(batch, mode, torch.Generator().manual_seed(0))
            assert out.shape == batch.shape and out.dtype == batch.dtype
    assert torch.equal(augment_batch(x, "none"), x)
    for wrong in ("rotate", "flip-crop", "crop-crop", "none-crop", ""):
        with pytest.raises(ValueError, match="augment"):
            augment_batch(x, wrong)
    assert set(AUGMENT_MODES) >= {"none", "crop", "flip", "crop-flip", "crop-flip-erase"}


def test_erase_fills_one_rectangle_in_about_half_of_the_images_with_noise():
    n, size = 400, 28
    x = torch.full((n, 1, size, size), 7, dtype=torch.uint8)  # no noise value is likely to be 7 everywhere
    out = augment_batch(x, "erase", torch.Generator().manual_seed(0))
    changed = out != x
    erased = changed.flatten(1).any(1)
    assert 0.4 < float(erased.float().mean()) < 0.6
    for i in torch.nonzero(erased).flatten().tolist()[:50]:
        rows = torch.nonzero(changed[i, 0].any(1)).flatten()
        cols = torch.nonzero(changed[i, 0].any(0)).flatten()
        height, width = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
        share = height * width / size**2
        assert 0.01 < share <= 0.4 and 0.2 < height / width < 5  # the paper's 2-33 %, ratio 0.3-3.3 (rounded)
        assert float(changed[i, 0, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].float().mean()) > 0.9  # a filled box
    floats = augment_batch(x.float() / 255, "erase", torch.Generator().manual_seed(0))
    assert floats.min() >= 0 and floats.max() < 1 and bool((floats != 7 / 255).flatten(1).any(1).equal(erased))


def test_erase_mode_is_checked_by_the_config():
    assert DataConfig(augment="crop-flip-erase").validate().augment == "crop-flip-erase"
    with pytest.raises(ValueError, match="data.augment"):
        DataConfig(augment="erase-crop").validate()


def test_flip_mirrors_some_images_and_keeps_the_rest():
    x = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    out = augment_batch(x, "flip", torch.Generator().manual_seed(0))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54


def test_crop_shifts_content_by_at_most_the_padding():
    assert (crop_padding(28), crop_padding(32), crop_padding(64)) == (4, 4, 8)
    x = torch.zeros(64, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 14, 14] = 255  # one bright pixel in the middle
    out = augment_batch(x, "crop", torch.Generator().manual_seed(0))
    assert out.flatten(1).sum(1).eq(255).all()  # moved, never lost or duplicated, zero fill elsewhere
    where = out[:, 0].flatten(1).argmax(1)
    dy, dx = where // 28 - 14, where % 28 - 14
    assert dy.abs().max() <= 4 and dx.abs().max() <= 4
    assert (dy != 0).any() and (dx != 0).any() and len(set(zip(dy.tolist(), dx.tolist()))) > 10


def test_augment_is_reproducible_with_a_generator():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    a = augment_batch(x, "crop-flip", torch.Generator().manual_seed(7))
    b = augment_batch(x, "crop-flip", torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------- batching
def _numbered(n: int) -> ImageTensors:
    return ImageTensors(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1), torch.arange(n))


def test_batches_cover_every_sample_once_and_pair_images_with_labels():
    data = _numbered(10)
    batches = list(iterate_batches(data, 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    assert all(torch.equal(x.flatten().long(), y) for x, y in batches)
    assert [len(y) for _, y in iterate_batches(data, 4, shuffle=False, drop_last=True)] == [4, 4]


def test_batches_follow_given_indices():
    data = _numbered(10)
    order = [7, 3, 5]
    (x, y), = list(iterate_batches(data, 8, shuffle=False, indices=order))
    assert y.tolist() == order and x.flatten().tolist() == order


# -------------------------------------------------------------------------------------------- preview
def test_preview_takes_up_to_n_images_per_class_in_class_order():
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 2])
    data = ImageTensors(torch.arange(7, dtype=torch.uint8).view(7, 1, 1, 1), labels)
    bundle = DatasetBundle.from_splits("toy", ["a", "b", "c", "d"], data, data, val_fraction=0.0)
    images, picked = preview(bundle, per_class=2)
    assert picked.tolist() == [0, 0, 1, 2, 2] and images.flatten().tolist() == [1, 4, 3, 0, 2]
    assert class_counts(bundle.train, bundle.num_classes) == [2, 1, 4, 0]


# ------------------------------------------------------------------------------------ declared shapes
def test_declared_input_shape_matches_what_loading_gives(tmp_path):
    _fake_cifar10(tmp_path / "c10")
    _fake_idx(tmp_path / "fm")
    configs = [
        DataConfig(name="cifar10", root=str(tmp_path / "c10")),
        DataConfig(name="fashion-mnist", root=str(tmp_path / "fm")),
        DataConfig(name="mnist", root=str(tmp_path / "fm"), image_size=32),
        DataConfig(name="synthetic", options={"channels": 3, "image_size": 16, "train_size": 20, "test_size": 10}),
    ]
    for cfg in configs:
        bundle = load_dataset(cfg)
        assert declared_input_shape(cfg) == (bundle.in_channels, bundle.image_size, bundle.num_classes), cfg.name


def test_builtin_datasets_declare_their_shape_without_any_files(tmp_path):
    nowhere = str(tmp_path / "nowhere")
    assert declared_input_shape(DataConfig(name="cifar100", root=nowhere)) == (3, 32, 100)
    assert declared_input_shape(DataConfig(name="svhn", root=nowhere)) == (3, 32, 10)
    assert declared_input_shape(DataConfig(name="mnist", root=nowhere)) == (1, 28, 10)


def test_image_folders_and_invalid_settings_declare_no_shape(tmp_path):
    _image_folder(tmp_path)
    assert declared_input_shape(DataConfig(name="imagefolder", root=str(tmp_path))) is None
    assert declared_input_shape(DataConfig(name="synthetic", options={"channels": 2})) is None
    assert declared_input_shape(DataConfig(name="no-such-dataset")) is None


@pytest.mark.timeout(60)
def test_stopping_a_trainer_stops_its_dataset_download_at_once(tmp_path, stalling_proxy):
    """The app's Stop during a first run's download: the trainer waited for the silent server (30 s)."""
    import threading
    import time

    from iamnn_studio.engine import RunConfig
    from iamnn_studio.engine.trainer import Trainer
    from iamnn_studio.engine.data import downloading

    config = RunConfig(data=DataConfig(name="fashion-mnist", root=str(tmp_path / "data"), download=True), device="cpu")
    events = []
    trainer = Trainer(config, runs_dir=tmp_path / "runs", listeners=[events.append])
    result = {}
    job = threading.Thread(target=lambda: result.update(outcome=trainer.run()), daemon=True)
    job.start()
    deadline = time.monotonic() + 30
    while not any(p.stat().st_size for p in partial_files(tmp_path) if p.exists()):
        assert time.monotonic() < deadline and job.is_alive()
        time.sleep(0.05)
    trainer.stop()
    job.join(timeout=10)  # not the 30 s the server could keep it waiting
    assert not job.is_alive()
    assert_stopped_download(result["outcome"], trainer, events, tmp_path / "data", run_dir=None)
    assert partial_files(tmp_path) == [] and not downloading() and not (tmp_path / "runs").exists()


def assert_stopped_download(outcome, trainer, events, root: Path, run_dir) -> None:
    """A stopped download ends the run as the user's own stop, not as a failure (it read "failed"), and
    says what was stopped."""
    said = f"the download of Fashion-MNIST into {root} was stopped; no partial file was kept"
    assert (outcome.state, outcome.reason, outcome.ok, outcome.message) == ("stopped", "stopped", True, said)
    assert outcome.run_dir == run_dir and trainer.state == "stopped"
    assert [event.kind for event in events] == ["finished"]
    finished = events[0].data
    assert (finished["reason"], finished["message"], finished["run_dir"]) == \
        ("stopped", said, None if run_dir is None else str(run_dir))


@pytest.mark.timeout(60)
def test_a_trainer_stopped_before_its_download_began_does_not_download(tmp_path, stalling_proxy):
    """Stop (or Ctrl-C) in the moment between starting a run and its download registering found no
    download to stop: the download then ran to its end (here: the 30 s the silent server holds it)."""
    import threading

    from iamnn_studio.engine import RunConfig
    from iamnn_studio.engine.trainer import Trainer
    from iamnn_studio.engine.data import downloading

    config = RunConfig(data=DataConfig(name="fashion-mnist", root=str(tmp_path / "data"), download=True), device="cpu")
    events = []
    trainer = Trainer(config, runs_dir=tmp_path / "runs", listeners=[events.append])
    trainer.stop()  # before the run's thread reached its download
    result = {}
    job = threading.Thread(target=lambda: result.update(outcome=trainer.run()), daemon=True)
    job.start()
    job.join(timeout=10)
    assert not job.is_alive()
    assert_stopped_download(result["outcome"], trainer, events, tmp_path / "data", run_dir=None)
    assert stalling_proxy.connections == []  # never asked the server
    assert partial_files(tmp_path) == [] and not downloading()


@pytest.mark.timeout(60)
def test_ctrl_c_before_the_download_began_stops_train_with_exit_130_not_an_error(tmp_path, stalling_proxy, monkeypatch):
    import contextlib
    import io
    import os
    import signal

    from iamnn_studio.cli import main
    from iamnn_studio.engine import data

    original = data.load_dataset

    def ctrl_c_then_load(*args, **kwargs):  # Ctrl-C while the run prepares, before any download is listed
        os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(data, "load_dataset", ctrl_c_then_load)
    root = tmp_path / "data"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", "--dataset", "fashion-mnist", "--data-root", str(root), "--download",
                     "--runs-dir", str(tmp_path / "runs"), "--device", "cpu"])
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert code == 130, lines
    assert lines == ["stopping before training starts (Ctrl-C again to quit at once)",
                     f"the download of Fashion-MNIST into {root} was stopped; no partial file was kept"]
    assert stalling_proxy.connections == [] and partial_files(tmp_path) == []


@pytest.mark.timeout(90)
@pytest.mark.parametrize("taken_meanwhile", [False, True])
def test_a_resumed_run_whose_download_is_stopped_reads_stopped_with_its_progress_kept(tmp_path, stalling_proxy,
                                                                                      taken_meanwhile):
    """Continuing a run whose dataset is gone downloads it again; a Stop then left the run reading as a
    failure (the CLI's --resume, the app's Continue). Where another live process resumed the run while this
    one waited for its data, its status is left alone (was overwritten with "stopped")."""
    import json
    import os
    import socket
    import shutil
    import threading
    import time

    from iamnn_studio.engine import RunConfig
    from iamnn_studio.engine.trainer import Trainer

    root = tmp_path / "data"
    _fake_idx(root, n_train=40, n_test=8)
    config = RunConfig(name="fm", epochs=2, batch_size=8, seed=1, device="cpu",
                       data=DataConfig(name="fashion-mnist", root=str(root), download=True, val_fraction=0.25))
    config.model.iterations, config.model.width, config.calibrate_halting = (1, 1, 1, 1), 4, False
    holder = {}

    def stop_after_the_first_epoch(event) -> None:
        if event.kind == "epoch":
            holder["trainer"].stop()

    holder["trainer"] = Trainer(config, runs_dir=tmp_path / "runs", listeners=[stop_after_the_first_epoch])
    first = holder["trainer"].run()
    assert first.state == "stopped"
    status_path = first.run_dir / "status.json"
    before = json.loads(status_path.read_text())
    assert before["step"] > 0 and before["epochs_done"] == 1
    shutil.rmtree(root)  # the dataset is gone: continuing downloads it again

    events = []
    trainer = Trainer(None, run_dir=first.run_dir, resume=True, listeners=[events.append])
    result = {}
    job = threading.Thread(target=lambda: result.update(outcome=trainer.run()), daemon=True)
    job.start()
    deadline = time.monotonic() + 30
    while not root.exists() or not any(p.stat().st_size for p in partial_files(root) if p.exists()):
        assert time.monotonic() < deadline and job.is_alive()
        time.sleep(0.05)
    if taken_meanwhile:  # a live process of this machine (our parent) trains the run now
        claimed = {**before, "state": "running", "pid": os.getppid(), "host": socket.gethostname()}
        status_path.write_text(json.dumps(claimed))
    trainer.stop()
    job.join(timeout=10)
    assert not job.is_alive()
    assert_stopped_download(result["outcome"], trainer, events, root, run_dir=first.run_dir)
    assert events[0].data["step"] == before["step"]  # where the run stands: its last checkpoint
    status = json.loads(status_path.read_text())
    if taken_meanwhile:
        assert status == claimed
        return
    assert status["state"] == "stopped" and status["reason"] == events[0].data["message"]
    assert {key: status[key] for key in ("step", "epochs_done", "total_epochs", "best_accuracy", "created")} == \
        {key: before[key] for key in ("step", "epochs_done", "total_epochs", "best_accuracy", "created")}
    assert partial_files(root) == []



@pytest.mark.timeout(120)
def test_ctrl_c_during_the_download_of_a_run_of_several_processes_stops_it_with_the_download_line_and_130(
        tmp_path, stalling_proxy):
    """It ended "error: the download ... was stopped ...", exit 2: rank 0 fails a stopped download (the other
    processes' wait for it ends only so), and the launcher took that for the job's failure."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:  # a port of its own: another job on this machine may hold torch's 29500
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root, runs = tmp_path / "data", tmp_path / "runs"
    job = subprocess.Popen([sys.executable, "-m", "iamnn_studio", "train", "--dataset", "fashion-mnist", "--data-root",
                            str(root), "--download", "--runs-dir", str(runs), "--device", "cpu", "--nproc-per-node",
                            "2", "--master-port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    try:
        deadline = time.monotonic() + 90
        while not any(p.stat().st_size for p in partial_files(root) if p.exists()):
            if job.poll() is not None or time.monotonic() > deadline:
                if job.poll() is None:
                    os.killpg(job.pid, signal.SIGKILL)
                pytest.fail(f"no download began: {job.communicate()[1][-3000:]}")
            time.sleep(0.1)
        os.killpg(job.pid, signal.SIGINT)  # what Ctrl-C in the terminal does: the launcher and its workers
        _, err = job.communicate(timeout=40)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    lines = [line for line in err.splitlines() if line.strip() and "%" not in line]  # no download progress bar
    assert (job.returncode, lines) == (130, [f"the download of Fashion-MNIST into {root} was stopped; "
                                             "no partial file was kept"])
    assert partial_files(tmp_path) == [] and not (runs.exists() and any(runs.iterdir()))  # the reserved folder: gone


def test_a_glance_tells_which_split_an_evaluation_will_measure(tmp_path):
    """The Study tab names the images before evaluating: an image folder without test/ is evaluated on its held-out
    images ("val", as ``evaluate.evaluation_split`` decides once it is loaded)."""
    from iamnn_studio.engine.data import evaluation_split_of
    from iamnn_studio.engine.evaluate import evaluation_split

    def glance(folder):
        return evaluation_split_of(DataConfig(name="imagefolder", root=str(folder)))

    _image_folder(tmp_path / "flat", per_class=2)
    _image_folder(tmp_path / "split" / "train", per_class=2)
    _image_folder(tmp_path / "split" / "test", per_class=1)
    for folder in ("flat", "split"):  # the glance agrees with what loading decides
        loaded = load_dataset(DataConfig(name="imagefolder", root=str(tmp_path / folder), val_fraction=0.5))
        assert glance(tmp_path / folder) == evaluation_split(loaded)[0]
    assert glance(tmp_path / "flat") == "val" and glance(tmp_path / "split") == "test"
    assert glance(tmp_path / "missing") is None  # nothing to look at: loading will say what is wrong
    assert evaluation_split_of(DataConfig(name="synthetic")) is None  # only loading tells (the view reads "test")


def test_a_dataset_checks_truth_value_of_any_integer_kind_is_an_answer():
    """Review: a plugin's check answering (numpy.True_, why) or (1, why) was read as "cannot check", which blocked
    Start in the app; text or None is still no answer."""
    import numpy as np

    from iamnn_studio.engine.data import offline_verdict

    class Check:
        def __init__(self, verdict):
            self.verdict = verdict

        def available_offline(self, root):
            return self.verdict

    assert offline_verdict(Check((np.True_, "found")), None) == (True, "found")
    assert offline_verdict(Check((1, "found")), None) == (True, "found")
    assert offline_verdict(Check((np.False_, "missing")), None) == (False, "missing")
    for no_answer in (("yes", "found"), (None, "found"), True):
        available, why = offline_verdict(Check(no_answer), None)
        assert available is False and why.startswith("cannot check: available_offline returned")
