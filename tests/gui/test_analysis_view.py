"""The Study view: a run's eval.json becomes figures and a Table-1 comparison; a run without one can be evaluated."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from iamnn_studio.engine.config import DataConfig, ModelConfig, RunConfig  # noqa: E402
from iamnn_studio.gui import analysis_view  # noqa: E402
from iamnn_studio.gui.analysis_view import AnalysisView, training_series  # noqa: E402

pytestmark = pytest.mark.gui
TIMEOUT = 30_000
CLASSES = ["circle", "square", "plus"]
CONFUSION = [[5, 1, 0], [0, 3, 1], [0, 0, 2]]  # 10 of 12 right


def made_up_eval(architecture: str = "iamnn") -> dict:
    iamnn = architecture == "iamnn"
    return {
        "images": 12, "split": "test", "classes": CLASSES, "architecture": architecture,
        "mode": "adaptive" if iamnn else "max", "threshold": 0.7 if iamnn else None, "caps": [1, 2, 2, 1],
        "top1": 10 / 12, "top5": 1.0, "per_class": {"circle": 5 / 6, "square": 0.75, "plus": 1.0},
        "confusion": CONFUSION,
        "macs": {"mean": 4.1e6, "min": 2.0e6, "p10": 2.5e6, "p50": 4.0e6, "p90": 5.5e6, "max": 6.0e6,
                 "max_over_min": 3.0, "p90_over_p10": 2.2} if iamnn else
                {"mean": 9.0e6, "min": 9.0e6, "p10": 9.0e6, "p50": 9.0e6, "p90": 9.0e6, "max": 9.0e6,
                 "max_over_min": 1.0, "p90_over_p10": 1.0},
        "full_depth": {"top1": 0.9, "mean_macs": 6.0e6},
        "iterations": {"caps": [1, 2, 2, 1], "histogram": [[12], [3, 9], [6, 6], [12]], "mean": [1, 1.75, 1.5, 1],
                       "share_at_one": [1, 0.25, 0.5, 1], "share_at_cap": [1, 0.75, 0.5, 1]} if iamnn else None,
        "easiest": [{"index": i, "macs": 2_000_000 + i, "label": "circle", "prediction": "circle", "correct": True,
                     "iterations": [1, 1, 1, 1]} for i in range(4)],
        "hardest": [{"index": 11 - i, "macs": 6_000_000 - i, "label": "square", "prediction": "plus",
                     "correct": i > 0, "iterations": [1, 2, 2, 1]} for i in range(4)],
        "adaptivity": {"spearman_macs_vs_loss": 0.31, "collapse": {"alarm": False, "reasons": []}} if iamnn else None,
        "sweep": {"fixed": [{"iterations": [1, 1, 1, 1], "mean_macs": 2.0e6, "top1": 0.5},
                            {"iterations": [1, 2, 2, 1], "mean_macs": 6.0e6, "top1": 0.9}],
                  "threshold": [{"threshold": 0.3, "mean_macs": 2.5e6, "top1": 0.6},
                                {"threshold": 0.7, "mean_macs": 4.1e6, "top1": 10 / 12, "evaluated": True}]}
        if iamnn else {"fixed": [], "threshold": []},
    }


def make_run(runs: Path, name: str, *, architecture: str = "iamnn", evaluation: dict | None = None,
             parameters: int = 12_345, num_classes: int = 3) -> Path:
    folder = runs / name
    (folder / "checkpoints").mkdir(parents=True)
    config = RunConfig(name=name, data=DataConfig(name="synthetic", options={"train_size": 20, "test_size": 12}),
                       model=ModelConfig(iterations=(1, 2, 2, 1), width=4, num_classes=num_classes,
                                         architecture=architecture), epochs=2)
    config.save(folder / "config.toml")
    (folder / "status.json").write_text(json.dumps({"state": "completed", "best_accuracy": 0.8, "epochs_done": 2,
                                                    "total_epochs": 2, "created": "2025-01-01T10:00:00+00:00"}))
    events = [{"event": "started", "steps_per_epoch": 4, "parameters": parameters},
              *({"event": "step", "step": s, "loss": 2.0 - 0.1 * s, "accuracy": 0.1 * s,
                 "iterations": [1, 1.5, 1.5, 1]} for s in range(1, 9)),
              {"event": "epoch", "epoch": 1, "val_loss": 1.5, "val_accuracy": 0.5},
              {"event": "epoch", "epoch": 2, "val_loss": 1.2, "val_accuracy": 0.7}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events) + '{"event": "ste')
    if evaluation is not None:
        (folder / "eval.json").write_text(json.dumps(evaluation))
    return folder


@pytest.fixture
def view(qtbot):
    widget = AnalysisView()
    qtbot.addWidget(widget)
    widget.resize(1200, 800)
    widget.show()
    return widget


def show(qtbot, view, run: Path) -> None:
    with qtbot.waitSignal(view.report_shown, timeout=TIMEOUT):
        view.show_run(str(run))


def compare_rows(view) -> list[list[str]]:
    table = view.compare_table
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def test_an_evaluated_run_fills_confusion_matrix_histograms_and_summary(qtbot, view, tmp_path):
    run = make_run(tmp_path / "runs", "iamnn-run", evaluation=made_up_eval())
    show(qtbot, view, run)

    shares = view.confusion.image.image
    assert shares.shape == (3, 3)
    assert shares[0] == pytest.approx([5 / 6, 1 / 6, 0])  # rows: share of each true class
    assert sorted(label.toPlainText() for label in view.confusion.cell_labels) == ["1", "1", "2", "3", "5"]
    assert view.confusion_stack.currentIndex() == 1

    heights = [list(bars.opts["height"]) for bars in view.histograms.bars]
    assert heights[1] == pytest.approx([25.0, 75.0]) and heights[2] == pytest.approx([50.0, 50.0])
    assert view.histograms.cap_lines[1].value() == pytest.approx(2.5)
    assert view.class_bars.values == pytest.approx([100 * 5 / 6, 75.0, 100.0])

    assert view.accuracy_tile.value.text() == "83.3 %"
    assert view.params_tile.value.text() == "12.3 k"
    assert view.macs_tile.value.text() == "4.10 M"
    assert view.adaptivity_tile.value.text() == "Adapts"
    x, y = view.sweep.threshold_curve.getData()
    assert list(x) == pytest.approx([2.5, 4.1]) and list(y) == pytest.approx([60.0, 100 * 10 / 12])
    assert view.training.train_loss.getData()[1].size == 8  # the damaged last line is skipped

    # the easy-to-hard spectrum fetches the test images of the run's dataset in the background
    qtbot.waitUntil(lambda: all(not tile.pixmap().isNull() for tile in view.easiest.tiles + view.hardest.tiles),
                    timeout=TIMEOUT)
    assert len(view.easiest.tiles) == 4 and "6.00 M" in view.hardest_caption.text()
    assert view.hardest_caption.text().startswith("Most expensive  (up to ")  # not "Dearest"


def test_the_study_view_says_when_fixed_counts_beat_the_halting(qtbot, view, tmp_path):
    evaluation = made_up_eval()
    evaluation["sweep"]["fixed"][0]["top1"] = 0.85  # one iteration per block: more accurate and cheaper
    run = make_run(tmp_path / "runs", "iamnn-run", evaluation=evaluation)
    show(qtbot, view, run)

    assert view.adaptivity_tile.value.text() == "Doesn't pay"
    assert view.adaptivity_tile.detail.text().startswith("fixed:1: 85.0 % at 2.00 M MACs")
    assert view.sweep_verdict.isVisible()
    assert view.sweep_verdict.text().startswith("The halting does not pay on this model: fixed:1 (1-1-1-1 iterations)")

    assert "halting at most" not in view.subtitle.text()

    # a halting limited to one iteration per block runs what fixed:1 runs: nothing to adapt, not "Doesn't pay"
    one = {**evaluation, "halting_caps": [1, 1, 1, 1]}
    one["adaptivity"] = {**one["adaptivity"], "collapse": {"alarm": True, "reasons": ["p90/p10 of MACs is 1.00"]}}
    show(qtbot, view, make_run(tmp_path / "runs", "one-iteration", evaluation=one))
    assert view.adaptivity_tile.value.text() == "Fixed"
    assert "limited to one iteration per block" in view.adaptivity_tile.detail.text()
    assert view.sweep_verdict.text().startswith("The halting has nothing to adapt: it is limited to one iteration")

    limited = {**made_up_eval(), "halting_caps": [1, 1, 2, 1]}  # it pays only with random allocation beaten too
    limited["adaptivity"] = {**limited["adaptivity"], "random_allocation": {"top1": 0.5}}
    show(qtbot, view, make_run(tmp_path / "runs", "paying", evaluation=limited))
    assert "halting at most 1·1·2·1" in view.subtitle.text()
    assert view.adaptivity_tile.value.text() == "Adapts" and "pt vs fixed counts" in view.adaptivity_tile.detail.text()
    assert view.sweep_verdict.text().startswith("The halting pays")

    noisy = made_up_eval()  # 12 images, half of them decided differently: +12 pt is within noise
    for point in noisy["sweep"]["fixed"]:
        point["paired"] = {"only_adaptive_right": 6, "only_fixed_right": 3}
    show(qtbot, view, make_run(tmp_path / "runs", "noisy", evaluation=noisy))
    assert view.adaptivity_tile.value.text() == "Adapts" and "(within noise)" in view.adaptivity_tile.detail.text()
    assert view.sweep_verdict.text().startswith("The halting is level with fixed iterations")
    # the tile's ± is the band the verdict holds the difference to (two paired standard errors), not one of them
    band = view.sweep_verdict.text().split("within two paired standard errors, ±")[1].split(" pt")[0]
    assert f"± {band} pt vs fixed counts (within noise)" in view.adaptivity_tile.detail.text()

    flat = made_up_eval()
    for entry in flat["easiest"] + flat["hardest"]:
        entry["macs"] = 3_000_000  # every image costs the same: no "cheapest" and "dearest" to show
    show(qtbot, view, make_run(tmp_path / "runs", "flat", evaluation=flat))
    assert view.easiest_caption.text().startswith("Every image costs the same (3")
    assert "does not vary" in view.hardest_caption.text()

    unfitted = {**made_up_eval(), "halting_calibrated": False}  # the run stopped before calibration
    show(qtbot, view, make_run(tmp_path / "runs", "unfitted", evaluation=unfitted))
    assert view.adaptivity_tile.value.text() == "Not calibrated"
    assert view.sweep_verdict.text().startswith("The halting head was never calibrated")


def test_a_model_left_at_full_depth_by_no_calibrate_says_why(qtbot, view, tmp_path):
    """QA: eval.json's full_depth_note was never shown: the tile said "Fixed · mode max" for an adaptive run."""
    from iamnn_studio.engine.evaluate import NOT_CALIBRATED_NOTE

    full_depth = {**made_up_eval(), "mode": "max", "adaptivity": None, "full_depth_note": NOT_CALIBRATED_NOTE}
    show(qtbot, view, make_run(tmp_path / "runs", "no-calibrate", evaluation=full_depth))
    assert view.adaptivity_tile.value.text() == "Full depth"
    detail = view.adaptivity_tile.detail.text()
    assert "--no-calibrate" in detail and "runs at full depth" in detail


def test_the_comparison_table_sets_runs_side_by_side_like_table_1(qtbot, view, tmp_path):
    runs = tmp_path / "runs"
    iamnn = make_run(runs, "iamnn-run", evaluation=made_up_eval())
    resnet = make_run(runs, "resnet-run", architecture="resnet", evaluation=made_up_eval("resnet"),
                      parameters=99_000)
    show(qtbot, view, iamnn)
    qtbot.waitUntil(lambda: view.compare_list.count() == 2 and view.compare_table.rowCount() == 2, timeout=TIMEOUT)

    view.set_compared([str(iamnn), str(resnet)])
    qtbot.waitUntil(lambda: view.compare_table.rowCount() == 3, timeout=TIMEOUT)
    rows = compare_rows(view)
    by_run = {row[0].split("  ·  ")[0].split(",")[0] + ("/1" if "1 iteration" in row[0] else ""): row
              for row in rows}  # "<run>[, 1 iteration per block]  ·  <model>": the run first
    # three classes: a top-5 of 100 % says nothing, and is not shown
    assert by_run["iamnn-run"][1:] == ["12.3 k", "4.10 M (2.00 M – 6.00 M)", "83.3 / –"]
    assert by_run["iamnn-run/1"][1:] == ["12.3 k", "2.00 M", "50.0 / –"]
    assert by_run["resnet-run"][1:] == ["99.0 k", "9.00 M", "83.3 / –"]
    assert "ResNet" in by_run["resnet-run"][0]

    view.one_iteration.setChecked(False)
    qtbot.waitUntil(lambda: view.compare_table.rowCount() == 2, timeout=TIMEOUT)


def test_a_run_without_eval_json_shows_what_it_has_and_can_be_evaluated(qtbot, view, tmp_path):
    torch = pytest.importorskip("torch")
    from iamnn_studio.engine.checkpoint import save_checkpoint
    from iamnn_studio.engine.data.synthetic import CLASSES as SHAPES
    from iamnn_studio.engine.model import build_model

    run = make_run(tmp_path / "runs", "fresh-run", num_classes=len(SHAPES))
    torch.manual_seed(0)
    model = build_model(ModelConfig(iterations=(1, 2, 2, 1), width=4, num_classes=len(SHAPES)))
    save_checkpoint(run / "checkpoints" / "best.pt", model.eval(), classes=list(SHAPES), mean=[0.5], std=[0.25])
    show(qtbot, view, run)

    assert view.confusion_stack.currentIndex() == 0 and view.histogram_stack.currentIndex() == 0
    assert view.training_stack.currentIndex() == 1  # the curves it has
    assert view.accuracy_tile.value.text() == "80.0 %"  # best validation accuracy until evaluated
    assert view.accuracy_tile.caption.text() == "VALIDATION ACCURACY"
    assert view.evaluate_button.isEnabled() and view.evaluate_button.text() == "Evaluate now"

    fractions = []
    view._evaluator.progressed.connect(lambda token, fraction, message: fractions.append(fraction))
    with qtbot.waitSignal(view.evaluated, timeout=TIMEOUT):
        view.evaluate_button.click()
        assert view.progress.isVisibleTo(view) and view.cancel_button.isVisibleTo(view)
    with qtbot.waitSignal(view.report_shown, timeout=TIMEOUT):
        pass
    assert fractions and max(fractions) == pytest.approx(1.0) and not view.progress.isVisibleTo(view)
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["images"] == 12 and len(evaluation["confusion"]) == len(SHAPES)
    assert view.confusion_stack.currentIndex() == 1
    assert view.confusion.image.image.shape == (len(SHAPES), len(SHAPES))
    assert view.evaluate_button.text() == "Evaluate again"


def _run_with_checkpoint(tmp_path, name: str = "fresh-run", **status) -> Path:
    torch = pytest.importorskip("torch")
    from iamnn_studio.engine.checkpoint import save_checkpoint
    from iamnn_studio.engine.data.synthetic import CLASSES as SHAPES
    from iamnn_studio.engine.model import build_model

    run = make_run(tmp_path / "runs", name, num_classes=len(SHAPES))
    torch.manual_seed(0)
    model = build_model(ModelConfig(iterations=(1, 2, 2, 1), width=4, num_classes=len(SHAPES)))
    save_checkpoint(run / "checkpoints" / "best.pt", model.eval(), classes=list(SHAPES), mean=[0.5], std=[0.25])
    if status:
        (run / "status.json").write_text(json.dumps({**json.loads((run / "status.json").read_text()), **status}))
    return run


def test_an_evaluation_stopped_after_its_last_batch_writes_nothing(qtbot, view, tmp_path, monkeypatch):
    """Review: a stop that came after evaluate()'s last check still wrote eval.json, though closing the window
    had promised that nothing is written."""
    from iamnn_studio.engine import evaluate as evaluate_module

    run = _run_with_checkpoint(tmp_path)
    show(qtbot, view, run)
    real = evaluate_module.evaluate

    def stopped_at_the_end(*args, **kwargs):
        result = real(*args, **kwargs)
        view.stop_evaluation()  # the user's stop, after the last batch
        return result

    monkeypatch.setattr(evaluate_module, "evaluate", stopped_at_the_end)
    view.evaluate_button.click()
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=TIMEOUT)
    assert not (run / "eval.json").exists()


def test_an_evaluation_that_cannot_be_saved_is_shown_and_says_why(qtbot, view, tmp_path, monkeypatch):
    from iamnn_studio.engine import runs

    run = _run_with_checkpoint(tmp_path)
    show(qtbot, view, run)

    def read_only(self, result):
        raise OSError(30, "Read-only file system", str(self.path / ".eval.json.uee88d4d.tmp"))

    monkeypatch.setattr(runs.RunDirectory, "write_eval", read_only)
    with qtbot.waitSignal(view.evaluated, timeout=TIMEOUT):
        view.evaluate_button.click()
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=TIMEOUT)
    assert not (run / "eval.json").exists()
    # the new results are on screen ...
    assert view.report.evaluation is not None and view.report.evaluation["images"] == 12
    assert view.confusion_stack.currentIndex() == 1 and view.accuracy_tile.caption.text() == "TEST ACCURACY"
    assert view.evaluate_button.text() == "Evaluate again"
    # ... and the banner says, in words, that they are not saved (not "Evaluation failed")
    texts = " ".join(label.text() for label in view.banner.findChildren(type(view.subtitle)))
    assert view.banner.isVisibleTo(view)
    assert "could not be saved to eval.json" in texts and "read-only" in texts and "failed" not in texts.lower()


def test_a_run_ended_by_its_step_limit_says_so_as_in_the_runs_tab(qtbot, view, tmp_path):
    from iamnn_studio.engine.runs import STEP_LIMIT_REASON, list_runs

    run = _run_with_checkpoint(tmp_path, "capped", reason=f"{STEP_LIMIT_REASON} (40 steps)")
    show(qtbot, view, run)
    [listed] = list_runs(run.parent)
    assert listed.status_text == "completed (step limit)"
    assert "completed (step limit)" in view.subtitle.text()  # QA: the Study tab said only "completed"


def _run_left_running(tmp_path, name: str) -> Path:
    """A run whose status.json says "running", written by a process of this host that no longer exists."""
    import os
    import socket

    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return _run_with_checkpoint(tmp_path, name, state="running", pid=pid, host=socket.gethostname())


def test_a_dead_running_run_is_interrupted_as_in_the_runs_tab(qtbot, view, tmp_path):
    run = _run_left_running(tmp_path, "dead-running")
    show(qtbot, view, run)
    from iamnn_studio.engine.runs import list_runs

    [listed] = list_runs(run.parent)
    assert listed.status == "interrupted"
    assert "interrupted" in view.subtitle.text() and "running" not in view.subtitle.text()
    assert "resume" in view.subtitle.toolTip()
    assert view.evaluate_button.isEnabled()  # its checkpoint can be evaluated, as any interrupted run's


def test_an_interrupted_run_with_a_damaged_last_checkpoint_reads_as_in_the_runs_tab(qtbot, view, tmp_path):
    """The Study tab offered "resume from the last checkpoint" where Continue refuses the damaged last.pt."""
    from iamnn_studio.engine.runs import list_runs

    run = _run_left_running(tmp_path, "died-writing")
    (run / "checkpoints" / "last.pt").write_bytes(b"cut short when the process died")
    show(qtbot, view, run)
    [listed] = list_runs(run.parent)
    assert listed.reason == "the training process ended without saying why, and its checkpoints/last.pt cannot be read"
    assert analysis_view.read_run(run).state_reason == listed.reason
    assert view.subtitle.toolTip().endswith(f"interrupted: {listed.reason}")


def test_the_subtitle_counts_the_steps_of_an_epoch_cut_short(qtbot, view, tmp_path):
    run = make_run(tmp_path / "runs", "capped")  # 4 steps per epoch
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "epochs_done": 1, "total_epochs": 2, "step": 6}))
    show(qtbot, view, run)
    assert "1 / 2 epochs (+2 of 4 steps)" in view.subtitle.text()  # as the CLI and the Runs tab say it
    (run / "status.json").write_text(json.dumps(status))
    show(qtbot, view, run)
    assert "2 / 2 epochs" in view.subtitle.text() and "steps" not in view.subtitle.text()


LONG_NAME = ("Ein sehr langer Lauf-Name mit Ümlauten und Leerzeichen für das Bilderordner-Experiment Nummer 42 "
             "und noch mehr Text damit es wirklich lang ist")


@pytest.mark.parametrize("size", [(960, 600), (1920, 1000)])
def test_a_long_run_name_is_elided_and_the_page_fits_the_window(qtbot, view, tmp_path, size):
    run = make_run(tmp_path / "runs", LONG_NAME, evaluation=made_up_eval())
    view.resize(*size)
    show(qtbot, view, run)
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=TIMEOUT)
    content, viewport = view.page.widget(), view.page.viewport()
    qtbot.waitUntil(lambda: content.width() <= viewport.width(), timeout=5000)
    assert not view.page.horizontalScrollBar().isVisible()
    assert view.title.text() == LONG_NAME and view.title.shown_text().endswith("…")
    assert LONG_NAME in view.title.toolTip()
    button = view.evaluate_button  # the button and the tiles are not cut off at the right
    right = button.mapTo(content, button.rect().topRight()).x()
    assert button.isVisible() and right <= viewport.width()
    tile = view.adaptivity_tile
    assert tile.mapTo(content, tile.rect().topRight()).x() <= viewport.width()
    view.show_run(str(make_run(tmp_path / "runs", "short", evaluation=made_up_eval())))
    assert view.title.shown_text() == "short" and view.title.toolTip() == ""


def test_training_series_reads_steps_in_epochs_and_falls_back_to_epoch_figures():
    events = [{"event": "started", "steps_per_epoch": 10, "parameters": 5},
              {"event": "step", "step": 5, "loss": 1.0, "accuracy": 0.5, "iterations": [1, 2, 3, 4]},
              {"event": "epoch", "epoch": 1, "val_accuracy": 0.6, "train_loss": 0.9}]
    series, parameters = training_series(events)
    assert parameters == 5
    assert list(series["train_loss"][0]) == [0.5] and list(series["iterations_4"][1]) == [4]
    assert list(series["val_accuracy"][1]) == pytest.approx([60.0])

    series, _ = training_series([{"event": "epoch", "epoch": 1, "train_loss": 0.9, "train_accuracy": 0.7}])
    assert list(series["train_loss"][1]) == [0.9] and list(series["train_accuracy"][1]) == pytest.approx([70.0])


def append_steps(run: Path, steps: int, steps_per_epoch: int = 4) -> None:
    """A long run's step events (one per step, as a run logs every 0.1 s for days)."""
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write("\n")  # after make_run's truncated last line
        fh.writelines(json.dumps({"event": "step", "step": s, "loss": 2.0, "accuracy": 0.5,
                                  "iterations": [1, 2, 2, 1]}) + "\n" for s in range(9, 9 + steps))
        fh.write(json.dumps({"event": "epoch", "epoch": 3, "step": 9 + steps, "val_loss": 1.0}) + "\n")


def test_a_long_runs_curves_are_downsampled_to_what_a_plot_can_show(qtbot, view, tmp_path, monkeypatch):
    """A 200,000-step run put 200,000 points per curve on the UI thread (a 1 s freeze, 800 MB): the
    curves come in means of consecutive steps, at most MAX_CURVE_POINTS each, read as a stream."""
    import iamnn_studio.engine.runs as runs
    import iamnn_studio.gui.analysis_view as analysis_view

    run = make_run(tmp_path / "runs", "long")
    append_steps(run, 20_000)
    read_whole = []
    monkeypatch.setattr(runs, "read_metrics", lambda *a, **k: read_whole.append(a) or [])
    monkeypatch.setattr(analysis_view, "MAX_CURVE_POINTS", 500)
    show(qtbot, view, run)
    x, loss = view.report.series["train_loss"]
    assert len(x) <= 500 and x[0] < 20 and x[-1] == pytest.approx(20_008 / 4, rel=1e-3)
    assert loss[-1] == pytest.approx(2.0)  # a mean of equal steps, not a thinned-out sample of them
    assert len(view.report.series["val_loss"][0]) == 3  # short curves keep every point
    assert not read_whole  # streamed, never the whole file as a list of events


def test_bucket_means_keep_the_level_and_the_ends_of_a_curve():
    from iamnn_studio.gui.analysis_view import bucket_means

    x = np.arange(10_001, dtype=float)
    x_mean, y_mean = bucket_means(x, 2 * x, 100)
    assert len(x_mean) == 100 and y_mean == pytest.approx(2 * x_mean)
    assert x_mean[0] < 100 and x_mean[-1] > 9_900
    short = bucket_means(x[:50], x[:50], 100)
    assert list(short[0]) == list(x[:50])


def test_comparing_runs_reads_only_the_start_of_their_metrics(qtbot, view, tmp_path, monkeypatch):
    """The comparison needs the parameter count from the started event; it read every step of every
    ticked run again, on each tick."""
    import iamnn_studio.gui.analysis_view as analysis_view

    runs = tmp_path / "runs"
    current = make_run(runs, "current", evaluation=made_up_eval(), parameters=777)
    append_steps(current, 3000)
    curves_read = []
    original = analysis_view.training_series
    monkeypatch.setattr(analysis_view, "training_series", lambda events, *a: curves_read.append(1) or original(events, *a))
    show(qtbot, view, current)
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=TIMEOUT)
    assert len(curves_read) == 1  # the shown run's curves only
    assert compare_rows(view)[0][1] == "777"  # the parameter count still comes from the started event


def test_a_huge_damaged_eval_json_is_reported_not_read(qtbot, view, tmp_path, monkeypatch):
    import iamnn_studio.engine.runs as runs

    run = make_run(tmp_path / "runs", "sparse-eval")
    with open(run / "eval.json", "wb") as fh:
        fh.truncate(64 << 20)
    monkeypatch.setattr(runs, "MAX_JSON_FILE_BYTES", 1 << 20)
    show(qtbot, view, run)
    assert view.report.evaluation is None and "too big" in view.report.eval_error


def test_an_epoch_cut_short_by_the_step_limit_is_drawn_where_training_stopped():
    events = [{"event": "started", "steps_per_epoch": 400},
              {"event": "step", "step": 150, "loss": 0.6},
              {"event": "epoch", "epoch": 1, "step": 150, "val_loss": 0.55}]
    series, _ = training_series(events)
    assert list(series["train_loss"][0]) == list(series["val_loss"][0]) == pytest.approx([0.375])


def test_a_run_with_an_unreadable_config_says_why_it_cannot_be_evaluated(qtbot, view, tmp_path):
    run = make_run(tmp_path / "runs", "damaged")
    (run / "checkpoints" / "best.pt").write_bytes(b"weights")
    with (run / "config.toml").open("a") as config:
        config.write("\nbogus = 1\n")
    show(qtbot, view, run)
    assert not view.evaluate_button.isEnabled() and not view.prompt_button.isEnabled()
    assert "config.toml cannot be read" in view.evaluate_prompt.text.text()
    assert "bogus" in view.evaluate_button.toolTip()
    assert "?" not in view.subtitle.text() and "config.toml unreadable" in view.subtitle.text()


def banner_text(view) -> str:
    return " ".join(label.text() for label in view.banner.findChildren(type(view.subtitle)) if label.text())


def test_a_run_folder_without_config_toml_says_so_in_one_sentence(qtbot, view, tmp_path):
    """QA: "config.toml: config: no such file: /…/only-log/config.toml" for a folder holding only train.log."""
    run = make_run(tmp_path / "runs", "only-log")
    for path in [*run.iterdir()]:
        if path.name != "metrics.jsonl":
            path.unlink() if path.is_file() else path.rmdir()
    (run / "train.log").write_text("2025-01-01 10:00:00  started\n")
    show(qtbot, view, run)
    assert view.banner.isVisibleTo(view)
    assert banner_text(view) == "No config.toml in this run folder: its model and dataset are unknown"
    assert "no config.toml" in view.subtitle.text() and "unreadable" not in view.subtitle.text()

    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "best.pt").write_bytes(b"weights")
    show(qtbot, view, run)
    assert not view.evaluate_button.isEnabled()
    assert view.evaluate_button.toolTip() == ("It has no config.toml, so the dataset to evaluate on is unknown. "
                                              "Restore config.toml, then open the run again.")


def test_the_figures_stack_in_one_column_when_two_do_not_fit(qtbot, view, tmp_path):
    show(qtbot, view, make_run(tmp_path / "runs", "evaluated", evaluation=made_up_eval()))

    def column_of(section) -> tuple[int, int]:
        _, column, _, span = view._grid.getItemPosition(view._grid.indexOf(section))
        return column, span

    view.resize(1400, 800)
    assert column_of(view.sweep_section) == (0, 1) and column_of(view.spectrum_section) == (1, 1)
    view.resize(1000, 700)  # a 1024-px window: side by side the confusion matrix's counts would overlap
    assert column_of(view.sweep_section) == (0, 2) and column_of(view.spectrum_section) == (0, 2)
    assert column_of(view.confusion_section) == (0, 2)


def _set_status(run: Path, **changes) -> None:
    (run / "status.json").write_text(json.dumps({**json.loads((run / "status.json").read_text()), **changes}))


def test_a_run_still_training_cannot_be_evaluated_until_it_ends(qtbot, tmp_path, monkeypatch):
    """Evaluating a checkpoint that training is still rewriting gives figures for a model that is gone."""
    import os
    import socket

    from iamnn_studio.gui import analysis_view

    monkeypatch.setattr(analysis_view, "LIVE_REFRESH_MS", 50)  # the view re-reads a training run's status
    view = AnalysisView()
    qtbot.addWidget(view)
    view.resize(1200, 800)
    view.show()
    alive = {"state": "running", "pid": os.getpid(), "host": socket.gethostname()}  # this process: alive
    run = _run_with_checkpoint(tmp_path, "training-now", **alive)
    show(qtbot, view, run)
    assert "running" in view.subtitle.text()
    assert not view.evaluate_button.isEnabled() and not view.prompt_button.isEnabled()
    for reason in (view.evaluate_button.toolTip(), view.evaluate_prompt.text.text()):
        assert "still training" in reason and "when it ends or after you stop it" in reason

    _set_status(run, state="completed")  # training ended: Evaluate comes back by itself
    qtbot.waitUntil(lambda: view.evaluate_button.isEnabled(), timeout=TIMEOUT)
    assert view.prompt_button.isEnabled() and "still training" not in view.evaluate_button.toolTip()
    assert "completed" in view.subtitle.text()

    # Evaluated once, then continued: "Evaluate again" is off too, and says why beside it
    from iamnn_studio.engine.data.synthetic import CLASSES as SHAPES

    evaluation = {**made_up_eval(), "classes": list(SHAPES), "per_class": None, "confusion": None}  # the run's classes
    (run / "eval.json").write_text(json.dumps(evaluation))
    _set_status(run, **alive)
    show(qtbot, view, run)
    assert view.evaluate_button.text() == "Evaluate again" and not view.evaluate_button.isEnabled()
    assert view.evaluate_note.isVisible() and "still training" in view.evaluate_note.text()
    _set_status(run, state="stopped")
    qtbot.waitUntil(lambda: view.evaluate_button.isEnabled(), timeout=TIMEOUT)
    assert not view.evaluate_note.isVisible()


def test_evaluate_checks_the_run_is_not_training_again_since_it_was_read(qtbot, view, tmp_path):
    import os
    import socket

    run = _run_with_checkpoint(tmp_path, "continued")
    show(qtbot, view, run)
    assert view.evaluate_button.isEnabled()
    _set_status(run, state="running", pid=os.getpid(), host=socket.gethostname())  # continued by now
    with qtbot.waitSignal(view.report_shown, timeout=TIMEOUT):
        view.evaluate_button.click()
    assert not view._evaluator.is_busy() and not (run / "eval.json").exists()
    assert not view.evaluate_button.isEnabled() and "still training" in view.evaluate_button.toolTip()


@pytest.mark.parametrize("width", [960, 1024])
def test_a_summary_tile_grows_to_show_its_whole_detail_below_the_value(qtbot, styled_app, view, tmp_path, width):
    run = make_run(tmp_path / "runs", "iamnn-run", evaluation=made_up_eval())
    show(qtbot, view, run)
    view.resize(width, 640)  # narrowed with the report shown: the detail wraps onto more lines
    tile = view.adaptivity_tile
    qtbot.wait(50)  # the layout settles on the new width
    detail, value = tile.detail, tile.value
    assert tile.value.text() == "Adapts" and "vs fixed counts" in detail.text()
    assert detail.height() >= detail.heightForWidth(detail.width())  # no wrapped line cut off
    assert detail.y() >= value.geometry().bottom()  # under the large value, not over it
    assert detail.geometry().bottom() <= tile.contentsRect().bottom()


def test_a_run_resumed_from_an_earlier_checkpoint_draws_each_step_once(tmp_path):
    """Resumed at step 4 after reaching 8: steps 5-8 of the first stretch were abandoned; the curve drew
    them and the new 5-8 both (x going back from 2 epochs to 1.25)."""
    from iamnn_studio.gui.analysis_view import read_run

    run = make_run(tmp_path, "resumed")
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write("\n")  # after make_run's truncated last line
        fh.write(json.dumps({"event": "started", "steps_per_epoch": 4, "resumed_from_step": 4}) + "\n")
        fh.writelines(json.dumps({"event": "step", "step": s, "loss": 9.0, "accuracy": 0.9}) + "\n" for s in range(5, 9))
    xs, losses = read_run(run).series["train_loss"]
    assert list(xs) == [s / 4 for s in range(1, 9)]  # once each, in order
    assert list(losses[4:]) == [9.0] * 4  # the resumed stretch's values, not the abandoned ones


def _damaged(key: str, value) -> dict:
    return {**made_up_eval(), key: value}


DAMAGED = {  # QA's damaged or older eval.json files, each built from a good one
    "macs a list": _damaged("macs", [1, 2, 3]),
    "macs without mean": _damaged("macs", {"min": 1, "max": 5}),
    "iterations a list": _damaged("iterations", [1, 2]),
    "easiest without index": _damaged("easiest", [{"macs": 5}] * 3),
    "sweep points without mean_macs": _damaged("sweep", {"threshold": [{"top1": 0.2}], "fixed": [{"top1": 0.1}]}),
    "per_class strings": _damaged("per_class", {"circle": "x"}),
    "ragged confusion": _damaged("confusion", [[1, 2], [3]]),
    "images many": _damaged("images", "many"),
    "top1 NaN": _damaged("top1", float("nan")),
    "top1 text": _damaged("top1", "0.29"),
}


@pytest.mark.parametrize("damage", list(DAMAGED))
def test_a_malformed_eval_json_says_so_and_shows_nothing_of_the_run_before(qtbot, view, tmp_path, damage):
    """QA: the previous run's tiles, histograms, sweep and verdict stayed on screen under the new run's title."""
    runs = tmp_path / "runs"
    show(qtbot, view, make_run(runs, "good", evaluation=made_up_eval()))
    assert view.accuracy_tile.value.text() == "83.3 %" and view.sweep_verdict.text()
    damaged = make_run(runs, "damaged", evaluation=None)
    (damaged / "eval.json").write_text(json.dumps(DAMAGED[damage]))  # NaN too, as Python writes it
    show(qtbot, view, damaged)

    assert view.title.text() == "damaged"
    assert view.banner.isVisibleTo(view)
    assert view.banner.text().startswith("eval.json cannot be read (") and "evaluate again" in view.banner.text()
    assert view.report.evaluation is None
    assert view.accuracy_tile.value.text() == "80.0 %"  # the best validation accuracy, as without eval.json
    assert view.macs_tile.value.text() == "–" and view.adaptivity_tile.value.text() == "–"
    assert not any(section.isVisibleTo(view) for section in view._evaluation_sections)
    assert view.evaluate_prompt.isVisibleTo(view)


def test_a_damaged_run_in_the_comparison_says_why_and_the_table_keeps_updating(qtbot, view, tmp_path):
    """QA: one ticked run with "top1": "0.29" froze the table for the rest of the session, without a word."""
    runs = tmp_path / "runs"
    good = make_run(runs, "good", evaluation=made_up_eval())
    text = make_run(runs, "text-top1", evaluation=_damaged("top1", "0.29"))
    no_top5 = {key: value for key, value in made_up_eval().items() if key != "top5"}
    older = make_run(runs, "older", evaluation={**no_top5, "classes": [f"c{i}" for i in range(6)],
                                                "per_class": None, "confusion": None}, num_classes=6)
    show(qtbot, view, good)
    qtbot.waitUntil(lambda: view.compare_list.count() == 3 and not view.is_busy(), timeout=TIMEOUT)

    view.set_compared([str(good), str(text)])
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=TIMEOUT)
    rows = {row[0].split("  ·  ")[0]: row for row in compare_rows(view) if "1 iteration" not in row[0]}
    assert set(rows) == {"good", "text-top1"}
    assert rows["text-top1"][2] == "eval.json unreadable" and rows["text-top1"][3] == "–"
    assert "top1 is text" in view.compare_table.item(
        [r for r in range(view.compare_table.rowCount()) if "text-top1" in view.compare_table.item(r, 0).text()][0],
        0).toolTip()

    view.set_compared([str(good), str(text), str(older)])  # the table still follows the ticks
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=TIMEOUT)
    rows = {row[0].split("  ·  ")[0]: row for row in compare_rows(view) if "1 iteration" not in row[0]}
    assert set(rows) == {"good", "text-top1", "older"}
    assert rows["older"][3] == "83.3 / –"  # no top-5 in the file: not "83.3 / nan"


def test_a_run_that_cannot_be_read_for_the_comparison_gets_a_row_saying_why(qtbot, view, tmp_path, monkeypatch):
    import iamnn_studio.gui.analysis_view as analysis_view

    runs = tmp_path / "runs"
    good, other = make_run(runs, "good", evaluation=made_up_eval()), make_run(runs, "other", evaluation=made_up_eval())
    show(qtbot, view, good)
    qtbot.waitUntil(lambda: view.compare_list.count() == 2 and not view.is_busy(), timeout=TIMEOUT)
    original = analysis_view.comparison_rows

    def broken(report, *args):
        if report.name == "other":
            raise KeyError("surprise")
        return original(report, *args)

    monkeypatch.setattr(analysis_view, "comparison_rows", broken)
    view.set_compared([str(good), str(other)])
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=TIMEOUT)
    rows = compare_rows(view)
    assert any("good" in row[0] for row in rows)
    [bad] = [row for row in rows if "other" in row[0]]
    assert bad[2].startswith("cannot compare") and "surprise" in bad[2]


def test_a_held_out_evaluation_is_not_called_a_test_and_top5_of_few_classes_is_not_shown(qtbot, view, tmp_path):
    """QA: "TEST ACCURACY 100.0 % · 36 test images" for a folder without test/, and "top-5 100 %" for 2 classes."""
    held_out = {**made_up_eval(), "split": "val",
                "split_note": "no test images: these are the validation images, which also chose the model"}
    show(qtbot, view, make_run(tmp_path / "runs", "held-out", evaluation=held_out))
    assert view.accuracy_tile.caption.text() == "HELD-OUT ACCURACY"
    detail = view.accuracy_tile.detail.text()
    assert "12 held-out images" in detail and "also chose the model" in detail
    assert "test images ·" not in detail and "top-5" not in detail  # 3 classes: top-5 is always 100 %

    many = {**made_up_eval(), "classes": [f"c{i}" for i in range(8)], "per_class": None, "confusion": None,
            "top5": 0.95}
    show(qtbot, view, make_run(tmp_path / "runs", "many-classes", evaluation=many, num_classes=8))
    assert view.accuracy_tile.caption.text() == "TEST ACCURACY"
    assert view.accuracy_tile.detail.text() == "top-5 95.0 % · 12 test images"


def test_a_collapsed_halting_no_better_than_random_is_not_called_paying(qtbot, view, tmp_path):
    """QA: the tile said "Collapsed" while the verdict under it said, in green, "The halting pays: +1.28 pt over fixed
    iterations ... and -0.01 pt over random allocation"."""
    evaluation = made_up_eval()
    evaluation["adaptivity"] = {"collapse": {"alarm": True, "reasons": ["p90/p10 of MACs is 1.09 (< 1.3)"]},
                                "random_allocation": {"top1": 10 / 12 + 0.0001}}
    show(qtbot, view, make_run(tmp_path / "runs", "collapsed", evaluation=evaluation))
    assert view.adaptivity_tile.value.text() == "Collapsed"
    assert view.sweep_verdict.text().startswith("The halting does not pay on this model")
    assert "pays:" not in view.sweep_verdict.text()

    evaluation["adaptivity"]["collapse"] = {"alarm": False, "reasons": []}
    show(qtbot, view, make_run(tmp_path / "runs", "random-as-good", evaluation=evaluation))
    assert view.adaptivity_tile.value.text() == "Doesn't pay"
    assert "random" in view.adaptivity_tile.detail.text() and "nan" not in view.adaptivity_tile.detail.text()


def test_a_collapsed_halting_is_not_said_to_beat_a_random_allocation_that_was_not_measured():
    """Review: every image used the same iterations, so random allocation had nothing to permute (top1 null), yet
    the Collapsed tile read "... yet it beats fixed counts and random allocation"."""
    from iamnn_studio.gui.analysis_view import _adaptivity_verdict

    fixed = [{"iterations": [n] * 4, "mean_macs": 100.0 * n, "top1": t,
              "paired": {"only_fixed_right": 0, "only_adaptive_right": 50}} for n, t in ((1, 0.85), (2, 0.88), (3, 0.91))]
    evaluation = {"top1": 0.9, "images": 1000, "mode": "adaptive", "architecture": "iamnn", "halting_calibrated": True,
                  "macs": {"mean": 150.0, "min": 150.0, "max": 150.0, "p90_over_p10": 1.0, "max_over_min": 1.0},
                  "adaptivity": {"collapse": {"alarm": True, "reasons": ["100% of images use iterations [1, 2, 2, 1]"]},
                                 "random_allocation": {"top1": None, "reason": "nothing to permute"}},
                  "sweep": {"fixed": fixed}}
    value, detail, _ = _adaptivity_verdict(evaluation, "iamnn")
    assert value == "Collapsed" and "random allocation" not in detail and "beats" not in detail
    # measured and beaten: then the tile may say so
    evaluation["adaptivity"]["random_allocation"] = {"top1": 0.8}
    assert "beats fixed counts and random allocation" in _adaptivity_verdict(evaluation, "iamnn")[1]
    # not collapsed, ahead of fixed counts, random allocation not measured: not "within noise"
    evaluation["adaptivity"] = {"collapse": {"alarm": False}, "random_allocation": {"top1": None}}
    value, detail, _ = _adaptivity_verdict(evaluation, "iamnn")
    assert value == "Adapts" and "within noise" not in detail and "random allocation not measured" in detail


def test_a_failed_run_says_why_it_failed(qtbot, view, tmp_path):
    """QA: only "failed · 0 / 1 epochs" and "no checkpoint"; status.json's reason was in a tooltip only."""
    run = make_run(tmp_path / "runs", "nomacs")
    reason = "unexpected error: AttributeError: 'NoMacs' object has no attribute 'macs' (details in train.log)"
    (run / "status.json").write_text(json.dumps({"state": "failed", "reason": reason, "epochs_done": 0,
                                                 "total_epochs": 1}))
    show(qtbot, view, run)
    assert view.banner.isVisibleTo(view) and reason in view.banner.text()
    assert view.banner.text().startswith("Training failed: ")
    assert reason in view.evaluate_prompt.text.text()


def test_the_captions_and_image_tooltips_name_a_held_out_evaluation_so(qtbot, view, tmp_path):
    """QA: the Study captions said "test images" (and the spectrum "test image N") for an evaluation on "val"."""
    captions = lambda: [s.caption.text() for s in (view.histogram_section, view.sweep_section,  # noqa: E731
                                                    view.spectrum_section, view.class_section)]
    held_out = {**made_up_eval(), "split": "val", "split_note": "no test images"}
    show(qtbot, view, make_run(tmp_path / "runs", "held-out", evaluation=held_out))
    assert all("held-out images" in c.lower() and "test images" not in c.lower() for c in captions()), captions()
    assert analysis_view._describe_image({"index": 3, "label": "cat"}, "val").startswith("held-out image 3: cat")
    show(qtbot, view, make_run(tmp_path / "runs", "tested", evaluation=made_up_eval()))
    assert all("test images" in c.lower() for c in captions()), captions()
    assert analysis_view._describe_image({"index": 3, "label": "cat"}, "test").startswith("test image 3: cat")


def test_a_damaged_eval_json_is_not_called_not_evaluated(qtbot, view, tmp_path):
    """QA: "Not evaluated on the test set yet" under "eval.json cannot be read…" for a run that was evaluated."""
    run = make_run(tmp_path / "runs", "damaged", evaluation=made_up_eval())
    (run / "eval.json").write_text("{not json")
    (run / "checkpoints" / "best.pt").write_bytes(b"")  # something to evaluate again
    show(qtbot, view, run)
    assert view.evaluate_prompt.title.text() == "Its evaluation cannot be read: evaluate again"
    assert "Not evaluated" not in view.evaluate_prompt.title.text()


def _ranked(images: int, shown: int = 16) -> dict:
    """An evaluation of ``images`` images whose easiest and hardest lists hold ``shown`` each, as the engine writes
    them (image i costs 2 M + i MACs): with fewer than 2 x ``shown`` images the two lists overlap."""
    def entry(i: int) -> dict:
        return {"index": i, "macs": 2_000_000 + i, "label": "circle", "prediction": "circle", "correct": True,
                "iterations": [1, 1, 1, 1]}
    return {**made_up_eval(), "images": images, "easiest": [entry(i) for i in range(min(shown, images))],
            "hardest": [entry(images - 1 - i) for i in range(min(shown, images))]}


def _strip_images(strip) -> set[str]:
    return {tile.toolTip().split(":")[0] for tile in strip.tiles}  # "test image 7: circle (correct) ..."


def test_the_easy_to_hard_strips_share_no_image_when_few_were_evaluated(qtbot, view, tmp_path):
    """QA, 22 held-out images and 16 in each strip: "Cheapest" held the most expensive image and "Most expensive"
    the cheapest."""
    show(qtbot, view, make_run(tmp_path / "runs", "few", evaluation=_ranked(22)))
    assert len(view.easiest.tiles) == len(view.hardest.tiles) == 11
    assert not _strip_images(view.easiest) & _strip_images(view.hardest)
    assert "test image 21" in _strip_images(view.hardest) and "test image 0" in _strip_images(view.easiest)
    qtbot.waitUntil(lambda: "Loading" not in view.spectrum_note.text(), timeout=TIMEOUT)
    assert view.spectrum_note.text() == "Only 22 test images: 11 in each row, so no image shows twice."

    # plenty of images: two full strips and no note
    show(qtbot, view, make_run(tmp_path / "runs", "many", evaluation=_ranked(100)))
    assert len(view.easiest.tiles) == len(view.hardest.tiles) == analysis_view.SPECTRUM_SIZE
    qtbot.waitUntil(lambda: not view.spectrum_note.text(), timeout=TIMEOUT)
    # an older eval.json without its image count: the lists' distinct images tell how many were ranked
    unknown = {key: value for key, value in _ranked(22).items() if key != "images"}
    show(qtbot, view, make_run(tmp_path / "runs", "uncounted", evaluation=unknown))
    assert len(view.easiest.tiles) == 11 and not _strip_images(view.easiest) & _strip_images(view.hardest)
    # one image: nothing to rank, said instead of the same image in both strips
    show(qtbot, view, make_run(tmp_path / "runs", "one", evaluation=_ranked(1)))
    assert view.spectrum_stack.currentIndex() == 0
    assert "Only 1 test image: too few to rank" in view.spectrum_stack.widget(0).text()
    # as today's engine writes it: one image is in neither list
    show(qtbot, view, make_run(tmp_path / "runs", "one-new", evaluation={**_ranked(1), "easiest": [], "hardest": []}))
    assert "Only 1 test image: too few to rank" in view.spectrum_stack.widget(0).text()


def test_easy_to_hard_tiles_do_not_wait_forever_for_images_that_cannot_come(qtbot, view, tmp_path):
    """QA: with config.toml unreadable the tiles stayed "…" for good (the note under them said why)."""
    run = make_run(tmp_path / "runs", "no-config", evaluation=made_up_eval())
    (run / "config.toml").write_text("this is [not toml")
    show(qtbot, view, run)
    assert "config.toml is unreadable" in view.spectrum_note.text()
    assert view.easiest.tiles and all(tile.text() == "" for tile in view.easiest.tiles + view.hardest.tiles)
    assert "2.00 M" in view.easiest.findChildren(type(view.subtitle))[1].text()  # their MACs stay

    # the dataset cannot be loaded (its folder is gone): the same empty tiles once loading fails
    gone = make_run(tmp_path / "runs", "gone", evaluation=made_up_eval())
    RunConfig(name="gone", data=DataConfig(name="imagefolder", root=str(tmp_path / "missing")),
              model=ModelConfig(iterations=(1, 2, 2, 1), width=4, num_classes=3), epochs=2).save(gone / "config.toml")
    show(qtbot, view, gone)
    qtbot.waitUntil(lambda: "cannot be shown" in view.spectrum_note.text(), timeout=TIMEOUT)
    assert all(tile.text() == "" for tile in view.easiest.tiles + view.hardest.tiles)


def _image_folder_run(runs: Path, folder: Path, name: str = "folder-run") -> Path:
    """A run on the image folder ``folder`` (two empty class folders unless it has some), not evaluated yet."""
    if not folder.is_dir():
        for label in ("cats", "dogs"):
            (folder / label).mkdir(parents=True)
    run = make_run(runs, name, num_classes=2)
    RunConfig(name=name, data=DataConfig(name="imagefolder", root=str(folder)),
              model=ModelConfig(iterations=(1, 2, 2, 1), width=4, num_classes=2), epochs=2).save(run / "config.toml")
    (run / "checkpoints" / "best.pt").write_bytes(b"")  # Evaluate is offered: it only has to exist
    return run


def test_a_run_without_a_test_split_is_offered_an_evaluation_on_its_held_out_images(qtbot, view, tmp_path):
    """QA: for an image folder without test/, Evaluate said "on the test split" and the prompt "Not evaluated on
    the test set yet", though the evaluation measures (and the evaluated page names) the held-out images."""
    run = _image_folder_run(tmp_path / "runs", tmp_path / "photos")
    show(qtbot, view, run)
    assert "held-out images" in view.evaluate_button.toolTip() and "test" not in view.evaluate_button.toolTip()
    assert view.evaluate_prompt.title.text() == "Not evaluated on the held-out images yet"
    assert "on the held-out images" in view.evaluate_prompt.text.text()
    assert view.accuracy_tile.detail.text() == "the best epoch's; not evaluated on the held-out images yet"
    (run / "status.json").write_text(json.dumps({"state": "completed"}))  # no best epoch: the tile names the split
    show(qtbot, view, run)
    assert view.accuracy_tile.caption.text() == "HELD-OUT ACCURACY"

    # a folder with train/ and test/ is evaluated on its test images
    for split in ("train", "test"):
        for label in ("cats", "dogs"):
            (tmp_path / "split" / split / label).mkdir(parents=True)
    tested = _image_folder_run(tmp_path / "runs", tmp_path / "split", "tested")
    show(qtbot, view, tested)
    assert view.evaluate_prompt.title.text() == "Not evaluated on the test images yet"
    assert "on the test images" in view.evaluate_button.toolTip()


def test_compared_runs_keep_their_names_readable_in_a_small_window(qtbot, view, tmp_path):
    """QA, 960x640: the Network column read "IamNN-18 w4 adaptive · …" twice (rows could not be told apart) while
    the tick list beside it took ~290 px for two short names."""
    from PySide6.QtCore import Qt

    runs = tmp_path / "runs"
    first = make_run(runs, "sweep-a", evaluation=made_up_eval())
    second = make_run(runs, "sweep-b", evaluation=made_up_eval())
    view.resize(960, 640)
    show(qtbot, view, first)
    view.set_compared([str(first), str(second)])
    qtbot.waitUntil(lambda: view.compare_table.rowCount() == 4 and not view.is_busy(), timeout=TIMEOUT)
    table = view.compare_table
    metrics = table.fontMetrics()
    shown = [metrics.elidedText(table.item(r, 0).text(), Qt.TextElideMode.ElideRight, table.columnWidth(0) - 16)
             for r in range(table.rowCount())]
    assert len(set(shown)) == 4, shown  # four rows, four different texts on screen
    assert sorted(text.split("  ·  ")[0] for text in shown) == [
        "sweep-a", "sweep-a, 1 iteration per block", "sweep-b", "sweep-b, 1 iteration per block"]
    assert view.compare_list.width() < 280  # no wider than its checkbox asks


def test_a_huge_integer_in_metrics_is_skipped_not_fatal_to_the_curves():
    """QA: one damaged metrics.jsonl number too big for a float ("loss": 10**20, "step": 10**400) made
    training_series raise, and the Study tab showed "Cannot read the run" instead of the run."""
    events = [{"event": "started", "steps_per_epoch": 10},
              {"event": "step", "step": 5, "loss": 10**20, "accuracy": 0.5, "iterations": [10**30, 2]},
              {"event": "step", "step": 10**400, "loss": 1.0},
              {"event": "step", "step": 6, "loss": 1.5},
              {"event": "epoch", "epoch": 10**400, "val_accuracy": 0.6}]
    series, _ = training_series(events)
    assert list(series["train_loss"][0]) == [0.5, 0.6] and list(series["train_loss"][1]) == [1e20, 1.5]
    assert list(series["iterations_2"][1]) == [2] and list(series["iterations_1"][1]) == [1e30]
    assert "val_accuracy" not in series


def test_another_runs_eval_json_is_not_shown_as_this_runs_evaluation(qtbot, view, tmp_path):
    """QA: a 10-class run folder holding a 3-class run's eval.json showed that run's accuracy and confusion
    matrix (its class names) as its own."""
    run = make_run(tmp_path / "runs", "copied-eval", evaluation=made_up_eval(), num_classes=10)
    show(qtbot, view, run)
    assert view.report.evaluation is None
    assert "another run's evaluation" in view.report.eval_error and "circle, square, plus" in banner_text(view)
    assert view.evaluate_prompt.isVisibleTo(view)


def test_a_run_folder_renamed_since_it_was_listed_says_so_and_drops_the_run_shown_before(qtbot, view, tmp_path):
    """QA: "Open in Study" on a run renamed after the Runs tab listed it showed "No config.toml in this run folder" (the
    folder itself was gone); a run that could not be read at all left the previous run's figures, and its
    Evaluate, under the new run's name."""
    runs = tmp_path / "runs"
    shown_before = make_run(runs, "before", evaluation=made_up_eval())
    show(qtbot, view, shown_before)
    renamed = make_run(runs, "renamed")
    renamed.rename(runs / "renamed-later")
    view.show_run(str(renamed))
    qtbot.waitUntil(lambda: view.stack.currentWidget() is view.empty, timeout=TIMEOUT)
    assert view.report is None
    assert "no longer exists" in view.empty.text.text() and "renamed" in view.empty.title.text()
