"""Exported models give the adaptive model's answers: ONNX in onnxruntime, TorchScript in torch.jit."""
from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from iamnn_studio.engine.checkpoint import CheckpointError
from iamnn_studio.engine.data.augment import normalize
from iamnn_studio.engine.export import EXPORTERS, ExportError, export_checkpoint, read_torchscript_metadata
from tiny_models import CLASSES, MEAN, STD, save_varied_checkpoint, tiny_config, varied_halting_model, varied_images


def reference(model, images):
    with torch.no_grad():
        return model(normalize(images, MEAN, STD))


def as_unit_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0


@pytest.fixture(scope="module")
def images():
    return varied_images(30, seed=1).images  # not the images the model's statistics were fitted on


def test_both_formats_are_registered():
    assert {"onnx", "torchscript"} <= set(EXPORTERS.names())
    assert EXPORTERS.get("onnx").suffix == ".onnx"


def test_onnx_answers_equal_the_adaptive_model_at_a_chosen_threshold_and_its_export_prints_nothing(
        tmp_path, images, capfd, monkeypatch):
    """The exported graph gives the model's answers at the mode and threshold chosen for the export (baked into
    the graph, said in the metadata), and the exporter is kept quiet by its own options, not by redirecting
    sys.stdout process-wide: a redirection swallowed what the app's other threads printed meanwhile.
    (One test: an ONNX export takes seconds, and all of it is about the same export. A default export's
    metadata, the checkpoint's own halting, is checked on ONNX in test_cli's test_export_writes_each_format.)"""
    import sys
    import threading

    from iamnn_studio.engine.checkpoint import load_checkpoint

    model = save_varied_checkpoint(tmp_path / "model.pt")  # its own threshold: 0.7
    own = reference(model, images)
    model.set_threshold(0.9)
    want = reference(model, images)
    assert len(torch.unique(want.iterations, dim=0)) > 2  # halting really varies between these images
    assert not torch.equal(own.iterations, want.iterations)  # and the threshold matters on them

    real_export = torch.onnx.export
    stdout_during_export = []

    def export_while_another_thread_prints(*args, **kwargs):
        stdout_during_export.append(sys.stdout)
        other = threading.Thread(target=print, args=("printed by another thread",))
        other.start()
        other.join()
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export_while_another_thread_prints)
    capfd.readouterr()
    before = sys.stdout
    out = export_checkpoint(tmp_path / "model.pt", "onnx", tmp_path / "model.onnx", mode="adaptive", threshold=0.9)
    printed, err = capfd.readouterr()
    assert stdout_during_export and all(stream is before for stream in stdout_during_export)
    assert printed == "printed by another thread\n" * len(stdout_during_export)  # and nothing from the exporter
    assert "[torch.onnx]" not in err

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    logits, iterations, macs = session.run(None, {"images": as_unit_float(images).numpy()})  # 30: not the traced batch
    np.testing.assert_allclose(logits, want.logits.numpy(), atol=1e-4)
    np.testing.assert_array_equal(iterations, want.iterations.numpy())
    np.testing.assert_array_equal(macs, want.macs.numpy())

    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["classes"]) == CLASSES and props["batch"] == "dynamic"
    assert props["halting"] == "adaptive, threshold 0.900" and json.loads(props["model_config"])["threshold"] == 0.9
    assert load_checkpoint(tmp_path / "model.pt").model_config.threshold == 0.7  # the checkpoint is untouched


@pytest.mark.parametrize("halting", ["calibrated", "act"])
def test_torchscript_answers_equal_the_adaptive_model(tmp_path, images, halting):
    model = save_varied_checkpoint(tmp_path / "model.pt", tiny_config(halting=halting, threshold=0.8))
    out = export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "model.ts", batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
        loaded = torch.jit.load(str(out))
    logits, iterations, macs = loaded(as_unit_float(images))
    want = reference(model, images)
    torch.testing.assert_close(logits, want.logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(iterations, want.iterations) and torch.equal(macs, want.macs)
    assert json.loads(read_torchscript_metadata(out)["classes"]) == CLASSES


def test_resnet_baseline_exports(tmp_path, images):
    model = save_varied_checkpoint(tmp_path / "resnet.pt", tiny_config(architecture="resnet"))
    out = export_checkpoint(tmp_path / "resnet.pt", "torchscript", tmp_path / "resnet.ts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        logits, _, macs = torch.jit.load(str(out))(as_unit_float(images))
    torch.testing.assert_close(logits, reference(model, images).logits, atol=1e-5, rtol=1e-5)
    assert macs.unique().tolist() == [model.macs_range()[0]]
    (tmp_path / "plain").write_bytes(b"")  # an export is readable like any file written here, not 0600
    assert out.stat().st_mode == (tmp_path / "plain").stat().st_mode


@pytest.mark.parametrize(("fmt", "name", "said"), [
    ("onnx", "model.onnx", None), ("onnx", "out/MODEL.ONNX", None), ("torchscript", "model.pt", None),
    ("torchscript", "model.ts", None), ("no-such-format", "model.txt", None),
    ("onnx", "model.onnx.txt", "model.onnx.txt ends in .txt, not .onnx, the usual suffix of ONNX files: "
                               "it is written as ONNX all the same"),
    ("torchscript", "out/model.onnx", "out/model.onnx ends in .onnx, not .pt, the usual suffix of TorchScript "
                                      "files: it is written as TorchScript all the same"),
    ("onnx", "model", "model has no suffix (ONNX files usually end in .onnx): it is written as ONNX all the same"),
])
def test_a_file_name_that_does_not_suit_the_format_gets_a_note(fmt, name, said):
    from iamnn_studio.engine.export import suffix_mismatch

    assert suffix_mismatch(fmt, name) == said


def test_unknown_format_names_the_known_ones(tmp_path):
    save_varied_checkpoint(tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"unknown exporter 'tflite' \(known: .*onnx.*torchscript"):
        export_checkpoint(tmp_path / "model.pt", "tflite", tmp_path / "model.tflite")


def test_unwritable_destinations_are_refused_before_any_work(tmp_path):
    save_varied_checkpoint(tmp_path / "model.pt")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="cannot write .*model.ts: .*a-file is a file, not a folder"):
        export_checkpoint(tmp_path / "model.pt", "torchscript", blocker / "model.ts")
    with pytest.raises(ExportError, match="it is a folder"):
        export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "model.pt"]


def test_exporting_onto_the_checkpoint_itself_is_refused(tmp_path):
    save_varied_checkpoint(tmp_path / "model.pt")
    before = (tmp_path / "model.pt").read_bytes()
    with pytest.raises(ExportError, match="it is the checkpoint being exported"):
        export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "." / "model.pt")
    assert (tmp_path / "model.pt").read_bytes() == before


def test_a_full_disk_is_a_sentence_and_leaves_no_file(tmp_path, monkeypatch):
    import errno
    import shutil
    from pathlib import Path

    import iamnn_studio.engine.export as export

    save_varied_checkpoint(tmp_path / "model.pt")
    real_usage = shutil.disk_usage
    monkeypatch.setattr(export.shutil, "disk_usage", lambda path: real_usage(path)._replace(free=1024))
    with pytest.raises(ExportError, match=r"cannot write .*model.ts: about [\d.]+ MB is needed and 1 kB is free"):
        export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "model.ts")
    monkeypatch.setattr(export.shutil, "disk_usage", real_usage)

    # the disk fills while writing: TorchScript's archive is built in memory, so Python's write fails cleanly
    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", no_space)
    with pytest.raises(ExportError, match="cannot write .*model.ts: No space left on device"):
        export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "model.ts")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_an_export_never_replaces_a_runs_checkpoint(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text("name = 'run'\n")
    save_varied_checkpoint(run / "checkpoints" / "best.pt")
    save_varied_checkpoint(run / "checkpoints" / "last.pt")
    before = (run / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(ExportError, match="last.pt: it is a file of the training run in .*run; write somewhere else"):
        export_checkpoint(run / "checkpoints" / "best.pt", "torchscript", run / "checkpoints" / "last.pt")
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    (run / "status.json").write_text("{}")
    for name in ("config.toml", "status.json"):
        before = (run / name).read_bytes()
        with pytest.raises(ExportError, match=f"{name}: it is a file of the training run"):
            export_checkpoint(run / "checkpoints" / "best.pt", "onnx", run / name)
        assert (run / name).read_bytes() == before
    (run / "checkpoints" / "best.pt").rename(run / "best-copy.pt")  # a stopped run: no best.pt yet
    for name in ("checkpoints/best.pt", "eval.json"):
        with pytest.raises(ExportError, match="it is a file of the training run"):
            export_checkpoint(run / "best-copy.pt", "onnx", run / name)
        assert not (run / name).exists()
    # a file the user exported into the run folder earlier is theirs to replace
    (run / "model.ts").write_bytes(b"old")
    export_checkpoint(run / "best-copy.pt", "torchscript", run / "model.ts")
    assert (run / "model.ts").read_bytes() != b"old"


def test_an_export_writes_through_a_link_and_refuses_devices_and_pipes(tmp_path):
    save_varied_checkpoint(tmp_path / "model.pt")
    (tmp_path / "target.ts").write_bytes(b"old")
    (tmp_path / "link.ts").symlink_to(tmp_path / "target.ts")
    export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "link.ts")
    assert (tmp_path / "link.ts").is_symlink() and (tmp_path / "target.ts").read_bytes() != b"old"
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ExportError, match="pipe: it is not a regular file"):
        export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "pipe")
    assert stat.S_ISFIFO((tmp_path / "pipe").stat().st_mode)
    with pytest.raises(ExportError, match="/dev/null: it is not a regular file"):
        export_checkpoint(tmp_path / "model.pt", "onnx", "/dev/null")
    assert Path("/dev/null").is_char_device()


@pytest.mark.parametrize("batch_size", [0, 4097, True, 2.0])
def test_an_example_batch_out_of_range_is_refused_before_loading(tmp_path, batch_size):
    with pytest.raises(ExportError, match=r"batch size must be an integer in \[1, 4096\]"):
        export_checkpoint(tmp_path / "missing.pt", "onnx", tmp_path / "model.onnx", batch_size=batch_size)
    assert not (tmp_path / "model.onnx").exists()


def test_running_out_of_memory_while_tracing_says_what_to_change(tmp_path, monkeypatch):
    save_varied_checkpoint(tmp_path / "model.pt")

    def out_of_memory(checkpoint, path, *, batch_size):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] you tried to allocate 313599996864 bytes")

    monkeypatch.setitem(EXPORTERS._items, "torchscript", out_of_memory)
    with pytest.raises(ExportError, match="not enough memory to trace an example batch of 64 images"):
        export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "model.ts", batch_size=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        export_checkpoint(tmp_path / "nope.pt", "onnx", tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_exporting_a_never_calibrated_model_warns_what_its_iterations_mean(tmp_path, caplog):
    from iamnn_studio.engine.checkpoint import save_checkpoint
    from iamnn_studio.engine.model import build_model

    model = build_model(tiny_config(threshold=None)).eval()  # calibrated recipe, head never fitted
    save_checkpoint(tmp_path / "raw.pt", model, classes=CLASSES, mean=MEAN, std=STD)
    with caplog.at_level("WARNING", logger="iamnn_studio"):
        export_checkpoint(tmp_path / "raw.pt", "torchscript", tmp_path / "raw.ts")
    assert any("never calibrated" in r.getMessage() for r in caplog.records)  # the CLI prints it as a note
    caplog.clear()
    save_varied_checkpoint(tmp_path / "fitted.pt")
    with caplog.at_level("WARNING", logger="iamnn_studio"):
        export_checkpoint(tmp_path / "fitted.pt", "torchscript", tmp_path / "fitted.ts")
    assert not any("never calibrated" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- the halting the export carries
def test_a_chosen_threshold_is_baked_into_the_torchscript_graph_and_said_in_its_metadata(tmp_path, images):
    model = save_varied_checkpoint(tmp_path / "model.pt")  # its own threshold: 0.7
    own = reference(model, images)
    model.set_threshold(0.95)
    chosen = reference(model, images)
    assert not torch.equal(own.iterations, chosen.iterations)  # the threshold matters on these images

    out = export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "model.ts", threshold=0.95)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _, iterations, macs = torch.jit.load(str(out))(as_unit_float(images))
    assert torch.equal(iterations, chosen.iterations) and torch.equal(macs, chosen.macs)
    meta = read_torchscript_metadata(out)
    assert meta["halting"] == "adaptive, threshold 0.950"
    assert json.loads(meta["model_config"])["threshold"] == 0.95
    from iamnn_studio.engine.checkpoint import load_checkpoint
    assert load_checkpoint(tmp_path / "model.pt").model_config.threshold == 0.7  # the checkpoint is untouched


def test_a_chosen_fixed_mode_reaches_the_exported_file(tmp_path, images):
    """The same halting step precedes every exporter (ONNX: the test above): a fixed mode, through TorchScript."""
    save_varied_checkpoint(tmp_path / "model.pt")
    out = export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "fixed.ts", mode="fixed:2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
        _, iterations, _ = torch.jit.load(str(out))(as_unit_float(images))
    assert iterations.tolist() == [[1, 2, 2, 2]] * len(images)  # two per block, capped at (1, 2, 3, 2)
    props = read_torchscript_metadata(out)
    assert props["halting"] == "fixed:2 (iterations 1-2-2-2)" and json.loads(props["model_config"])["mode"] == "fixed:2"


@pytest.mark.parametrize(("settings", "said"), [
    ({"threshold": 1.5}, r"threshold: must be in \(0, 1\], got 1.5"),
    ({"threshold": True}, r"threshold: must be in \(0, 1\], got True"),
    ({"mode": "sometimes"}, r"mode: must be 'adaptive', 'fixed:N' or 'max', got 'sometimes'"),
    ({"threshold": 1e-300}, r"threshold: must be at least 1e-45, got 1e-300 \(0 in the model's float32 arithmetic"),
    ({"mode": "max", "threshold": 0.9}, "the halting threshold applies to the mode adaptive, not max"),
])
def test_a_halting_setting_the_model_cannot_take_is_one_sentence_and_writes_nothing(tmp_path, settings, said):
    save_varied_checkpoint(tmp_path / "model.pt")
    with pytest.raises(ExportError, match=said):
        export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "model.ts", **settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


@pytest.mark.parametrize("settings", [{"threshold": 1.5}, {"mode": "sometimes"}])
def test_a_refused_export_leaves_no_folder_it_made(tmp_path, settings):
    """QA: `export ... --out new/sub/model.pt --threshold 1.5` was refused, and left the empty folders new/sub."""
    save_varied_checkpoint(tmp_path / "model.pt")
    with pytest.raises(ExportError):
        export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "new" / "sub" / "model.ts", **settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_resnet_baseline_takes_no_halting_setting(tmp_path):
    save_varied_checkpoint(tmp_path / "resnet.pt", tiny_config(architecture="resnet"))
    with pytest.raises(ExportError, match="ResNet baseline: it has no iterations to choose or halting"):
        export_checkpoint(tmp_path / "resnet.pt", "torchscript", tmp_path / "resnet.ts", threshold=0.9)
    out = export_checkpoint(tmp_path / "resnet.pt", "torchscript", tmp_path / "resnet.ts")
    assert read_torchscript_metadata(out)["halting"].startswith("none (ResNet baseline")


def test_exporting_a_never_calibrated_model_at_every_iteration_needs_no_caveat(tmp_path, caplog):
    from iamnn_studio.engine.checkpoint import load_checkpoint, save_checkpoint
    from iamnn_studio.engine.export import export_caveats
    from iamnn_studio.engine.model import build_model

    save_checkpoint(tmp_path / "raw.pt", build_model(tiny_config(threshold=None)).eval(), classes=CLASSES,
                    mean=MEAN, std=STD)
    with caplog.at_level("WARNING", logger="iamnn_studio"):
        export_checkpoint(tmp_path / "raw.pt", "torchscript", tmp_path / "raw.ts", mode="max")
    assert not any("never calibrated" in r.getMessage() for r in caplog.records)
    with caplog.at_level("WARNING", logger="iamnn_studio"):  # a threshold does not calibrate the head
        export_checkpoint(tmp_path / "raw.pt", "torchscript", tmp_path / "raw.ts", threshold=0.5)
    assert any("never calibrated" in r.getMessage() for r in caplog.records)
    assert export_caveats(load_checkpoint(tmp_path / "raw.pt"), mode="fixed:1") == []


def test_the_cli_exports_with_a_chosen_mode_or_threshold_and_refuses_a_bad_one(tmp_path):
    import contextlib
    import io

    from iamnn_studio.cli import main

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
        return code, out.getvalue(), err.getvalue()

    save_varied_checkpoint(tmp_path / "model.pt")
    code, out, err = run("export", tmp_path / "model.pt", "--format", "torchscript", "--out", tmp_path / "model.ts",
                         "--threshold", "0.95")
    assert code == 0, err
    assert read_torchscript_metadata(tmp_path / "model.ts")["halting"] == "adaptive, threshold 0.950"
    code, _, err = run("export", tmp_path / "model.pt", "--format", "torchscript", "--out", tmp_path / "max.ts",
                       "--mode", "max")
    assert code == 0 and read_torchscript_metadata(tmp_path / "max.ts")["halting"] == "max (iterations 1-2-3-2)"
    code, _, err = run("export", tmp_path / "model.pt", "--format", "torchscript", "--out", tmp_path / "bad.ts",
                       "--threshold", "1.5")
    assert (code, err) == (2, "error: --threshold: must be in (0, 1], got 1.5\n")  # the option, not the setting
    assert not (tmp_path / "bad.ts").exists()


@pytest.mark.parametrize(("option", "said"), [
    (["--threshold", "1e-300"], "--threshold: must be at least 1e-45, got 1e-300 (0 in the model's float32 "
                                "arithmetic: every block would stop at its first iteration)"),
    (["--mode", "sometimes"], "--mode: must be 'adaptive', 'fixed:N' or 'max', got 'sometimes'"),
    (["--mode", "fixed:0"], "--mode: 'fixed:N' needs N >= 1, got 0"),
    (["--mode", "max", "--threshold", "0.9"], "--threshold: the halting threshold applies to the mode adaptive, not max"),
])
def test_the_cli_names_the_export_option_a_halting_error_is_about(tmp_path, option, said):
    """export said "threshold: ..." / "mode: ...", the settings' names, where the user typed --threshold / --mode."""
    import contextlib
    import io

    from iamnn_studio.cli import main

    save_varied_checkpoint(tmp_path / "model.pt")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["export", str(tmp_path / "model.pt"), "--format", "torchscript", "--out",
                     str(tmp_path / "bad.ts"), *option])
    assert (code, out.getvalue(), err.getvalue()) == (2, "", f"error: {said}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


@pytest.mark.parametrize(("mode", "runs"), [
    ("fixed:99", [1, 2, 3, 2]),  # used to say "fixed:99": no block runs past its cap
    ("fixed:2", [1, 2, 2, 2]),  # used to say "fixed:2"
    ("fixed:1", [1, 1, 1, 1]),
    ("max", [1, 2, 3, 2]),
])
def test_the_halting_metadata_says_the_iterations_each_block_runs(mode, runs):
    from iamnn_studio.engine.export import describe_halting

    config = tiny_config(mode=mode).validate()  # caps 1-2-3-2
    assert describe_halting(config) == f"{mode} (iterations {'-'.join(map(str, runs))})"
    assert varied_halting_model(config)(torch.rand(2, 1, 16, 16)).iterations.tolist() == [runs] * 2  # what runs


def test_a_fixed_mode_past_the_caps_is_exported_with_the_iterations_it_runs(tmp_path, images):
    save_varied_checkpoint(tmp_path / "model.pt")
    out = export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "model.ts", mode="fixed:99")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _, iterations, _ = torch.jit.load(str(out))(as_unit_float(images))
    assert iterations.tolist() == [[1, 2, 3, 2]] * len(images)
    meta = read_torchscript_metadata(out)
    assert meta["halting"] == "fixed:99 (iterations 1-2-3-2)" and json.loads(meta["model_config"])["mode"] == "fixed:99"


# --------------------------------------------------------------------------- QA: inference form, overwrite, plugins
@pytest.mark.parametrize("architecture", ["iamnn", "resnet"])
def test_a_torchscript_export_answers_without_autograd(tmp_path, images, architecture):
    """QA: its outputs required grad, so `.numpy()` failed without `.detach()`."""
    model = save_varied_checkpoint(tmp_path / "model.pt", tiny_config(architecture=architecture))
    out = export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "model.ts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
        loaded = torch.jit.load(str(out))
    outputs = loaded(as_unit_float(images))
    assert [t.requires_grad for t in outputs] == [False, False, False]
    assert not any(p.requires_grad for p in loaded.parameters())
    np.testing.assert_allclose(outputs[0].numpy(), reference(model, images).logits.numpy(), atol=1e-5, rtol=1e-5)
    assert all(p.requires_grad for p in model.parameters())  # the exporter's own copy was changed, not the model's


def test_a_torchscript_export_leaves_the_loaded_checkpoint_trainable(tmp_path):
    from iamnn_studio.engine.checkpoint import load_checkpoint

    save_varied_checkpoint(tmp_path / "model.pt")
    loaded = load_checkpoint(tmp_path / "model.pt")
    export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "model.ts", loaded=loaded)
    assert all(p.requires_grad for p in loaded.model.parameters())


def _save_left_unfitted(path: Path) -> None:
    """A checkpoint of a run trained with --no-calibrate: its calibrated-halting head was never fitted, on purpose."""
    from iamnn_studio.engine.config import DataConfig, RunConfig

    config = tiny_config(threshold=None)
    save_varied_checkpoint(path, config, run_config=RunConfig(data=DataConfig(name="synthetic"), model=config,
                                                              calibrate_halting=False))


def test_a_model_trained_without_calibration_exports_at_full_depth_as_predict_runs_it(tmp_path, images):
    """QA: a --no-calibrate run exported adaptively (metadata "adaptive, threshold 0.990", its unfitted head's MACs)
    where evaluate and predict run it at full depth, and the note said to resume a run that has nothing to resume."""
    from iamnn_studio.engine.inference import Predictor

    _save_left_unfitted(tmp_path / "nocal.pt")
    code, out, err = _cli("export", tmp_path / "nocal.pt", "--format", "torchscript", "--out", tmp_path / "nocal.ts",
                          "--json")

    assert code == 0, err
    answer = json.loads(out)
    meta = read_torchscript_metadata(tmp_path / "nocal.ts")
    assert answer["halting"] == meta["halting"] == "max (iterations 1-2-3-2)"
    assert json.loads(meta["model_config"])["mode"] == "max"
    [caveat] = answer["caveats"]
    assert "--no-calibrate" in caveat and "full depth" in caveat and "resume" not in caveat
    predictor = Predictor.from_checkpoint(tmp_path / "nocal.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
        _, iterations, macs = torch.jit.load(str(tmp_path / "nocal.ts"))(as_unit_float(images))
    assert predictor.mode == "max" and iterations.tolist() == [[1, 2, 3, 2]] * len(images)
    assert set(macs.tolist()) == {predictor.macs_range[0]} == {predictor.macs_range[1]}  # predict's MACs


def test_a_halting_chosen_for_a_model_trained_without_calibration_still_wins(tmp_path):
    """--mode adaptive exports the unfitted head, with advice that fits such a run; --threshold alone is refused
    as predict refuses it (the model's mode is max), saying what to add."""
    _save_left_unfitted(tmp_path / "nocal.pt")
    code, out, err = _cli("export", tmp_path / "nocal.pt", "--format", "torchscript", "--out", tmp_path / "ad.ts",
                          "--mode", "adaptive", "--json")

    assert code == 0, err
    answer = json.loads(out)
    assert answer["halting"] == "adaptive, threshold 0.990"
    [caveat] = answer["caveats"]
    assert "never fitted" in caveat and "--no-calibrate" in caveat and "resume" not in caveat

    code, out, err = _cli("export", tmp_path / "nocal.pt", "--format", "torchscript", "--out", tmp_path / "t.ts",
                          "--threshold", "0.5")
    assert (code, out) == (2, "") and err.startswith("error: --threshold: the halting threshold applies to the mode "
                                                     "adaptive, not max") and "mode adaptive as well" in err
    assert not (tmp_path / "t.ts").exists()


def _cli(*argv):
    import contextlib
    import io

    from iamnn_studio.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_the_cli_replaces_an_existing_file_only_with_force(tmp_path):
    """QA: `export` replaced an existing file without a word, where the dialog asks first."""
    save_varied_checkpoint(tmp_path / "model.pt")
    target = tmp_path / "model.ts"
    target.write_bytes(b"an earlier export")

    code, out, err = _cli("export", tmp_path / "model.pt", "--format", "torchscript", "--out", target)

    assert (code, out) == (2, "")
    assert err == f"error: --out: {target} exists: not replaced (give --force to replace it, or choose another name)\n"
    assert target.read_bytes() == b"an earlier export"

    code, out, err = _cli("export", tmp_path / "model.pt", "--format", "torchscript", "--out", target, "--force")

    assert code == 0, err
    assert out.startswith(f"exported torchscript to {target}") and "replaced" in out
    assert read_torchscript_metadata(target)["halting"] == "adaptive, threshold 0.700"


def test_the_cli_answers_in_json_and_reads_the_checkpoint_once(tmp_path, monkeypatch):
    """`export --json` is what the app's dialog reads from its child process: the file written, the halting the
    file carries and the notes; the export, its caveats and its halting words share one read of the file (a
    large checkpoint was read twice)."""
    from iamnn_studio.engine import checkpoint as checkpoint_module
    from iamnn_studio.engine import export as export_module
    from iamnn_studio.engine.checkpoint import load_checkpoint

    save_varied_checkpoint(tmp_path / "model.pt")  # its own threshold: 0.7
    reads = []

    def counted(path, *args, **kwargs):
        reads.append(path)
        return load_checkpoint(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "load_checkpoint", counted)
    monkeypatch.setattr(export_module, "load_checkpoint", counted)
    target = tmp_path / "model.onnx"
    code, out, err = _cli("export", tmp_path / "model.pt", "--format", "torchscript", "--out", target,
                          "--threshold", "0.95", "--json")

    assert code == 0, err
    assert len(reads) == 1
    answer = json.loads(out)  # nothing else on stdout
    assert answer["path"] == str(target) and answer["bytes"] == target.stat().st_size and not answer["replaced"]
    assert answer["halting"] == read_torchscript_metadata(target)["halting"] == "adaptive, threshold 0.950"
    assert answer["caveats"] == [] and answer["warning"].startswith(f"{target} ends in .onnx, not .pt")


def test_force_still_never_replaces_a_file_of_another_kind(tmp_path):
    save_varied_checkpoint(tmp_path / "model.pt")
    settings = tmp_path / "run.toml"
    settings.write_text("name = 'mine'\n")

    code, _, err = _cli("export", tmp_path / "model.pt", "--format", "onnx", "--out", settings, "--force")

    assert code == 2 and "its suffix is not that of onnx files: not replaced" in err
    assert settings.read_text() == "name = 'mine'\n"


@pytest.fixture
def boom_plugin(tmp_path, monkeypatch):
    """QA's raises_exporter.py in a user plugin folder, loaded: exporter 'boom' raises RuntimeError."""
    from iamnn_studio.engine import plugins

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "raises_exporter.py").write_text(
        "from iamnn_studio.engine.export import Exporter\n"
        "def boom(checkpoint, path, *, batch_size=1):\n"
        "    path.write_bytes(b'half')\n"
        "    raise RuntimeError('exporter exploded')\n"
        "def register(api):\n"
        "    api.exporters.register('boom', Exporter('boom', 'always fails', '.boom', boom))\n")
    monkeypatch.setenv(plugins.PLUGINS_ENV, str(folder))
    monkeypatch.setattr(plugins, "repository_plugin_dir", lambda: None)
    plugins.load_plugins(force=True)
    yield folder / "raises_exporter.py"
    plugins.unload_plugins()


def test_a_plugin_exporter_that_raises_is_named_in_the_message(tmp_path, boom_plugin):
    """QA: "error: unexpected RuntimeError: exporter exploded" did not say whose code failed."""
    save_varied_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "out"
    out.mkdir()

    with pytest.raises(ExportError) as raised:
        export_checkpoint(tmp_path / "model.pt", "boom", out / "model.boom")

    message = str(raised.value)
    assert message == f"the boom exporter of plugin raises_exporter failed: RuntimeError: exporter exploded [{boom_plugin}]", \
        message
    assert "unexpected" not in message
    assert list(out.iterdir()) == []  # nothing left behind

    code, _, err = _cli("export", tmp_path / "model.pt", "--format", "boom", "--out", out / "model.boom")
    assert code == 1, err
    assert err.startswith("error: the boom exporter of plugin raises_exporter failed: RuntimeError: exporter exploded")
    assert "unexpected" not in err and "details in " in err  # the traceback, for the plugin's author


def test_a_built_in_exporters_own_bug_stays_unexpected(tmp_path, monkeypatch):
    """Only a plugin's exporter is blamed on its plugin; a failure of ONNX or TorchScript export is the studio's."""
    from iamnn_studio.engine import export

    def broken(checkpoint, path, *, batch_size=1):
        raise RuntimeError("a bug")

    monkeypatch.setattr(export, "export_torchscript", broken)
    monkeypatch.setattr(EXPORTERS, "_items", {**EXPORTERS._items, "torchscript": export.Exporter(
        "torchscript", "TorchScript", ".pt", broken)})
    save_varied_checkpoint(tmp_path / "model.pt")
    with pytest.raises(RuntimeError, match="a bug"):
        export_checkpoint(tmp_path / "model.pt", "torchscript", tmp_path / "model.ts")


#: Exporters of QA's plugins that break the contract: (body of export(checkpoint, path, *, batch_size), what it did).
BAD_EXPORTERS = {
    "nothing": ("pass", "wrote nothing to the file it was given"),
    "empty": ("path.write_bytes(b'')", "wrote nothing to the file it was given"),
    "elsewhere": ("open(str(path) + '.tmp2', 'w').write('elsewhere')", "wrote nothing to the file it was given"),
    "own-file": ("open('/nonexistent-runtime/settings.json').read()", "failed: FileNotFoundError: [Errno 2] "
                 "No such file or directory: '/nonexistent-runtime/settings.json'"),
    "exits": ("sys.exit('exporter gave up')", "failed: SystemExit: exporter gave up"),
}


@pytest.fixture
def bad_exporters(tmp_path, monkeypatch):
    """One plugin, bad_exporters.py, that registers each exporter of ``BAD_EXPORTERS`` and 'full', whose output
    fills the disk."""
    from iamnn_studio.engine import plugins

    folder = tmp_path / "plugins"
    folder.mkdir()
    source = ["import sys", "from iamnn_studio.engine.export import Exporter", "EXPORTERS = {}"]
    for name, (body, _) in {**BAD_EXPORTERS, "full": ("raise OSError(28, 'No space left on device')", "")}.items():
        function = name.replace("-", "_")
        source += [f"def {function}(checkpoint, path, *, batch_size=1):", f"    {body}",
                   f"EXPORTERS[{name!r}] = Exporter({name!r}, 'breaks the contract', '.bin', {function})"]
    source += ["def register(api):", "    for name, exporter in EXPORTERS.items():",
               "        api.exporters.register(name, exporter)"]
    (folder / "bad_exporters.py").write_text("\n".join(source) + "\n")
    monkeypatch.setenv(plugins.PLUGINS_ENV, str(folder))
    monkeypatch.setattr(plugins, "repository_plugin_dir", lambda: None)
    assert all(report.ok for report in plugins.load_plugins(force=True))
    yield folder / "bad_exporters.py"
    plugins.unload_plugins()


@pytest.mark.parametrize("fmt", BAD_EXPORTERS)
def test_a_plugin_exporter_that_breaks_the_contract_is_named_and_leaves_nothing(tmp_path, bad_exporters, fmt):
    """QA: an exporter that wrote nothing "exported nothing to x.bin (0.0 MB)", exit 0, a 0-byte file (one that
    wrote beside it left a stray .tmp.tmp2 too); one that opened its own missing file was blamed on --out; one that
    called sys.exit() printed only its message."""
    save_varied_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "out"
    out.mkdir()
    said = f"the {fmt} exporter of plugin bad_exporters {BAD_EXPORTERS[fmt][1]} [{bad_exporters}]"

    with pytest.raises(ExportError) as raised:
        export_checkpoint(tmp_path / "model.pt", fmt, out / "x.bin")
    assert str(raised.value) == said
    assert list(out.iterdir()) == []  # no output, no temporary file, nothing the exporter wrote beside it

    code, stdout, err = _cli("export", tmp_path / "model.pt", "--format", fmt, "--out", out / "x.bin")
    assert (code, stdout) == (1, "") and err.startswith(f"error: {said}") and "\n" not in err.strip()
    assert list(out.iterdir()) == []
    if "details in " in err:  # a traceback of the plugin's is kept; this test's is removed
        Path(err.rstrip().rstrip(")").split("(details in ")[1]).unlink()


def test_a_plugin_exporter_that_cannot_write_its_output_keeps_the_outputs_message(tmp_path, bad_exporters):
    save_varied_checkpoint(tmp_path / "model.pt")
    with pytest.raises(ExportError) as raised:
        export_checkpoint(tmp_path / "model.pt", "full", tmp_path / "x.bin")
    assert str(raised.value) == f"cannot write {tmp_path / 'x.bin'}: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "plugins"]


def test_a_plugins_oserror_naming_no_path_is_not_taken_for_an_output_error(tmp_path):
    """Review: an OSError whose filename is a number (a descriptor) raised TypeError while the export decided whose
    error it was, instead of naming the plugin."""
    from iamnn_studio.engine.export import _is_output_error

    temporary = tmp_path / ".out.tmp"
    assert not _is_output_error(OSError(5, "I/O error", 7), temporary)
    assert _is_output_error(OSError(5, "I/O error", str(temporary)), temporary)


SLOW_EXPORTER = '''
import time
from iamnn_studio.engine.export import Exporter

def slow(checkpoint, path, *, batch_size=1):
    path.write_bytes(b"half")
    time.sleep(120)
    path.write_bytes(b"exported")

def register(api):
    api.exporters.register("slow", Exporter("slow", "slow", ".slow", slow))
'''


def test_a_terminated_export_leaves_no_file_behind(tmp_path):
    """QA: `kill` (or `timeout`) of `iamnn-studio export` left its half-written temporary file; Ctrl-C did not."""
    import signal
    import subprocess
    import sys
    import time

    from iamnn_studio.child_process import package_environment
    from iamnn_studio.engine import plugins

    save_varied_checkpoint(tmp_path / "model.pt")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "slow_exporter.py").write_text(SLOW_EXPORTER)
    out = tmp_path / "out" / "sub"
    env = {**package_environment(), plugins.PLUGINS_ENV: str(tmp_path / "plugins")}
    child = subprocess.Popen([sys.executable, "-m", "iamnn_studio", "export", str(tmp_path / "model.pt"),
                              "--format", "slow", "--out", str(out / "model.slow")],
                             env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and any(p.read_bytes() == b"half" for p in out.iterdir())):  # writing it
            assert child.poll() is None and time.monotonic() < deadline, child.stderr.read() if child.poll() else ""
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130 and err.strip().endswith("interrupted"), (child.returncode, err)
    assert not (tmp_path / "out").exists()  # no temporary file, and no folder the export made
