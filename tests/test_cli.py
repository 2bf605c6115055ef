"""The command line, driven in-process through ``main([...])`` and once as a real subprocess."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from iamnn_studio import cli
from iamnn_studio.cli import main
from iamnn_studio.engine.config import RunConfig

REPO = Path(__file__).resolve().parents[1]

TINY_RUN = """\
name = "tiny"
batch_size = 32
epochs = 1
[data]
name = "synthetic"
val_fraction = 0.2
[data.options]
train_size = 160
test_size = 48
image_size = 16
[model]
iterations = [1, 2, 2, 1]
width = 4
"""


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run trained through the CLI, shared by the commands that need a checkpoint."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "run.toml").write_text(TINY_RUN)
    runs = folder / "runs"
    code, out, err = run_cli("train", "--config", folder / "run.toml", "--max-steps", "5", "--device", "cpu",
                             "--runs-dir", runs)
    return {"code": code, "out": out, "err": err, "runs": runs, "run": runs / "tiny", "folder": folder}


def test_train_creates_a_run_with_checkpoints_and_evaluation(trained):
    assert trained["code"] == 0, trained["err"]
    run = trained["run"]
    assert (run / "checkpoints" / "last.pt").is_file()
    assert json.loads((run / "eval.json").read_text())["images"] == 48
    assert f"run: {run}" in trained["out"] and "test top-1:" in trained["out"]
    # Not a terminal: one line per epoch, no carriage-return bar.
    assert "epoch 1/1" in trained["err"] and "\r" not in trained["err"]


@pytest.fixture(scope="module")
def cut_short(tmp_path_factory):
    """One tiny run in batches of 8 (16 steps an epoch) ended by --max-steps 3, shared by the tests that read it."""
    folder = tmp_path_factory.mktemp("cut-short")
    (folder / "run.toml").write_text(TINY_RUN.replace("batch_size = 32", "batch_size = 8"))
    runs = folder / "runs"
    code, out, err = run_cli("train", "--config", folder / "run.toml", "--max-steps", "3", "--device", "cpu",
                             "--runs-dir", runs)
    return {"code": code, "out": out, "err": err, "runs": runs}


def test_a_run_ended_by_its_step_limit_is_worded_as_runs_lists_it(cut_short):
    code, out, err = cut_short["code"], cut_short["out"], cut_short["err"]
    assert code == 0, err
    # QA: the trainer's token showed through: "run: runs/tiny (max_steps)", "finished: max_steps"
    assert out.splitlines()[0] == f"run: {cut_short['runs'] / 'tiny'} · completed (step limit)"
    assert "finished: completed (step limit)" in err.splitlines() and "max_steps" not in out + err


@pytest.fixture(scope="module")
def uncalibrated(tmp_path_factory):
    """One tiny run trained with ``calibrate_halting = false``, shared by the tests that read it."""
    folder = tmp_path_factory.mktemp("uncalibrated")
    (folder / "run.toml").write_text("calibrate_halting = false\n" + TINY_RUN)
    code, out, err = run_cli("train", "--config", folder / "run.toml", "--max-steps", "1", "--device", "cpu",
                             "--runs-dir", folder / "runs")
    return {"code": code, "out": out, "err": err, "run": folder / "runs" / "tiny"}


def test_a_run_that_never_calibrates_does_not_announce_a_calibration(uncalibrated):
    code, err = uncalibrated["code"], uncalibrated["err"]
    assert code == 0, err  # QA: said "until the halting head is fitted after the last epoch", and it never was
    assert "the halting head is never fitted" in err and "fitted after the last epoch" not in err
    assert "halting head calibrated" not in err


def test_model_settings_the_dataset_replaces_are_said_in_one_line(trained, tmp_path):
    (tmp_path / "run.toml").write_text(TINY_RUN + "num_classes = 3\nin_channels = 3\nimage_size = 64\n")
    code, _, err = run_cli("train", "--config", tmp_path / "run.toml", "--max-steps", "1", "--device", "cpu",
                           "--runs-dir", tmp_path / "runs")
    assert code == 0, err  # QA: replaced by the dataset's 10 classes of 1x16x16 images without a word
    said = [line for line in err.splitlines() if "the dataset decides" in line]
    assert said == ["data: the dataset decides the model's input and classes: model.in_channels 3 -> 1, "
                    "model.image_size 64 -> 16, model.num_classes 3 -> 10 (data.image_size resizes the images)"]
    assert "the dataset decides" not in trained["err"]  # settings left at their defaults: nothing to say


def test_evaluate_on_mnist_says_nothing_of_training_augmentation(trained, tmp_path):
    import math
    import struct

    for name, shape in (("train-images-idx3-ubyte", (4, 28, 28)), ("train-labels-idx1-ubyte", (4,)),
                        ("t10k-images-idx3-ubyte", (2, 28, 28)), ("t10k-labels-idx1-ubyte", (2,))):
        header = struct.pack(">BBBB", 0, 0, 0x08, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
        (tmp_path / name).write_bytes(header + bytes(math.prod(shape)))
    _, _, err = run_cli("evaluate", trained["run"], "--dataset", "mnist", "--data-root", tmp_path, "--no-sweep")
    assert "read from" in err  # the dataset loaded and its notes were printed
    assert "augment" not in err  # QA: "augment 'crop-flip' mirrors images ...": evaluation does not augment


def test_a_model_trained_without_calibration_is_evaluated_at_full_depth_as_it_runs(uncalibrated):
    assert uncalibrated["code"] == 0, uncalibrated["err"]
    run = uncalibrated["run"]
    # QA: it paid for a halting head it never uses, raised a collapse alarm and swept thresholds of that head
    assert json.loads((run / "eval.json").read_text())["mode"] == "max"
    code, out, err = run_cli("evaluate", run, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["macs"]["mean"] == result["full_depth"]["mean_macs"]
    assert result["adaptivity"] is None and result["sweep"]["threshold"] == []
    text = run_cli("evaluate", run)[1]
    assert "note: trained with --no-calibrate" in text and "runs at full depth" in text
    assert "collapse alarm" not in text and "threshold   mean MACs" not in text and "never calibrated" not in text


def test_predict_prints_top_five_and_macs_and_flags_a_bad_image(trained, tmp_path):
    good = tmp_path / "shape.png"
    Image.new("L", (24, 24), 180).save(good)
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    code, out, err = run_cli("predict", trained["run"] / "checkpoints" / "best.pt", good, bad)
    assert code == 3
    assert err.strip() == f"error: cannot read {bad}: not an image file"  # the path given, not notes.txt
    assert out.startswith(str(good))
    assert [line.strip()[:2] for line in out.splitlines()[1:6]] == ["1.", "2.", "3.", "4.", "5."]
    assert "iterations  " in out and "MACs" in out and "Traceback" not in out + err


def test_predict_errors_name_each_image_as_the_user_gave_it(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    (tmp_path / "a" / "scan.png").write_text("not an image")
    Image.new("L", (16, 16), 0).save(tmp_path / "b" / "scan.png")  # the same name, readable
    code, _, err = run_cli("predict", trained["run"], "a/scan.png", "b/scan.png", "c/missing.png")
    assert code == 3
    assert err.splitlines() == ["error: cannot read a/scan.png: not an image file",
                                "error: cannot read c/missing.png: no such file"]
    report = json.loads(run_cli("predict", trained["run"], "a/scan.png", "--json")[1])  # the JSON says it alike
    assert report["errors"] == [{"source": "a/scan.png", "error": "cannot read a/scan.png: not an image file"}]


def test_predict_takes_folders_of_images_as_the_app_does(trained, tmp_path):
    (tmp_path / "photos" / "more").mkdir(parents=True)
    Image.new("L", (16, 16), 10).save(tmp_path / "photos" / "b.png")
    Image.new("L", (16, 16), 200).save(tmp_path / "photos" / "more" / "a.png")
    (tmp_path / "photos" / "notes.txt").write_text("not an image, not listed")
    (tmp_path / "empty").mkdir()
    code, out, err = run_cli("predict", trained["run"], tmp_path / "photos", tmp_path / "empty", "--json")
    assert code == 3  # some input gave nothing (QA: "cannot read folder: it is a folder")
    report = json.loads(out)
    assert [p["source"] for p in report["predictions"]] == [
        str(tmp_path / "photos" / "b.png"), str(tmp_path / "photos" / "more" / "a.png")]
    assert err.splitlines() == [f"error: no images in the folder {tmp_path / 'empty'}"]


def test_predict_says_a_folder_it_cannot_read_is_unreadable_not_empty(trained, tmp_path, monkeypatch, lock_folders_named):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "locked").mkdir()
    Image.new("L", (16, 16), 10).save(tmp_path / "locked" / "a.png")
    lock_folders_named("locked")
    code, _, err = run_cli("predict", trained["run"], "locked")
    assert code == 1  # QA: "no images in the folder locked"
    assert err.splitlines() == ["error: no image could be classified: cannot read locked: permission denied"]


def test_predict_names_each_subfolder_it_cannot_read(trained, tmp_path, monkeypatch, lock_folders_named):
    """QA: only the folder given was checked; an unreadable folder inside it was skipped without a word."""
    monkeypatch.chdir(tmp_path)
    for folder in ("photos/locked", "photos/open", "only/locked"):
        (tmp_path / folder).mkdir(parents=True)
        Image.new("L", (16, 16), 10).save(tmp_path / folder / "a.png")
    lock_folders_named("locked")
    code, out, err = run_cli("predict", trained["run"], "photos", "--json")
    assert code == 3  # some images classified, a subfolder's not
    assert [p["source"] for p in json.loads(out)["predictions"]] == [os.path.join("photos", "open", "a.png")]
    assert err.splitlines() == [f"error: cannot read {os.path.join('photos', 'locked')}: permission denied"]

    code, _, err = run_cli("predict", trained["run"], "only")
    assert code == 1  # not "no images in the folder only": its images may be in the folder it cannot read
    assert err.splitlines() == [f"error: no image could be classified: cannot read {os.path.join('only', 'locked')}: "
                                "permission denied"]


def test_predict_refuses_a_file_named_with_a_folders_trailing_slash(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("L", (16, 16), 10).save(tmp_path / "ok.png")
    code, out, err = run_cli("predict", trained["run"], "ok.png/", "ok.png")
    assert code == 3  # QA: "ok.png/" was classified as ok.png, where the shell says "Not a directory"
    assert err.splitlines() == ["error: cannot read ok.png/: not a folder"]
    assert out.startswith("ok.png\n")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX thing")
def test_predict_skips_a_named_pipe_instead_of_waiting_on_it(trained, tmp_path):
    """QA: a FIFO named like an image (alone or inside a dropped folder) blocked PIL's open for ever."""
    (tmp_path / "photos").mkdir()
    Image.new("L", (16, 16), 10).save(tmp_path / "photos" / "a.png")
    os.mkfifo(tmp_path / "photos" / "zz.png")
    code, out, err = run_cli("predict", trained["run"], tmp_path / "photos", "--json")
    assert code == 3
    assert [p["source"] for p in json.loads(out)["predictions"]] == [str(tmp_path / "photos" / "a.png")]
    assert err.splitlines() == [f"error: cannot read {tmp_path / 'photos' / 'zz.png'}: not a regular file"]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs a device file")
def test_a_device_given_as_the_checkpoint_is_named_as_typed():
    code, _, err = run_cli("predict", "/dev/zero", REPO / "README.md")
    assert code == 2  # QA: "zero is not an IamNN Studio checkpoint"; a named pipe there blocked for ever
    assert err.strip() == "error: /dev/zero is not a regular file, so not a checkpoint"


def test_predict_with_no_image_classified_exits_1_not_3(trained, tmp_path):
    """Exit 3 says "some images failed, the others are printed": with nothing classified it misled scripts."""
    (tmp_path / "notes.txt").write_text("not an image")
    code, out, err = run_cli("predict", trained["run"], tmp_path / "notes.txt")
    assert code == 1 and out == ""
    assert err.splitlines() == [f"error: no image could be classified: cannot read {tmp_path / 'notes.txt'}: "
                                "not an image file"]

    (tmp_path / "empty").mkdir()
    code, out, err = run_cli("predict", trained["run"], tmp_path / "notes.txt", tmp_path / "empty", "--json")
    assert code == 1
    assert err.splitlines() == [f"error: cannot read {tmp_path / 'notes.txt'}: not an image file",
                                f"error: no images in the folder {tmp_path / 'empty'}",
                                "error: no image could be classified: all 2 inputs failed"]
    report = json.loads(out)  # the JSON still says what failed
    assert report["predictions"] == [] and len(report["errors"]) == 2

    Image.new("L", (16, 16), 0).save(tmp_path / "fine.png")  # one good image makes it a partial failure again
    assert run_cli("predict", trained["run"], tmp_path / "notes.txt", tmp_path / "fine.png")[0] == 3


def test_predict_help_lists_its_exit_codes():
    code, out, _ = run_cli("predict", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "3 some images failed" in text and "1 no image could be classified" in text


def test_predict_json_reports_the_threshold_it_used(trained, tmp_path):
    image = tmp_path / "shape.png"
    Image.new("RGB", (16, 16), (10, 200, 30)).save(image)
    code, out, _ = run_cli("predict", trained["run"] / "checkpoints" / "best.pt", image, "--json", "--threshold", "0.9")
    assert code == 0
    report = json.loads(out)
    assert report["threshold"] == 0.9 and report["errors"] == []
    [prediction] = report["predictions"]
    assert len(prediction["top"]) == 5 and prediction["threshold"] == 0.9
    assert prediction["macs_range"][0] <= prediction["macs"] <= prediction["macs_range"][1]


def test_evaluate_json_parses(trained):
    code, out, _ = run_cli("evaluate", trained["run"] / "checkpoints" / "best.pt", "--json", "--no-sweep")
    assert code == 0
    result = json.loads(out)
    assert result["images"] == 48 and result["split"] == "test" and result["sweep"] is None
    assert sum(map(sum, result["confusion"])) == 48


def test_evaluate_prints_a_readable_summary(trained):
    code, out, _ = run_cli("evaluate", trained["run"] / "checkpoints" / "best.pt")
    assert code == 0
    assert "48 test images" in out and "top-1" in out and "threshold   mean MACs   top-1" in out


def test_the_evaluation_summary_says_whether_the_halting_pays_against_fixed_counts():
    result = {"images": 100, "architecture": "iamnn", "mode": "adaptive", "top1": 0.905, "top5": 1.0,
              "macs": {"mean": 15e6}, "adaptivity": {"random_allocation": {"top1": 0.9}},
              "sweep": {"threshold": [], "fixed": [{"iterations": [1, 1, 1, 1], "mean_macs": 10e6, "top1": 0.9},
                                                   {"iterations": [2, 2, 2, 2], "mean_macs": 20e6, "top1": 0.93}]}}
    last = cli.format_evaluation(result).splitlines()[-1]
    assert last.startswith("The halting does not pay on this model") and "fixed:2" in last
    assert "The halting" not in cli.format_evaluation({**result, "mode": "max"})
    # a head never fitted (its run stopped before calibration) gets no verdict, but what to do
    # a halting limited to one iteration per block: nothing to adapt, and no "collapse alarm" about it either
    limited = {**result, "caps": [3, 4, 6, 3], "halting_caps": [1, 1, 1, 1], "top1": 0.9, "macs": {"mean": 10e6},
               "adaptivity": {"collapse": {"alarm": True, "reasons": ["100% of images use iterations [1, 1, 1, 1]"]},
                              "random_allocation": {"top1": None}}}
    text = cli.format_evaluation(limited)
    assert text.splitlines()[-1].startswith("The halting has nothing to adapt: it is limited to one iteration per "
                                            "block")
    assert "does not pay" not in text and "collapse alarm" not in text
    uncalibrated = cli.format_evaluation({**result, "halting_calibrated": False}).splitlines()[-1]
    assert uncalibrated.startswith("The halting head was never calibrated") and "--resume" in uncalibrated
    assert "does not pay" not in cli.format_evaluation({**result, "halting_calibrated": False})


def test_the_resume_hint_names_the_run_quoted_so_that_it_can_be_pasted():
    import shlex

    result = {"images": 10, "top1": 0.5, "top5": 1.0, "halting_calibrated": False,
              "checkpoint": "/home/qa/my runs/fashion-mnist/checkpoints/last.pt"}
    hint = cli.format_evaluation(result).splitlines()[-1]
    command = hint.split("resume the run (", 1)[1].split(") to calibrate", 1)[0]
    assert shlex.split(command) == ["iamnn-studio", "train", "--run-dir", "/home/qa/my runs/fashion-mnist", "--resume"]
    elsewhere = cli.format_evaluation({**result, "checkpoint": "/tmp/model.pt"}).splitlines()[-1]
    assert "(iamnn-studio train --run-dir RUN --resume)" in elsewhere  # no run folder to name


def test_the_sweep_prints_a_calibrated_threshold_as_it_is_not_rounded_to_one():
    """QA: 0.999 read "1.00", and --threshold 1.0 is another model (more MACs)."""
    result = {"images": 10, "top1": 0.5, "top5": 1.0, "halting_calibrated": True,
              "sweep": {"threshold": [{"threshold": 0.05, "mean_macs": 1e6, "top1": 0.4},
                                      {"threshold": 0.999, "mean_macs": 2e6, "top1": 0.5, "evaluated": True}]}}
    rows = [line.split() for line in cli.format_evaluation(result).splitlines()]
    assert ["0.05", "1.00", "M", "40.00%"] in rows
    assert ["0.999", "2.00", "M", "50.00%", "<-", "evaluated"] in rows

def test_train_refuses_a_mode_for_the_resnet_baseline_as_predict_does(tmp_path):
    """QA: train stored mode = "fixed:1" for a ResNet and ignored it without a word."""
    code, out, err = run_cli("train", "--architecture", "resnet", "--mode", "fixed:1", "--runs-dir", tmp_path / "runs")
    assert (code, out) == (2, "")
    assert err == "error: --mode: a ResNet baseline has no iterations to choose; the mode applies to IamNN\n"
    assert not (tmp_path / "runs").exists()

def test_a_first_ctrl_c_says_what_it_stops_in_each_phase():
    """QA: a Ctrl-C during calibration or the test evaluation said "stopping after this step"."""
    from types import SimpleNamespace

    progress = cli.TrainingProgress(io.StringIO())
    assert progress.stop_message() == "stopping before training starts"
    progress(SimpleNamespace(kind="started", data={"total_epochs": 1, "steps_per_epoch": 4}))
    assert progress.stop_message() == "stopping after this step, keeping a checkpoint"
    for phase, words in (("calibrating", "stopping the calibration"), ("evaluating", "stopping the evaluation")):
        progress(SimpleNamespace(kind="phase_progress", data={"phase": phase, "fraction": 0.5}))
        assert progress.stop_message().startswith(words)

@pytest.mark.parametrize("size", ["0", "100000"])
def test_export_names_the_batch_size_option_it_refuses(tmp_path, size):
    code, out, err = run_cli("export", tmp_path / "missing.pt", "--format", "onnx", "--out", tmp_path / "m.onnx",
                             "--batch-size", size)
    assert (code, out, err) == (2, "", f"error: --batch-size: must be an integer in [1, 4096], got {size}\n")

def test_the_train_summary_and_runs_name_a_held_out_evaluation(tmp_path, capsys):
    """QA: "test top-1: 36.36%" right after "evaluated on val", and the runs list's TEST ACC without a word."""
    from types import SimpleNamespace
    from iamnn_studio.engine.runs import RunDirectory

    run = RunDirectory.create(tmp_path, "folder")
    run.write_config(RunConfig(name="folder", epochs=2))
    run.write_status("completed", best_accuracy=0.8, epochs_done=2, total_epochs=2)
    (run.path / "eval.json").write_text(json.dumps({"top1": 0.3636, "split": "val", "macs": {"mean": 1e6}}))
    cli._print_run_summary(SimpleNamespace(run_dir=run.path, reason="completed", best_accuracy=0.8))
    out = capsys.readouterr().out
    assert "held-out top-1: 36.36%" in out and "test top-1" not in out
    code, out, _ = run_cli("runs", "--runs-dir", tmp_path)
    header, row = out.splitlines()[:2]
    assert code == 0 and row[header.index("TEST ACC"):].startswith("36.36% (val)  ")


def test_runs_lists_a_run_with_a_bad_setting_by_its_status_and_says_what_is_wrong(tmp_path):
    """QA: a completed run whose config.toml had one bad value was listed "unreadable", "0/?", though its
    status.json told how it went; now its model and dataset alone are "?", and the reason follows the table."""
    from iamnn_studio.engine.runs import RunDirectory

    run = RunDirectory.create(tmp_path, "bad-setting")
    run.write_config(RunConfig(name="bad-setting", epochs=6))
    run.config_path.write_text(run.config_path.read_text().replace("batch_size = 128", 'batch_size = "sixteen"'))
    run.write_status("completed", best_accuracy=1.0, epochs_done=6, total_epochs=6)
    code, out, _ = run_cli("runs", "--runs-dir", tmp_path)
    header, row = out.splitlines()[:2]
    assert code == 0 and row.split() == ["bad-setting", "completed", "100.00%", "n/a", "6/6", "?", "?"]
    assert out.splitlines()[-1] == ("bad-setting: model and dataset unknown, config.toml is unreadable: batch_size: "
                                    "must be a positive integer, got 'sixteen'")


def test_a_stopped_distributed_run_hints_a_resume_with_its_process_count(tmp_path, capsys):
    """QA: the hint after Ctrl-C of a 2-process run was a command that failed ("trained by 2 process(es)")."""
    import shlex
    from types import SimpleNamespace

    result = SimpleNamespace(run_dir=None, reason="stopped", best_accuracy=None)
    cli._print_run_summary(result, processes=("--nproc-per-node", "2"))
    assert capsys.readouterr().out == "run: None · stopped\n"  # no folder: nothing to continue
    result.run_dir = tmp_path / "my run"
    cli._print_run_summary(result, processes=("--nproc-per-node", "2"))
    hint = capsys.readouterr().out.splitlines()[-1]
    assert shlex.split(hint.split(": ", 1)[1]) == [
        "iamnn-studio", "train", "--run-dir", str(tmp_path / "my run"), "--resume", "--nproc-per-node", "2"]
    cli._print_run_summary(result)
    assert capsys.readouterr().out.splitlines()[-1].endswith("--resume")

def test_a_stopped_run_of_several_machines_hints_a_resume_each_machine_can_run(tmp_path, capsys):
    """QA: the hint after stopping a run of 2 machines x 2 processes lacked --node-rank, --master-addr and
    --master-port, so that it started a new job on one machine that waited for ever for the others."""
    import shlex
    from types import SimpleNamespace

    args = cli.build_parser().parse_args(["train", "--nproc-per-node", "2", "--nnodes", "2", "--node-rank", "1",
                                          "--master-addr", "10.0.0.1", "--master-port", "29600"])
    flags = cli._launcher_flags(args)
    assert list(flags) == ["--nproc-per-node", "2", "--nnodes", "2", "--node-rank", "1",
                           "--master-addr", "10.0.0.1", "--master-port", "29600"]
    cli._print_run_summary(SimpleNamespace(run_dir=tmp_path / "run", reason="stopped", best_accuracy=None),
                           processes=flags)
    hint = capsys.readouterr().out.splitlines()[-1]
    label, command = hint.split(": ", 1)
    assert label == "continue it from its last checkpoint (on every machine, each with its own --node-rank)"
    assert shlex.split(command) == ["iamnn-studio", "train", "--run-dir", str(tmp_path / "run"), "--resume", *flags]


@pytest.mark.parametrize(("fmt", "name"), [("onnx", "model.onnx"), ("torchscript", "model.ts")])
def test_export_writes_each_format(trained, tmp_path, fmt, name):
    """Each format carries the checkpoint's own halting when none is chosen (the ONNX export test of test_export
    exports at a chosen threshold); a suffix that suits gets no warning. (One ONNX export serves all checks.)"""
    import onnx

    from iamnn_studio.engine.checkpoint import load_checkpoint
    from iamnn_studio.engine.export import describe_halting, read_torchscript_metadata

    checkpoint = trained["run"] / "checkpoints" / "best.pt"
    code, out, err = run_cli("export", checkpoint, "--format", fmt, "--out", tmp_path / name)
    assert code == 0, err
    assert (tmp_path / name).stat().st_size > 1000
    assert out.startswith(f"exported {fmt} to")
    assert [line for line in err.splitlines() if line.startswith("warning:")] == []
    if fmt == "onnx":
        meta = {p.key: p.value for p in onnx.load(str(tmp_path / name)).metadata_props}
    else:
        meta = read_torchscript_metadata(tmp_path / name)
    own = load_checkpoint(checkpoint).model_config
    assert meta["halting"] == describe_halting(own) and json.loads(meta["model_config"]) == own.to_dict()


@pytest.mark.parametrize(("fmt", "name", "warned"), [("torchscript", "model.ts.txt", "ends in .txt, not .pt"),
                                                     ("torchscript", "model.onnx", "ends in .onnx, not .pt")])
def test_export_warns_when_the_file_suffix_does_not_suit_the_format(trained, tmp_path, fmt, name, warned):
    """TorchScript: a quicker export than ONNX, and the warning is the engine's for any format (its ONNX
    wording is test_export's)."""
    target = tmp_path / name
    code, out, err = run_cli("export", trained["run"], "--format", fmt, "--out", target)
    assert code == 0 and target.stat().st_size > 1000  # written all the same
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {target} {warned}, the usual suffix of "
                        f"{'ONNX' if fmt == 'onnx' else 'TorchScript'} files: it is written as "
                        f"{'ONNX' if fmt == 'onnx' else 'TorchScript'} all the same"]


def test_export_never_replaces_an_existing_file_of_another_kind(trained, tmp_path):
    settings = tmp_path / "run.toml"
    settings.write_text(TINY_RUN)  # QA: export --out run.toml replaced the settings with an ONNX model
    code, out, err = run_cli("export", trained["run"], "--format", "onnx", "--out", settings)
    assert code == 2 and out == "" and settings.read_text() == TINY_RUN
    assert err == (f"error: --out: {settings} exists and its suffix is not that of onnx files: not replaced "
                   "(remove it first, or choose another name)\n")
    (tmp_path / "model.pt").write_text("an older export")  # its own kind's suffix (TorchScript: quicker than ONNX)
    code, _, err = run_cli("export", trained["run"], "--format", "torchscript", "--out", tmp_path / "model.pt")
    assert code == 2 and "not replaced (give --force to replace it" in err  # QA: was replaced without a word
    assert (tmp_path / "model.pt").read_text() == "an older export"
    assert run_cli("export", trained["run"], "--format", "torchscript", "--out", tmp_path / "model.pt", "--force")[0] == 0
    assert (tmp_path / "model.pt").stat().st_size > 1000  # replaced, as asked


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_onto_the_checkpoint_itself_says_so_first(trained, tmp_path, fmt):
    """Review: --out CKPT said "exists: not replaced (give --force...)", and --force then got the refusal."""
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes((trained["run"] / "checkpoints" / "best.pt").read_bytes())
    before = ckpt.read_bytes()
    for force in ([], ["--force"]):
        code, out, err = run_cli("export", ckpt, "--format", fmt, "--out", ckpt, *force)
        assert (code, out) == (2, "") and ckpt.read_bytes() == before
        assert err == f"error: --out: {ckpt} is the checkpoint being exported: choose another file name\n"

def test_export_to_a_folder_says_it_is_a_folder_not_that_its_suffix_is_wrong(trained, tmp_path):
    code, out, err = run_cli("export", trained["run"], "--format", "onnx", "--out", tmp_path)  # QA: "its suffix"
    assert (code, out, err) == (2, "", f"error: cannot write {tmp_path}: it is a folder; give a file name\n")


def test_evaluate_refuses_a_batch_size_below_1_before_reading_the_dataset(trained, monkeypatch):
    import iamnn_studio.engine.data as data

    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("the dataset was read first"))
    code, out, err = run_cli("evaluate", trained["run"], "--batch-size", "0")
    assert (code, out) == (2, "") and err.endswith("error: argument --batch-size: must be a positive integer, got 0\n")


def test_runs_lists_the_run(trained):
    code, out, _ = run_cli("runs", "--runs-dir", trained["runs"])
    assert code == 0
    header, row = out.splitlines()[:2]
    # validation accuracy says so, and the test accuracy (eval.json's top-1) stands beside it
    assert header.split()[:6] == ["NAME", "STATUS", "VAL", "ACC", "TEST", "ACC"]
    evaluation = json.loads((Path(trained["runs"]) / "tiny" / "eval.json").read_text())
    assert row.split()[:2] == ["tiny", "completed"]
    assert row[header.index("TEST ACC"):].startswith(f"{evaluation['top1']:.2%}  ")
    code, out, _ = run_cli("runs", "--runs-dir", trained["runs"], "--json")
    listed = json.loads(out)
    assert [r["name"] for r in listed] == ["tiny"]
    assert listed[0]["test_accuracy"] == pytest.approx(evaluation["top1"])


def test_runs_of_a_run_not_evaluated_shows_no_test_accuracy(tmp_path):
    from iamnn_studio.engine.runs import RunDirectory

    run = RunDirectory.create(tmp_path, "fresh")
    run.write_config(RunConfig(name="fresh", epochs=2))
    run.write_status("completed", best_accuracy=0.8, epochs_done=2, total_epochs=2)
    code, out, _ = run_cli("runs", "--runs-dir", tmp_path)
    header, row = out.splitlines()[:2]
    assert code == 0 and row[header.index("VAL ACC"):].startswith("80.00%  ")
    assert row[header.index("TEST ACC"):].startswith("n/a  ")  # not evaluated
    assert json.loads(run_cli("runs", "--runs-dir", tmp_path, "--json")[1])[0]["test_accuracy"] is None


def test_runs_says_why_a_damaged_eval_json_gives_no_test_accuracy(tmp_path):
    from iamnn_studio.engine.runs import RunDirectory

    run = RunDirectory.create(tmp_path, "damaged")
    run.write_config(RunConfig(name="damaged", epochs=1))
    run.write_status("completed", best_accuracy=0.8, epochs_done=1, total_epochs=1)
    (tmp_path / "damaged" / "eval.json").write_text('{"top1": "high"}')
    code, out, _ = run_cli("runs", "--runs-dir", tmp_path)
    header, row = out.splitlines()[:2]
    assert code == 0 and row[header.index("TEST ACC"):].startswith("n/a  ")
    # QA: only "n/a", as for a run never evaluated, where --json had the reason
    problem = json.loads(run_cli("runs", "--runs-dir", tmp_path, "--json")[1])[0]["evaluation_problem"]
    assert out.splitlines()[-1] == f"damaged: no test accuracy, eval.json is unreadable: {problem}"


def test_a_run_folder_turned_read_only_before_evaluation_is_one_warning_line_and_a_completed_run(tmp_path, monkeypatch):
    """eval.json could not be written: training used to end in "error: unexpected error: PermissionError"."""
    from test_trainer import ReadOnly

    from iamnn_studio.engine.trainer import Trainer

    (tmp_path / "run.toml").write_text(TINY_RUN)
    read_only, real_evaluate = ReadOnly(monkeypatch), Trainer._evaluate

    def evaluate_in_a_read_only_folder(self):
        read_only(self.run_dir.path)
        real_evaluate(self)

    monkeypatch.setattr(Trainer, "_evaluate", evaluate_in_a_read_only_folder)
    try:
        code, out, err = run_cli("train", "--config", tmp_path / "run.toml", "--max-steps", "5", "--device", "cpu",
                                 "--runs-dir", tmp_path / "runs")
    finally:
        read_only.undo()
    run = tmp_path / "runs" / "tiny"
    assert code == 0, err
    lines = err.splitlines()
    assert (f"warning: could not save the test evaluation to {run / 'eval.json'}: you have no permission to write "
            "in the run folder; the numbers are in this log only") in lines
    assert lines[lines.index(next(l for l in lines if "could not save the test evaluation" in l)) - 1].startswith(
        "evaluated on test: top-1 ")  # the numbers it means
    assert "Traceback" not in err and "error" not in err
    assert out.splitlines()[0] == f"run: {run} · completed" and not (run / "eval.json").exists()


def test_bad_setting_is_one_error_line_and_exit_2(tmp_path):
    code, out, err = run_cli("train", "--width", "0", "--runs-dir", tmp_path)
    assert code == 2 and out == ""
    assert err.startswith("error: width: ") and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing was started


def test_argparse_errors_exit_2_without_traceback():
    code, _, err = run_cli("train", "--width", "wide")
    assert code == 2 and "invalid int value" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["train", "--seed", "1e30"], ["predict"], ["bogus"]])
def test_argparse_errors_are_one_line_as_the_other_user_errors(argv):
    """QA: argparse printed its whole multi-line usage above the error, where the README promises one line."""
    code, out, err = run_cli(*argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("iamnn-studio") and ": error: " in err


@pytest.mark.parametrize("command", [["predict", "{ckpt}", "x.png"], ["evaluate", "{ckpt}"],
                                     ["export", "{ckpt}", "--format", "onnx", "--out", "{out}"]])
def test_missing_checkpoint_is_a_clear_error(tmp_path, command):
    argv = [a.format(ckpt=tmp_path / "nope.pt", out=tmp_path / "m.onnx") for a in command]
    code, _, err = run_cli(*argv)
    assert code == 2
    assert err.strip() == f"error: no such checkpoint: {tmp_path / 'nope.pt'}"


def test_resume_needs_a_run_folder():
    code, _, err = run_cli("train", "--resume")
    assert code == 2 and err.startswith("error: --resume needs --run-dir")


def test_save_config_writes_the_resolved_settings_without_training(tmp_path):
    target = tmp_path / "settings.toml"
    code, _, _ = run_cli("train", "--dataset", "mnist", "--width", "8", "--epochs", "3", "--save-config", target,
                         "--runs-dir", tmp_path / "runs")
    assert code == 0 and not (tmp_path / "runs").exists()
    saved = RunConfig.load(target)
    assert (saved.data.name, saved.model.width, saved.epochs) == ("mnist", 8, 3)
    assert saved.data.augment == "crop"  # mnist's own default: digits are not mirrored


def test_the_validation_split_method_is_an_option(tmp_path):
    """Only a settings file could say data.val_split: a run to compare with an older (random-split) one needed one."""
    target = tmp_path / "settings.toml"
    assert run_cli("train", "--val-split", "random", "--save-config", target)[0] == 0
    assert RunConfig.load(target).data.val_split == "random"
    assert run_cli("train", "--save-config", target)[0] == 0
    assert RunConfig.load(target).data.val_split == "per-class"
    code, _, err = run_cli("train", "--val-split", "stratified", "--save-config", target)
    assert code == 2 and err == "error: data.val_split: must be per-class or random, got 'stratified'\n"


def test_init_from_without_a_config_trains_the_checkpoints_network_on_its_data(trained, tmp_path):
    # QA: "train --init-from RUN --epochs 5" built the default network, which RUN's weights did not fit
    source = RunConfig.load(trained["run"] / "config.toml")
    assert (source.data.name, source.model.width) != (RunConfig().data.name, RunConfig().model.width)
    code, _, err = run_cli("train", "--init-from", trained["run"], "--epochs", "5", "--save-config", tmp_path / "a.toml")
    assert code == 0, err
    adopted = RunConfig.load(tmp_path / "a.toml")
    assert (adopted.model.depth, adopted.model.width, adopted.model.architecture) == \
        (source.model.depth, source.model.width, source.model.architecture)
    assert adopted.data.name == source.data.name and adopted.epochs == 5
    # options still win: another width (which the trainer will refuse as not fitting), other data
    run_cli("train", "--init-from", trained["run"], "--width", "16", "--dataset", "mnist",
            "--save-config", tmp_path / "b.toml")
    changed = RunConfig.load(tmp_path / "b.toml")
    assert (changed.model.width, changed.model.depth, changed.data.name) == (16, source.model.depth, "mnist")
    code, _, err = run_cli("train", "--init-from", tmp_path / "nothing.pt")
    assert code == 2 and err.startswith("error: --init-from: no such checkpoint")


def test_save_config_writes_absolute_paths_like_a_runs_config(trained, tmp_path, monkeypatch):
    """A saved file used from another folder must still find the data and the start weights."""
    shutil.copytree(trained["run"], tmp_path / "runs" / "base")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("train", "--data-root", "./data", "--init-from", "runs/base", "--save-config", "s.toml")
    assert code == 0, err
    saved = RunConfig.load(tmp_path / "s.toml")
    assert saved.data.root == str(tmp_path / "data") and saved.init_from == str(tmp_path / "runs" / "base")
    (tmp_path / "relative.toml").write_text('[data]\nroot = "data"\n')
    assert run_cli("train", "--config", "relative.toml", "--save-config", "again.toml")[0] == 0
    assert RunConfig.load(tmp_path / "again.toml").data.root == str(tmp_path / "data")


def test_max_steps_zero_clears_a_limit_from_the_config_file(tmp_path):
    capped, target = tmp_path / "capped.toml", tmp_path / "settings.toml"
    assert run_cli("train", "--max-steps", "10", "--save-config", capped)[0] == 0
    assert RunConfig.load(capped).max_steps == 10
    code, _, _ = run_cli("train", "--config", capped, "--max-steps", "0", "--save-config", target)
    assert code == 0 and RunConfig.load(target).max_steps is None


def test_a_config_file_says_no_step_limit_with_0_as_the_command_line_does(tmp_path):
    (tmp_path / "a.toml").write_text("max_steps = 0\n")  # TOML has no "none" (QA: refused as not positive)
    assert RunConfig.load(tmp_path / "a.toml").validate().max_steps is None
    (tmp_path / "b.toml").write_text("batch_size = true\n")
    code, _, err = run_cli("train", "--config", tmp_path / "b.toml", "--save-config", tmp_path / "out.toml")
    assert code == 2 and err.rstrip().endswith("batch_size: must be a positive integer, got true")  # TOML's word


@pytest.mark.parametrize("toml, message", [
    ('[data]\nroot = ["a"]\n', "data.root: needs a folder path, got ['a']"),
    ("[data]\nroot = 5\n", "data.root: needs a folder path, got 5"),
    ('[data]\ndownload = "yes"\n', "data.download: must be true or false, got 'yes'"),
    ("[data]\noptions = 3\n", "data.options: expected a table of the dataset's options, got 3"),
    ('amp = "no"\n', "amp: must be true or false, got 'no'"),  # a string "no" was taken as on
    ("calibrate_halting = 1\n", "calibrate_halting: must be true or false, got 1"),
    ("[model]\niterations = 3\n", "iterations: needs four positive integers, got 3"),
    # list settings in the file's words, not as a Python tuple ("got (1, 2, True, 1)")
    ("[model]\niterations = [1, 2, true, 1]\n", "iterations: needs four positive integers, got 1, 2, true, 1"),
    ("[model]\niterations = []\n", "iterations: needs four positive integers, got an empty list"),
    ("[model]\nhalting_caps = 2\n", "halting_caps: needs one integer per block between 1 and its cap"),
    ("[model]\niterations = [1, 2, 3, 1]\nhalting_caps = [1, 5, 1, 1]\n",
     "halting_caps: needs one integer per block between 1 and its cap (caps 1·2·3·1), got 1, 5, 1, 1\n"),
    # the choices as a sentence lists them, not a Python tuple ("must be one of ('sgd', 'adamw')")
    ("[model]\ndepth = 51\n", "depth: 51 is not a ResNet depth; choose 18, 34, 50, 101 or 152\n"),
    ('[model]\nstem = "large"\n', "stem: must be auto, small or imagenet, got 'large'\n"),
    ("[model]\nhalting = true\n", "halting: must be calibrated or act, got true\n"),
    ('optimizer = "adam"\n', "optimizer: must be sgd or adamw, got 'adam'\n"),
    ('schedule = "linear"\n', "schedule: must be cosine, one-cycle, step or constant, got 'linear'\n"),
    ("[model]\nmode = 3\n", "mode: must be 'adaptive', 'fixed:N' or 'max', got 3"),
    ("epochs = 99999999999999999999\n", "epochs: must be at most 100000, got 99999999999999999999"),
])
def test_a_config_file_with_a_wrong_type_is_one_line_exit_2(tmp_path, toml, message):
    """QA: these were unexpected TypeErrors (a traceback log), accepted as truthy, or trained for ever."""
    (tmp_path / "bad.toml").write_text(toml)
    code, out, err = run_cli("train", "--config", tmp_path / "bad.toml", "--save-config", tmp_path / "out.toml")
    assert (code, out) == (2, "") and err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "out.toml").exists()


def test_a_negative_step_limit_is_refused_saying_that_0_is_allowed(tmp_path):
    code, out, err = run_cli("train", "--max-steps", "-1", "--save-config", tmp_path / "s.toml")
    assert code == 2 and out == "" and not (tmp_path / "s.toml").exists()
    assert err == "error: --max-steps: must be a whole number >= 0 (0 clears the limit), got -1\n"


@pytest.mark.parametrize("argv", [("train", "--run-dir", ""), ("train", "--runs-dir", " "), ("runs", "--runs-dir", "")])
def test_an_empty_folder_option_is_refused_not_taken_as_the_current_folder(tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(*argv, "--dataset", "synthetic", "--max-steps", "1") if argv[0] == "train" \
        else run_cli(*argv)
    assert code == 2 and out == ""
    assert err.rstrip().endswith("needs a folder, got an empty string")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("argv", "said"), [
    (["train", "--save-config", ""], "argument --save-config: needs a file, got an empty string"),
    (["train", "--config", ""], "argument --config: needs a file, got an empty string"),
    (["train", "--data-root", " "], "argument --data-root: needs a folder, got an empty string"),
    (["train", "--init-from", ""], "argument --init-from: needs a checkpoint file or run folder, got an empty string"),
    (["evaluate", ""], "argument CKPT: needs a checkpoint file or run folder, got an empty string"),
    (["evaluate", "x.pt", "--data-root", ""], "argument --data-root: needs a folder, got an empty string"),
    (["predict", "", "x.png"], "argument CKPT: needs a checkpoint file or run folder, got an empty string"),
    (["predict", "x.pt", "x.png", ""], "argument IMAGE: needs a file, got an empty string"),
    (["export", "", "--format", "onnx", "--out", "m.onnx"], "argument CKPT: needs a checkpoint file or run folder, got an empty string"),
    (["export", "x.pt", "--format", "onnx", "--out", ""], "argument --out: needs a file, got an empty string"),
    (["gui", "--runs-dir", ""], "argument --runs-dir: needs a folder, got an empty string"),
    (["--runs-dir", ""], "argument --runs-dir: needs a folder, got an empty string"),
])
def test_an_empty_path_option_is_refused_not_taken_as_not_given(tmp_path, monkeypatch, argv, said):
    """``--save-config ""`` used to start a training; ``--config ""`` and ``--data-root ""`` were ignored."""
    import iamnn_studio.gui.app as app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(app, "main", lambda args: pytest.fail("the app opened"))
    if argv[0] == "train":
        argv = [*argv, "--dataset", "synthetic", "--max-steps", "1", "--runs-dir", "runs"]
    code, out, err = run_cli(*argv)
    assert code == 2 and out == ""
    assert err.splitlines()[-1].endswith(said) and err.splitlines()[-1].startswith("iamnn-studio")
    assert "Traceback" not in err and not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_runs_in_a_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not runs")
    code, out, err = run_cli("runs", "--runs-dir", tmp_path / "notes.txt")
    assert code == 2 and out == ""
    assert err == f"error: --runs-dir: {tmp_path / 'notes.txt'} is a file, not a folder of runs\n"


def test_runs_in_a_missing_folder_says_it_does_not_exist(tmp_path):
    code, out, err = run_cli("runs", "--runs-dir", tmp_path / "typo")
    assert code == 0 and err == ""
    assert out == f"no runs: {tmp_path / 'typo'} does not exist yet\n"  # was "no runs in ..." as if it were empty
    (tmp_path / "empty").mkdir()
    assert run_cli("runs", "--runs-dir", tmp_path / "empty")[1] == f"no runs in {tmp_path / 'empty'}\n"


def test_a_seed_torch_cannot_take_is_refused_in_one_line(tmp_path):
    code, out, err = run_cli("train", "--seed", str(2**53), "--save-config", tmp_path / "s.toml")
    assert code == 2 and out == "" and not (tmp_path / "s.toml").exists()
    assert err == f"error: seed: must be an integer in [0, 2**53 - 1], got {2**53}\n"


def test_augment_option_overrides_the_dataset_default_and_is_checked(tmp_path):
    target = tmp_path / "settings.toml"
    code, _, _ = run_cli("train", "--dataset", "mnist", "--augment", "crop-erase", "--save-config", target)
    assert code == 0 and RunConfig.load(target).data.augment == "crop-erase"
    code, _, err = run_cli("train", "--augment", "erase-flip", "--save-config", target)
    assert code == 2 and err.startswith("error: data.augment: must be none, or crop, flip and erase") and "\n" not in err.strip()


def test_unexpected_errors_point_to_a_log_with_the_traceback(monkeypatch):
    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "collect_info", lambda: broken(None))
    code, _, err = run_cli("info")
    assert code == 1 and "Traceback" not in err
    assert err.startswith("error: unexpected RuntimeError: boom (details in ")
    log = Path(err.split("(details in ")[1].rstrip().rstrip(")"))
    assert "Traceback" in log.read_text() and "boom" in log.read_text()
    log.unlink()


@pytest.mark.parametrize("sent, said", [(signal.SIGINT, "\nstopping after this step"),
                                         (signal.SIGTERM, "terminated: stopping after this step")])
def test_first_ctrl_c_or_sigterm_stops_training_gracefully_with_exit_130(tmp_path, monkeypatch, sent, said):
    (tmp_path / "run.toml").write_text(TINY_RUN)
    original = cli.TrainingProgress._on_started
    before = signal.getsignal(signal.SIGTERM)

    def press_ctrl_c(self, data):
        original(self, data)
        os.kill(os.getpid(), sent)  # handled by the CLI: trainer.stop(), not KeyboardInterrupt or death

    monkeypatch.setattr(cli.TrainingProgress, "_on_started", press_ctrl_c)
    code, out, err = run_cli("train", "--config", tmp_path / "run.toml", "--device", "cpu", "--runs-dir", tmp_path)
    assert code == 130, err
    assert said in err
    assert (tmp_path / "tiny" / "checkpoints" / "last.pt").is_file()
    assert json.loads((tmp_path / "tiny" / "status.json").read_text())["state"] == "stopped"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    assert signal.getsignal(signal.SIGTERM) is before
    # how to go on, as a command that works when pasted (the folder may hold spaces)
    hint = out.splitlines()[-1]
    assert hint == f"continue it from its last checkpoint: iamnn-studio train --run-dir {tmp_path / 'tiny'} --resume"


def test_no_arguments_opens_the_app(monkeypatch):
    import iamnn_studio.gui.app as app

    calls = []
    monkeypatch.setattr(app, "main", lambda argv: calls.append(argv) or 0)
    assert main([]) == 0 and calls == [[]]


def test_info_json_in_a_real_process_lists_a_failed_plugin_once(tmp_path):
    """QA: each failed plugin was printed twice, as a `note:` on stderr and in the plugins list. One real process
    for both (each costs a torch import): `info --json` as the shell runs it, with a broken plugin."""
    (tmp_path / "broken.py").write_text("def register(api):\n    raise RuntimeError('boom')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE", "IAMNN_STUDIO_PLUGINS": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "iamnn_studio", "info", "--json"], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["torch"].startswith("2.")
    assert info["datasets"]["synthetic"]["offline"] is True
    assert isinstance(info["plugins"], list) and "gpu_available" in info["system"]
    assert "broken" not in done.stderr and "boom" not in done.stderr
    [plugin] = [p for p in info["plugins"] if p["name"] == "broken"]
    assert not plugin["ok"] and plugin["error"].startswith("RuntimeError: boom")


@pytest.fixture
def plugins_from(monkeypatch):
    """``plugins_from(folder)``: the next ``main`` loads the plugins afresh with ``folder`` as the user's, as a new
    process would, and its ``note:`` lines reach the stderr ``run_cli`` captures (the CLI adds its log handler
    once per process, on the stderr of that moment: an earlier test's). Afterwards the session's plugins again."""
    import logging

    from iamnn_studio.engine import plugins

    def use(folder: Path) -> None:
        monkeypatch.setenv(plugins.PLUGINS_ENV, str(folder))
        plugins.unload_plugins()

    monkeypatch.setattr(logging.getLogger("iamnn_studio"), "handlers", [])
    yield use
    plugins.unload_plugins()


class OddOfflineCheck:
    """A plugin's dataset whose ``available_offline`` answers ``verdict`` (or raises it)."""

    label = description = "odd"

    def __init__(self, verdict):
        self.verdict = verdict

    def available_offline(self, root):
        if isinstance(self.verdict, Exception):
            raise self.verdict
        return self.verdict

    def load(self, cfg, *, seed):
        raise AssertionError("info loads nothing")


@pytest.mark.parametrize("verdict, said", [
    (True, "cannot check: available_offline returned True, not (available, why)"),
    (None, "cannot check: available_offline returned None, not (available, why)"),
    ((True, "x", "y"), "cannot check: available_offline returned (True, 'x', 'y'), not (available, why)"),
    (OSError("cannot stat"), "cannot check: cannot stat"),
])
def test_info_says_a_dataset_cannot_be_checked_when_its_check_breaks_the_contract(monkeypatch, verdict, said):
    # QA: a plugin's available_offline returning True crashed `info`: "cannot unpack non-iterable bool object"
    from iamnn_studio.engine.data import DATASETS

    monkeypatch.setitem(DATASETS._items, "odd-check", OddOfflineCheck(verdict))
    code, out, err = run_cli("info", "--json")
    assert code == 0, err
    datasets = json.loads(out)["datasets"]
    assert datasets["odd-check"] == {"offline": False, "reason": said}
    assert datasets["synthetic"]["offline"] is True  # the other datasets are still checked
    code, out, _ = run_cli("info")
    assert code == 0 and f"  {'odd-check':<16} {'missing':<8} {said}" in out.splitlines()


def test_info_lists_a_failed_plugin_once(tmp_path, plugins_from):
    """QA: each failed plugin was printed twice, as a `note:` on stderr and in the plugins list (the text; the JSON
    in a real process above)."""
    (tmp_path / "broken.py").write_text("def register(api):\n    raise RuntimeError('boom')\n")
    plugins_from(tmp_path)
    code, out, err = run_cli("info")
    assert code == 0, err
    assert "broken" not in err and "boom" not in err
    assert [line.strip() for line in out.splitlines() if "broken" in line] == [
        f"broken: FAILED, RuntimeError: boom (at broken.py:2) [{tmp_path / 'broken.py'}]"]


def test_other_commands_still_note_a_failed_plugin(tmp_path, plugins_from):
    """Only `info` lists the plugins itself: elsewhere the note is the one place a failed plugin is said."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "broken.py").write_text("def register(api):\n    raise RuntimeError('boom')\n")
    plugins_from(tmp_path / "plugins")
    _, _, err = run_cli("export", tmp_path / "missing.pt", "--format", "nosuch", "--out", tmp_path / "m.x")
    assert "note: plugin broken skipped: RuntimeError: boom" in err


@pytest.mark.parametrize("command", [["runs", "--runs-dir", "{runs}"], ["evaluate", "{run}", "--no-sweep"],
                                     ["evaluate", "{run}", "--json"], ["predict", "{run}", "{image}"]])
def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(trained, tmp_path, command):
    """QA: `evaluate ... | head -2`, `runs | head -1` and `predict ... | head -1` exited 1, the code of a failed
    command, when the reader closed the pipe first; the shell reports 141 (128 + SIGPIPE) for a Unix tool that
    stops there, and nothing is printed about it."""
    Image.new("L", (16, 16), 10).save(tmp_path / "a.png")
    argv = [a.format(runs=trained["runs"], run=trained["run"], image=tmp_path / "a.png") for a in command]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes a byte: deterministic, unlike `head`
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"}
    with os.fdopen(write_end, "wb") as stdout:
        done = subprocess.run([sys.executable, "-m", "iamnn_studio", *argv], stdout=stdout, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 141, done.stderr
    assert "error" not in done.stderr and "Traceback" not in done.stderr and "Exception" not in done.stderr


def test_json_output_never_contains_nan():
    assert json.loads(cli.to_json({"loss": float("nan"), "curve": [1.5, float("inf")]})) == {"loss": None, "curve": [1.5, None]}


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_rewrites_one_line_on_a_terminal(monkeypatch):
    from iamnn_studio.engine.events import Event

    monkeypatch.setenv("COLUMNS", "120")  # the bar is cut to the terminal's width: the test's must not vary

    screen = FakeTerminal()
    progress = cli.TrainingProgress(screen)
    step = {"epoch": 1, "step": 3, "total_steps": 10, "loss": 0.5, "accuracy": 0.8, "images_per_s": 120.0,
            "iterations": [1.0, 1.5, 2.0, 1.0]}
    progress(Event("started", {"total_epochs": 2, "run_dir": "runs/x", "device": "cpu", "total_steps": 10}))
    progress(Event("step", step))
    progress(Event("step", {**step, "step": 4}))
    progress(Event("epoch", {"epoch": 1, "step": 5, "train_loss": 0.4, "train_accuracy": 0.9, "val_loss": 0.45,
                             "val_accuracy": 0.85, "images_per_s": 100.0, "iterations": [1, 1, 1, 1], "macs": 2e6}))
    text = screen.getvalue()
    assert text.count("\r") == 2
    assert "\repoch 1/2  step 4/10  loss 0.5000  acc 80.0%  120 img/s  iterations 1.00 1.50 2.00 1.00" in text
    assert "\nepoch 1/2  step 5  train loss 0.4000 acc 90.00%  val loss 0.4500 acc 85.00%" in text


def test_counts_of_one_are_singular_in_what_the_cli_prints():
    from iamnn_studio.engine.events import Event

    screen = io.StringIO()
    progress = cli.TrainingProgress(screen)
    progress(Event("started", {"total_epochs": 1, "run_dir": "runs/x", "device": "cpu", "total_steps": 1,
                               "dataset": {"name": "synthetic", "train": 8}, "recipe": "anytime"}))
    assert ", 1 step, recipe anytime" in screen.getvalue()
    progress(Event("started", {"total_steps": 2, "dataset": {}}))
    assert ", 2 steps, recipe" in screen.getvalue()
    assert cli.format_evaluation({"images": 1, "split": "val"}).startswith("1 val image\n")
    assert cli.format_evaluation({"images": 3}).startswith("3 test images\n")


def test_second_ctrl_c_quits_at_once():
    interrupts = cli._Interrupts()
    stops = []
    interrupts.on_first = lambda: stops.append(1)
    interrupts.handle(signal.SIGINT, None)
    assert stops == [1]
    with pytest.raises(KeyboardInterrupt):
        interrupts.handle(signal.SIGINT, None)


def test_a_run_folder_stands_for_its_best_checkpoint(trained):
    code, out, _ = run_cli("evaluate", trained["run"], "--json", "--no-sweep")
    assert code == 0
    assert json.loads(out)["checkpoint"] == str(trained["run"] / "checkpoints" / "best.pt")


@pytest.mark.parametrize("argv", [["gui", "--runs-dir", "runs"], ["--runs-dir", "runs"], ["--runs-dir=runs"]])
def test_the_apps_runs_folder_option_opens_the_app(monkeypatch, argv):
    import iamnn_studio.gui.app as app

    calls = []
    monkeypatch.setattr(app, "main", lambda args: calls.append(args) or 0)
    assert main(argv) == 0
    assert calls == [argv[1:] if argv[0] == "gui" else argv]


# --------------------------------------------------------------------------- --device of evaluate / predict
@pytest.mark.parametrize("command", [["evaluate", "{ckpt}"], ["predict", "{ckpt}", "x.png"]])
def test_a_device_that_is_no_device_is_refused_before_anything_loads(tmp_path, command):
    argv = [a.format(ckpt=tmp_path / "nope.pt") for a in command]
    code, out, err = run_cli(*argv, "--device", "gpu")
    assert code == 2 and out == ""
    assert err == "error: device: must be cpu, cuda or cuda:N (N a GPU number), got 'gpu'\n"


@pytest.mark.parametrize("command", [["evaluate", "{ckpt}"], ["predict", "{ckpt}", "x.png"]])
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_a_usage_error(tmp_path, monkeypatch, command, device):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = [a.format(ckpt=tmp_path / "nope.pt") for a in command]
    code, _, err = run_cli(*argv, "--device", device)
    assert code == 2
    assert err == "error: device: CUDA was asked for but no CUDA GPU is available; choose cpu\n"


def test_a_cuda_number_past_the_machines_gpus_is_a_usage_error(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    code, _, err = run_cli("evaluate", tmp_path / "nope.pt", "--device", "cuda:3")
    assert code == 2 and err.startswith("error: device: cuda:3 was asked for but this machine has 1 CUDA GPU")


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "CUDA:1"])
def test_train_takes_the_device_spellings_the_other_commands_take(tmp_path, monkeypatch, device):
    """QA: `train --device cuda:0` was refused ("must be one of ('auto', 'cpu', 'cuda')") where evaluate and
    predict take it; without a GPU each command now says the same, before the dataset loads."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = run_cli("train", "--dataset", "synthetic", "--runs-dir", tmp_path / "runs", "--device", device)
    assert (code, out) == (2, "")
    assert err == "error: device: CUDA was asked for but no CUDA GPU is available; choose cpu\n"
    assert not (tmp_path / "runs").exists()
    # a settings file may be written for another machine: the spelling is checked, the GPU is not
    code, _, err = run_cli("train", "--device", device, "--save-config", tmp_path / "gpu.toml")
    assert code == 0, err
    assert RunConfig.load(tmp_path / "gpu.toml").device == device.lower()
    code, _, err = run_cli("train", "--device", "gpu", "--save-config", tmp_path / "gpu.toml")
    assert code == 2 and err == "error: device: must be auto, cpu, cuda or cuda:N (N a GPU number), got 'gpu'\n"


@pytest.mark.parametrize("what", ["other files", "a run"])
def test_a_run_dir_that_cannot_take_a_new_run_is_refused_before_anything_loads(tmp_path, monkeypatch, what):
    """QA: `train --run-dir photos` (a folder of other files) said "holds other files" only after the dataset
    had loaded and the model was built (seconds to minutes)."""
    import iamnn_studio.engine.data as data

    def no_loading(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the run folder was checked")

    monkeypatch.setattr(data, "load_dataset", no_loading)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / ("cat.png" if what == "other files" else "status.json")).write_text("{}")
    code, out, err = run_cli("train", "--dataset", "synthetic", "--run-dir", folder, "--max-steps", "1")
    assert (code, out) == (2, "")
    expected = "holds other files and no run" if what == "other files" else "already holds a run"
    assert err.startswith(f"error: run_dir: {folder} {expected}"), err
    assert sorted(p.name for p in folder.iterdir()) == ["cat.png" if what == "other files" else "status.json"]


# --------------------------------------------------------------------------- a run folder without best.pt
@pytest.fixture()
def early_run(trained, tmp_path):
    """A run stopped before its first epoch ended: checkpoints/ holds last.pt only."""
    run = tmp_path / "early"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(trained["run"] / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    return run


def test_predict_on_a_run_without_best_uses_last_with_a_note(early_run, tmp_path):
    image = tmp_path / "shape.png"
    Image.new("L", (16, 16), 90).save(image)
    code, out, err = run_cli("predict", early_run, image, "--json")
    assert code == 0, err
    assert err == f"note: no best.pt yet in {early_run}; using checkpoints/last.pt\n"
    report = json.loads(out)
    assert report["checkpoint"] == str(early_run / "checkpoints" / "last.pt") and len(report["predictions"]) == 1


def test_evaluate_on_a_run_without_best_uses_last(early_run):
    code, out, err = run_cli("evaluate", early_run, "--json", "--no-sweep")
    assert code == 0, err
    assert "using checkpoints/last.pt" in err
    assert json.loads(out)["checkpoint"] == str(early_run / "checkpoints" / "last.pt")


@pytest.mark.parametrize("command", [["predict", "{run}", "x.png"], ["evaluate", "{run}"],
                                     ["export", "{run}", "--format", "onnx", "--out", "{run}/m.onnx"]])
def test_a_folder_without_checkpoints_names_what_was_looked_for(tmp_path, command):
    (tmp_path / "checkpoints").mkdir()
    code, _, err = run_cli(*[a.format(run=tmp_path) for a in command])
    assert code == 2
    assert err == (f"error: {tmp_path} is a folder without a checkpoint: looked for best.pt and last.pt in it "
                   "and in its checkpoints folder (give a checkpoint file or a run folder)\n")


def test_a_run_folders_checkpoints_folder_stands_for_its_best_checkpoint(trained):
    # QA: "runs/x/checkpoints is a folder without a checkpoint" although it holds best.pt and last.pt
    code, out, err = run_cli("evaluate", trained["run"] / "checkpoints", "--json", "--batch-size", "64")
    assert code == 0, err
    assert json.loads(out)["checkpoint"] == str(trained["run"] / "checkpoints" / "best.pt")


def test_a_folder_given_as_the_config_file_is_named_as_a_folder(tmp_path):
    code, _, err = run_cli("train", "--config", tmp_path)
    assert code == 2
    assert err == f"error: config: {tmp_path} is a folder: give a settings file (.toml)\n"
    (tmp_path / "image.toml").write_bytes(b"\x89PNG\r\n\x1a\n\x87\x00")  # QA: "'utf-8' codec can't decode byte 0x87"
    code, _, err = run_cli("train", "--config", tmp_path / "image.toml")
    assert code == 2 and err == f"error: config: {tmp_path / 'image.toml'} is not a settings file: not UTF-8 text\n"


# --------------------------------------------------------------------------- train --resume, several processes, --save-config
def test_resume_refuses_options_that_would_change_the_run(trained):
    run = trained["run"]
    before = (run / "status.json").read_text()
    code, out, err = run_cli("train", "--run-dir", run, "--resume", "--width", "16", "--dataset", "synthetic",
                             "--max-steps", "82", "--device", "cpu")
    assert code == 2 and out == ""
    assert err == (f"error: --resume continues {run} as it was configured; drop --width, --dataset, --max-steps "
                   "(start a new run to change them)\n")
    assert (run / "status.json").read_text() == before  # nothing was started


@pytest.mark.parametrize(("options", "named"), [(["--config", "run.toml"], "--config"), (["--lr=0.5"], "--lr"),
                                                (["--epo", "3"], "--epochs"), (["--download"], "--download"),
                                                (["--batch-size", "8", "--name", "x"], "--batch-size, --name")])
def test_resume_names_each_refused_option(tmp_path, options, named):
    code, _, err = run_cli("train", "--resume", "--run-dir", tmp_path, *options)
    assert code == 2 and err.startswith(f"error: --resume continues {tmp_path} as it was configured; drop {named} (")


def test_resume_with_save_config_is_refused(tmp_path):
    code, _, err = run_cli("train", "--resume", "--run-dir", tmp_path, "--save-config", tmp_path / "x.toml")
    assert code == 2 and err.startswith("error: --save-config does not combine with --resume")
    assert not (tmp_path / "x.toml").exists()


def test_resume_still_takes_where_to_run(tmp_path, monkeypatch):
    (tmp_path / "run.toml").write_text(TINY_RUN)
    original = cli.TrainingProgress._on_started

    def press_ctrl_c(self, data):
        original(self, data)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(cli.TrainingProgress, "_on_started", press_ctrl_c)
    assert run_cli("train", "--config", tmp_path / "run.toml", "--device", "cpu", "--runs-dir", tmp_path)[0] == 130
    monkeypatch.setattr(cli.TrainingProgress, "_on_started", original)
    code, _, err = run_cli("train", "--run-dir", tmp_path / "tiny", "--resume", "--device", "cpu",
                           "--runs-dir", tmp_path, "--nproc-per-node", "1")
    assert code == 0, err
    assert "resumed after step" in err
    assert json.loads((tmp_path / "tiny" / "status.json").read_text())["state"] == "completed"


@pytest.mark.parametrize(("options", "message"), [
    (["--nproc-per-node", "0"], "--nproc-per-node: must be an integer >= 1, got 0"),
    (["--nproc-per-node", "-1"], "--nproc-per-node: must be an integer >= 1, got -1"),
    (["--nnodes", "0"], "--nnodes: must be an integer >= 1, got 0"),
    (["--node-rank", "5"], "--node-rank: must be in [0, 0] with --nnodes 1, got 5"),
    (["--nnodes", "2", "--node-rank", "-1"], "--node-rank: must be in [0, 1] with --nnodes 2, got -1"),
    (["--master-port", "0"], "--master-port: must be a port number in [1, 65535], got 0"),
])
def test_bad_process_options_are_refused_even_for_one_process(tmp_path, options, message):
    code, out, err = run_cli("train", "--dataset", "synthetic", "--runs-dir", tmp_path, *options)
    assert code == 2 and out == ""
    assert err == f"error: {message}\n"
    assert not any(tmp_path.iterdir())  # nothing was trained


def test_save_config_to_a_folder_names_the_users_path(tmp_path):
    code, out, err = run_cli("train", "--save-config", tmp_path)
    assert code == 2 and out == ""
    assert err == f"error: --save-config: {tmp_path} is a folder; give a file name such as run.toml\n"


def test_save_config_never_overwrites_a_runs_files(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text("name = 'run'\n")
    (run / "status.json").write_text("{}")
    (run / "checkpoints" / "best.pt").write_bytes(b"weights")
    for target in (run / "checkpoints" / "best.pt", run / "config.toml"):
        code, out, err = run_cli("train", "--save-config", target)
        assert code == 2 and out == ""
        assert err == f"error: --save-config: cannot write {target}: it is a file of the training run in {run}; " \
                      "write somewhere else\n"
    assert (run / "checkpoints" / "best.pt").read_bytes() == b"weights"
    assert (run / "config.toml").read_text() == "name = 'run'\n"


def test_save_config_under_a_file_names_the_users_path(tmp_path):
    (tmp_path / "notes").write_text("a file")
    target = tmp_path / "notes" / "run.toml"
    code, _, err = run_cli("train", "--save-config", target)
    assert code == 2
    assert err == f"error: --save-config: cannot write {target}: {tmp_path / 'notes'} is a file, not a folder\n"


def test_a_failed_save_config_write_names_the_users_path_not_the_temp_file(tmp_path, monkeypatch):
    import errno

    def refuse(self, path):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".run.toml.x1y2.tmp"))

    monkeypatch.setattr(RunConfig, "save", refuse)
    target = tmp_path / "run.toml"
    code, _, err = run_cli("train", "--save-config", target)
    assert code == 2
    assert err == f"error: --save-config: cannot write {target}: Permission denied\n"


# --------------------------------------------------------------------------- predict: the MACs of the mode used, ResNet baselines
def _macs_of(checkpoint_file, iterations):
    import torch

    from iamnn_studio.engine.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint_file).model
    setting = torch.tensor([iterations])
    return int(model.macs_for(setting, torch.zeros_like(setting))[0])


@pytest.mark.parametrize(("mode", "iterations", "halting"), [
    ("max", [1, 2, 2, 1], "off (mode max)"),
    ("fixed:1", [1, 1, 1, 1], "off (mode fixed:1)"),
    ("fixed:2", [1, 2, 2, 1], "off (mode fixed:2 runs at most the caps 1-2-2-1)"),
    ("fixed:99", [1, 2, 2, 1], "off (mode fixed:99 runs at most the caps 1-2-2-1)"),
])
def test_predict_in_a_fixed_mode_prints_that_modes_macs(trained, tmp_path, mode, iterations, halting):
    best = trained["run"] / "checkpoints" / "best.pt"
    image = tmp_path / "shape.png"
    Image.new("L", (16, 16), 200).save(image)
    code, out, err = run_cli("predict", best, image, "--mode", mode)
    assert code == 0, err
    macs = _macs_of(best, iterations)
    assert f"  halting     {halting}\n" in out
    assert out.rstrip().endswith(f"  MACs        {cli.format_macs(macs)}")  # one value, no adaptive range
    assert "possible" not in out
    code, out, _ = run_cli("predict", best, image, "--mode", mode, "--json")
    [prediction] = json.loads(out)["predictions"]
    assert prediction["macs"] == macs and prediction["macs_range"] == [macs, macs]


def test_fixed_mode_text_says_which_blocks_a_cap_held_back():
    assert cli._fixed_mode_text("fixed:4", [3, 4, 6, 3]) == "fixed:4 runs 3-4-4-3: no block runs past its cap"
    assert cli._fixed_mode_text("fixed:3", [3, 4, 6, 3]) == "fixed:3"
    assert cli._fixed_mode_text("max", [3, 4, 6, 3]) == "max"


def test_predict_in_adaptive_mode_still_shows_the_possible_range(tmp_path):
    from iamnn_studio.engine import ModelConfig, build_model
    from iamnn_studio.engine.checkpoint import save_checkpoint

    model = build_model(ModelConfig(iterations=(1, 2, 2, 1), width=4, image_size=16, num_classes=3)).eval()
    path = save_checkpoint(tmp_path / "iamnn.pt", model, classes=["a", "b", "c"], mean=[0.5], std=[0.25])
    image = tmp_path / "shape.png"
    Image.new("L", (16, 16), 200).save(image)
    code, out, _ = run_cli("predict", path, image, "--threshold", "0.9")
    low, high = model.macs_range()
    assert low < high
    assert code == 0 and f"(possible {cli.format_macs(low)} to {cli.format_macs(high)})" in out
    assert "halting (score -> cumulative, threshold 0.9)" in out


@pytest.fixture(scope="module")
def resnet_checkpoint(tmp_path_factory):
    from iamnn_studio.engine import ModelConfig, build_model
    from iamnn_studio.engine.checkpoint import save_checkpoint

    model = build_model(ModelConfig(iterations=(1, 1, 1, 1), width=4, image_size=16, num_classes=3,
                                    architecture="resnet"))
    path = tmp_path_factory.mktemp("resnet") / "resnet.pt"
    return save_checkpoint(path, model.eval(), classes=["a", "b", "c"], mean=[0.5], std=[0.25])


@pytest.mark.parametrize("option", [["--mode", "fixed:1"], ["--threshold", "0.5"], ["--mode", "max"]])
def test_predict_refuses_mode_and_threshold_for_a_resnet_baseline(resnet_checkpoint, tmp_path, option):
    image = tmp_path / "shape.png"
    Image.new("L", (16, 16), 200).save(image)
    code, out, err = run_cli("predict", resnet_checkpoint, image, *option)
    assert code == 2 and out == ""
    assert err == ("error: --mode/--threshold: this checkpoint is a ResNet baseline; "
                   "it has no iterations to choose or halting\n")


def test_predict_with_a_resnet_baseline_shows_units_and_one_macs_value(resnet_checkpoint, tmp_path):
    image = tmp_path / "shape.png"
    Image.new("L", (16, 16), 200).save(image)
    code, out, err = run_cli("predict", resnet_checkpoint, image)
    assert code == 0, err
    assert "  units       1  1  1  1  (per block)" in out
    assert "halting     none (a ResNet baseline: every image runs every unit)" in out
    assert "possible" not in out and "mode" not in out


# --------------------------------------------------------------------------- help
def _help(*argv):
    code, out, _ = run_cli(*argv, "--help")
    assert code == 0
    return " ".join(out.split())  # argparse wraps lines


def _option_help(text: str, option: str) -> str:
    """The help entry of ``option`` in argparse's output: its line and the wrapped lines under it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(option + " "))
    entry = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith(" " * 10):
            break
        entry.append(line)
    return " ".join(" ".join(entry).split())


def test_train_help_shows_the_defaults_that_apply():
    code, text, _ = run_cli("train", "--help")
    assert code == 0
    defaults = RunConfig()
    for option, value in [("--depth", defaults.model.depth), ("--width", defaults.model.width),
                          ("--epochs", defaults.epochs), ("--batch-size", defaults.batch_size), ("--lr", defaults.lr),
                          ("--dataset", defaults.data.name), ("--runs-dir", "runs"), ("--nproc-per-node", 1),
                          ("--node-rank", 0), ("--name", defaults.name)]:
        assert f"default: {value})" in _option_help(text, option), option
    assert "default" not in _option_help(text, "--config") + _option_help(text, "--download")
    assert "default: None" not in text and "default: False" not in text


def test_export_help_names_plugin_formats():
    assert "onnx, torchscript, or a plugin's format such as pt2" in _help("export")


def test_gui_help_names_the_real_command_and_does_not_open_the_app(monkeypatch, capsys):
    import iamnn_studio.gui.app as app

    calls = []
    monkeypatch.setattr(app, "main", lambda argv: calls.append(argv) or 0)
    assert main(["gui", "-h"]) == 0
    assert capsys.readouterr().out.startswith("usage: iamnn-studio gui ")
    assert calls == []


@pytest.mark.parametrize("argv", [["gui", "--bogus"], ["--runs-dir", "runs", "--bogus"], ["gui", "extra"]])
def test_unknown_app_options_are_an_error_and_the_app_stays_closed(monkeypatch, capsys, argv):
    import iamnn_studio.gui.app as app

    calls = []
    monkeypatch.setattr(app, "main", lambda args: calls.append(args) or 0)
    assert main(argv) == 2
    assert "iamnn-studio gui: error: unrecognized arguments: " in capsys.readouterr().err
    assert calls == []


def test_the_export_docs_point_at_files_that_a_run_has(trained):
    docs = (REPO / "docs" / "export.md").read_text()
    assert "runs/my-run/best.pt" not in docs
    assert "iamnn-studio export runs/my-run/checkpoints/best.pt --format onnx" in docs
    assert (trained["run"] / "checkpoints" / "best.pt").is_file()  # the layout the docs show


# --------------------------------------------------------------------------- Ctrl-C in evaluate, runs cut short
def test_ctrl_c_during_evaluate_says_the_evaluation_stops(trained, monkeypatch):
    pressed = []

    def press_ctrl_c_once(self, fraction):
        if not pressed:
            pressed.append(fraction)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(cli._Fraction, "__call__", press_ctrl_c_once)
    code, out, err = run_cli("evaluate", trained["run"], "--batch-size", "8", "--no-sweep")
    assert code == 130 and pressed
    assert "stopping the evaluation after this batch; the results so far follow (Ctrl-C again to quit at once)" in err
    assert "checkpoint" not in err
    assert "(stopped early: partial results)" in out
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_run_cut_short_by_max_steps_does_not_count_a_whole_epoch(cut_short):
    code, out, err = cut_short["code"], cut_short["out"], cut_short["err"]
    assert code == 0, err
    # 160 images with 20% held out: 128 training images, 16 steps of 8 per epoch
    assert "epoch 1/1  step 3 (cut short: 3 of its 16 steps)  train loss" in err
    assert "epochs done: 0 of 1, and 3 of the 16 steps of epoch 1 (stopped at step 3)" in out
    code, out, _ = run_cli("runs", "--runs-dir", cut_short["runs"])
    assert code == 0
    header, row = out.splitlines()[:2]
    column = header.index("EPOCHS")
    assert row[column:].startswith("0/1 (+3 of 16 steps)  ")


def test_epochs_done_text():
    from iamnn_studio.engine.runs import epochs_text

    assert epochs_text(1, 1, 422, 422) == "1/1"
    assert epochs_text(2, 2, 500, 422) == "1/2 (+78 of 422 steps)"
    assert epochs_text(3, 10, None, None) == "3/10"  # an old run without the numbers
    assert epochs_text(0, 1, 12, 40, prose=True) == \
        "epochs done: 0 of 1, and 12 of the 40 steps of epoch 1 (stopped at step 12)"


# --------------------------------------------------------------------------- settings that do not apply
def test_train_takes_the_validation_split_from_the_command_line(tmp_path):
    (tmp_path / "run.toml").write_text(TINY_RUN)
    code, _, err = run_cli("train", "--config", tmp_path / "run.toml", "--val-fraction", "0.3", "--max-steps", "1",
                           "--runs-dir", tmp_path / "runs", "--save-config", tmp_path / "saved.toml")
    from iamnn_studio.engine.config import RunConfig

    assert RunConfig.load(tmp_path / "saved.toml").data.val_fraction == 0.3
    code, _, err = run_cli("train", "--val-fraction", "1.5", "--runs-dir", tmp_path / "runs")
    assert code == 2 and err.startswith("error: data.val_fraction: must be in [0, 1)")


def test_a_threshold_outside_the_adaptive_mode_is_refused(trained, tmp_path):
    image = tmp_path / "shape.png"
    Image.new("L", (16, 16), 90).save(image)
    code, _, err = run_cli("predict", trained["run"], image, "--mode", "fixed:1", "--threshold", "0.9")
    assert code == 2 and err == "error: --threshold: the halting threshold applies to the mode adaptive, not fixed:1\n"


@pytest.mark.parametrize(("option", "said"), [
    (["--threshold", "1.5"], "--threshold: must be in (0, 1], got 1.5"),
    (["--threshold", "1e-300"], "--threshold: must be at least 1e-45, got 1e-300 (0 in the model's float32 "
                                "arithmetic: every block would stop at its first iteration)"),
    (["--mode", "sometimes"], "--mode: must be 'adaptive', 'fixed:N' or 'max', got 'sometimes'"),
    (["--mode", "fixed:0"], "--mode: 'fixed:N' needs N >= 1, got 0"),
])
def test_predict_names_the_option_a_halting_error_is_about(tmp_path, option, said):
    """predict said "threshold: ..." / "mode: ..." (the settings' names) for what --threshold / --mode gave;
    1e-300 was taken, and every block stopped at its first iteration."""
    from tiny_models import save_varied_checkpoint

    save_varied_checkpoint(tmp_path / "model.pt")
    Image.new("L", (16, 16), 90).save(tmp_path / "shape.png")
    code, out, err = run_cli("predict", tmp_path / "model.pt", tmp_path / "shape.png", *option)
    assert (code, out, err) == (2, "", f"error: {said}\n")


def test_predict_says_when_the_halting_head_was_never_calibrated(trained, tmp_path):
    from iamnn_studio.engine.checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(trained["run"] / "checkpoints" / "best.pt")
    loaded.model.config.threshold = None  # as a run stopped before calibration leaves it
    save_checkpoint(tmp_path / "stopped.pt", loaded.model, classes=loaded.classes, mean=loaded.mean, std=loaded.std)
    image = tmp_path / "shape.png"
    Image.new("L", (16, 16), 90).save(image)
    code, _, err = run_cli("predict", tmp_path / "stopped.pt", image)
    assert code == 0 and "never calibrated" in err and "--mode max" in err
    code, _, err = run_cli("predict", tmp_path / "stopped.pt", image, "--mode", "max")
    assert code == 0 and err == ""  # the iterations no longer depend on the head


def test_a_run_that_cannot_start_for_its_data_is_bad_input_like_in_the_other_commands(tmp_path):
    code, _, err = run_cli("train", "--dataset", "mnist", "--data-root", tmp_path / "nowhere", "--runs-dir",
                           tmp_path / "runs")
    assert code == 2 and err.startswith("error: MNIST not found") and str(tmp_path / "nowhere") in err
    code, _, err = run_cli("evaluate", tmp_path / "missing.pt")
    assert code == 2


def test_train_refuses_an_image_folder_with_a_class_folder_it_cannot_read(tmp_path, lock_folders_named):
    """QA: the class folder it could not list was left out: a model of the other classes, "100 %" held out."""
    for shade, name in enumerate(("dark", "light", "locked")):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (16, 16), 100 * shade + i).save(tmp_path / "photos" / name / f"{i}.png")
    lock_folders_named("locked")
    code, out, err = run_cli("train", "--dataset", "imagefolder", "--data-root", tmp_path / "photos", "--depth", "18",
                             "--width", "4", "--max-steps", "1", "--no-calibrate", "--device", "cpu", "--runs-dir",
                             tmp_path / "runs")
    assert code == 2
    assert err.splitlines() == [f"error: image folder: cannot read the class folder {tmp_path / 'photos' / 'locked'}: "
                                "permission denied"]
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_info_shows_each_plugin_as_the_gui_and_the_log_do():
    from iamnn_studio.engine.plugins import PluginReport

    good = PluginReport("depthwise_block", "plugins/depthwise_block.py", True, contributes=(("blocks", "depthwise"),))
    bad = PluginReport("boom", "plugins/boom.py", False, error="RuntimeError: boom (at boom.py:2)")
    info = {"iamnn_studio": "0", "python": "3", "torch": "2", "cuda": {"available": False},
            "system": {"gpu_message": "none", "cpu_count": 2, "ram_total": 2**30}, "datasets": {},
            "plugins": [{"name": r.name, "source": r.source, "ok": r.ok, "error": r.error,
                         "contributes": [list(c) for c in r.contributes]} for r in (good, bad)]}
    lines = cli.format_info(info).splitlines()
    assert "  " + good.line() in lines and "  " + bad.line() in lines
    assert "  boom: FAILED, RuntimeError: boom (at boom.py:2) [plugins/boom.py]" in lines


def _image_folder_of_the_test_split(trained, root: Path, name=lambda c: c) -> Path:
    """The trained run's synthetic test images as an image folder, one class folder per class."""
    from iamnn_studio.engine.checkpoint import load_checkpoint
    from iamnn_studio.engine.data import load_dataset

    checkpoint = load_checkpoint(trained["run"] / "checkpoints" / "best.pt")
    bundle = load_dataset(checkpoint.run_config.data, seed=checkpoint.run_config.seed)
    for split in ("train", "val", "test"):  # the test images in each: only the test split is evaluated
        for index, (image, label) in enumerate(zip(bundle.test.images, bundle.test.labels)):
            folder = root / split / name(bundle.classes[int(label)])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0].numpy(), mode="L").save(folder / f"{index}.png")
    return root


def test_evaluate_on_an_image_folder_matches_its_classes_to_the_checkpoints_by_name(trained, tmp_path):
    reference = json.loads(run_cli("evaluate", trained["run"], "--json", "--no-sweep")[1])
    # folder names sort in another order than the model's classes, and carry other case and punctuation
    root = _image_folder_of_the_test_split(trained, tmp_path / "mine", name=lambda c: c.upper().replace(" ", "_"))
    code, out, err = run_cli("evaluate", trained["run"], "--dataset", "imagefolder", "--data-root", root,
                             "--split", "test", "--json", "--no-sweep")
    assert code == 0, err
    assert "matched by name" in err
    result = json.loads(out)
    assert result["images"] == reference["images"] == 48
    assert result["top1"] == reference["top1"] and result["confusion"] == reference["confusion"]


def test_evaluate_says_what_the_dataset_notes_about_its_splits(trained, tmp_path):
    root = _image_folder_of_the_test_split(trained, tmp_path / "mine", name=lambda c: c)
    for image_file in (root / "test").rglob("*.png"):
        image_file.unlink()
    for folder in sorted((root / "test").rglob("*"), reverse=True):
        folder.rmdir()
    (root / "test").rmdir()  # no test/ folder: the "test" split is the validation images (QA: said nowhere)
    code, out, err = run_cli("evaluate", trained["run"], "--dataset", "imagefolder", "--data-root", root, "--no-sweep")
    assert code == 0, err
    assert "note: no test/ folder: the test split is the validation split, the 48 images of val/" in err.splitlines()
    assert "48 val images" in out  # named as what they are
    # review: these images are another folder's, not the ones that chose the model (trained on other data)
    assert "chose the model" not in out and "the validation split of this folder" in out
    shutil.rmtree(root / "val")  # the held-out share of train/ is all that is evaluated: QA, "but how many?"
    code, out, err = run_cli("evaluate", trained["run"], "--dataset", "imagefolder", "--data-root", root, "--no-sweep",
                             "--json")
    assert code == 0, err
    result = json.loads(out)
    held_out = result["images"]
    assert 0 < held_out < 48
    # recorded as what they are, as the trainer records it: these images chose the model, no test of it
    assert result["split"] == "val" and "chose" not in result["split_note"]
    assert (f"note: no test/ folder: the test split is the validation split, the share of train/ held out from "
            f"training: {held_out} of its 48 images") in err.splitlines()


def test_evaluate_refuses_a_dataset_whose_classes_are_not_the_checkpoints(trained, tmp_path):
    root = _image_folder_of_the_test_split(trained, tmp_path / "other", name=lambda c: f"not {c}")
    code, out, err = run_cli("evaluate", trained["run"], "--dataset", "imagefolder", "--data-root", root,
                             "--split", "test", "--no-sweep")
    assert code == 2 and out == ""
    error = err.splitlines()[-1]  # after the dataset's own notes (images resized ...)
    assert error.startswith("error: imagefolder's classes (not ") and "would not mean the model's classes" in error


def test_counts_keep_their_significant_zeros_so_a_list_reads_alike():
    assert [cli.format_macs(v) for v in (1_003_776, 2_120_000, 950, 12_500, 3e9)] == [
        "1.00 M", "2.12 M", "950", "12.5 k", "3.00 G"]  # QA: "mean 1 M" next to "2.12 M"
    assert cli.format_macs(None) == cli.format_macs(float("nan")) == "n/a"


def test_evaluate_takes_labels_in_order_where_one_side_only_numbers_its_classes(trained, tmp_path):
    root = _image_folder_of_the_test_split(trained, tmp_path / "numbered", name=lambda c: c)
    from iamnn_studio.engine.checkpoint import load_checkpoint, save_checkpoint

    saved = load_checkpoint(trained["run"] / "checkpoints" / "best.pt")
    numbered = tmp_path / "numbered.pt"  # a model saved without class names
    save_checkpoint(numbered, saved.model, classes=[str(i) for i in range(10)], mean=saved.mean, std=saved.std)
    code, out, err = run_cli("evaluate", numbered, "--dataset", "imagefolder", "--data-root", root,
                             "--split", "test", "--json", "--no-sweep")
    assert code == 0, err
    assert "note: the checkpoint only numbers its classes: the labels are taken in order" in err
    assert json.loads(out)["images"] == 48


def test_the_evaluating_phase_and_the_evaluated_line_name_the_split_truthfully():
    """QA: "evaluating on the test images" then "evaluated on val" in the train log."""
    from iamnn_studio.engine.events import Event
    from iamnn_studio.engine.trainer import _describe as format_event

    assert "test" not in cli.PHASE_LABELS["evaluating"]
    assert format_event(Event("evaluated", {"split": "val", "top1": 0.5})) == "evaluated on held-out images (val): top-1 50.00%"
    assert format_event(Event("evaluated", {"split": "test", "top1": 0.5})) == "evaluated on test: top-1 50.00%"


def test_an_epoch_measured_on_the_test_images_is_named_alike_in_the_console_and_train_log():
    """QA: with --val-fraction 0 the console said "test loss 1.4974 acc 39.00%", train.log "val loss" for it."""
    from iamnn_studio.engine.events import Event
    from iamnn_studio.engine.trainer import _describe as format_event

    epoch = {"epoch": 1, "total_epochs": 1, "step": 5, "train_loss": 0.4, "train_accuracy": 0.9, "val_loss": 1.4974,
             "val_accuracy": 0.39, "images_per_s": 100.0, "iterations": [1, 1, 1, 1], "macs": 2e6}
    for split in ("test", "val"):
        screen = io.StringIO()
        cli.TrainingProgress(screen)(Event("epoch", {**epoch, "val_split": split}))
        assert f"{split} loss 1.4974 acc 39.00%" in screen.getvalue()
        assert f", {split} loss 1.4974 acc 39.00%" in format_event(Event("epoch", {**epoch, "val_split": split}))


# --------------------------------------------------------------------------- QA: a new user's first tries
@pytest.mark.parametrize("setting, option, file_line", [
    ("lr", ["--lr", "1e308"], ""),
    ("weight_decay", [], "weight_decay = 1e300\n"),
    ("tau", [], "[model]\ntau = 1e300\n"),
    # an exponent past a float's is infinity: too big, not "must be > 0" (as it was told)
    ("lr", ["--lr", "1e999"], ""),
    ("weight_decay", [], "weight_decay = inf\n"),
    ("tau", [], "[model]\ntau = inf\n"),
])
@pytest.mark.parametrize("save_config", [False, True])
def test_a_slipped_exponent_in_an_optimiser_setting_is_refused_before_a_run_folder_is_made(
        tmp_path, setting, option, file_line, save_config):
    """QA: --lr 1e308 passed validation, made a run folder and ended "unexpected error: RuntimeError: value
    cannot be converted to type float without overflow" (exit 1); --save-config wrote it."""
    (tmp_path / "run.toml").write_text(file_line)
    saved = ["--save-config", tmp_path / "saved.toml"] if save_config else []
    code, out, err = run_cli("train", "--config", tmp_path / "run.toml", *option, "--dataset", "synthetic",
                             "--runs-dir", tmp_path / "runs", *saved)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: {setting}: ") and "at most" in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved.toml").exists()


def test_a_thread_count_no_machine_has_is_refused(tmp_path):
    """--save-config: before the fix, training went on to start 100000 threads (and crashed)."""
    (tmp_path / "run.toml").write_text("num_threads = 100000\n")
    code, out, err = run_cli("train", "--config", tmp_path / "run.toml", "--save-config", tmp_path / "saved.toml")
    assert (code, out) == (2, "")
    assert err.startswith("error: num_threads: must be at most ") and err.count("\n") == 1, err
    assert not (tmp_path / "saved.toml").exists()


@pytest.mark.parametrize("option", [["--block", "bottleneck"], ["--halting", "act"]])
def test_train_refuses_iamnn_only_options_for_the_resnet_baseline_as_it_refuses_a_mode(tmp_path, option):
    """QA: --block and --halting were taken and recorded for a ResNet, which ignores them."""
    code, out, err = run_cli("train", "--architecture", "resnet", *option, "--runs-dir", tmp_path / "runs",
                             "--save-config", tmp_path / "saved.toml")
    assert (code, out) == (2, "")
    assert err.startswith(f"error: {option[0]}: a ResNet baseline has no ") and "applies to IamNN" in err, err
    assert err.count("\n") == 1 and not (tmp_path / "saved.toml").exists()


def test_a_resnet_settings_file_with_the_default_iamnn_settings_still_loads(tmp_path):
    """A ResNet's config.toml holds the model's default block and halting: only options given are refused."""
    (tmp_path / "run.toml").write_text('[model]\narchitecture = "resnet"\nblock = "bottleneck"\nhalting = "calibrated"\n')
    code, out, err = run_cli("train", "--config", tmp_path / "run.toml", "--depth", "18",
                             "--save-config", tmp_path / "saved.toml")
    assert code == 0, err
    assert RunConfig.load(tmp_path / "saved.toml").model.architecture == "resnet"


def test_the_cli_module_runs_as_a_script():
    """QA: `python -m iamnn_studio.cli train --help` printed nothing and exited 0."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "iamnn_studio.cli", "train", "--help"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ") and "--run-dir" in done.stdout


def test_a_missing_dataset_names_the_download_option(tmp_path):
    """QA: "allow downloads" named no way to allow them."""
    code, out, err = run_cli("train", "--dataset", "fashion-mnist", "--data-root", tmp_path, "--runs-dir",
                             tmp_path / "runs")
    assert code == 2 and "--download" in err, err


def test_a_data_root_that_is_a_file_is_said_to_be_a_file(tmp_path):
    """QA: --data-root some/file.png said "looked in some/file.png"."""
    (tmp_path / "file.png").write_bytes(b"not a folder")
    code, out, err = run_cli("train", "--dataset", "fashion-mnist", "--data-root", tmp_path / "file.png",
                             "--runs-dir", tmp_path / "runs")
    assert code == 2 and f"{tmp_path / 'file.png'} is a file, not a folder" in err, err
    assert "looked in" not in err and err.count("\n") == 1


def test_too_few_images_to_calibrate_says_how_to_turn_the_calibration_off_and_that_option_does(tmp_path):
    """QA: the advice was `calibrate_halting = false`, a settings-file line the command line had no option for."""
    small = ["--dataset", "synthetic", "--depth", "18", "--width", "4", "--max-steps", "1", "--device", "cpu",
             "--runs-dir", tmp_path / "runs"]
    (tmp_path / "run.toml").write_text('[data.options]\ntrain_size = 40\ntest_size = 8\nimage_size = 16\n')
    code, out, err = run_cli("train", "--config", tmp_path / "run.toml", *small)
    assert code == 2 and "--no-calibrate" in err and err.count("\n") == 1, err
    code, out, err = run_cli("train", "--config", tmp_path / "run.toml", *small, "--no-calibrate",
                             "--save-config", tmp_path / "saved.toml")
    assert code == 0, err
    assert RunConfig.load(tmp_path / "saved.toml").calibrate_halting is False


def test_runs_says_why_a_runs_status_is_unknown(tmp_path):
    """QA: a run whose status.json could not be read was listed "unknown" with no word of why."""
    run = tmp_path / "runs" / "damaged"
    run.mkdir(parents=True)
    (run / "config.toml").write_text(RunConfig(name="damaged").to_toml())
    (run / "status.json").write_text("{not json")
    code, out, err = run_cli("runs", "--runs-dir", tmp_path / "runs")
    assert code == 0, err
    assert "unknown" in out and "status.json is missing or damaged" in out, out


def test_a_run_killed_before_its_first_epoch_ended_is_refused_a_resume_with_a_command_that_starts_it_again(tmp_path):
    """QA: after kill -9 in the first epoch, --resume said "start it again" and starting again said "resume it"."""
    import shlex
    import socket

    run = tmp_path / "runs" / "conc"
    (tmp_path / "run.toml").write_text("max_steps = 2\n" + TINY_RUN)
    assert run_cli("train", "--config", tmp_path / "run.toml", "--save-config", tmp_path / "saved.toml")[0] == 0
    run.mkdir(parents=True)
    shutil.copy(tmp_path / "saved.toml", run / "config.toml")
    (run / "metrics.jsonl").write_text('{"event": "started", "step": 0}\n')
    (run / "status.json").write_text(json.dumps({"state": "running", "pid": 2**22 + 12345,
                                                 "host": socket.gethostname()}))  # no such process
    code, out, err = run_cli("train", "--run-dir", run, "--resume", "--device", "cpu")
    assert code == 2 and "no checkpoint yet" in err, err
    command = shlex.split(err.strip().rsplit(": ", 1)[1])
    assert command[:2] == ["iamnn-studio", "train"]
    code, out, err = run_cli(*command[1:], "--device", "cpu")
    assert code == 0, err
    assert out.startswith(f"run: {run} · completed") and (run / "checkpoints" / "last.pt").is_file()


def test_more_processes_than_cores_are_refused_in_one_line_before_any_starts(tmp_path, monkeypatch):
    """``--nproc-per-node 1000`` on a 2-core machine started workers until the memory was gone."""
    import torch

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("iamnn_studio.engine.distributed._elastic_launch",  # a failing check must not start 1000
                        lambda *a, **k: pytest.fail("training processes were started"))
    (tmp_path / "run.toml").write_text(TINY_RUN)
    runs = tmp_path / "runs"
    code, out, err = run_cli("train", "--config", tmp_path / "run.toml", "--nproc-per-node", "1000",
                             "--device", "cpu", "--runs-dir", runs)
    assert code == 2
    assert err == ("error: --nproc-per-node: this machine runs at most 1 training process at once "
                   "(one per core; it has 1 CPU core), got 1000\n")
    assert not runs.exists()


def test_a_run_folder_whose_path_is_not_utf8_trains(tmp_path):
    """Training finished epoch 1, then failed: "'utf-8' codec can't encode character '\\udcff'"."""
    (tmp_path / "run.toml").write_text(TINY_RUN)
    run = tmp_path / os.fsdecode(b"runs-u") / os.fsdecode(b"\xffdir")
    code, out, err = run_cli("train", "--config", tmp_path / "run.toml", "--run-dir", run, "--max-steps", "2",
                             "--device", "cpu")
    assert code == 0, err
    assert (run / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize(("option", "field"), [("--name", "name"), ("--data-root", "data.root"),
                                               ("--init-from", "init_from")])
def test_a_setting_that_is_not_utf8_is_refused_before_training(tmp_path, option, field):
    """config.toml is UTF-8: --name $'n\\xff' failed with the codec's own words (--init-from with a crash log)."""
    (tmp_path / "run.toml").write_text(TINY_RUN)
    runs = tmp_path / "runs"
    code, out, err = run_cli("train", "--config", tmp_path / "run.toml", option, os.fsdecode(b"n\xff"),
                             "--runs-dir", runs, "--device", "cpu")
    assert code == 2
    assert err.startswith(f"error: {field}: must be UTF-8 text, got 'n\\xff'") and err.count("\n") == 1, err
    assert not runs.exists()


def test_an_unexpected_error_with_an_argument_that_is_not_utf8_still_gets_its_log():
    """Writing the traceback of such a command failed again, printing a traceback instead of one line."""
    from iamnn_studio.crash_log import write_error_log

    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        log = Path(write_error_log(type(exc), exc, exc.__traceback__, heading="iamnn-studio train --name n\udcff"))
    try:
        assert "--name n\\udcff" in log.read_text(encoding="utf-8") and "RuntimeError: boom" in log.read_text()
    finally:
        log.unlink()


def test_a_settings_file_over_a_megabyte_is_refused_unread(tmp_path):
    """A 3 GB file took 6 GB of memory before "not valid TOML" (and /dev/zero was read until the memory ran out)."""
    settings = tmp_path / "big.toml"
    settings.write_text(TINY_RUN + ("#" * 99 + "\n") * 11_000)  # 1.1 MB, valid TOML: comments
    code, _, err = run_cli("train", "--config", settings, "--save-config", tmp_path / "out.toml")
    assert code == 2
    assert err == (f"error: config: {settings} is over 1 MiB, too big for a settings file (a few hundred bytes of "
                   "TOML); is it the right file?\n")
    assert not (tmp_path / "out.toml").exists()


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs a device file")
def test_a_device_given_as_the_settings_file_is_refused():
    code, _, err = run_cli("train", "--config", "/dev/null", "--save-config", os.devnull)
    assert code == 2 and err == "error: config: /dev/null is a device, not a settings file (.toml)\n"


def _pipe_path(chunks, total: int):
    """``/dev/fd/N`` of a pipe a thread writes ``chunks`` into, ``total`` bytes at most (as ``<(...)`` gives)."""
    import threading

    read_end, write_end = os.pipe()

    def write() -> None:
        written = 0
        with contextlib.suppress(OSError), os.fdopen(write_end, "wb") as fh:
            for chunk in chunks:
                if written >= total:
                    break
                fh.write(chunk)
                written += len(chunk)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return f"/dev/fd/{read_end}", read_end, writer


def test_settings_from_a_pipe_are_read_once_and_bounded(tmp_path):
    """``--config <(...)`` keeps working (its data.augment counts, which a second read found gone); an endless
    pipe is cut off at the limit instead of taking the memory."""
    import itertools

    settings = TINY_RUN.replace('[data]\n', '[data]\naugment = "flip"\n').encode()
    path, read_end, writer = _pipe_path([settings], len(settings))
    try:
        code, out, err = run_cli("train", "--config", path, "--dataset", "synthetic",
                                 "--save-config", tmp_path / "out.toml")
    finally:
        os.close(read_end)
    writer.join(10)
    assert code == 0, err
    assert 'augment = "flip"' in (tmp_path / "out.toml").read_text()

    path, read_end, writer = _pipe_path(itertools.repeat(b"#" * 1023 + b"\n"), 8 << 20)
    try:
        code, _, err = run_cli("train", "--config", path, "--save-config", tmp_path / "endless.toml")
    finally:
        os.close(read_end)
    writer.join(10)
    assert code == 2 and "is over 1 MiB, too big for a settings file" in err


def test_a_settings_file_starting_with_a_byte_order_mark_loads(tmp_path):
    """Some Windows editors start UTF-8 files with one: "not valid TOML (Invalid statement (at line 1, column 1))"."""
    settings = tmp_path / "run.toml"
    settings.write_bytes(b"\xef\xbb\xbf" + TINY_RUN.encode())
    code, out, err = run_cli("train", "--config", settings, "--save-config", tmp_path / "out.toml")
    assert code == 0, err
    assert RunConfig.load(tmp_path / "out.toml").name == "tiny"
