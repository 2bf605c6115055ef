"""The runs browser: lists good and unreadable runs, and asks the shell to open, use or continue one."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from iamnn_studio.engine.config import DataConfig, ModelConfig, RunConfig  # noqa: E402
from iamnn_studio.gui.runs_view import COLUMNS, RunsView  # noqa: E402

pytestmark = pytest.mark.gui
TIMEOUT = 20_000


def make_run(runs: Path, name: str, state: str, *, best: float | None = 0.8125, checkpoints=("best.pt",),
             created: str = "2025-01-02T10:00:00+00:00") -> Path:
    folder = runs / name
    folder.mkdir()
    config = RunConfig(name=name, data=DataConfig(name="synthetic"),
                       model=ModelConfig(iterations=(1, 2, 2, 1), width=4), epochs=4)
    config.save(folder / "config.toml")
    status = {"state": state, "reason": "", "created": created, "best_accuracy": best, "epochs_done": 2,
              "total_epochs": 4}
    (folder / "status.json").write_text(json.dumps(status))
    (folder / "checkpoints").mkdir()
    for checkpoint in checkpoints:
        (folder / "checkpoints" / checkpoint).write_bytes(b"weights")
    return folder


def save_weights(folder: Path, name: str = "best.pt") -> Path:
    """A real checkpoint of the network ``make_run``'s settings describe (its own settings stored in it)."""
    from iamnn_studio.engine.checkpoint import save_checkpoint
    from iamnn_studio.engine.model import build_model

    config = RunConfig.load(folder / "config.toml")
    path = folder / "checkpoints" / name
    save_checkpoint(path, build_model(config.model), run_config=config, classes=[str(c) for c in range(10)],
                    mean=[0.5], std=[0.25])
    return path


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    good = make_run(runs, "good-run", "completed")
    save_weights(good)
    stopped = make_run(runs, "stopped-run", "stopped", best=None, checkpoints=("last.pt",),
                       created="2025-01-01T10:00:00+00:00")
    broken = runs / "broken-run"
    broken.mkdir()
    (broken / "config.toml").write_text("this = is [not toml")
    (broken / "status.json").write_text("{")
    (runs / "not-a-run").mkdir()  # someone else's folder: not listed
    return {"dir": runs, "good": good, "stopped": stopped, "broken": broken}


@pytest.fixture
def view(qtbot, runs):
    widget = RunsView()
    qtbot.addWidget(widget)
    widget.resize(1100, 600)
    with qtbot.waitSignal(widget.refreshed, timeout=TIMEOUT):
        widget.set_runs_dir(str(runs["dir"]))
    return widget


def row_of(view, name: str) -> int:
    for row in range(view.table.rowCount()):
        if view.table.item(row, 0).text() == name:
            return row
    raise AssertionError(f"{name} is not listed")


def cell(view, name: str, column: str) -> str:
    return view.table.item(row_of(view, name), COLUMNS.index(column)).text()


def test_lists_good_and_unreadable_runs_without_foreign_folders(view):
    assert sorted(view.table.item(r, 0).text() for r in range(view.table.rowCount())) == [
        "broken-run", "good-run", "stopped-run"]
    assert cell(view, "good-run", "Status") == "completed"
    assert cell(view, "good-run", "Epochs") == "2 / 4"
    assert cell(view, "good-run", "Val. acc.") == "81.2 %"  # validation, says so beside the test accuracy
    assert cell(view, "good-run", "Test acc.") == "–"  # not evaluated
    assert cell(view, "good-run", "Dataset") == "synthetic"
    assert "IamNN" in cell(view, "good-run", "Model")
    assert cell(view, "broken-run", "Status") == "unreadable"


def test_the_model_column_writes_custom_caps_compactly_not_as_a_tuple(qtbot, view, runs):
    """QA: the Model column read "IamNN (1,2,2,1) w4 adaptive", a Python tuple where the rest of the app says
    "caps 1·2·2·1"."""
    from iamnn_studio.gui.forms.model_panel import caps_text

    baseline = make_run(runs["dir"], "baseline-run", "completed")
    config = RunConfig.load(baseline / "config.toml")
    config.model = ModelConfig(architecture="resnet", iterations=(1, 1, 2, 1), width=4)
    config.save(baseline / "config.toml")
    standard = make_run(runs["dir"], "standard-run", "completed")
    config = RunConfig.load(standard / "config.toml")
    config.model = ModelConfig(depth=50, width=16)
    config.save(standard / "config.toml")
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()

    assert caps_text((1, 2, 2, 1)) == "caps 1 · 2 · 2 · 1"  # the Train tab has room to space them out
    model = view.table.item(row_of(view, "good-run"), COLUMNS.index("Model"))
    assert model.text() == "IamNN caps 1·2·2·1 w4 adaptive" and model.toolTip() == model.text()
    assert cell(view, "baseline-run", "Model") == "ResNet units 1·1·2·1 w4"  # as the engine's messages write caps
    assert cell(view, "standard-run", "Model") == "IamNN-50 w16 adaptive"  # a standard depth reads as it was


def double_click(qtbot, view, name: str) -> None:
    item = view.table.item(row_of(view, name), 0)
    centre = view.table.visualItemRect(item).center()
    # Qt 6 item views see a double click only after the press that precedes it
    qtbot.mouseClick(view.table.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseDClick(view.table.viewport(), Qt.MouseButton.LeftButton, pos=centre)


def test_double_click_opens_the_run_and_the_buttons_follow_the_selection(qtbot, view, runs):
    view.show()
    qtbot.waitExposed(view)
    with qtbot.waitSignal(view.open_run, timeout=2000) as opened:
        double_click(qtbot, view, "good-run")
    assert opened.args == [str(runs["good"])]

    view.table.selectRow(row_of(view, "good-run"))
    assert view.open_button.isEnabled() and view.use_button.isEnabled()
    assert not view.continue_button.isEnabled()  # completed: nothing to continue
    with qtbot.waitSignal(view.use_checkpoint, timeout=2000) as used:
        view.use_button.click()
    assert used.args == [str(runs["good"] / "checkpoints" / "best.pt")]
    # ... but a new run can start from its weights, once they are known to be the network its settings describe
    qtbot.waitUntil(view.train_from_button.isEnabled, timeout=TIMEOUT)
    with qtbot.waitSignal(view.train_from, timeout=2000) as train_from:
        view.train_from_button.click()
    assert train_from.args == [str(runs["good"])]


def test_use_button_names_the_checkpoint_it_opens(qtbot, view, runs):
    """A run stopped in its first epoch has only last.pt: the button said "Use best checkpoint" and opened it."""
    view.table.selectRow(row_of(view, "stopped-run"))
    assert view.use_button.text() == "Use last checkpoint"
    assert "last checkpoint" in view.use_button.toolTip()
    with qtbot.waitSignal(view.use_checkpoint, timeout=2000) as used:
        view.use_button.click()
    assert used.args == [str(runs["stopped"] / "checkpoints" / "last.pt")]
    view.table.selectRow(row_of(view, "good-run"))
    assert view.use_button.text() == "Use best checkpoint"


def test_return_on_a_selected_row_opens_it_like_a_double_click(qtbot, view, runs):
    view.show()
    qtbot.waitExposed(view)
    view.table.setFocus()
    opened = []
    view.open_run.connect(opened.append)
    qtbot.keyClick(view.table, Qt.Key.Key_Return)  # nothing selected: nothing to open
    assert opened == []
    view.table.selectRow(row_of(view, "good-run"))
    qtbot.keyClick(view.table, Qt.Key.Key_Return)
    qtbot.keyClick(view.table, Qt.Key.Key_Enter, Qt.KeyboardModifier.KeypadModifier)
    assert opened == [str(runs["good"])] * 2
    view.table.selectRow(row_of(view, "broken-run"))  # an unreadable run does not open, as on double click
    qtbot.keyClick(view.table, Qt.Key.Key_Return)
    assert len(opened) == 2


def test_a_stopped_run_can_be_continued_and_an_unreadable_one_only_revealed(qtbot, view, runs):
    view.table.selectRow(row_of(view, "stopped-run"))
    assert view.continue_button.isEnabled()
    with qtbot.waitSignal(view.continue_run, timeout=2000) as continued:
        view.continue_button.click()
    assert continued.args == [str(runs["stopped"])]

    view.table.selectRow(row_of(view, "broken-run"))
    assert not view.open_button.isEnabled() and not view.use_button.isEnabled()
    assert not view.train_from_button.isEnabled()
    assert not view.continue_button.isEnabled() and view.reveal_button.isEnabled()
    assert "cannot be read" in view.detail.text()
    view.show()
    qtbot.waitExposed(view)
    with qtbot.assertNotEmitted(view.open_run):
        double_click(qtbot, view, "broken-run")


def test_an_unreadable_run_with_a_checkpoint_can_still_use_it(qtbot, view, runs):
    """QA: a run whose config.toml had one bad value was "unreadable" and its good best.pt could not be opened
    from the Runs tab (the checkpoint holds its own settings: it does not need the run's config.toml)."""
    import shutil

    (runs["broken"] / "checkpoints").mkdir()
    checkpoint = runs["broken"] / "checkpoints" / "best.pt"
    shutil.copy(runs["good"] / "checkpoints" / "best.pt", checkpoint)  # real weights: the background check opens it
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    view.table.selectRow(row_of(view, "broken-run"))
    # after the background check has opened the checkpoint (a junk file would turn the button off then)
    qtbot.waitUntil(lambda: str(runs["broken"]) in view._train_longer, timeout=TIMEOUT)
    assert view.use_button.isEnabled() and not view.open_button.isEnabled()
    assert "its checkpoint can still be used" in view.detail.text()
    with qtbot.waitSignal(view.use_checkpoint, timeout=2000) as used:
        view.use_button.click()
    assert used.args == [str(checkpoint)]


def test_refresh_picks_up_new_runs_and_an_empty_folder_explains_itself(qtbot, view, runs, tmp_path):
    make_run(runs["dir"], "newer-run", "running", created="2025-02-01T10:00:00+00:00")
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    assert view.table.rowCount() == 4

    empty = tmp_path / "empty"
    empty.mkdir()
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.set_runs_dir(str(empty))
    assert view.stack.currentWidget() is view.empty
    assert str(empty) in view.empty.text.text() and "does not exist" not in view.empty.text.text()
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.set_runs_dir(str(tmp_path / "not-yet"))
    assert "does not exist yet" in view.empty.text.text()


def test_a_run_ended_by_its_step_limit_says_so_in_the_status_column(qtbot, view, runs):
    from iamnn_studio.engine.runs import STEP_LIMIT_REASON

    capped = make_run(runs["dir"], "capped-run", "completed")
    status = json.loads((capped / "status.json").read_text())
    status["reason"] = f"{STEP_LIMIT_REASON} (12 steps)"
    (capped / "status.json").write_text(json.dumps(status))
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    statuses = {view.table.item(r, 0).text(): view.table.item(r, COLUMNS.index("Status")).text()
                for r in range(view.table.rowCount())}
    assert statuses["capped-run"] == "completed (step limit)" and statuses["good-run"] == "completed"


def test_the_test_accuracy_and_the_steps_of_a_cut_short_epoch_are_listed(qtbot, view, runs):
    (runs["good"] / "eval.json").write_text(json.dumps({"top1": 0.5411, "images": 100}))
    capped = make_run(runs["dir"], "capped-run", "completed")
    status = json.loads((capped / "status.json").read_text())
    (capped / "status.json").write_text(json.dumps({**status, "epochs_done": 1, "total_epochs": 1, "step": 40}))
    (capped / "metrics.jsonl").write_text(json.dumps({"event": "started", "steps_per_epoch": 844}) + "\n")
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    assert cell(view, "good-run", "Test acc.") == "54.1 %"
    assert cell(view, "capped-run", "Epochs") == "0 / 1 (+40 steps)"  # as the CLI says it: not "1 / 1"
    row = next(r for r in range(view.table.rowCount()) if view.table.item(r, 0).text() == "capped-run")
    assert view.table.item(row, COLUMNS.index("Epochs")).toolTip() == "0 / 1 (+40 of 844 steps)"
    assert cell(view, "good-run", "Epochs") == "2 / 4"


LONG_NAME = ("Ein sehr langer Lauf-Name mit Ümlauten und Leerzeichen für das Bilderordner-Experiment Nummer 42 "
             "und noch mehr Text damit es wirklich lang ist")


def test_a_long_run_name_does_not_take_the_whole_table(qtbot, view, runs):
    make_run(runs["dir"], LONG_NAME, "completed")
    view.resize(928, 480)  # the Runs tab of a 960 x 640 window
    view.show()
    qtbot.waitExposed(view)
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    header = view.table.horizontalHeader()
    name_width = header.sectionSize(0)
    assert name_width <= view.table.viewport().width() // 2
    assert name_width >= header.sectionSizeHint(0)  # still wide enough for its title and short names
    model = COLUMNS.index("Model")  # the model keeps a readable share, not squeezed to "M" by the name
    assert header.sectionSize(model) >= min(view.table.sizeHintForColumn(model), 120)
    assert header.sectionViewportPosition(COLUMNS.index("Val. acc.")) < view.table.viewport().width()
    item = view.table.item(row_of(view, LONG_NAME), 0)
    assert LONG_NAME in item.toolTip()  # elided in the cell, whole in the tooltip
    header.resizeSection(0, name_width + 150)  # the user drags it wider: a refresh keeps that
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    assert header.sectionSize(0) == name_width + 150


def test_a_file_chosen_as_runs_folder_is_called_a_file(qtbot, view, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.set_runs_dir(str(notes))
    assert view.stack.currentWidget() is view.empty
    assert view.empty.title.text() == "This is a file, not a folder"
    assert str(notes) in view.empty.text.text()


def column_right_edges(view) -> dict[str, int]:
    header = view.table.horizontalHeader()
    return {name: header.sectionViewportPosition(c) + header.sectionSize(c) for c, name in enumerate(COLUMNS)}


@pytest.mark.parametrize("width", [960, 1024, 1280])
def test_every_column_fits_the_runs_tab_of_a_small_window_without_scrolling(qtbot, styled_app, view, runs, width):
    """At 960-1024 px the eight columns needed a horizontal scroll bar: Test acc. and Created were off-screen."""
    from iamnn_studio.engine.runs import STEP_LIMIT_REASON

    long_name = "cifar10-iamnn-2-3-4-2-w64-act-cosine-lr0.1-mixup-the-long-baseline-for-the-paper"
    capped = make_run(runs["dir"], long_name, "completed")  # the widest texts a run has, all in one table
    status = json.loads((capped / "status.json").read_text())
    status.update(reason=f"{STEP_LIMIT_REASON} (2713 steps)", epochs_done=1, total_epochs=100, step=2713)
    (capped / "status.json").write_text(json.dumps(status))
    (capped / "metrics.jsonl").write_text(json.dumps({"event": "started", "steps_per_epoch": 6750}) + "\n")
    (runs["good"] / "eval.json").write_text(json.dumps({"top1": 0.9231, "images": 100}))
    view.resize(width, 564)  # the Runs tab of a window this wide (the tab's own margins are inside the view)
    view.show()
    qtbot.waitExposed(view)
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    qtbot.wait(50)  # the header lays its sections out after the rows arrive

    table, header = view.table, view.table.horizontalHeader()
    edges = column_right_edges(view)
    assert max(edges.values()) <= table.viewport().width(), edges
    assert table.horizontalScrollBar().maximum() == 0
    for column in ("Dataset", "Status", "Epochs", "Val. acc.", "Test acc.", "Created"):  # whole, never elided
        c = COLUMNS.index(column)
        assert header.sectionSize(c) >= table.sizeHintForColumn(c), column
    assert cell(view, long_name, "Status") == "completed (step limit)"
    name = table.item(row_of(view, long_name), 0)
    assert long_name in name.toolTip()  # elided in its cell, whole in the tooltip
    model = table.item(row_of(view, long_name), COLUMNS.index("Model"))
    assert model.text() in model.toolTip()
    elided = {column: header.sectionSize(COLUMNS.index(column)) for column in ("Name", "Model")}
    # readable, more so with room (QA: with a step-limited run, Model read "IamNN…" at 960 px)
    assert min(elided.values()) >= (180 if width >= 1280 else 110), elided


def make_training_run(runs: Path, name: str = "training-elsewhere") -> Path:
    """A run another machine is training (its status is taken at its word): the list follows it live."""
    folder = make_run(runs, name, "running")
    status = json.loads((folder / "status.json").read_text())
    (folder / "status.json").write_text(json.dumps({**status, "host": "another-machine", "pid": 4242}))
    return folder


def test_the_live_refresh_runs_only_while_the_tab_is_shown(qtbot, view, runs):
    """Weeks of runs make each listing cost; a run left "running" kept re-listing them every 5 s
    behind whatever tab the user was in."""
    make_training_run(runs["dir"])
    view.show()
    qtbot.waitUntil(lambda: any(r.status == "running" for r in view.runs()), timeout=TIMEOUT)
    assert view._live.isActive()
    view.hide()
    assert not view._live.isActive()
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.show()  # shown again: listed at once, then followed live again
    assert view._live.isActive()


def test_refreshes_asked_for_during_a_listing_make_one_more_listing_not_one_each(qtbot, view, runs, monkeypatch):
    import threading

    import iamnn_studio.engine.runs as engine_runs

    release, listings = threading.Event(), []
    list_runs = engine_runs.list_runs

    def slow_list_runs(folder):  # a slow folder (a network drive, thousands of runs)
        listings.append(folder)
        release.wait(TIMEOUT / 1000)
        return list_runs(folder)

    monkeypatch.setattr(engine_runs, "list_runs", slow_list_runs)
    for _ in range(5):  # the timer ticks, the user clicks Refresh...
        view.refresh()
    release.set()
    qtbot.waitUntil(lambda: not view._runner.is_busy(), timeout=TIMEOUT)
    qtbot.wait(50)
    assert len(listings) == 2
    assert {r.name for r in view.runs()} == {"good-run", "stopped-run", "broken-run"}


def test_an_unchanged_listing_leaves_the_table_alone(qtbot, view, runs):
    """Rebuilding 300 rows on every live refresh cost the UI thread 8 s (the items were replaced one by one)."""
    item = view.table.item(0, 0)
    view.table.selectRow(1)
    selected = view._selected_path()
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    assert view.table.item(0, 0) is item and view._selected_path() == selected
    make_run(runs["dir"], "new-run", "completed", created="2025-01-03T10:00:00+00:00")
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    assert view.table.rowCount() == 4 and view._selected_path() == selected


# --------------------------------------------------------------------------- runs this machine cannot check
def make_local_training_run(runs: Path, name: str = "training-here") -> Path:
    """A run this very process trains (its pid, this host): checkable from here, and alive."""
    import os
    import socket

    folder = make_run(runs, name, "running")
    status = json.loads((folder / "status.json").read_text())
    (folder / "status.json").write_text(json.dumps({**status, "host": socket.gethostname(), "pid": os.getpid()}))
    return folder


@pytest.fixture
def listings(monkeypatch):
    """Every folder listing the view asks the engine for."""
    import iamnn_studio.engine.runs as engine_runs

    done, list_runs = [], engine_runs.list_runs

    def counting_list_runs(folder):
        done.append(folder)
        return list_runs(folder)

    monkeypatch.setattr(engine_runs, "list_runs", counting_list_runs)
    return done


def tick(qtbot, view, listings) -> str:
    """Fire the live timer once, as 30 s or 5 s later: "listed" (the folder was read) or "looked" (not)."""
    before = len(listings)
    view._live.timeout.emit()
    qtbot.waitUntil(lambda: not view._runner.is_busy(), timeout=TIMEOUT)
    return "listed" if len(listings) > before else "looked"


def test_another_hosts_running_run_is_looked_at_slowly_and_listed_only_when_its_files_change(
        qtbot, view, runs, listings):
    """A run left "running" by another host on a shared runs folder never ends from here: the shown tab
    re-listed the whole folder every 5 s for good (3 % of a core)."""
    import os

    remote = make_training_run(runs["dir"])
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.show()
    assert view._live.isActive()
    listings.clear()
    assert tick(qtbot, view, listings) == "looked" and listings == []  # its files are as they were: not re-read
    from iamnn_studio.gui.runs_view import LIVE_REFRESH_MS, REMOTE_CHECK_MS

    with qtbot.waitSignal(view.polled, timeout=TIMEOUT):  # the view says it looked and found nothing new
        assert tick(qtbot, view, listings) == "looked"
    assert view.live_interval() == REMOTE_CHECK_MS > LIVE_REFRESH_MS
    assert view._live.interval() == REMOTE_CHECK_MS

    (remote / "metrics.jsonl").write_text('{"event": "step", "step": 10}\n')  # that host wrote progress
    assert tick(qtbot, view, listings) == "listed" and len(listings) == 1
    listings.clear()
    assert tick(qtbot, view, listings) == "looked" and listings == []

    status = json.loads((remote / "status.json").read_text())
    (remote / "status.json").write_text(json.dumps({**status, "state": "completed"}))
    stat = (remote / "status.json").stat()
    os.utime(remote / "status.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a coarse clock
    assert tick(qtbot, view, listings) == "listed"
    assert cell(view, "training-elsewhere", "Status") == "completed"
    assert not view._live.isActive() and view.live_interval() is None  # nothing trains: no timer at all


def test_a_run_of_this_machine_is_still_listed_at_every_tick_beside_another_hosts(qtbot, view, runs, listings):
    from iamnn_studio.gui.runs_view import LIVE_REFRESH_MS, REMOTE_CHECK_MS

    make_training_run(runs["dir"])
    local = make_local_training_run(runs["dir"])
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.show()
    assert view._live.isActive() and view._live.interval() == LIVE_REFRESH_MS
    listings.clear()
    assert tick(qtbot, view, listings) == "listed" and tick(qtbot, view, listings) == "listed" and len(listings) == 2

    status = json.loads((local / "status.json").read_text())
    (local / "status.json").write_text(json.dumps({**status, "state": "completed"}))  # this machine's run ended
    assert tick(qtbot, view, listings) == "listed"
    assert view._live.isActive() and view._live.interval() == REMOTE_CHECK_MS  # only the other host's is left


def test_a_dead_process_of_this_machine_is_interrupted_and_stops_the_timer(qtbot, view, runs):
    import socket

    folder = make_run(runs["dir"], "died-here", "running")
    status = json.loads((folder / "status.json").read_text())
    (folder / "status.json").write_text(json.dumps({**status, "host": socket.gethostname(), "pid": 2 ** 22 + 12345}))
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.show()
    assert cell(view, "died-here", "Status") == "interrupted"
    assert not view._live.isActive() and view.live_interval() is None


def test_a_run_started_while_only_another_hosts_run_is_running_still_shows_up(qtbot, view, runs, listings):
    """The slow look at another host's run watched that run's files only: a run started here meanwhile (the
    CLI) never appeared while the tab stayed open."""
    make_training_run(runs["dir"])
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.show()
    listings.clear()
    assert tick(qtbot, view, listings) == "looked"
    make_run(runs["dir"], "started-meanwhile", "completed")  # a new folder in the runs folder
    assert tick(qtbot, view, listings) == "listed"
    assert cell(view, "started-meanwhile", "Status") == "completed"


@pytest.mark.parametrize("damage, words", [
    ("", "its config.toml describes an IamNN (caps 3·4·6·3) of width 16"),  # emptied: the defaults, another network
    ("this = is [not toml", "not valid TOML"),
])
def test_train_longer_is_not_offered_for_a_run_whose_settings_file_is_damaged(qtbot, view, runs, damage, words):
    """QA: "Train longer…" was offered for a run whose config.toml was damaged; the Train tab then filled in
    another network and the engine refused to start from the weights. The CLI takes the network and the data
    from the checkpoint itself: that is what the button's tooltip offers instead."""
    run = make_run(runs["dir"], "damaged-run", "completed")
    save_weights(run)
    (run / "config.toml").write_text(damage)
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    view.table.selectRow(row_of(view, "damaged-run"))
    button = view.train_from_button
    qtbot.waitUntil(lambda: words in button.toolTip(), timeout=TIMEOUT)
    assert not button.isEnabled()
    assert f"iamnn-studio train --init-from {run}" in button.toolTip()
    with qtbot.assertNotEmitted(view.train_from):
        button.click()
    view.table.selectRow(row_of(view, "good-run"))  # its settings describe its checkpoint
    qtbot.waitUntil(button.isEnabled, timeout=TIMEOUT)


def test_a_train_longer_check_in_flight_is_not_submitted_again_by_each_refresh(qtbot, view, runs, monkeypatch):
    """Review: every listing (every 5 s while a run trains) queued the same checkpoint check again behind the
    one still running: one selection and 4 refreshes read the checkpoint 5 times, and the check of the next
    run selected waited behind them all."""
    import threading

    import iamnn_studio.engine.runs as engine_runs

    checked, release = [], threading.Event()
    real = engine_runs.train_longer_problem

    def slow(path, *shared):  # *shared: the check's loaded checkpoints, shared with checkpoint_to_use
        checked.append(path)
        release.wait(TIMEOUT / 1000)  # a big checkpoint on a slow disk
        return real(path, *shared)

    monkeypatch.setattr(engine_runs, "train_longer_problem", slow)
    view.table.selectRow(row_of(view, "good-run"))
    for _ in range(4):
        with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
            view.refresh()
    release.set()
    qtbot.waitUntil(view.train_from_button.isEnabled, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not view._checker.is_busy(), timeout=TIMEOUT)  # whatever was queued has run
    assert checked == [str(runs["good"])]


@pytest.mark.parametrize("best", ["weights", "junk"])
def test_the_background_check_of_a_selected_run_loads_each_checkpoint_once(qtbot, view, runs, monkeypatch, best):
    """Review: the check loaded best.pt for Train longer, then again for Use (a damaged one twice as well): the
    file (hundreds of MB for a deep model) was read and its model built twice per selection."""
    import iamnn_studio.engine.checkpoint as engine_checkpoint

    run = make_run(runs["dir"], "both-run", "stopped", checkpoints=())
    save_weights(run, "last.pt")
    if best == "weights":
        save_weights(run, "best.pt")
    else:
        (run / "checkpoints" / "best.pt").write_bytes(b"junk")  # passed over for last.pt
    loads: list[Path] = []
    real = engine_checkpoint.load_checkpoint

    def counted(path, *args, **kwargs):
        loads.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(engine_checkpoint, "load_checkpoint", counted)
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    view.table.selectRow(row_of(view, "both-run"))
    qtbot.waitUntil(lambda: str(run) in view._train_longer, timeout=TIMEOUT)
    best_pt, last_pt = run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt"
    if best == "weights":  # best.pt serves both buttons: last.pt is not needed
        assert loads == [best_pt]
        assert view.train_from_button.isEnabled() and view.use_button.text() == "Use best checkpoint"
    else:
        assert sorted(loads) == sorted([best_pt, last_pt])
        assert view.use_button.text() == "Use last checkpoint"


def test_a_run_whose_block_plugin_is_missing_says_so_not_that_its_checkpoint_cannot_be_read(qtbot, view, runs):
    """QA: "Use" and "Train longer" said "checkpoints/best.pt cannot be read (...)" for a checkpoint whose model's
    processing block comes from a plugin that is not installed here."""
    import html
    import os

    import torch

    run = make_run(runs["dir"], "plugin-run", "completed")
    checkpoint = save_weights(run)
    payload = torch.load(checkpoint, weights_only=True)
    payload["model_config"]["block"] = "gone-block"  # as saved where its plugin was installed
    torch.save(payload, checkpoint)
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    view.table.selectRow(row_of(view, "plugin-run"))
    qtbot.waitUntil(lambda: str(run) in view._train_longer, timeout=TIMEOUT)
    assert not view.use_button.isEnabled() and not view.train_from_button.isEnabled()
    folder = os.environ["IAMNN_STUDIO_PLUGINS"]  # the tests' own plugin folder
    needs = (f"needs processing block 'gone-block', from a plugin that is not installed here (blocks here: "
             f"bottleneck, depthwise): put that plugin in {folder}")
    assert view.use_button.toolTip().startswith(f"No checkpoint of this run can be opened: checkpoints/best.pt {needs}")
    detail = html.unescape(view.detail.text())  # rich text: the quotes are escaped
    assert f"Train longer: its checkpoint {needs}" in detail
    assert "cannot be read" not in view.use_button.toolTip() + detail


@pytest.mark.parametrize("content, said", [
    ('{"top1": 0.54, "ima', "not valid JSON"),  # cut short
    ("", "it is empty"),
    ("[1, 2]", "it holds a list, not an evaluation"),  # the wrong shape
    ('{"top1": 0.54, "macs": [1, 2]}', "macs is a list"),  # a top-1, yet refused by Study: no 54.0 % listed here
])
def test_a_damaged_eval_json_is_explained_when_its_run_is_selected(qtbot, view, runs, content, said):
    """QA: a run whose eval.json is damaged showed "–" for its test accuracy and no word on why."""
    (runs["good"] / "eval.json").write_text(content)
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    assert cell(view, "good-run", "Test acc.") == "–"
    view.table.selectRow(row_of(view, "good-run"))
    detail = view.detail.text()
    assert "eval.json cannot be read" in detail and said in detail and "evaluate it again" in detail
    view.table.selectRow(row_of(view, "stopped-run"))  # no eval.json: not evaluated yet, nothing to explain
    assert "eval.json" not in view.detail.text()
    (runs["good"] / "eval.json").write_text(json.dumps({"top1": 0.5411, "images": 100}))  # evaluated again
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    view.table.selectRow(row_of(view, "good-run"))
    assert "eval.json" not in view.detail.text() and cell(view, "good-run", "Test acc.") == "54.1 %"


def test_the_train_longer_tip_names_the_checkpoint_it_starts_from(qtbot, view, runs):
    """QA: the tooltip promised "starts from its best weights" to a run that has only last.pt."""
    save_weights(runs["stopped"], "last.pt")  # stopped in its first epoch: no best.pt
    view.table.selectRow(row_of(view, "stopped-run"))
    qtbot.waitUntil(view.train_from_button.isEnabled, timeout=TIMEOUT)
    tip = view.train_from_button.toolTip()
    assert "best weights" not in tip and "last weights" in tip and "last.pt" in tip
    view.table.selectRow(row_of(view, "good-run"))
    qtbot.waitUntil(view.train_from_button.isEnabled, timeout=TIMEOUT)
    assert "best weights (checkpoints/best.pt)" in view.train_from_button.toolTip()


def test_a_held_out_evaluation_is_marked_in_the_test_accuracy_column(qtbot, view, runs):
    """QA: an image folder without test/ is evaluated on its held-out images (eval.json split "val"), which also
    chose the model; the Runs tab listed their accuracy as "Test acc." without a word (the CLI marks "(val)")."""
    (runs["good"] / "eval.json").write_text(json.dumps({"top1": 0.5411, "images": 36, "split": "val"}))
    (runs["stopped"] / "eval.json").write_text(json.dumps({"top1": 0.25, "images": 100, "split": "test"}))
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    assert cell(view, "good-run", "Test acc.") == "54.1 % (val)"
    tip = view.table.item(row_of(view, "good-run"), COLUMNS.index("Test acc.")).toolTip()
    assert "held-out" in tip and "chose the model" in tip
    assert cell(view, "stopped-run", "Test acc.") == "25.0 %"
    assert "test images" in view.table.item(row_of(view, "stopped-run"), COLUMNS.index("Test acc.")).toolTip()


# --------------------------------------------------------------------------- a large font in a small window
@pytest.fixture
def app_font(styled_app):
    """Sets the application font to some points for one test (``app_font(14)``), then puts it back."""
    from PySide6.QtGui import QFont

    original = QFont(styled_app.font())

    def set_points(points: float) -> None:
        font = QFont(original)
        font.setPointSizeF(points)
        styled_app.setFont(font)

    yield set_points
    styled_app.setFont(original)


@pytest.mark.parametrize("points", [14, 16])
def test_under_a_large_font_the_whole_columns_keep_their_text_and_the_table_scrolls_if_it_must(
        qtbot, app_font, runs, points):
    """QA: at 14 pt in a 960 x 640 window "0 / 1 (+12 steps)" widened Epochs, Name and Model kept their least
    width, and the stretched last column took the overflow: Created read "27 Nov 1…"."""
    from datetime import datetime

    app_font(points)
    today = datetime.now().astimezone().isoformat(timespec="seconds")  # "27 Nov 10:58": this year's, the wider form
    capped = make_run(runs["dir"], "a-rather-long-run-name-for-layout-checks", "stopped", created=today)
    status = json.loads((capped / "status.json").read_text())
    (capped / "status.json").write_text(json.dumps({**status, "epochs_done": 0, "total_epochs": 1, "step": 12}))
    (capped / "metrics.jsonl").write_text(json.dumps({"event": "started", "steps_per_epoch": 20}) + "\n")
    view = RunsView()
    qtbot.addWidget(view)
    view.resize(960, 560)  # the Runs tab of a 960 x 640 window
    view.show()
    qtbot.waitExposed(view)
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.set_runs_dir(str(runs["dir"]))
    qtbot.wait(50)  # the header lays its sections out after the rows arrive
    assert cell(view, capped.name, "Epochs") == "0 / 1 (+12 steps)"

    table, header = view.table, view.table.horizontalHeader()
    for column in ("Dataset", "Status", "Epochs", "Val. acc.", "Test acc.", "Created"):  # whole, never elided
        c = COLUMNS.index(column)
        wanted = max(table.sizeHintForColumn(c), header.sectionSizeHint(c))
        assert header.sectionSize(c) >= wanted, (column, header.sectionSize(c), wanted)
    scroll = table.horizontalScrollBar()
    scroll.setValue(scroll.maximum())  # none where all fits; else as far as the table scrolls sideways
    assert column_right_edges(view)["Created"] <= table.viewport().width()  # all of it within reach
    for column in ("Name", "Model"):  # elided, under their whole titles
        assert header.sectionSize(COLUMNS.index(column)) >= header.sectionSizeHint(COLUMNS.index(column)), column


# --------------------------------------------------------------------------- Show folder
def test_show_folder_gives_the_path_when_no_file_manager_opens_it(qtbot, view, runs, file_manager, record_dialogs):
    """QA: where no file manager could be started, "Show folder" did nothing and said nothing."""
    asked = file_manager(opens=False)
    view.table.selectRow(row_of(view, "good-run"))
    view.reveal_button.click()
    assert asked == [str(runs["good"])]
    assert [(kind, title) for kind, title, _ in record_dialogs] == [("warning", "Cannot open the folder")]
    assert str(runs["good"]) in record_dialogs[0][2]  # to copy, and open it by hand

    import shutil

    shutil.rmtree(runs["stopped"])  # deleted since the listing
    view.table.selectRow(row_of(view, "stopped-run"))
    view.reveal_button.click()
    assert asked == [str(runs["good"])]  # nothing to ask a file manager to show
    assert "no longer exists" in record_dialogs[-1][2] and str(runs["stopped"]) in record_dialogs[-1][2]


def test_show_folder_says_nothing_when_the_file_manager_opens_it(qtbot, view, runs, file_manager, record_dialogs):
    asked = file_manager(opens=True)
    view.table.selectRow(row_of(view, "good-run"))
    view.reveal_button.click()
    assert asked == [str(runs["good"])] and record_dialogs == []


# --------------------------------------------------------------------------- the run this window trains
def test_the_run_paused_in_this_window_is_resumed_not_continued(qtbot, view, runs):
    """QA: the Runs tab offered "Continue training" (and "Train longer…") for the run paused in the Train tab, and
    Continue said "A run is already training — Stop it first, then continue the other run": it is the same run."""
    paused = make_run(runs["dir"], "paused-run", "paused", checkpoints=("last.pt",))
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    view.table.selectRow(row_of(view, "paused-run"))
    view.set_training_here(str(paused), "paused")
    button = view.continue_button
    assert button.isEnabled() and button.text() == "Resume training" and "Train tab" in button.toolTip()
    assert not view.train_from_button.isEnabled() and "paused" in view.train_from_button.toolTip()
    assert "paused in the Train tab" in view.detail.text()
    with qtbot.waitSignal(view.continue_run, timeout=2000) as continued:  # the window resumes it
        button.click()
    assert continued.args == [str(paused)]

    view.set_training_here(str(paused), "running")  # resumed: nothing to continue or resume here
    assert not button.isEnabled() and "training in the Train tab" in button.toolTip()
    assert not view.train_from_button.isEnabled()
    view.table.selectRow(row_of(view, "stopped-run"))  # another run: as ever (the window says a run trains)
    assert button.isEnabled() and button.text() == "Continue training"
    view.table.selectRow(row_of(view, "paused-run"))
    view.set_training_here(None, "idle")  # the run ended in this window: its status.json tells the rest
    assert button.isEnabled() and button.text() == "Continue training"


@pytest.mark.parametrize("order", [Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder])
def test_runs_without_an_accuracy_sort_last_whichever_way_the_column_sorts(qtbot, view, runs, order):
    """QA: sorting by Val. acc. descending put the runs with "–" above the best ones."""
    make_run(runs["dir"], "better-run", "completed", best=0.9)
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    column = COLUMNS.index("Val. acc.")
    view.table.sortByColumn(column, order)

    texts = [view.table.item(row, column).text() for row in range(view.table.rowCount())]
    known = [text for text in texts if text not in ("–", "")]
    assert len(known) >= 2 and texts[:len(known)] == known  # every empty cell after every number
    numbers = [float(text.rstrip(" %")) for text in known]
    assert numbers == sorted(numbers, reverse=order == Qt.SortOrder.DescendingOrder)


def test_a_run_of_unknown_progress_sorts_by_epochs_without_an_error(qtbot, view, runs):
    """A run without status.json whose checkpoint does not tell its epochs lists "?": its sort key was
    (None, 0), which a sort compared with (2, 0) and raised TypeError."""
    unknown = make_run(runs["dir"], "copied-run", "completed")
    (unknown / "status.json").unlink()
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    assert cell(view, "copied-run", "Epochs").startswith("?")
    column = COLUMNS.index("Epochs")
    for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder):
        view.table.sortByColumn(column, order)
        assert view.table.item(view.table.rowCount() - 1, 0).text() == "copied-run"


def test_an_event_during_teardown_is_let_through_without_an_error(view):
    """An event can reach the filter while Python tears the view down (seen once in a test run's output:
    "RunsView has no attribute _table_viewport"): it is let through, not an AttributeError."""
    from PySide6.QtCore import QEvent

    kept = dict(view.__dict__)
    view.__dict__.clear()
    try:
        assert RunsView.eventFilter(view, kept["table"], QEvent(QEvent.Type.Resize)) is False
    finally:
        view.__dict__.update(kept)


# ----------------------------------------------------------------- a bad config.toml, a lost status.json, a damaged best.pt
def test_a_run_with_one_bad_setting_is_listed_by_its_status_and_opens_in_study(qtbot, view, runs):
    """QA: a completed run whose config.toml had one bad value was "unreadable", "0 / ?", "–", and Open in Study was
    off, though Study shows such a run; what needs the settings (Train longer) stays off, and says why."""
    save_weights(runs["good"])
    config = runs["good"] / "config.toml"
    config.write_text(config.read_text().replace("batch_size = 128", 'batch_size = "sixteen"'))
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    assert [cell(view, "good-run", column) for column in ("Status", "Epochs", "Val. acc.", "Dataset", "Model")] == [
        "completed", "2 / 4", "81.2 %", "?", "?"]
    view.table.selectRow(row_of(view, "good-run"))
    assert view.open_button.isEnabled() and view.use_button.isEnabled() and not view.continue_button.isEnabled()
    assert "config.toml cannot be read (batch_size: must be a positive integer" in view.detail.text()
    with qtbot.waitSignal(view.open_run, timeout=2000) as opened:
        view.open_button.click()
    assert opened.args == [str(runs["good"])]
    qtbot.waitUntil(lambda: "its settings file cannot be read" in view.train_from_button.toolTip(), timeout=TIMEOUT)
    assert not view.train_from_button.isEnabled()


def save_state(folder: Path, **state) -> Path:
    """A last.pt as the trainer saves it: the weights, the run's settings and a training state to resume from."""
    from iamnn_studio.engine.checkpoint import save_checkpoint
    from iamnn_studio.engine.model import build_model
    from iamnn_studio.engine.runs import TRAINING_STATE_VERSION

    config = RunConfig.load(folder / "config.toml")
    return save_checkpoint(folder / "checkpoints" / "last.pt", build_model(config.model), run_config=config,
                           classes=[str(c) for c in range(10)], mean=[0.5], std=[0.25],
                           training_state={"version": TRAINING_STATE_VERSION, **state})


def test_a_stopped_run_without_its_status_can_be_continued_from_its_last_checkpoint(qtbot, view, runs):
    """QA: a stopped run copied without its status.json listed "unknown" with Continue off and no word on why,
    though `train --resume` resumes it: its last.pt tells whether there is training left to do."""
    save_state(runs["stopped"], epoch=1, step=3, training_done=False)
    (runs["stopped"] / "status.json").unlink()
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    assert cell(view, "stopped-run", "Status") == "unknown"
    view.table.selectRow(row_of(view, "stopped-run"))
    assert view.continue_button.isEnabled()
    with qtbot.waitSignal(view.continue_run, timeout=2000) as continued:
        view.continue_button.click()
    assert continued.args == [str(runs["stopped"])]

    save_state(runs["stopped"], epoch=4, step=12, training_done=True, halting_fitted=True)
    (runs["stopped"] / "eval.json").write_text(json.dumps({"top1": 0.5, "images": 100}))
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    view.table.selectRow(row_of(view, "stopped-run"))
    assert not view.continue_button.isEnabled()
    assert "nothing to continue" in view.continue_button.toolTip()
    assert "Continue training: it is trained and evaluated" in view.detail.text()


def test_use_falls_back_to_the_last_checkpoint_where_the_best_one_is_damaged(qtbot, view, runs):
    """QA: "Use best checkpoint" stayed on where the listing knew best.pt was damaged; the Use tab then showed an
    error. A readable last.pt is offered instead, and saying so; with neither readable the button is off."""
    (runs["good"] / "checkpoints" / "best.pt").write_bytes(b"junk")
    last = save_weights(runs["good"], "last.pt")
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    view.table.selectRow(row_of(view, "good-run"))
    button = view.use_button
    qtbot.waitUntil(lambda: button.text() == "Use last checkpoint", timeout=TIMEOUT)
    assert button.isEnabled() and "checkpoints/best.pt cannot be read" in button.toolTip()
    with qtbot.waitSignal(view.use_checkpoint, timeout=2000) as used:
        button.click()
    assert used.args == [str(last)]

    last.write_bytes(b"junk too")
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    qtbot.waitUntil(lambda: not button.isEnabled(), timeout=TIMEOUT)
    assert button.toolTip().startswith("No checkpoint of this run can be opened: checkpoints/best.pt cannot be read")
    with qtbot.assertNotEmitted(view.use_checkpoint):
        button.click()


def test_the_detail_line_shows_a_reason_with_angle_brackets_as_written(qtbot, view, runs):
    """Review: the detail joins its lines with <br> (rich text), so a reason such as "expected a < b" lost text."""
    failed = make_run(runs["dir"], "failed-run", "failed")
    status = json.loads((failed / "status.json").read_text())
    (failed / "status.json").write_text(json.dumps({**status, "reason": "RuntimeError: expected a < b & c"}))
    (failed / "eval.json").write_text("{")  # a second line: the label shows rich text
    with qtbot.waitSignal(view.refreshed, timeout=TIMEOUT):
        view.refresh()
    view.table.selectRow(row_of(view, "failed-run"))
    from PySide6.QtGui import QTextDocument

    shown = QTextDocument()
    shown.setHtml(view.detail.text())
    assert "failed-run: RuntimeError: expected a < b & c" in shown.toPlainText()
