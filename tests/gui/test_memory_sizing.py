"""The Train form sizes a model's training memory in a child process, never in the UI thread (it froze the window
0.3-1.4 s per new shape), and keeps the sizes on disk: start-up sizes no shape seen before."""
from __future__ import annotations

import json
import os
import sys
import textwrap
import time

import pytest

from .conftest import tiny_run_values

pytestmark = pytest.mark.gui

SMALL = {"parameters": 1000, "bytes_per_image": 1000, "bytes_per_batch": 1000}
HUGE = {"parameters": 1000, "bytes_per_image": 2**50, "bytes_per_batch": 0}  # no batch fits any computer


def fake_sizing_child(monkeypatch, folder, *, answer=SMALL, sleep_s=0.0, exit_code=0, message=""):
    """Replace the sizing child by a script that reads the model, writes its pid, sleeps, then answers."""
    from iamnn_studio.gui.forms import memory_sizing

    script = folder / f"fake_sizing_{time.monotonic_ns()}.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, sys, time
        json.loads(sys.stdin.read())
        with open({str(folder / "child.pid.partial")!r}, "w") as out:
            out.write(str(os.getpid()))
        os.replace({str(folder / "child.pid.partial")!r}, {str(folder / "child.pid")!r})  # whole when seen
        time.sleep({sleep_s})
        if {exit_code}:
            print({message!r}, file=sys.stderr)
            sys.exit({exit_code})
        print(json.dumps({answer!r}))
    """))
    monkeypatch.setattr(memory_sizing, "SIZING_COMMAND", [sys.executable, str(script)])


def shape_key(form) -> str:
    from iamnn_studio.gui.forms.run_form import _training_memory_key

    return _training_memory_key(form.values()["model"])


@pytest.fixture
def form(window):
    return window.training.form


@pytest.fixture
def tiny_form(qtbot, tmp_path, monkeypatch, fresh_sizing_cache, window, form):
    """The form on a tiny model whose size is known (a quick fake child), Start enabled."""
    fake_sizing_child(monkeypatch, tmp_path)
    form.set_values(tiny_run_values(form))
    qtbot.waitUntil(lambda: window.training.header.start.isEnabled() and form.figures is not None, timeout=60_000)
    return form


def test_sizing_a_new_model_shape_leaves_the_ui_thread_free_and_start_waits_for_it(qtbot, tmp_path, monkeypatch,
                                                                                   tiny_form, window):
    import iamnn_studio.engine.estimate as estimate
    from PySide6.QtCore import QTimer

    form, start, header = tiny_form, window.training.header.start, window.training.header
    original = estimate.training_memory

    def slow_training_memory(config):  # how the sizing ran before: in the UI thread, 1.5 s
        time.sleep(1.5)
        return original(config)

    monkeypatch.setattr(estimate, "training_memory", slow_training_memory)
    fake_sizing_child(monkeypatch, tmp_path, answer=HUGE, sleep_s=1.5)
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    form.model.width.setValue(6)  # a new shape: sized after the pause in editing, in a child process
    key = shape_key(form)
    assert key not in form.training_memories
    assert not start.isEnabled() and header.subtitle.text() == "Sizing this model's training memory…"
    qtbot.waitUntil(lambda: key in form.training_memories, timeout=30_000)
    timer.stop()
    gaps = [later - earlier for earlier, later in zip(ticks, ticks[1:])]
    assert len(ticks) > 20 and max(gaps) < 0.75, f"the UI thread stalled {max(gaps):.2f} s"
    # the figure came: the form checked the batch against it at once
    row = form.training.rows["batch_size"]
    assert "batch_size" in form.errors and "choose a smaller width or image size" in row.error
    assert not start.isEnabled()


def test_a_sizing_that_fails_or_hangs_leaves_no_estimate_and_does_not_hold_start(qtbot, tmp_path, monkeypatch,
                                                                                tiny_form, window):
    form, start = tiny_form, window.training.header.start
    fake_sizing_child(monkeypatch, tmp_path, exit_code=3, message="cannot size this model: no such block")
    form.model.width.setValue(6)
    failed = shape_key(form)
    qtbot.waitUntil(lambda: failed in form.unsized_shapes, timeout=30_000)
    assert failed not in form.training_memories and form._sizer.last_error == "cannot size this model: no such block"
    qtbot.waitUntil(lambda: start.isEnabled(), timeout=30_000)  # the trainer's own check remains
    assert "batch_size" not in form.errors

    fake_sizing_child(monkeypatch, tmp_path, sleep_s=60)
    form._sizer.timeout_s = 1.0
    form.model.width.setValue(10)
    hung = shape_key(form)
    qtbot.waitUntil(lambda: hung in form.unsized_shapes, timeout=30_000)
    assert form._sizer.last_error == "the sizing process gave no answer in 1 s"
    with pytest.raises(ProcessLookupError):  # stopped, not left running
        os.kill(int((tmp_path / "child.pid").read_text()), 0)
    qtbot.waitUntil(lambda: start.isEnabled(), timeout=30_000)


def test_a_newer_shape_stops_the_sizing_of_the_older_one(qtbot, tmp_path, monkeypatch):
    from iamnn_studio.gui.forms.memory_sizing import MemorySizer

    sizer = MemorySizer()
    answers = []
    sizer.sized.connect(lambda key, model, memory: answers.append((key, memory)))
    fake_sizing_child(monkeypatch, tmp_path, sleep_s=60)
    sizer.size("older", {"width": 8})
    qtbot.waitUntil(lambda: (tmp_path / "child.pid").exists(), timeout=30_000)
    older = int((tmp_path / "child.pid").read_text())
    fake_sizing_child(monkeypatch, tmp_path)
    sizer.size("newer", {"width": 16})
    qtbot.waitUntil(lambda: bool(answers), timeout=30_000)
    assert [key for key, _memory in answers] == ["newer"] and answers[0][1].bytes_per_image == 1000
    assert sizer.wait(10_000)
    with pytest.raises(ProcessLookupError):
        os.kill(older, 0)
    assert [key for key, _memory in answers] == ["newer"]  # the stopped one says nothing


def test_the_real_sizing_child_answers_as_the_engine_does(tmp_path):
    """``python -m iamnn_studio.engine.estimate``: JSON in, JSON out, one line when the model is bad."""
    import subprocess

    from iamnn_studio.engine.config import ModelConfig
    from iamnn_studio.engine.estimate import training_memory
    from iamnn_studio.gui.forms.memory_sizing import SIZING_COMMAND, _child_environment

    model = ModelConfig(width=4, iterations=(1, 1, 1, 1), image_size=16, num_classes=3).validate()
    done = subprocess.run(SIZING_COMMAND, input=json.dumps(model.to_dict()), capture_output=True, text=True,
                          env=_child_environment(), timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == training_memory(model).__dict__
    bad = subprocess.run(SIZING_COMMAND, input='{"width": -1}', capture_output=True, text=True,
                         env=_child_environment(), timeout=120, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == "cannot size this model: width: must be a positive integer, got -1"


# --------------------------------------------------------------------------- the cache on disk
def test_sizes_are_kept_on_disk_and_start_up_sizes_no_shape_seen_before(qtbot, tmp_path, monkeypatch,
                                                                        fresh_sizing_cache, tiny_form):
    from iamnn_studio.engine.estimate import TrainingMemory
    from iamnn_studio.gui.forms import memory_sizing
    from iamnn_studio.gui.forms.run_form import RunForm

    key = shape_key(tiny_form)
    assert memory_sizing.load_cached_sizes(fresh_sizing_cache) == {key: TrainingMemory(**SMALL)}

    asked = []
    monkeypatch.setattr(memory_sizing.MemorySizer, "size", lambda self, key, model: asked.append(key))
    again = RunForm()  # the app started again: its default shape comes from the file
    qtbot.addWidget(again)
    again.set_engine_ready("cpu", False, tiny_run_values(tiny_form))
    assert again.training_memories[key] == TrainingMemory(**SMALL) and not again.sizing_memory()
    qtbot.waitUntil(lambda: again.figures is not None, timeout=30_000)
    assert asked == []
    again.wait_for_background()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"stamp": "other", "sizes": {}}', "STAMP-BAD-SIZES", ""])
def test_a_corrupt_or_stale_cache_file_is_ignored(qtbot, tmp_path, text):
    from iamnn_studio.gui.forms.memory_sizing import load_cached_sizes, save_cached_sizes, sizing_stamp

    path = tmp_path / "training-memory.json"
    if text == "STAMP-BAD-SIZES":
        text = json.dumps({"stamp": sizing_stamp(), "sizes": {"k": {"parameters": "many"}}})
    path.write_text(text)
    assert load_cached_sizes(path) == {}
    save_cached_sizes({}, tmp_path / "training-memory.json" / "inside a file")  # unwritable: skipped, no error


def test_the_cache_file_keeps_the_newest_shapes(qtbot, tmp_path, monkeypatch):
    from iamnn_studio.engine.estimate import TrainingMemory
    from iamnn_studio.gui.forms import memory_sizing

    monkeypatch.setattr(memory_sizing, "CACHED_SHAPES", 3)
    sizes = {f"shape {n}": TrainingMemory(n, 2 * n, 3 * n) for n in range(5)}
    memory_sizing.save_cached_sizes(sizes, tmp_path / "cache.json")
    assert memory_sizing.load_cached_sizes(tmp_path / "cache.json") == {key: sizes[key] for key in list(sizes)[2:]}
    assert not (tmp_path / "cache.json.partial").exists()
