"""Checkpoints round-trip exactly and refuse every kind of bad file with one clear sentence."""
from __future__ import annotations

import os
import zipfile

import pytest
import torch

from iamnn_studio.engine.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from iamnn_studio.engine.config import ModelConfig, RunConfig
from iamnn_studio.engine.model import build_model

CLASSES = ["cat", "dog", "owl"]


def tiny_config(**overrides) -> ModelConfig:
    settings = dict(iterations=(1, 2, 2, 1), width=4, image_size=16, in_channels=1, num_classes=3, threshold=0.6)
    settings.update(overrides)
    return ModelConfig(**settings)


def trained_looking(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random non-default values everywhere (batchnorm statistics included), so a lost tensor shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator)
                tensor.copy_(values + 0.5 if "running_var" in name else values - 0.5)
    return model.eval()


def save_tiny(path, config=None, **kwargs):
    model = trained_looking(build_model(config or tiny_config()))
    save_checkpoint(path, model, classes=CLASSES, mean=[0.5], std=[0.25], **kwargs)
    return model


def test_round_trip_preserves_outputs_and_context_exactly(tmp_path):
    run = RunConfig(name="round-trip")
    path = tmp_path / "model.pt"
    rng = torch.Generator().manual_seed(7).get_state()
    model = save_tiny(
        path, run_config=run, metrics={"val_accuracy": 0.75, "epoch": 3},
        training_state={"epoch": 3, "rng": rng},
    )
    loaded = load_checkpoint(path)

    x = torch.randn(6, 1, 16, 16)
    with torch.no_grad():
        want, got = model(x), loaded.model(x)
    assert torch.equal(want.logits, got.logits)
    assert torch.equal(want.iterations, got.iterations)
    assert torch.equal(want.macs, got.macs)
    assert not loaded.model.training
    assert loaded.model_config.threshold == 0.6
    assert loaded.model_config.caps == (1, 2, 2, 1)
    assert loaded.classes == CLASSES
    assert loaded.mean == (0.5,) and loaded.std == (0.25,)
    assert loaded.metrics == {"val_accuracy": 0.75, "epoch": 3}
    assert loaded.run_config.name == "round-trip"
    assert torch.equal(loaded.training_state["rng"], rng)
    assert loaded.path == path and loaded.format_version == FORMAT_VERSION


def test_saved_files_get_the_permissions_any_new_file_gets(tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        save_tiny(tmp_path / "model.pt")
        (tmp_path / "plain").write_bytes(b"")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "model.pt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o644  # not the temp file's 0600


def test_checkpoint_is_a_plain_weights_only_dict(tmp_path):
    save_tiny(tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    assert payload["format"] == "iamnn-studio-checkpoint"
    assert payload["architecture"] == "iamnn"
    assert payload["model_config"]["threshold"] == 0.6


def test_resnet_baseline_round_trips(tmp_path):
    model = save_tiny(tmp_path / "resnet.pt", tiny_config(architecture="resnet"))
    loaded = load_checkpoint(tmp_path / "resnet.pt")
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded.model(x).logits)


def test_keep_previous_keeps_the_replaced_file(tmp_path):
    path = tmp_path / "last.pt"
    first = save_tiny(path)
    save_tiny(path, keep_previous=True, config=tiny_config(threshold=0.9))
    previous = load_checkpoint(tmp_path / "last.pt.prev")
    assert previous.model_config.threshold == 0.6
    assert torch.equal(previous.model.fc.weight, first.fc.weight)
    assert load_checkpoint(path).model_config.threshold == 0.9
    assert not list(tmp_path.glob(".*tmp"))


class RunsCode:
    """Unpickling this object would create a file: the proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "iamnn-studio-checkpoint", "payload": RunsCode(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refused: this file needs arbitrary code to load"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_checkpoint_is_refused_as_damaged(tmp_path):
    path = tmp_path / "model.pt"
    save_tiny(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.pt is damaged or incomplete"):
        load_checkpoint(path)


def test_flipped_bytes_fail_the_checksum(tmp_path):
    path = tmp_path / "model.pt"
    save_tiny(path)
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size > 64)
    data = bytearray(path.read_bytes())
    data[info.header_offset + 200] ^= 0xFF  # inside the tensor bytes (stored uncompressed)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged: .* fails its checksum"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (os.urandom(256).replace(b"PK", b"xx"), "not a PyTorch zip file"),
        (b"hello, I am a text file\n", "not a PyTorch zip file"),
    ],
)
def test_files_that_are_not_checkpoints_are_refused(tmp_path, content, message):
    path = tmp_path / "thing.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_a_runs_checkpoint_is_named_with_its_run(tmp_path):
    """QA: `evaluate runs/r1` said "best.pt is not an IamNN Studio checkpoint": every run has a best.pt."""
    damaged = tmp_path / "r1" / "checkpoints" / "best.pt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"hello, I am a text file\n")
    with pytest.raises(CheckpointError, match=r"^r1/checkpoints/best\.pt is not an IamNN Studio checkpoint"):
        load_checkpoint(damaged)
    save_tiny(damaged, tiny_config())
    payload = torch.load(damaged, weights_only=True)
    payload["model_config"]["width"] = 8  # settings that the weights do not fit
    torch.save(payload, damaged)
    with pytest.raises(CheckpointError, match=r"^r1/checkpoints/best\.pt does not fit"):
        load_checkpoint(damaged)


def test_foreign_zip_and_foreign_torch_files_are_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "archive.pt", "w") as archive:
        archive.writestr("notes/readme.txt", "hello")
    with pytest.raises(CheckpointError, match="a zip file, but not a PyTorch one"):
        load_checkpoint(tmp_path / "archive.pt")

    torch.save(build_model(tiny_config()).state_dict(), tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match=r"not an IamNN Studio checkpoint \(a bare dict of tensors"):
        load_checkpoint(tmp_path / "weights.pt")


def test_a_torchscript_export_is_named_as_one_without_torchs_warning(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated; users still have such files
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "exported.pt"))
    with warnings.catch_warnings(record=True) as caught, pytest.raises(CheckpointError) as refused:
        warnings.simplefilter("always")
        load_checkpoint(tmp_path / "exported.pt")
    assert str(refused.value).startswith("exported.pt is a TorchScript export, not an IamNN Studio checkpoint")
    assert "weights_only" not in str(refused.value) and not [w for w in caught if "TorchScript" in str(w.message)]


@pytest.mark.parametrize("key, value, words", [
    ("mean", [0.5, 0.5, 0.5], "normalisation mean holds 0.5, 0.5 and 0.5, which does not fit a model of 1 input channel"),
    ("mean", 0.5, "normalisation mean is not a list of numbers"),
    ("mean", [], "normalisation mean holds no numbers, which does not fit a model of 1 input channel"),
    ("std", [0.0], "normalisation std must be positive, got 0"),  # in words, not Python's list "[0.0]"
    ("std", [float("nan")], "normalisation std holds nan, which does not fit"),
])
def test_a_checkpoint_whose_normalisation_cannot_work_is_refused_at_load(tmp_path, key, value, words):
    save_tiny(tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    payload[key] = value
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match=r"^edited.pt is damaged: its " + words.replace("[", r"\[").replace("]", r"\]")):
        load_checkpoint(tmp_path / "edited.pt")


def test_onnx_and_pt2_exports_are_named_as_such(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x08\x0a\x12\x07pytorch")  # how a torch-made ONNX model begins
    with pytest.raises(CheckpointError, match="^model.onnx looks like an ONNX export"):
        load_checkpoint(tmp_path / "model.onnx")
    with zipfile.ZipFile(tmp_path / "model.pt2", "w") as archive:
        archive.writestr("archive/archive_format", "pt2")
        archive.writestr("archive/data.pkl", b"")
    with pytest.raises(CheckpointError, match=r"^model.pt2 is a torch.export \(.pt2\) program"):
        load_checkpoint(tmp_path / "model.pt2")


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint: .*nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_other_architecture_weights_are_refused_naming_the_parameter(tmp_path):
    path = tmp_path / "model.pt"
    save_tiny(path, tiny_config(architecture="resnet"))
    payload = torch.load(path, weights_only=True)
    payload["architecture"] = "iamnn"  # settings of an IamNN, weights of a ResNet
    payload["model_config"]["architecture"] = "iamnn"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"does not fit the iamnn model .*parameter 'stem\.0\.weight' is missing"):
        load_checkpoint(path)


def test_mismatched_shape_is_refused_naming_the_parameter(tmp_path):
    path = tmp_path / "model.pt"
    save_tiny(path, tiny_config(width=4))
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["num_classes"] = 5
    payload["classes"] = list("abcde")
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"parameter 'fc\.weight' has shape 3×128 in the checkpoint but shape 5×128 "):
        load_checkpoint(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_that_are_not_finite_are_refused_naming_the_parameter(tmp_path, bad):
    path = tmp_path / "model.pt"
    save_tiny(path, tiny_config(width=4))
    load_checkpoint(path)  # the model as saved loads (every buffer and parameter finite)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["fc.weight"][0, 0] = bad  # QA: such a model predicted "nan%" for every image
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"parameter 'fc\.weight' holds NaN or infinite values"):
        load_checkpoint(path)


def test_unknown_architecture_and_newer_format_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    save_tiny(path)
    payload = torch.load(path, weights_only=True)

    torch.save({**payload, "architecture": "vit"}, path)
    with pytest.raises(CheckpointError, match="holds a 'vit' model"):
        load_checkpoint(path)

    torch.save({**payload, "format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="newer than this IamNN Studio reads"):
        load_checkpoint(path)


def test_unwritable_destination_is_a_checkpoint_error(tmp_path):
    model = build_model(tiny_config())
    with pytest.raises(CheckpointError, match="it is a folder"):
        save_checkpoint(tmp_path, model, classes=CLASSES, mean=[0.5], std=[0.25])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        save_checkpoint(blocker / "model.pt", model, classes=CLASSES, mean=[0.5], std=[0.25])


def test_model_from_a_missing_plugin_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    save_tiny(path)
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["block"] = "no-such-block"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"model\.pt needs processing block 'no-such-block', from a plugin that "
                                              r"is not installed here"):
        load_checkpoint(path)


class _DiskFullAfter:
    """A file opened for writing on a disk with ``room`` bytes left: writes past it fail as the kernel's do."""

    def __init__(self, fh, room: int) -> None:
        self.fh, self.room = fh, room

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        if len(data) > self.room:
            import errno

            self.fh.write(data[:self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.fh.close()


def test_a_full_disk_is_said_in_words_and_keeps_the_checkpoint_there_was(tmp_path, monkeypatch):
    """torch's C++ writer turned ENOSPC into "RuntimeError: [enforce fail at inline_container.cc:672] .
    unexpected pos" (the CLI: "error: unexpected error: RuntimeError ...")."""
    from iamnn_studio.engine import io as engine_io

    path = tmp_path / "last.pt"
    save_tiny(path)
    before = path.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(engine_io.os, "fdopen", lambda fd, mode: _DiskFullAfter(real_fdopen(fd, mode), 1000))
    model = trained_looking(build_model(tiny_config()), seed=1)
    with pytest.raises(CheckpointError) as failed:
        save_checkpoint(path, model, classes=CLASSES, mean=[0.5], std=[0.25])
    message = str(failed.value)
    assert message.startswith(f"cannot write checkpoint {path}: the disk is full (")
    assert " free, the checkpoint takes " in message and "KiB)" in message
    assert path.read_bytes() == before  # the checkpoint there was, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no partial temp file left


def test_a_damaged_zip_directory_is_refused_as_damaged(tmp_path):
    # flipped bytes in the names of the zip's central directory: zipfile raises UnicodeDecodeError there,
    # which once reached the user as "error: 'utf-8' codec can't decode byte 0xff ..."
    path = tmp_path / "model.pt"
    save_tiny(path)
    data = bytearray(path.read_bytes())
    entry = data.rindex(b"PK\x01\x02")  # the last central directory entry
    data[entry + 9] |= 0x08  # its flags' bit 11 (0x800): the name is UTF-8
    data[entry + 46] = 0xFF  # the name's first byte: never UTF-8
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"^model\.pt is damaged"):
        load_checkpoint(path)
