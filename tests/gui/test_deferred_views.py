"""The Study view is built when it is first needed, not when the engine is ready: its fifteen plots were a third of
the window's start (a frozen window for a few hundred milliseconds) for a tab many sessions never open."""
from __future__ import annotations

import pytest

from .conftest import ENGINE_TIMEOUT_MS

pytestmark = pytest.mark.gui


def test_study_is_built_when_its_tab_is_first_opened(window):
    host = window.hosts["Study"]
    assert window.engine_ready and host.view is None and window.view("Use") is not None
    window._select_tab("Study")
    assert host.view is not None and host.currentWidget() is host.view
    assert window.view("Study") is host.view  # built once


def test_a_run_shown_in_study_builds_it_first(window, tmp_runs):
    run = tmp_runs / "run"
    run.mkdir()
    window.open_run_in_study(str(run))
    study = window.hosts["Study"].view
    assert study is not None and study.title.text() == "run"
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Study"


def test_closing_asks_study_nothing_it_never_built(window):
    assert window._confirm_close() and window.hosts["Study"].view is None


def test_a_window_that_comes_back_on_the_study_tab_builds_it_with_the_engine(qtbot, styled_app, tmp_runs):
    from PySide6.QtCore import QSettings

    from iamnn_studio.gui.main_window import MainWindow

    QSettings().clear()
    first = MainWindow(runs_dir=str(tmp_runs))
    first._select_tab("Study")
    first.save_state()
    first.deleteLater()
    again = MainWindow(runs_dir=str(tmp_runs))
    qtbot.addWidget(again)
    again.show()
    qtbot.waitUntil(lambda: again.engine_ready, timeout=ENGINE_TIMEOUT_MS)
    host = again.hosts["Study"]
    assert again.tabs.currentWidget() is host and host.view is not None and host.currentWidget() is host.view
