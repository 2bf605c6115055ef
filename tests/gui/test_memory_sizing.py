"""The Train form sizes a model's training memory in a long-lived child process, never in the UI thread (it froze
the window 0.3-1.4 s per new shape), without holding Start (the trainer checks the memory itself), and keeps the
sizes on disk: start-up sizes no shape seen before."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from .conftest import tiny_run_values

pytestmark = [pytest.mark.gui, pytest.mark.own_sizing_child]  # the app's child per form, as it runs

SMALL = {"parameters": 1000, "bytes_per_image": 1000, "bytes_per_batch": 1000}
HUGE = {"parameters": 1000, "bytes_per_image": 2**50, "bytes_per_batch": 0}  # no batch fits any computer


def fake_sizing_child(monkeypatch, folder, *, answer=SMALL, sleep_s=0.0, error="", deaths=0, message=""):
    """Replace the sizing child by a script speaking its protocol: it notes each start in ``starts`` and writes its
    pid, says it is ready, then for each model line sleeps and answers (``error``: that sentence). The first
    ``deaths`` requests (over all its starts) kill it instead, ``message`` on its stderr."""
    from iamnn_studio.gui.forms import memory_sizing

    script = folder / f"fake_sizing_{time.monotonic_ns()}.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, sys, time
        folder = {str(folder)!r}
        with open(os.path.join(folder, "starts"), "a") as starts:
            starts.write(str(os.getpid()) + "\\n")
        with open(os.path.join(folder, "child.pid.partial"), "w") as out:
            out.write(str(os.getpid()))
        os.replace(os.path.join(folder, "child.pid.partial"), os.path.join(folder, "child.pid"))
        print(json.dumps({{"ready": True}}), flush=True)
        for line in iter(sys.stdin.readline, ""):
            json.loads(line)
            deaths = os.path.join(folder, "deaths")
            died = len(open(deaths).read()) if os.path.exists(deaths) else 0
            if died < {deaths}:
                open(deaths, "a").write("x")
                print({message!r}, file=sys.stderr, flush=True)
                os._exit(3)
            time.sleep({sleep_s})
            reply = {{"error": {error!r}}} if {error!r} else {{"memory": {answer!r}}}
            print(json.dumps(reply), flush=True)
    """))
    monkeypatch.setattr(memory_sizing, "SIZING_COMMAND", [sys.executable, str(script)])


def child_pid(folder) -> int:
    return int((folder / "child.pid").read_text())


def starts(folder) -> list[int]:
    path = folder / "starts"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def new_sizing_child(form) -> None:
    """The form's sizer anew (its child ended), so that its next shape starts the fake child now in place."""
    from iamnn_studio.gui.forms.memory_sizing import MemorySizer

    form._sizer.close()
    form._sizer = MemorySizer(form)
    form._sizer.sized.connect(form._on_memory_sized)


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
    new_sizing_child(form)  # the window's may already run the real one, for the default shape
    form.set_values(tiny_run_values(form))
    qtbot.waitUntil(lambda: window.training.header.start.isEnabled() and shape_key(form) in form.training_memories,
                    timeout=60_000)
    return form


def test_sizing_a_new_model_shape_holds_neither_the_ui_thread_nor_start(qtbot, tmp_path, monkeypatch, tiny_form,
                                                                         window):
    from PySide6.QtCore import QTimer

    form, start, header = tiny_form, window.training.header.start, window.training.header
    fake_sizing_child(monkeypatch, tmp_path, answer=HUGE, sleep_s=1.5)
    new_sizing_child(form)
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    form.model.width.setValue(6)  # a new shape: sized after the pause in editing, by the child
    key = shape_key(form)
    qtbot.waitUntil(lambda: form._sizer.sizing(key), timeout=10_000)
    # Start is not held (the trainer checks the memory itself): a quiet hint in its tooltip, none in the header
    assert start.isEnabled() and form.is_valid and "batch_size" not in form.errors
    assert "still being worked out" in start.toolTip() and header.title.text() == "Ready to train"
    qtbot.waitUntil(lambda: key in form.training_memories, timeout=60_000)
    timer.stop()
    gaps = [later - earlier for earlier, later in zip(ticks, ticks[1:])]
    assert len(ticks) > 20 and max(gaps) < 0.75, f"the UI thread stalled {max(gaps):.2f} s"
    # the figure came: the form checked the batch against it at once, and Start agrees
    row = form.training.rows["batch_size"]
    assert "batch_size" in form.errors and "choose a smaller width or image size" in row.error
    assert not start.isEnabled() and start.toolTip() == "Fix the fields marked in red first"
    assert not window.training.start_run() and window.training.session is None
    assert header.subtitle.text() == "Fix the fields marked in red first"


def test_one_child_sizes_every_shape_and_a_newer_shape_drops_the_older_ones_answer(qtbot, tmp_path, monkeypatch):
    from iamnn_studio.gui.forms.memory_sizing import MemorySizer

    fake_sizing_child(monkeypatch, tmp_path, sleep_s=1.0)
    sizer = MemorySizer()
    answers = []
    sizer.sized.connect(lambda key, model, memory: answers.append((key, memory)))
    sizer.size("first", {"width": 4})
    qtbot.waitUntil(lambda: bool(answers), timeout=30_000)
    sizer.size("older", {"width": 8})
    time.sleep(0.3)  # being sized now
    sizer.size("newer", {"width": 16})
    qtbot.waitUntil(lambda: len(answers) == 2, timeout=30_000)
    assert sizer.wait(10_000)
    qtbot.wait(100)
    assert [key for key, _memory in answers] == ["first", "newer"] and answers[1][1].bytes_per_image == 1000
    assert len(starts(tmp_path)) == 1 and not gone(child_pid(tmp_path))  # the same child, still there
    sizer.close()
    assert gone(child_pid(tmp_path))


def test_a_child_that_dies_is_restarted_once(qtbot, tmp_path, monkeypatch):
    from iamnn_studio.gui.forms.memory_sizing import MemorySizer

    fake_sizing_child(monkeypatch, tmp_path, deaths=1, message="Segmentation fault in a plugin's block")
    sizer = MemorySizer()
    answers = []
    sizer.sized.connect(lambda key, model, memory: answers.append((key, memory)))
    sizer.size("once", {"width": 4})
    qtbot.waitUntil(lambda: bool(answers), timeout=30_000)
    assert answers[0][1].bytes_per_image == 1000 and len(starts(tmp_path)) == 2

    (tmp_path / "deaths").unlink()
    fake_sizing_child(monkeypatch, tmp_path, deaths=2, message="Segmentation fault in a plugin's block")
    sizer.size("twice", {"width": 8})
    qtbot.waitUntil(lambda: len(answers) == 2, timeout=30_000)
    assert answers[1] == ("twice", None) and len(starts(tmp_path)) == 3  # the one that answered died first
    assert sizer.last_error == "the sizing process ended: Segmentation fault in a plugin's block"
    sizer.size("later", {"width": 16})  # a later shape gets a new child
    qtbot.waitUntil(lambda: len(answers) == 3, timeout=30_000)
    assert answers[2][1] is not None and len(starts(tmp_path)) == 4
    sizer.close()
    assert all(gone(pid) for pid in starts(tmp_path))


def test_an_idle_child_ends_and_the_next_shape_starts_another(qtbot, tmp_path, monkeypatch):
    """The child held ~300 MB for the whole session: it ends after IDLE_EXIT_S without a request (never while it
    sizes one), and the next shape is answered by a new one as if nothing had happened."""
    from iamnn_studio.gui.forms import memory_sizing
    from iamnn_studio.gui.forms.memory_sizing import MemorySizer

    monkeypatch.setattr(memory_sizing, "IDLE_EXIT_S", 2.0)
    fake_sizing_child(monkeypatch, tmp_path, sleep_s=2.5)  # each answer takes longer than the idle limit
    sizer = MemorySizer()
    answers = []
    sizer.sized.connect(lambda key, model, memory: answers.append((key, memory)))
    sizer.size("first", {"width": 4})
    qtbot.waitUntil(lambda: len(answers) == 1, timeout=30_000)
    sizer.size("second", {"width": 8})  # the first answer's idle limit passes while the child sizes this one
    qtbot.waitUntil(lambda: len(answers) == 2, timeout=30_000)
    first_child = child_pid(tmp_path)
    assert len(starts(tmp_path)) == 1 and answers[1][1].bytes_per_image == 1000

    qtbot.waitUntil(lambda: gone(first_child), timeout=10_000)  # asked nothing for two seconds: it has ended
    assert sizer.server.pid is None
    sizer.size("third", {"width": 16})
    qtbot.waitUntil(lambda: len(answers) == 3, timeout=30_000)
    assert answers[2][0] == "third" and answers[2][1].bytes_per_image == 1000 and sizer.last_error == ""
    assert len(starts(tmp_path)) == 2 and sizer.server.pid == child_pid(tmp_path) != first_child
    sizer.close()
    assert all(gone(pid) for pid in starts(tmp_path))


def test_a_sizing_that_fails_or_hangs_leaves_no_estimate_and_a_hung_child_is_replaced(qtbot, tmp_path, monkeypatch,
                                                                                    tiny_form, window):
    form, start = tiny_form, window.training.header.start
    fake_sizing_child(monkeypatch, tmp_path, error="cannot size this model: no such block")
    new_sizing_child(form)
    form.model.width.setValue(6)
    failed = shape_key(form)
    qtbot.waitUntil(lambda: failed in form.unsized_shapes, timeout=30_000)
    assert failed not in form.training_memories and form._sizer.last_error == "cannot size this model: no such block"
    assert start.isEnabled() and "batch_size" not in form.errors  # the trainer's own check remains

    fake_sizing_child(monkeypatch, tmp_path, sleep_s=60)
    new_sizing_child(form)
    form._sizer.timeout_s = 1.0
    form.model.width.setValue(10)
    hung = shape_key(form)
    qtbot.waitUntil(lambda: hung in form.unsized_shapes, timeout=30_000)
    assert form._sizer.last_error == "the sizing process gave no answer in 1 s"
    killed = starts(tmp_path)[-2]
    assert gone(killed)  # stopped, not left running, and a fresh one waits for the next shape
    qtbot.waitUntil(lambda: form._sizer.server.pid == starts(tmp_path)[-1] != killed, timeout=10_000)
    assert start.isEnabled()


def asked_shapes(monkeypatch, form) -> list[str]:
    """The shapes the form's sizer is asked for from now on (it still sizes them)."""
    asked: list[str] = []
    sizer = form._sizer
    size = sizer.size
    monkeypatch.setattr(sizer, "size", lambda key, model: asked.append(key) or size(key, model))
    return asked


def show_width(qtbot, form, width: int) -> str:
    """Show the model at ``width``; its shape's key once the form has looked at it (its figures' pause over)."""
    form.model.width.setValue(width)
    qtbot.waitUntil(lambda: not form._figures_timer.isActive(), timeout=10_000)
    return shape_key(form)


def test_a_shape_that_failed_is_asked_once_more_when_shown_again_later(qtbot, tmp_path, monkeypatch, tiny_form):
    """Review: one failure (a time limit passed on a busy machine) left the shape unsized for the form's life."""
    form = tiny_form
    fake_sizing_child(monkeypatch, tmp_path, error="the machine was busy")
    new_sizing_child(form)
    failed = show_width(qtbot, form, 6)
    qtbot.waitUntil(lambda: failed in form.unsized_shapes, timeout=30_000)
    asked = asked_shapes(monkeypatch, form)
    form._compute_figures()  # the same shape still shown (a dataset edit): not asked again, no loop
    assert asked == []

    fake_sizing_child(monkeypatch, tmp_path)  # the machine is free again
    new_sizing_child(form)
    asked = asked_shapes(monkeypatch, form)
    other = show_width(qtbot, form, 8)
    qtbot.waitUntil(lambda: other in form.training_memories, timeout=30_000)
    assert show_width(qtbot, form, 6) == failed  # back to it: asked once more, and sized this time
    qtbot.waitUntil(lambda: failed in form.training_memories, timeout=30_000)
    assert asked == [other, failed] and failed not in form.unsized_shapes

    fake_sizing_child(monkeypatch, tmp_path, error="the machine was busy")
    new_sizing_child(form)
    asked = asked_shapes(monkeypatch, form)
    twice = show_width(qtbot, form, 10)
    qtbot.waitUntil(lambda: twice in form.unsized_shapes, timeout=30_000)
    show_width(qtbot, form, 8)
    show_width(qtbot, form, 10)  # the one retry, failing again
    qtbot.waitUntil(lambda: twice in form.unsized_shapes, timeout=30_000)
    show_width(qtbot, form, 8)
    show_width(qtbot, form, 10)  # failed twice: not asked a third time
    assert asked == [twice, twice] and not form.sizing_memory()


def test_an_ended_child_s_input_pipe_is_closed_even_when_it_is_not_reaped_in_time(qtbot, tmp_path, monkeypatch):
    """Review: ``end`` closed the child's stdin only when ``wait(5)`` returned; after a TimeoutExpired the pipe's
    file descriptor stayed open for the app's life."""
    from iamnn_studio.gui.forms import memory_sizing
    from iamnn_studio.gui.forms.memory_sizing import _Child

    fake_sizing_child(monkeypatch, tmp_path)
    child = _Child(memory_sizing.SIZING_COMMAND)
    wait = child.process.wait

    def slow_to_reap(timeout=None):
        raise subprocess.TimeoutExpired(child.process.args, timeout)

    monkeypatch.setattr(child.process, "wait", slow_to_reap)
    child.end()
    assert child.process.stdin.closed
    assert wait(30) is not None  # reaped after all (killed)


def test_the_child_ends_with_its_form_its_window_and_the_interpreter(qtbot, tmp_path, monkeypatch):
    from iamnn_studio.gui.forms.run_form import RunForm

    fake_sizing_child(monkeypatch, tmp_path, sleep_s=60)
    form = RunForm()
    form._sizer.size("shape", {"width": 4})  # the child sizes it (for a minute) when its form is deleted
    qtbot.waitUntil(lambda: form._sizer.server.pid is not None and (tmp_path / "child.pid").exists(),
                    timeout=30_000)
    pid = child_pid(tmp_path)
    qtbot.wait(200)
    import shiboken6

    shiboken6.delete(form)
    assert gone(pid)

    # the interpreter's exit ends those whose form was never deleted (a killed app's child reads its input's end)
    from iamnn_studio.gui.forms import memory_sizing

    script = tmp_path / "leaves_a_sizer.py"
    script.write_text(textwrap.dedent(f"""
        import sys, threading, time
        from iamnn_studio.gui.forms import memory_sizing
        memory_sizing.SIZING_COMMAND = {memory_sizing.SIZING_COMMAND!r}
        server = memory_sizing.SizingServer()
        threading.Thread(target=server.answer, args=(server.supersede(), {{"width": 4}}), daemon=True).start()
        while server.pid is None:
            time.sleep(0.05)
        time.sleep(0.5)  # sizing now (for a minute)
        print(server.pid, flush=True)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=memory_sizing._child_environment(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert gone(int(done.stdout.split()[-1]))


def test_the_child_starts_with_the_engine_and_ends_when_the_window_closes(qtbot, tmp_path, monkeypatch,
                                                                          styled_app, tmp_runs):
    from iamnn_studio.gui.forms import memory_sizing
    from iamnn_studio.gui.main_window import MainWindow

    monkeypatch.setattr(memory_sizing, "START_WITH_ENGINE", True)
    fake_sizing_child(monkeypatch, tmp_path)
    window = MainWindow(runs_dir=str(tmp_runs))
    window.show()
    qtbot.waitUntil(lambda: window.engine_ready, timeout=120_000)
    qtbot.waitUntil(lambda: (tmp_path / "child.pid").exists(), timeout=30_000)  # no shape asked for it yet
    pid = child_pid(tmp_path)
    assert window.training.form._sizer.server.pid == pid
    window.close()
    assert gone(pid)
    window.deleteLater()
    qtbot.wait(10)


def test_the_real_sizing_child_answers_as_the_engine_does(qtbot):
    """``python -m iamnn_studio.engine.estimate --serve``: a warm child sizes a new shape in about half a second."""
    from iamnn_studio.engine.config import ModelConfig
    from iamnn_studio.engine.estimate import training_memory
    from iamnn_studio.gui.forms.memory_sizing import SizingServer

    server = SizingServer()
    try:
        server.warm_up()
        model = ModelConfig(width=4, iterations=(1, 2, 1, 1), image_size=16, num_classes=3).validate()
        started = time.monotonic()
        assert server.answer(server.supersede(), model.to_dict()) == training_memory(model)
        print(f"a new shape sized by the warm child in {time.monotonic() - started:.2f} s")
        with pytest.raises(ValueError, match="^cannot size this model: width: must be a positive integer, got -1$"):
            server.answer(server.supersede(), {"width": -1})
        pid = server.pid
    finally:
        server.close()
    assert gone(pid)


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


def test_the_cache_file_is_never_written_through_a_file_of_a_fixed_name(qtbot, tmp_path):
    """Review: a fixed ``training-memory.json.partial`` was written through, whatever it was: two windows saving
    at once shared it, and a link of that name (another user's, in a shared folder) had its target overwritten."""
    from iamnn_studio.engine.estimate import TrainingMemory
    from iamnn_studio.gui.forms import memory_sizing

    victim = tmp_path / "someone else's file"
    victim.write_text("keep me")
    path = tmp_path / "training-memory.json"
    (tmp_path / "training-memory.json.partial").symlink_to(victim)
    sizes = {"shape": TrainingMemory(1, 2, 3)}
    memory_sizing.save_cached_sizes(sizes, path)
    assert victim.read_text() == "keep me"
    assert not path.is_symlink() and memory_sizing.load_cached_sizes(path) == sizes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([victim.name, path.name, path.name + ".partial"])


def test_a_server_given_its_command_starts_that_child_whatever_the_default_is_then(qtbot, tmp_path, monkeypatch):
    """A server made with its own command line keeps it: the module's default, changed later (a plugin's, a test's
    fake), does not reach a child that server restarts."""
    from iamnn_studio.gui.forms import memory_sizing
    from iamnn_studio.gui.forms.memory_sizing import SizingServer

    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
    fake_sizing_child(monkeypatch, tmp_path / "one")
    mine = list(memory_sizing.SIZING_COMMAND)
    server = SizingServer(command=mine)
    fake_sizing_child(monkeypatch, tmp_path / "two")  # the default now names another script
    try:
        assert server.answer(server.supersede(), {"width": 4}).bytes_per_image == SMALL["bytes_per_image"]
        assert len(starts(tmp_path / "one")) == 1 and starts(tmp_path / "two") == []
    finally:
        server.close()
