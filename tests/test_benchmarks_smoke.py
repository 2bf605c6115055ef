"""Smoke tests of the benchmark scripts: each core function runs on a tiny setting and returns what
docs/benchmarks.md documents. Nothing here is timed or asserts a speed: the numbers of a tiny run on a
busy test machine mean nothing; that the code paths work and report their raw figures does.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

TINY = {"width": 4, "depth": 18}


def assert_reports(result: dict, *keys: str) -> None:
    missing = [k for k in ("value", "verdict", "hardware", "setting", *keys) if k not in result]
    assert not missing, f"missing keys: {missing}"
    json.dumps(result)  # what run_all.py writes must be JSON


def test_early_exit_reports_efficiency_from_both_modes_timings_and_macs():
    from bench_early_exit import measure_early_exit

    result = measure_early_exit(batch_size=16, repeats=2, profile=True, dataset="synthetic", **TINY)

    assert_reports(result, "wall_speedup", "mac_speedup", "raw_seconds", "macs_mean", "profile_ms", "time_lost_ms")
    assert len(result["raw_seconds"]["max"]) == len(result["raw_seconds"]["adaptive"]) == 2
    assert result["value"] == pytest.approx(result["wall_speedup"] / result["mac_speedup"])
    # The heads are set so that images exit early: adaptive must cost fewer MACs than max mode.
    assert result["macs_mean"]["adaptive"] < result["macs_mean"]["max"]
    assert result["per_image_macs"]["max_over_min"] > 1.0
    assert sum(result["iterations_histogram"][0]) == 16


def test_early_exit_measures_again_as_the_command_line_runs_in_a_process_without_the_apps_wait_policy():
    from bench_early_exit import __file__ as script
    from common import measure_as_command_line

    result = measure_as_command_line(script, ["--quick", "--dataset", "synthetic", "--json", "ignored.json"],
                                     ("value", "wall_speedup", "mac_speedup", "raw_seconds"))

    assert result.get("error") is None
    assert result["omp_wait_policy"] is None  # OpenMP's default, as `iamnn-studio evaluate` gets it
    assert result["value"] == pytest.approx(result["wall_speedup"] / result["mac_speedup"])
    assert len(result["raw_seconds"]["adaptive"]) == 3


def test_exit_heads_are_set_to_the_target_mean_iterations():
    import torch

    from bench_early_exit import TARGET_EXTRA_SHARE, THRESHOLD, set_exit_heads
    from iamnn_studio.engine import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(width=4, iterations=(3, 4, 6, 3), threshold=THRESHOLD)).eval()
    images = torch.randn(64, 1, 28, 28)
    set_exit_heads(model, images, steps=12)
    with torch.no_grad():
        means = model(images).iterations.double().mean(0)
    for mean, cap in zip(means.tolist(), model.caps):
        assert mean == pytest.approx(1 + TARGET_EXTRA_SHARE * (cap - 1), abs=0.35)


def test_engine_overhead_times_the_trainer_against_a_bare_loop_doing_the_same_work():
    from bench_engine_overhead import measure_engine_overhead

    result = measure_engine_overhead(steps=4, warmup=1, rounds=2, batch_size=16, dataset="synthetic", **TINY)

    assert_reports(result, "trainer_images_per_s", "bare_images_per_s", "rounds", "method", "same_losses")
    assert len(result["rounds"]) == 2
    assert all(r["trainer_images_per_s"] > 0 and r["bare_images_per_s"] > 0 for r in result["rounds"])
    # Same seeds, batches, exits and optimiser: every trainer step event's mean loss is the bare
    # loop's mean loss over the same steps. The ratio means nothing without this.
    assert result["same_losses"] is True


def test_mfu_counts_training_flops_and_measures_the_matmul_peak():
    from bench_mfu import measure_mfu

    result = measure_mfu(steps=1, warmup=1, batch_size=8, peak_size=128, dataset="synthetic", **TINY)

    assert_reports(result, "training_flops_per_s", "peak_flops_per_s", "step_flops", "step_seconds")
    assert result["step_flops"][0] > 0 and result["peak_flops_per_s"] > 0
    assert result["value"] == pytest.approx(result["training_flops_per_s"] / result["peak_flops_per_s"])


def test_mfu_measures_again_as_the_command_line_trains_in_a_process_without_the_apps_wait_policy():
    from bench_mfu import __file__ as script
    from common import measure_as_command_line

    result = measure_as_command_line(script, ["--quick", "--dataset", "synthetic"],
                                     ("value", "training_flops_per_s", "peak_flops_per_s"))

    assert result.get("error") is None
    assert result["omp_wait_policy"] is None  # OpenMP's default, as `iamnn-studio train` gets it
    assert result["value"] == pytest.approx(result["training_flops_per_s"] / result["peak_flops_per_s"])


def test_ui_lag_trains_in_the_real_window_and_reports_percentiles(qapp):
    from bench_ui_lag import measure_ui_lag

    result = measure_ui_lag(seconds=1.0, idle_seconds=0.3, dataset="synthetic", batch_size=16, **TINY)

    assert_reports(result, "p50_ms", "training", "idle", "arrangement")
    assert result["training"]["ticks"] > 0
    assert result["value"] == result["training"]["p99_ms"] >= result["p50_ms"] >= 0
    assert result["step_events"] >= 1 and result["stopped_cleanly"]


def test_lag_probe_measures_lateness_beyond_the_interval(qapp):
    import time

    from bench_ui_lag import LagProbe, wait

    probe = LagProbe()
    probe.start()
    probe.recording = True
    wait(qapp, lambda: len(probe.lags_ms) >= 3, 2.0)
    time.sleep(0.08)  # block the UI thread: the next tick is ~70 ms late
    wait(qapp, lambda: len(probe.lags_ms) >= 5, 2.0)
    probe.timer.stop()
    assert max(probe.lags_ms) >= 60


def test_startup_launches_the_app_and_a_bare_torch_import():
    from bench_startup import measure_startup

    result = measure_startup(repeats=1, warm_up=False)

    assert_reports(result, "app_first_paint_s", "import_torch_s", "raw_seconds")
    assert result["app_first_paint_s"] > 0 and result["import_torch_s"] > 0


def test_run_all_table_lists_every_result_and_marks_failures():
    from run_all import BENCHMARKS, markdown_table

    results = {key: {"value": 1.0, "verdict": "met"} for key in BENCHMARKS}
    results["mfu"] = {"value": None, "error": "exit 1: boom"}
    results["ui_lag_p99_ms"].update(p50_ms=0.5)
    results["early_exit_efficiency"]["command_line"] = {"value": 0.95}
    results["engine_overhead_ratio"]["command_line"] = {"value": 0.5}  # no command-line row for this one
    table = markdown_table(results)
    for key in BENCHMARKS:
        assert f"`{key}`" in table
    assert "`ui_lag_p50_ms`" in table
    assert "| `early_exit_efficiency`, command line | 0.950 | >= 0.9 | met |" in table
    assert ", command line" not in table.replace("`early_exit_efficiency`, command line", "")

    results["mfu"] = {"value": 0.45, "verdict": "MISSED", "command_line": {"value": 0.51}}
    assert "| `mfu`, command line | 0.510 | >= 0.5 | met |" in markdown_table(results)
    assert "| `mfu` | failed |" in table and "boom" in table


def test_table1_is_built_from_real_engine_evaluations(tmp_path, qapp):
    """compare(), markdown() and the figures read the engine's eval.json format as it is today."""
    import torch

    from figures import render_all
    from iamnn_studio.engine import DataConfig, ModelConfig, build_model
    from iamnn_studio.engine.data import load_dataset
    from iamnn_studio.engine.evaluate import evaluate
    from reproduce import NETWORKS, compare, markdown

    bundle = load_dataset(DataConfig(name="synthetic", options={"train_size": 20, "test_size": 40}))
    test = bundle.test
    runs = {}
    for key, spec in NETWORKS.items():
        torch.manual_seed(0)
        config = ModelConfig(width=4, depth=18, architecture=spec["architecture"], mode=spec["mode"], threshold=0.5)
        model = build_model(config).eval()
        ev = evaluate(model, test, mean=bundle.mean, std=bundle.std, classes=bundle.classes, batch_size=16)
        runs[key] = {"eval": ev, "parameters": sum(p.numel() for p in model.parameters()), "threshold": 0.5}
    comparison = compare(runs)
    data = {"title": "test", "runs": runs, "comparison": comparison, "runs_seconds": 60.0, "notes": ["a note"],
            "hardware": {"cpu": "cpu", "cores": 2, "gpu": None},
            "setting": {"width": 4, "depth": 18, "caps": [2, 2, 2, 2], "epochs": 1, "batch_size": 16, "lr": 0.1,
                        "seed": 0, "train_images": 18, "val_images": 2}}
    text = markdown(data)

    assert comparison["params_ratio"] == pytest.approx(runs["iamnn"]["parameters"] / runs["resnet"]["parameters"])
    assert comparison["macs_ratio"] == pytest.approx(runs["iamnn"]["eval"]["macs"]["mean"]
                                                     / runs["resnet"]["eval"]["macs"]["mean"])
    for spec in NETWORKS.values():
        assert spec["label"] in text
    assert "| IamNN params / ResNet params | <= 0.15 |" in text and "a note" in text
    # five classes or fewer: eval.json's top5 is null, and the table says "–"
    few = {key: {**run, "eval": {**run["eval"], "top5": None}} for key, run in runs.items()}
    assert " % / – |" in markdown({**data, "runs": few})

    render = {**data, "iamnn": runs["iamnn"]["eval"],
              "resnet_point": {"mean_macs": runs["resnet"]["eval"]["macs"]["mean"], "top1": runs["resnet"]["eval"]["top1"]},
              "ablation_point": {"mean_macs": runs["fixed1"]["eval"]["macs"]["mean"], "top1": runs["fixed1"]["eval"]["top1"]}}
    written = render_all(tmp_path, render)
    assert [p.name for p in written] == ["accuracy_vs_macs.png", "iterations_histogram.png"]
    assert all(p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG" for p in written)


def test_parameter_table_counts_what_the_real_models_hold_and_finds_the_papers_ratio_at_resnet152():
    from params_table import parameter_counts, table

    from iamnn_studio.engine import ModelConfig, build_model

    counted = parameter_counts(50, 8)  # built on the meta device
    for architecture in ("iamnn", "resnet"):
        real = build_model(ModelConfig(depth=50, width=8, architecture=architecture))
        assert counted[architecture] == sum(p.numel() for p in real.parameters())
    rows = {(r["depth"], r["width"]): r for r in table(depths=(50, 152), widths=(16, 64))}
    # sharing saves more the more units a block has: ResNet-152 at its standard width 64 meets the
    # paper's 0.15; the depth-50, width-16 Table 1 setting cannot
    assert rows[(152, 64)]["ratio"] <= 0.15 < rows[(50, 16)]["ratio"]
    assert rows[(152, 16)]["ratio"] < rows[(50, 16)]["ratio"]


def test_reproduce_trains_the_three_networks_at_once_and_builds_the_table(tmp_path, qapp):
    """--parallel: each network in its own (spawned) process, then the same table as one after the other."""
    from reproduce import NETWORKS, main

    out = tmp_path / "table"
    # 300 training images: the 30 held out are enough to calibrate (20 at least); 2000 and 500 tripled the time
    assert main(["--dataset", "synthetic", "--data-option", "train_size=300", "--data-option", "test_size=100",
                 "--width", "4", "--depth", "18", "--epochs", "1", "--max-steps", "2",
                 "--batch-size", "32", "--device", "cpu", "--parallel", "--out", str(out)]) == 0

    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == sorted(f"table1-{key}-w4-d18-e1-s0-train_size300-test_size100" for key in NETWORKS)
    assert all((out / "runs" / name / "eval.json").exists() for name in runs)
    table = json.loads((out / "table1.json").read_text())
    assert table["setting"]["parallel"] and table["setting"]["dataset"] == "synthetic"
    assert table["setting"]["train_images"] == 270 and table["setting"]["data_options"] == {"train_size": 300,
                                                                                            "test_size": 100}
    assert table["runs_wall_seconds"] <= table["runs_seconds"]
    text = (out / "table1.md").read_text()
    assert text.startswith("### Table 1 on synthetic") and "trained at once in three processes" in text
    images = json.loads((out / "runs" / runs[0] / "eval.json").read_text())["images"]
    assert f"same {images:,} test images" in text and "capped at 2 optimiser steps" in text  # what really ran


def test_a_written_table_is_rebuilt_with_its_figures_and_the_current_comparison(tmp_path, qapp):
    """--rerender: where reproduce.py ran without Qt (a GPU server), or the comparison changed."""
    from reproduce import main

    stored = json.loads((BENCHMARKS / "results" / "table1.json").read_text())
    stored["comparison"].pop("halting_verdict", None)
    (tmp_path / "table1.json").write_text(json.dumps(stored))
    assert main(["--rerender", "--out", str(tmp_path)]) == 0

    assert all((tmp_path / name).read_bytes()[:4] == b"\x89PNG"
               for name in ("accuracy_vs_macs.png", "iterations_histogram.png"))
    assert "Verdict: The halting" in (tmp_path / "table1.md").read_text()
    assert json.loads((tmp_path / "table1.json").read_text())["comparison"]["halting_verdict"].startswith("The halting")
    with pytest.raises(SystemExit, match="cannot re-render"):
        main(["--rerender", "--out", str(tmp_path / "missing")])


def test_run_all_on_a_gpu_runs_only_the_benchmarks_that_can_and_says_when_there_is_none(capsys, monkeypatch):
    import torch
    from run_all import main

    with pytest.raises(SystemExit) as exit_:
        main(["--device", "cuda", "--only", "startup_ratio"])
    assert exit_.value.code == 2 and "startup_ratio cannot run on a GPU" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_:
        main(["--device", "cuda"])
    assert exit_.value.code == 2 and "no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [(["--epochs", "0"], "epochs: must be a positive integer, got 0"),
                                         (["--width", "0"], "width: must be a positive integer"),
                                         (["--depth", "7"], "depth: 7 is not a ResNet depth"),
                                         (["--augment", "erase-crop"], "data.augment: must be none, or crop"),
                                         (["--data-option", "train_size"],
                                          "--data-option: expected KEY=VALUE, got 'train_size'")])
def test_reproduce_refuses_bad_settings_in_one_line_before_training(argv, words, capsys):
    import reproduce

    with pytest.raises(SystemExit) as stop:
        reproduce.parse_args(argv)
    assert stop.value.code == 2 and words in capsys.readouterr().err


def test_reproduce_trains_with_the_augmentation_asked_for_and_names_its_runs_apart():
    import reproduce

    usual = reproduce.parse_args(["--quick"])
    erasing = reproduce.parse_args(["--quick", "--augment", "crop-flip-erase"])
    for key in reproduce.NETWORKS:
        plain, erased = reproduce.run_config(key, usual), reproduce.run_config(key, erasing)
        assert plain.name == f"table1-{key}-w8-d50-e1-s0"  # earlier runs' names
        assert plain.data.augment == "crop-flip" and not plain.name.endswith("crop-flip")
        assert erased.data.augment == "crop-flip-erase" and erased.name == plain.name + "-crop-flip-erase"


def test_a_gpu_benchmark_without_a_gpu_is_refused_in_one_line(capsys, monkeypatch):
    import torch
    from common import bench_arguments

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        bench_arguments("x", gpu=True).parse_args(["--device", "cuda"])
    assert stop.value.code == 2 and "no CUDA GPU" in capsys.readouterr().err


def test_reproduce_reuse_without_earlier_runs_names_them_and_trains_nothing(tmp_path, capsys, monkeypatch):
    """--reuse used to start the hour of training silently when it found nothing to reuse."""
    import reproduce

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(reproduce, "train_all", no_training)
    argv = ["--quick", "--reuse", "--out", str(tmp_path)]
    assert reproduce.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --reuse: no earlier runs to reuse") and err.count("\n") == 1
    names = [reproduce.run_config(key, reproduce.parse_args(argv)).name for key in reproduce.NETWORKS]
    assert all(str(tmp_path / "runs" / name) in err for name in names)
    assert not (tmp_path / "runs").exists()

    # one finished run is there: it is reused and only the other two are trained, as before
    finished = tmp_path / "runs" / names[0]
    finished.mkdir(parents=True)
    (finished / "eval.json").write_text("{}")
    (finished / "status.json").write_text(json.dumps({"state": "completed"}))
    args = reproduce.parse_args(argv)
    assert reproduce.reusable_run(next(iter(reproduce.NETWORKS)), args) == finished
    assert reproduce.missing_runs(args) == [tmp_path / "runs" / name for name in names[1:]]
    with pytest.raises(AssertionError, match="training started"):
        reproduce.main(argv)
