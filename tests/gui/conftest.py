"""Fixtures for the GUI tests: a styled app, the engine loaded once, a main window on a temp runs folder."""
from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

ENGINE_TIMEOUT_MS = 120_000


@pytest.fixture(scope="session")
def styled_app(qapp):
    from iamnn_studio.gui.style import apply_style

    apply_style(qapp)
    return qapp


@pytest.fixture(autouse=True)
def garbage_collected_on_the_ui_thread(qapp):
    """As in the app: cyclic garbage is collected on the UI thread only (a collection that a worker thread ran
    freed Qt objects mid-paint: a segfault seen in a full run)."""
    from iamnn_studio.gui.garbage import UiThreadGarbageCollector

    collector = UiThreadGarbageCollector()
    yield
    collector.stop()
    collector.deleteLater()


@pytest.fixture
def window(qtbot, styled_app, tmp_runs):
    """A shown main window whose engine and views are loaded; any run is stopped afterwards."""
    from PySide6.QtCore import QSettings

    from iamnn_studio.gui.main_window import MainWindow

    QSettings().clear()  # every test starts from the defaults, not from the previous test's window
    win = MainWindow(runs_dir=str(tmp_runs))
    win.resize(1280, 800)
    win.show()
    qtbot.waitUntil(lambda: win.engine_ready, timeout=ENGINE_TIMEOUT_MS)
    yield win
    # Not qtbot.addWidget: pytest-qt would close the window before this teardown, with a run still going.
    stop_and_wait(qtbot, win.training)
    win.training.form.wait_for_background()
    win.close()
    win.deleteLater()
    qtbot.wait(10)


@pytest.fixture(autouse=True)
def sizing_child_started_on_demand(monkeypatch):
    """The Train form's sizing child starts when a shape needs it, not with the engine: a torch process for every
    test's window would cost each test seconds of CPU (tests of the start with the engine turn it back on)."""
    from iamnn_studio.gui.forms import memory_sizing

    monkeypatch.setattr(memory_sizing, "START_WITH_ENGINE", False)


@pytest.fixture
def fresh_sizing_cache(tmp_path, monkeypatch):
    """An empty training-memory cache file of the test's own (ask for it before ``window``): the session's
    shared one beside the settings may already hold the shapes a test means to see sized."""
    from iamnn_studio.gui.forms import memory_sizing

    path = tmp_path / "sizing" / memory_sizing.CACHE_FILE
    monkeypatch.setattr(memory_sizing, "cache_path", lambda: path)
    return path


def stop_and_wait(qtbot, training, timeout_ms: int = 60_000) -> None:
    if training.session is not None:
        training.stop_run()
        qtbot.waitUntil(lambda: training.session is None, timeout=timeout_ms)


def tiny_run_values(form, *, max_steps: int = 8, train_size: int = 256, name: str = "tiny") -> dict:
    """The form's values for a seconds-long run on the synthetic shapes."""
    values = form.values()
    values["name"] = name
    values["data"].update(name="synthetic", options={"train_size": train_size, "test_size": 64}, val_fraction=0.25)
    values["model"].update(width=4, iterations=[1, 2, 2, 1], depth=18)
    values.update(batch_size=32, epochs=1, max_steps=max_steps, device="cpu")
    return values


def checkpoint_of(model_values: dict, path, **model_changes):
    """A checkpoint (untrained) of the network ``model_values`` describe, ``model_changes`` applied."""
    from iamnn_studio.engine.checkpoint import save_checkpoint
    from iamnn_studio.engine.config import ModelConfig
    from iamnn_studio.engine.model import build_model

    config = ModelConfig.from_dict({**model_values, **model_changes}).validate()
    return save_checkpoint(path, build_model(config).eval(), classes=[f"c{i}" for i in range(config.num_classes)],
                           mean=[0.5], std=[0.25])


@pytest.fixture
def record_dialogs(monkeypatch):
    """QMessageBox.critical/warning/information record (title, text) instead of blocking."""
    from PySide6.QtWidgets import QMessageBox

    shown: list[tuple[str, str, str]] = []

    def recorder(kind):
        def show(parent, title, text, *args, **kwargs):
            shown.append((kind, title, text))
            return QMessageBox.StandardButton.Ok

        return show

    for kind in ("critical", "warning", "information"):
        monkeypatch.setattr(QMessageBox, kind, staticmethod(recorder(kind)))
    return shown


@pytest.fixture
def file_manager(monkeypatch):
    """``file_manager(opens=False)``: QDesktopServices.openUrl answers ``opens`` (False where no file manager can be
    started) instead of starting one; returns the list of the folders it is asked to show."""
    from PySide6.QtGui import QDesktopServices

    asked: list[str] = []

    def answer(*, opens: bool) -> list[str]:
        def open_url(url) -> bool:
            asked.append(url.toLocalFile())
            return opens

        monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(open_url))
        return asked

    return answer
