"""Run directories: unique names, metrics lines, status, and listing a messy runs folder."""
from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest

from iamnn_studio.engine import runs as runs_module
from iamnn_studio.engine.config import ModelConfig, RunConfig
from iamnn_studio.engine.runs import (RunDirectory, claim_refusal, describe_model, effective_state, epochs_text, iter_metrics, list_runs,
                                      read_metrics, steps_per_epoch)


def make_run(runs_dir, name: str, *, state: str = "completed", best: float | None = 0.9, epochs: int = 3):
    run = RunDirectory.create(runs_dir, name)
    config = RunConfig(name=name, epochs=epochs)
    config.data.name = "synthetic"
    config.model.depth = 18
    config.model.width = 8
    run.write_config(config)
    run.write_status(state, best_accuracy=best, epochs_done=epochs, total_epochs=epochs)
    return run


def test_new_runs_with_a_taken_name_get_a_numbered_suffix(tmp_runs):
    first = RunDirectory.create(tmp_runs, "fashion-iamnn")
    second = RunDirectory.create(tmp_runs, "fashion-iamnn")
    third = RunDirectory.create(tmp_runs, "fashion-iamnn")
    assert [first.name, second.name, third.name] == ["fashion-iamnn", "fashion-iamnn-2", "fashion-iamnn-3"]
    assert all(r.path.is_dir() for r in (first, second, third))


def test_claiming_a_folder_that_holds_a_run_is_refused(tmp_runs):
    run = make_run(tmp_runs, "taken")
    with pytest.raises(ValueError, match="already holds a run"):
        RunDirectory.claim(run.path)
    assert RunDirectory.claim(tmp_runs / "empty-and-new").path.is_dir()
    assert RunDirectory.claim(tmp_runs / "empty-and-new").path.is_dir()  # still empty: fine


def test_claiming_a_folder_of_other_files_is_refused(tmp_runs):
    """QA: --run-dir on a photo folder (or on the runs folder itself) wrote the run's files among them."""
    (tmp_runs / "photos").mkdir()
    (tmp_runs / "photos" / "cat.png").write_bytes(b"")
    for folder in (tmp_runs / "photos", tmp_runs):
        with pytest.raises(ValueError, match="holds other files and no run"):
            RunDirectory.claim(folder)
    assert sorted(p.name for p in (tmp_runs / "photos").iterdir()) == ["cat.png"]
    (tmp_runs / "hidden").mkdir()
    (tmp_runs / "hidden" / ".DS_Store").write_bytes(b"")
    assert RunDirectory.claim(tmp_runs / "hidden").path.is_dir()


def test_opening_a_folder_that_is_not_a_run_names_the_problem(tmp_runs):
    (tmp_runs / "photos").mkdir()
    with pytest.raises(ValueError, match="not a run folder"):
        RunDirectory.open(tmp_runs / "photos")
    with pytest.raises(ValueError, match="no such run folder"):
        RunDirectory.open(tmp_runs / "missing")


def test_metrics_are_one_json_object_per_line_and_read_back_in_order(tmp_runs):
    run = RunDirectory.create(tmp_runs, "m")
    for i in range(3):
        run.append_metrics({"event": "step", "step": i, "loss": float("nan") if i == 1 else 0.5})
    lines = run.metrics_path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["event"] == "step" for line in lines)
    assert [r["step"] for r in read_metrics(run.path)] == [0, 1, 2]


def test_reading_metrics_skips_a_truncated_last_line(tmp_runs):
    run = RunDirectory.create(tmp_runs, "m")
    run.append_metrics({"event": "started"})
    run.append_metrics({"event": "epoch", "epoch": 1})
    with open(run.metrics_path, "ab") as fh:
        fh.write(b'{"event": "step", "loss": 0.4')  # the writer was killed mid-line
    assert [r["event"] for r in read_metrics(run.path)] == ["started", "epoch"]


def test_appending_after_a_truncated_line_starts_a_fresh_line(tmp_runs):
    run = RunDirectory.create(tmp_runs, "m")
    run.append_metrics({"event": "started"})
    with open(run.metrics_path, "ab") as fh:
        fh.write(b'{"event": "st')
    run.append_metrics({"event": "resumed"})
    assert [r["event"] for r in read_metrics(run.path)] == ["started", "resumed"]


def test_reading_metrics_of_a_missing_run_is_empty(tmp_path):
    assert read_metrics(tmp_path / "nothing") == []


def test_status_keeps_its_creation_time_and_rejects_unknown_states(tmp_runs):
    run = RunDirectory.create(tmp_runs, "s")
    run.write_status("running", total_epochs=5)
    created = run.read_status()["created"]
    run.write_status("completed", reason="completed", best_accuracy=0.8, epochs_done=5, total_epochs=5)
    status = run.read_status()
    assert status["created"] == created and status["state"] == "completed" and status["best_accuracy"] == 0.8
    with pytest.raises(ValueError, match="state"):
        run.write_status("exploded")


def test_train_log_gets_timestamped_lines(tmp_runs):
    run = RunDirectory.create(tmp_runs, "l")
    run.log("epoch 1 done\nval 0.9")
    lines = run.log_path.read_text().splitlines()
    assert len(lines) == 2 and lines[0].endswith("epoch 1 done") and lines[0][:4].isdigit()


def test_list_runs_copes_with_good_half_written_and_foreign_folders(tmp_runs):
    old = make_run(tmp_runs, "old", best=0.8)
    status = old.read_status()
    status["created"] = "2020-01-01T10:00:00+00:00"
    old.status_path.write_text(json.dumps(status))
    new = make_run(tmp_runs, "new", state="stopped", best=0.7)
    broken = RunDirectory.create(tmp_runs, "broken")
    broken.config_path.write_text("this is = not [valid toml")
    half = RunDirectory.create(tmp_runs, "half")  # config written, killed before the status
    half.write_config(RunConfig(name="half"))
    (tmp_runs / "holiday-photos").mkdir()
    (tmp_runs / "holiday-photos" / "beach.jpg").write_bytes(b"\xff\xd8")
    (tmp_runs / "notes.txt").write_text("not a folder")
    (tmp_runs / "garbage-status").mkdir()
    (tmp_runs / "garbage-status" / "status.json").write_text("[1, 2")

    runs = {r.name: r for r in list_runs(tmp_runs)}

    assert set(runs) == {"old", "new", "broken", "half", "garbage-status"}
    assert runs["old"].status == "completed" and runs["old"].best_accuracy == 0.8
    assert runs["old"].model == "IamNN-18 w8 adaptive" and runs["old"].dataset == "synthetic"
    assert runs["old"].epochs_done == 3 and runs["old"].total_epochs == 3
    assert runs["new"].status == "stopped"
    assert runs["broken"].status == "unreadable" and "TOML" in runs["broken"].reason
    assert runs["half"].status == "unknown"
    assert runs["garbage-status"].status == "unreadable"
    names = [r.name for r in list_runs(tmp_runs) if r.name in ("old", "new")]
    assert names == ["new", "old"]  # newest first
    json.dumps([r.to_dict() for r in runs.values()])  # the CLI prints these as JSON


def test_a_file_where_a_run_folder_should_be_is_named_as_a_file(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    # QA: "cannot create .../notes.txt: File exists" and, for --resume, "no such run folder"
    with pytest.raises(ValueError, match=f"^runs folder: cannot create {blocker / 'runs'}: {blocker} is a file, not a folder$"):
        RunDirectory.create(blocker / "runs", "run")
    with pytest.raises(ValueError, match=f"^run_dir: cannot create {blocker}: {blocker} is a file, not a folder$"):
        RunDirectory.claim(blocker)
    with pytest.raises(ValueError, match=f"^run_dir: {blocker} is a file, not a run folder$"):
        RunDirectory.open(blocker)


def test_list_runs_of_a_missing_folder_is_empty(tmp_path):
    assert list_runs(tmp_path / "no-runs-yet") == []


def test_a_running_status_left_by_a_dead_process_reads_as_interrupted(tmp_runs):
    run = make_run(tmp_runs, "crashed", state="running")
    status = run.read_status()
    status["pid"] = _dead_pid()
    run.status_path.write_text(json.dumps(status))
    [summary] = list_runs(tmp_runs)
    # QA: it said "resume from the last checkpoint" of a run that died before its first one
    assert summary.status == "interrupted" and summary.reason == (
        "the training process ended without saying why, before its first checkpoint: nothing to resume "
        "(start a new run)")
    assert effective_state(status, run.path) == (summary.status, summary.reason)  # the rule the Study tab shares
    (run.path / "checkpoints").mkdir(exist_ok=True)
    (run.path / "checkpoints" / "last.pt").write_bytes(b"damaged when the process died")
    assert list_runs(tmp_runs)[0].reason == ("the training process ended without saying why, and its "
                                             "checkpoints/last.pt cannot be read")  # as Continue refuses it
    assert effective_state(status, run.path)[1].endswith("; resume from the last checkpoint")  # by the file alone
    run.write_status("running")  # written by this live process
    assert list_runs(tmp_runs)[0].status == "running"
    assert effective_state(run.read_status())[0] == "running"
    assert effective_state(None)[0] == "unknown"


@pytest.mark.parametrize("state", [5, None, "RUNNING", ["completed"]])
def test_a_status_without_a_known_state_reads_as_unknown(state):
    # QA: "runs" showed a hand-edited {"state": 5} as the status "5"
    assert effective_state({"state": state, "reason": "x"}) == (
        "unknown", f"status.json has no run state (state: {json.dumps(state)})")
    assert effective_state({"state": "stopped", "reason": "x"}) == ("stopped", "x")


@pytest.mark.parametrize("pid", [0, -1, 10**20])
def test_a_running_status_with_a_pid_no_process_has_reads_as_interrupted(tmp_runs, pid):
    """QA: os.kill(0 or -1, 0) asks a process group (always alive) and 10**20 overflowed into 'alive'."""
    run = make_run(tmp_runs, "edited", state="running")
    status = run.read_status()
    status["pid"] = pid
    run.status_path.write_text(json.dumps(status))
    assert effective_state(status)[0] == "interrupted" and not run.is_being_trained()


def test_a_listed_run_has_its_test_accuracy_and_the_steps_of_a_cut_short_epoch(tmp_runs):
    run = make_run(tmp_runs, "cut", epochs=1)
    run.write_status("completed", best_accuracy=0.5, epochs_done=0, total_epochs=1, step=40)
    run.append_metrics({"event": "started", "steps_per_epoch": 844})
    [summary] = list_runs(tmp_runs)
    assert summary.test_accuracy is None and summary.epochs_text() == "0/1 (+40 of 844 steps)"
    assert summary.epochs_text(" / ") == "0 / 1 (+40 of 844 steps)"
    run.write_eval({"top1": 0.54, "images": 10})
    [summary] = list_runs(tmp_runs)
    assert summary.test_accuracy == 0.54 and summary.to_dict()["test_accuracy"] == 0.54
    run.eval_path.write_text('{"top1": ')  # damaged: not evaluated, as far as the list can tell
    assert list_runs(tmp_runs)[0].test_accuracy is None
    assert epochs_text(3, 10, None, None, separator=" / ") == "3 / 10"


@pytest.mark.parametrize("damage", [{"epochs_done": float("nan")}, {"total_epochs": float("inf")},
                                    {"state": "running", "pid": 10**30}])
def test_one_damaged_status_file_does_not_hide_the_other_runs(tmp_runs, damage):
    make_run(tmp_runs, "good", state="completed")
    bad = make_run(tmp_runs, "bad", state="completed")
    status = {**bad.read_status(), **damage, "host": __import__("socket").gethostname()}
    bad.status_path.write_text(json.dumps(status))  # json writes NaN / Infinity, as a damaged file may hold
    runs = {r.name: r for r in list_runs(tmp_runs)}
    assert set(runs) == {"good", "bad"} and runs["good"].status == "completed"
    assert runs["bad"].total_epochs is None or runs["bad"].total_epochs >= 0


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_model_descriptions_read_like_the_ui_names():
    assert describe_model(ModelConfig(depth=50, width=16)) == "IamNN-50 w16 adaptive"
    assert describe_model(ModelConfig(iterations=(1, 2, 2, 1), width=8, mode="fixed:2")) == "IamNN caps 1·2·2·1 w8 fixed:2"
    assert describe_model(ModelConfig(depth=18, halting="act")) == "IamNN-18 w16 adaptive ACT"
    assert describe_model(ModelConfig(depth=18, architecture="resnet")) == "ResNet-18 w16"


HOLE_BYTES = 256 << 20  # a sparse file: no disk used, but reading it whole would take this much memory


def _peak_memory(fn):
    """``fn()``'s result and the most memory Python allocated while it ran."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_listing_runs_with_huge_damaged_files_reads_only_their_first_bytes(tmp_runs):
    """Weeks of use leave a sparse 2 GB status.json, eval.json or metrics.jsonl behind (a crash, a full
    disk): each was read whole on every Runs-tab refresh (seconds and gigabytes per run)."""
    for name, damaged in (("status", runs_module.STATUS_FILE), ("eval", runs_module.EVAL_FILE),
                          ("metrics", runs_module.METRICS_FILE)):
        run = make_run(tmp_runs, name)
        run.append_metrics({"event": "started", "steps_per_epoch": 10})
        with open(run.path / damaged, "ab") as fh:
            fh.truncate(HOLE_BYTES)  # zeros, and no newline
    listed, peak = _peak_memory(lambda: {r.name: r for r in list_runs(tmp_runs)})
    assert peak < 4 << 20
    assert set(listed) == {"status", "eval", "metrics"}
    assert listed["status"].status == "unknown"  # an oversized status.json reads as damaged
    assert listed["eval"].test_accuracy is None and listed["eval"].status == "completed"
    assert listed["metrics"].steps_per_epoch == 10  # the first line is intact; the hole after it is not read


def test_metrics_are_streamed_and_damaged_stretches_skipped(tmp_runs):
    run = RunDirectory.create(tmp_runs, "long")
    run.append_metrics({"event": "started", "steps_per_epoch": 4})
    with open(run.metrics_path, "ab") as fh:
        fh.write(os.urandom(3000) + b"\n" + b"\0" * (3 << 20))  # junk, then a 3 MB stretch with no newline
    run.append_metrics({"event": "step", "step": 1})  # _append starts it on a fresh line
    with open(run.metrics_path, "ab") as fh:
        fh.write(b'{"event": "step", "st')  # a killed writer's last line
    assert [r["event"] for r in read_metrics(run.path)] == ["started", "step"]
    assert steps_per_epoch(run.path) == 4
    os.truncate(run.metrics_path, HOLE_BYTES)
    events, peak = _peak_memory(lambda: sum(1 for _ in iter_metrics(run.path)))
    assert events == 2 and peak < 16 << 20  # the file was read in chunks, not whole


def test_metrics_lines_across_read_chunks_are_read_whole(tmp_runs, monkeypatch):
    run = RunDirectory.create(tmp_runs, "chunks")
    records = [{"event": "step", "step": i, "loss": 1 / (i + 1), "note": "x" * (i % 13)} for i in range(50)]
    for record in records:
        run.append_metrics(record)
    monkeypatch.setattr(runs_module, "_READ_CHUNK_BYTES", 7)
    assert read_metrics(run.path) == records
    assert [r["step"] for r in iter_metrics(run.path, events=("step",))] == list(range(50))
    monkeypatch.setattr(runs_module, "MAX_METRICS_LINE_BYTES", 40)  # the longer lines now count as damage
    assert all(len(json.dumps(r)) <= 40 for r in read_metrics(run.path))


def test_listing_reads_only_the_head_of_each_runs_metrics(tmp_runs, monkeypatch):
    """The Runs tab lists every run every few seconds while one trains: each listing read 1 MB of every
    run's metrics.jsonl (300 MB for 300 runs) to find the "started" event on its first line."""
    for name in ("a", "b"):
        run = make_run(tmp_runs, name)
        run.append_metrics({"event": "started", "steps_per_epoch": 7})
        with open(run.metrics_path, "a") as fh:
            fh.writelines(json.dumps({"event": "step", "step": s, "loss": 1.0}) + "\n" for s in range(50_000))
    bytes_read = []

    class CountingFile:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def fileno(self):
            return self.fh.fileno()

        def read(self, size=-1):
            data = self.fh.read(size)
            bytes_read.append(len(data))
            return data

    monkeypatch.setattr(runs_module, "open", lambda *a, **k: CountingFile(open(*a, **k)), raising=False)
    assert [r.steps_per_epoch for r in list_runs(tmp_runs)] == [7, 7]
    assert sum(bytes_read) <= 2 * 64 * 1024 + 2 * 4096  # each run's first chunk, and its small JSON files


def write_metrics(folder, records) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_history_drops_the_steps_a_resume_from_an_earlier_checkpoint_abandoned(tmp_path):
    """Resumed from step 4 after reaching step 9, then from step 6 after reaching 8: the history a reader plots
    is 1-4 of the first stretch, 5-6 of the second and 7-10 of the third, not all three drawn over each other."""
    from iamnn_studio.engine.runs import iter_history

    run = tmp_path / "run"
    write_metrics(run, [
        {"event": "started", "resumed_from_step": None},
        *({"event": "step", "step": n, "loss": 1.0} for n in range(1, 10)),
        {"event": "epoch", "epoch": 1, "step": 9},
        {"event": "started", "resumed_from_step": 4},
        *({"event": "step", "step": n, "loss": 2.0} for n in range(5, 9)),
        {"event": "log", "message": "kept: it has no step"},
        {"event": "started", "resumed_from_step": 6},
        *({"event": "step", "step": n, "loss": 3.0} for n in range(7, 11)),
        {"event": "epoch", "epoch": 2, "step": 10},
    ])
    steps = [(r["step"], r["loss"]) for r in iter_history(run, events=("step",))]
    assert steps == [(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0), (5, 2.0), (6, 2.0),
                     (7, 3.0), (8, 3.0), (9, 3.0), (10, 3.0)]
    assert [r["step"] for r in iter_history(run, events=("epoch",))] == [10]  # epoch 1 ended in the abandoned part
    everything = list(iter_history(run))
    assert [r["event"] for r in everything].count("started") == 3
    assert {"event": "log", "message": "kept: it has no step"} in everything
    assert len(list(iter_metrics(run, events=("step",)))) == 17  # the file itself keeps every record


def test_history_of_a_run_never_resumed_or_resumed_from_its_last_step_is_the_whole_file(tmp_path):
    from iamnn_studio.engine.runs import iter_history, without_abandoned_steps

    run = tmp_path / "run"
    records = [{"event": "started"}, {"event": "step", "step": 1}, {"event": "step", "step": 2},
               {"event": "started", "resumed_from_step": 2}, {"event": "step", "step": 3}]
    write_metrics(run, records)
    assert list(iter_history(run)) == records
    assert list(iter_history(tmp_path / "missing")) == []
    # a started event the first pass did not see (the file grew in between) cuts nothing
    assert list(without_abandoned_steps(records, [None])) == records


def test_a_failed_run_without_a_checkpoint_lists_no_progress(tmp_runs):
    """QA: a run whose loss diverged at step 4, before any checkpoint, listed "0/1 (+4 of 113 steps)": steps
    that nothing kept (a resume starts from scratch)."""
    run = make_run(tmp_runs, "diverged", state="failed", best=None, epochs=1)
    run.write_status("failed", reason="loss became NaN at epoch 1 step 3; no checkpoint was saved yet",
                     epochs_done=0, total_epochs=1, step=4)
    run.append_metrics({"event": "started", "steps_per_epoch": 113, "total_epochs": 1})
    [summary] = list_runs(tmp_runs)
    assert summary.epochs_text() == "0/1" and summary.step is None


def test_a_run_without_its_status_counts_the_epochs_its_step_limit_plans(tmp_runs):
    """QA: a run folder without status.json listed "0/10" for a run of 10 epochs limited to 3 steps (one epoch)."""
    started = make_run(tmp_runs, "started", epochs=10)
    config = started.read_config()
    config.max_steps = 3
    started.write_config(config)
    started.status_path.unlink()
    started.append_metrics({"event": "started", "steps_per_epoch": 113, "total_epochs": 1, "total_steps": 3})
    never = make_run(tmp_runs, "never-started", epochs=10)  # killed before its "started" event: the plan is unknown
    never.write_config(config)
    never.status_path.unlink()
    plain = make_run(tmp_runs, "no-limit", epochs=10)  # no step limit: the config's epochs are the plan
    plain.status_path.unlink()
    runs = {r.name: r for r in list_runs(tmp_runs)}
    assert runs["started"].epochs_text() == "0/1" and runs["started"].total_epochs == 1
    assert runs["never-started"].epochs_text() == "0/?" and runs["never-started"].total_epochs is None
    assert runs["no-limit"].epochs_text() == "0/10"


# ------------------------------------------------------------------ "Train longer": the engine's one verdict
def _tiny(name: str, **model) -> RunConfig:
    config = RunConfig(name=name, epochs=1, batch_size=32, seed=3, device="cpu", calibrate_halting=False)
    config.data.name = "synthetic"
    config.data.options = {"train_size": 64, "test_size": 16}
    config.data.val_fraction = 0.25
    config.model.iterations = (1, 2, 2, 1)
    config.model.width = 4
    for key, value in model.items():
        setattr(config.model, key, value)
    return config.validate()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    import torch

    from iamnn_studio.engine.trainer import Trainer

    torch.set_num_threads(1)
    result = Trainer(_tiny("source"), runs_dir=tmp_path_factory.mktemp("source")).run()
    assert result.state == "completed", result.reason
    return result.run_dir


def _trainer_accepts(run, runs_dir) -> bool:
    """What the app's "Train longer" does with the run (main_window.train_from_run), run by the real trainer for
    one step: False where it cannot even read the settings, or where the trainer refuses the weights."""
    from iamnn_studio.engine.trainer import Trainer

    try:
        config = RunConfig.load(run / "config.toml").validate()
    except (ValueError, TypeError):
        return False
    config.init_from, config.name, config.max_steps = str(run), "longer", 1
    result = Trainer(config, runs_dir=runs_dir).run()
    assert result.state == "completed" or result.reason.startswith("init_from: "), result.reason  # no other failure
    return result.state == "completed"


@pytest.mark.parametrize("case, edit, offered", [
    ("good", None, True),
    ("model settings emptied", lambda text: text.split("[model]")[0], False),  # the defaults: IamNN-50 w16
    ("not TOML", lambda text: "this = is [not toml", False),
    ("another width", lambda text: text.replace("width = 4", "width = 8"), False),
    ("another bottleneck ratio", lambda text: text.replace("bottleneck_ratio = 4", "bottleneck_ratio = 2"), False),
    ("the same stem spelled out", lambda text: text.replace('stem = "auto"', 'stem = "small"'), True),  # 28 px: small
    ("another stem", lambda text: text.replace('stem = "auto"', 'stem = "imagenet"'), False),
])
def test_train_longer_is_offered_exactly_where_the_trainer_accepts_the_runs_settings(
        trained_run, tmp_path, case, edit, offered):
    """Review: the Runs tab compared config.toml's model fields with the checkpoint's itself ("auto" vs an
    equivalent "small" stem refused), apart from the trainer's test of the weights; the engine now says."""
    import shutil

    from iamnn_studio.engine.runs import train_longer_problem

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    if edit is not None:
        text = (run / "config.toml").read_text()
        edited = edit(text)
        assert edited != text, "the edit changed nothing"
        (run / "config.toml").write_text(edited)
    problem = train_longer_problem(run)
    assert (problem is None) == offered, problem
    assert _trainer_accepts(run, tmp_path / "runs") == offered
    if not offered:
        # what works instead: the engine's command, which takes the network and the data from the checkpoint
        assert problem.endswith(f"to train it longer, run iamnn-studio train --init-from {run} --name NEW --epochs N")


def test_train_longer_is_refused_for_an_emptied_settings_file_or_an_unreadable_checkpoint(trained_run, tmp_path):
    import shutil

    from iamnn_studio.engine.runs import train_longer_problem

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "config.toml").write_text("")  # reads as the default settings: IamNN-50 of width 16
    assert "its config.toml describes an IamNN (caps 3·4·6·3) of width 16" in train_longer_problem(run)
    for checkpoint in (run / "checkpoints").glob("*.pt"):
        checkpoint.write_bytes(b"junk")
    assert train_longer_problem(run).startswith("its checkpoint cannot be read")


def test_a_run_without_its_status_lists_the_epochs_its_checkpoint_holds(trained_run, tmp_path):
    """QA: a run folder with checkpoints but no status.json (copied without it, or deleted) listed "0/2": a false
    0. The newest checkpoint's training state tells; where even that cannot tell, "?"."""
    import shutil

    import torch

    from iamnn_studio.engine.trainer import Trainer

    torch.set_num_threads(1)
    config = _tiny("limited")
    config.batch_size, config.epochs, config.max_steps = 16, 3, 5  # 48 training images: 3 steps per epoch
    result = Trainer(config.validate(), runs_dir=tmp_path / "runs").run()
    assert result.state == "completed", result.reason
    run = Path(result.run_dir)
    [before] = list_runs(tmp_path / "runs")
    (run / "status.json").unlink()
    [after] = list_runs(tmp_path / "runs")
    assert after.status == "unknown" and after.epochs_text() == before.epochs_text() == "1/2 (+2 of 3 steps)"
    assert (after.epochs_done, after.step) == (1, 5)

    (run / "metrics.jsonl").unlink()  # nor the steps per epoch: whether the limit cut the 2nd epoch short is unknown
    [unknown] = list_runs(tmp_path / "runs")
    assert unknown.epochs_text() == "?/?" and unknown.to_dict()["epochs_done"] is None

    copied = tmp_path / "copied" / "run"  # one epoch, no step limit: the checkpoint's epochs are whole ones
    shutil.copytree(trained_run, copied)
    for name in ("status.json", "metrics.jsonl"):
        (copied / name).unlink()
    [whole] = list_runs(copied.parent)
    assert whole.epochs_text() == "1/1"
    for checkpoint in (copied / "checkpoints").glob("*.pt"):
        checkpoint.write_bytes(b"junk")
    assert list_runs(copied.parent)[0].epochs_text() == "?/1"


# ----------------------------------------------------------------- a run that ended before its first checkpoint
def _run_without_checkpoint(runs_dir: Path, *, pid: int, host: str | None = None) -> Path:
    import socket

    folder = runs_dir / "conc"
    folder.mkdir(parents=True)
    RunConfig(name="conc").save(folder / "config.toml")
    (folder / "metrics.jsonl").write_text('{"event": "started", "step": 0}\n')
    (folder / "train.log").write_text("2026-01-01 00:00:00  started\n")
    (folder / "status.json").write_text(json.dumps({"state": "running", "pid": pid,
                                                    "host": host or socket.gethostname()}))
    return folder


def test_a_run_killed_before_its_first_checkpoint_can_be_claimed_again(tmp_runs):
    """QA: resume said "start it again", starting again said "resume it": a run with nothing saved had no way out."""
    folder = _run_without_checkpoint(tmp_runs, pid=_dead_pid())
    assert claim_refusal(folder) is None
    run = RunDirectory.claim(folder)
    assert run.path == folder and run.reclaimed
    # the earlier attempt's events and status must not mix with the new run's; its log is kept, appended to
    assert not (folder / "metrics.jsonl").exists() and not (folder / "status.json").exists()
    assert (folder / "train.log").read_text().startswith("2026-01-01 00:00:00  started\n")


def test_a_run_without_checkpoint_that_a_live_process_trains_is_not_claimed(tmp_runs):
    folder = _run_without_checkpoint(tmp_runs, pid=os.getppid())  # alive: the process that started the tests
    refusal = claim_refusal(folder)
    assert refusal is not None and "is training right now" in refusal
    with pytest.raises(ValueError, match="is training right now"):
        RunDirectory.claim(folder)
    assert (folder / "metrics.jsonl").exists()


def test_a_run_without_checkpoint_on_another_machine_is_taken_at_its_word(tmp_runs):
    folder = _run_without_checkpoint(tmp_runs, pid=_dead_pid(), host="another-machine.invalid")
    assert claim_refusal(folder) is not None
    assert (folder / "status.json").exists()


def test_a_run_with_a_checkpoint_is_never_claimed(tmp_runs):
    folder = _run_without_checkpoint(tmp_runs, pid=_dead_pid())
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.pt").write_bytes(b"weights")
    refusal = claim_refusal(folder)
    assert refusal is not None and "resume it" in refusal
    assert (folder / "metrics.jsonl").exists()


def test_a_run_folder_whose_path_is_not_utf8_takes_its_log_and_metrics(tmp_path):
    """Python decodes such a path's bytes as lone surrogates; writing train.log failed the run after epoch 1."""
    runs = tmp_path / os.fsdecode(b"runs-\xff")
    run = RunDirectory.create(runs, "tiny")
    run.log(f"saved {run.last_checkpoint}")
    run.append_metrics({"event": "checkpoint", "path": str(run.last_checkpoint)})
    logged = run.log_path.read_bytes()
    assert os.fsencode(run.last_checkpoint) in logged  # the folder's own bytes: the line names the real path
    (record,) = read_metrics(run.path)
    assert record["path"] == str(run.last_checkpoint)


# ----------------------------------------------------------------- a crafted checkpoint read without status.json
def _checkpoint_with_pickle(path: Path, body: bytes, compression: int = 0) -> Path:
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("archive/data.pkl", body)
    return path


def test_a_checkpoint_naming_a_huge_pickle_memo_index_is_read_without_the_memory(tmp_path):
    """Review: a 9-byte pickle naming memo slot 10**8 made the C unpickler allocate 2·10**8 slots (1.5 GB) on
    every listing of a run folder without its status.json."""
    import struct

    body = b"\x80\x02}" + b"r" + struct.pack("<I", 10**8) + b"."  # an empty dict memoised at index 10**8
    path = _checkpoint_with_pickle(tmp_path / "memo.pt", body)
    state, peak = _peak_memory(lambda: runs_module.read_training_state(path))
    assert state is None and peak < 16 << 20


def test_a_compressed_checkpoint_pickle_is_not_inflated(tmp_path):
    """Review: only the entry's claimed size was checked; a deflated entry of 128 kB that claims 16 MB inflated
    to 128 MB (1000:1) before the claim was enforced. torch.save stores its entries uncompressed."""
    import struct
    import zipfile

    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("archive/data.pkl", "w") as fh:
        fh.write(b"\x80\x04\x95" + struct.pack("<Q", 1 << 40))  # a frame that asks for everything there is
        for _ in range(128):
            fh.write(bytes(1 << 20))
    raw = bytearray(path.read_bytes())
    directory = raw.rfind(b"PK\x01\x02")
    raw[directory + 24:directory + 28] = struct.pack("<I", (16 << 20) - 1)  # claims to fit the limit
    path.write_bytes(bytes(raw))
    assert path.stat().st_size < 1 << 20
    state, peak = _peak_memory(lambda: runs_module.read_training_state(path))
    assert state is None and peak < 16 << 20
    plain = _checkpoint_with_pickle(tmp_path / "deflated.pt", b"\x80\x02}q\x00X\x0e\x00\x00\x00training_stateq\x01}s.",
                                    zipfile.ZIP_DEFLATED)
    assert runs_module.read_training_state(plain) is None  # compressed at all: not torch.save's


def test_a_saved_checkpoint_still_reads_its_training_state(tmp_path):
    import torch
    from tiny_models import CLASSES, MEAN, STD, tiny_config

    from iamnn_studio.engine.checkpoint import save_checkpoint
    from iamnn_studio.engine.model import build_model

    model = build_model(tiny_config())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()  # momentum buffers: tensors inside the training state, left out by the reader
    state = {"epoch": 3, "step": 42, "optimizer": optimizer.state_dict(), "rng": {"torch": torch.get_rng_state()}}
    path = save_checkpoint(tmp_path / "last.pt", model, classes=CLASSES, mean=MEAN, std=STD, training_state=state)
    read = runs_module.read_training_state(path)
    assert (read["epoch"], read["step"]) == (3, 42)


def _run_without_status(runs_dir: Path, name: str, steps_per_epoch: int = 3) -> RunDirectory:
    run = make_run(runs_dir, name, epochs=5)
    run.status_path.unlink()
    run.append_metrics({"event": "started", "steps_per_epoch": steps_per_epoch, "total_epochs": 5})
    return run


def _state_checkpoint(path: Path, epoch: int, step: int) -> Path:
    import pickle

    return _checkpoint_with_pickle(path, pickle.dumps({"training_state": {"epoch": epoch, "step": step}}))


def _listed_within(runs_dir: Path, fifo: Path, seconds: float = 20.0) -> list:
    """list_runs(runs_dir), or a failure where it is still waiting after ``seconds`` (then the pipe's
    reader is let go, so that the test run goes on)."""
    import threading

    listed: list = []
    worker = threading.Thread(target=lambda: listed.append(list_runs(runs_dir)), daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the blocked open returns, then reads nothing
        worker.join(seconds)
        pytest.fail(f"listing the runs waited on the named pipe {fifo.name}")
    return listed[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_for_a_checkpoint_does_not_hang_the_listing(tmp_runs):
    """Review: a named pipe as last.pt in a run without status.json hung `runs` and the Runs tab for good
    (zipfile waits for a writer to open it); only a regular file is read, so best.pt stands in."""
    piped = _run_without_status(tmp_runs, "piped")
    piped.checkpoints_dir.mkdir()
    os.mkfifo(piped.last_checkpoint)
    [summary] = _listed_within(tmp_runs, piped.last_checkpoint)
    assert summary.epochs_text() == "0/5" and summary.step is None
    _state_checkpoint(piped.best_checkpoint, epoch=1, step=4)
    [summary] = _listed_within(tmp_runs, piped.last_checkpoint)
    assert summary.epochs_text() == "1/5 (+1 of 3 steps)" and summary.step == 4


def test_a_run_without_its_status_reads_last_pt_even_where_best_pt_is_newer(tmp_runs):
    """last.pt's step is never behind best.pt's; a copy or a restore can leave best.pt the newer file."""
    run = _run_without_status(tmp_runs, "copied")
    last = _state_checkpoint(run.last_checkpoint, epoch=3, step=9)
    best = _state_checkpoint(run.best_checkpoint, epoch=1, step=3)
    os.utime(last, (1_000_000, 1_000_000))
    [summary] = list_runs(tmp_runs)
    assert best.stat().st_mtime > last.stat().st_mtime and (summary.epochs_done, summary.step) == (3, 9)


@pytest.mark.parametrize("status", [None, {"state": "stopped", "total_epochs": 5}])
def test_a_listing_reads_a_checkpoint_it_needs_once(tmp_runs, monkeypatch, status):
    """Review: a run without status.json (or one without its epochs) had last.pt's pickle read twice per listing,
    once for its progress and once for whether it can be continued."""
    run = _run_without_status(tmp_runs, "copied")
    if status is not None:  # a status.json without epochs_done, and a config.toml that cannot be read
        run.status_path.write_text(json.dumps(status))
        run.config_path.write_text("this = is [not toml")
    state = {"version": runs_module.TRAINING_STATE_VERSION, "epoch": 1, "step": 4, "training_done": False}
    import pickle

    _checkpoint_with_pickle(run.last_checkpoint, pickle.dumps({"training_state": state,
                                                               "run_config": RunConfig(name="copied").to_dict()}))
    reads: list[Path] = []
    real = runs_module.read_checkpoint_payload

    def counted(path):
        reads.append(Path(path))
        return real(path)

    monkeypatch.setattr(runs_module, "read_checkpoint_payload", counted)
    for listing in (1, 2):  # once per listing: a second one reads the file as it is then
        [summary] = list_runs(tmp_runs)
        assert summary.epochs_done == 1 and summary.resume_checked and summary.resume_problem is None
        assert reads == [run.last_checkpoint] * listing


def test_a_checkpoint_step_too_big_to_write_lists_as_unknown(tmp_runs):
    """Review: a checkpoint whose step had 5001 digits listed, then its epochs text raised "Exceeds the limit
    (4300 digits)"."""
    run = _run_without_status(tmp_runs, "huge")
    _state_checkpoint(run.last_checkpoint, epoch=2, step=10**5000)
    [summary] = list_runs(tmp_runs)
    assert summary.epochs_text() == "?/5" and summary.step is None
    _state_checkpoint(run.last_checkpoint, epoch=2, step=2**53 - 1)  # the largest a double holds exactly
    assert list_runs(tmp_runs)[0].step == 2**53 - 1


def test_a_run_without_its_status_lists_the_best_accuracy_its_checkpoint_holds(tmp_runs):
    """QA: VAL ACC read "n/a" for a run copied without status.json, whose checkpoint holds the accuracy. Once the
    halting is fitted, the accuracy as the saved model runs (calibrated), as the trainer's own resume reads it."""
    import pickle

    def listed_best(state: dict) -> float | None:
        _checkpoint_with_pickle(run.last_checkpoint, pickle.dumps({"training_state": {"epoch": 2, "step": 6, **state}}))
        [summary] = list_runs(tmp_runs)
        return summary.best_accuracy

    run = _run_without_status(tmp_runs, "copied")
    assert listed_best({"best_accuracy": 0.8125}) == 0.8125
    assert listed_best({"best_accuracy": 0.8125, "halting_fitted": True, "calibrated_accuracy": 0.75}) == 0.75
    assert listed_best({"best_accuracy": 0.8125, "halting_fitted": False, "calibrated_accuracy": 0.75}) == 0.8125
    for nonsense in ("0.9", True, float("nan"), None, 81.25):
        assert listed_best({"best_accuracy": nonsense}) is None


# ----------------------------------------------------------------- a bad config.toml, a lost status.json
def _with_bad_batch_size(run: Path) -> None:
    config = run / "config.toml"
    text = config.read_text()
    config.write_text(text.replace("batch_size = 32", 'batch_size = "sixteen"'))
    assert config.read_text() != text, "the edit changed nothing"


def test_a_run_with_one_bad_setting_keeps_what_its_status_says(tmp_runs):
    """QA: a completed run whose config.toml had one bad value listed as "unreadable", "0 / ?" and "–", though
    its status.json told all of it (and Study showed the run)."""
    run = make_run(tmp_runs, "bad-setting", epochs=6, best=1.0)
    run.config_path.write_text(run.config_path.read_text().replace("batch_size = 128", 'batch_size = "sixteen"'))
    [summary] = list_runs(tmp_runs)
    assert (summary.status, summary.epochs_text(), summary.best_accuracy) == ("completed", "6/6", 1.0)
    assert (summary.model, summary.dataset) == ("?", "?")
    assert "batch_size: must be a positive integer, got 'sixteen'" in summary.config_problem
    json.dumps(summary.to_dict())

    run.status_path.write_text('{"state": "exploded"}')  # no state it can show: nothing but the problem to list
    [summary] = list_runs(tmp_runs)
    assert summary.status == "unreadable" and "batch_size" in summary.reason
    run.status_path.write_text("{")  # and both files unreadable: as before
    [summary] = list_runs(tmp_runs)
    assert summary.status == "unreadable" and "batch_size" in summary.reason


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A tiny run stopped in its second epoch: best.pt and last.pt, no eval.json."""
    import torch

    from iamnn_studio.engine.trainer import Trainer

    torch.set_num_threads(1)
    config = _tiny("stopped")
    config.epochs = 2
    trainer = Trainer(config, runs_dir=tmp_path_factory.mktemp("stopped"))
    trainer.add_listener(lambda event: trainer.stop() if event.kind == "epoch" else None)
    result = trainer.run()
    assert result.state == "stopped", result.reason
    return Path(result.run_dir)


def _copy_of(run: Path, runs_dir: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, runs_dir / run.name))


def _resumed(run: Path) -> str:
    """What ``train --resume`` does with the run: the trainer's own result."""
    from iamnn_studio.engine.trainer import Trainer

    result = Trainer(None, run_dir=run, resume=True).run()
    return result.state if result.state != "failed" else f"failed: {result.reason}"


@pytest.mark.parametrize("lost", ["config.toml", "status.json"])
def test_continue_is_offered_where_the_resume_goes_on_from_last_pt(stopped_run, tmp_path, lost):
    """QA: a stopped run with a bad config.toml, or without its status.json, could not be continued from the Runs
    tab, though ``train --resume`` resumes it (it takes the settings last.pt stores) and completes it."""
    run = _copy_of(stopped_run, tmp_path)
    if lost == "config.toml":
        _with_bad_batch_size(run)
    else:
        (run / "status.json").unlink()
    [summary] = list_runs(tmp_path)
    assert summary.status == ("stopped" if lost == "config.toml" else "unknown")
    assert summary.resume_checked and summary.resume_problem is None
    assert _resumed(run) == "completed"
    if lost == "status.json":
        (run / "status.json").unlink()
    [summary] = list_runs(tmp_path)  # completed and evaluated: nothing left, as the trainer says too
    assert summary.resume_problem.startswith("it is trained and evaluated: nothing to continue")
    assert _resumed(run).startswith("failed: ")


def test_a_dead_running_status_of_a_finished_run_offers_no_resume(stopped_run, tmp_path):
    """A process that died after its last save (trained, evaluated) but before writing "completed": the listing said
    "interrupted ... resume from the last checkpoint" while ``train --resume`` answers that nothing is left."""
    run = _copy_of(stopped_run, tmp_path)
    assert _resumed(run) == "completed"
    status = json.loads((run / "status.json").read_text())
    status.update(state="running", pid=_dead_pid(), host=__import__("socket").gethostname())
    (run / "status.json").write_text(json.dumps(status))
    [summary] = list_runs(tmp_path)
    assert summary.status == "interrupted" and summary.resume_checked
    assert summary.resume_problem.startswith("it is trained and evaluated: nothing to continue")
    assert "resume from" not in summary.reason and summary.reason.endswith("nothing is left to resume")
    assert _resumed(run).startswith("failed: ")  # as the trainer says


def test_an_interrupted_run_with_work_left_still_offers_its_resume(stopped_run, tmp_path):
    run = _copy_of(stopped_run, tmp_path)
    status = json.loads((run / "status.json").read_text())
    status.update(state="running", pid=_dead_pid(), host=__import__("socket").gethostname())
    (run / "status.json").write_text(json.dumps(status))
    [summary] = list_runs(tmp_path)
    assert summary.status == "interrupted" and summary.resume_problem is None and "resume" in summary.reason


def test_continue_is_refused_where_last_pt_cannot_resume_the_run(tmp_runs):
    """Without status.json or config.toml the listing reads last.pt itself (torch-free), as the resume would."""
    import pickle

    def problem(payload: dict | None) -> str | None:
        if payload is not None:
            _checkpoint_with_pickle(run.last_checkpoint, pickle.dumps(payload))
        [summary] = list_runs(tmp_runs)
        assert summary.resume_checked
        return summary.resume_problem

    run = _run_without_status(tmp_runs, "copied")
    assert problem(None) == "it has no checkpoints/last.pt to continue from"
    assert problem({"training_state": {"epoch": 1, "step": 3}}) == \
        "its checkpoints/last.pt holds no training state to continue from"  # no version: not the trainer's
    state = {"version": runs_module.TRAINING_STATE_VERSION, "epoch": 1, "step": 3, "training_done": False}
    assert problem({"training_state": state}) is None  # config.toml holds the settings
    run.config_path.write_text(run.config_path.read_text().replace("epochs = 5", "epochs = -1"))
    run.write_status("stopped", epochs_done=1, total_epochs=5)
    assert problem({"training_state": state}) == \
        "its config.toml cannot be read, and its checkpoints/last.pt stores no settings of its own"
    assert problem({"training_state": state, "run_config": RunConfig(name="copied").to_dict()}) is None
    run.last_checkpoint.write_bytes(b"junk")
    assert problem(None) == "its checkpoints/last.pt cannot be read"


def test_a_damaged_best_checkpoint_is_passed_over_for_a_readable_last_one(stopped_run, tmp_path):
    """QA: "Use best checkpoint" opened a damaged best.pt (an error in the Use tab) though last.pt was fine."""
    from iamnn_studio.engine.runs import checkpoint_to_use

    run = _copy_of(stopped_run, tmp_path)
    assert checkpoint_to_use(run) == (run / "checkpoints" / "best.pt", None)
    (run / "checkpoints" / "best.pt").write_bytes(b"junk")
    path, passed_over = checkpoint_to_use(run)
    assert path == run / "checkpoints" / "last.pt" and passed_over.startswith("checkpoints/best.pt cannot be read")
    (run / "checkpoints" / "last.pt").write_bytes(b"junk")
    path, why = checkpoint_to_use(run)
    assert path is None and "best.pt cannot be read" in why and "last.pt cannot be read" in why


def test_an_eval_json_of_other_classes_is_not_taken_for_the_runs_test_accuracy(tmp_runs):
    """QA: a run folder holding another run's eval.json (copied over, 3 colour classes for a 10-shape run) listed
    that run's top-1 as its own test accuracy."""
    shapes = [f"shape{i}" for i in range(10)]
    run = make_run(tmp_runs, "shapes")
    run.append_metrics({"event": "started", "steps_per_epoch": 4, "dataset": {"name": "synthetic", "classes": shapes}})
    run.write_eval({"top1": 0.0, "images": 12, "classes": ["red", "green", "blue"]})
    [summary] = list_runs(tmp_runs)
    assert summary.test_accuracy is None
    assert "another run's" in summary.evaluation_problem and "red, green, blue" in summary.evaluation_problem
    run.write_eval({"top1": 0.1, "images": 12, "classes": shapes[::-1]})  # as many classes, other ones
    assert list_runs(tmp_runs)[0].test_accuracy is None
    run.write_eval({"top1": 0.2, "images": 12, "classes": shapes})
    assert list_runs(tmp_runs)[0].test_accuracy == 0.2


def test_without_a_started_event_the_evaluations_class_count_is_checked_against_the_config(tmp_runs):
    run = make_run(tmp_runs, "no-metrics")  # config.toml's model: 10 classes
    run.write_eval({"top1": 0.5, "images": 12, "classes": ["red", "green", "blue"]})
    [summary] = list_runs(tmp_runs)
    assert summary.test_accuracy is None and "this run classifies 10" in summary.evaluation_problem
    run.write_eval({"top1": 0.5, "images": 12, "classes": [str(i) for i in range(10)]})
    assert list_runs(tmp_runs)[0].test_accuracy == 0.5
