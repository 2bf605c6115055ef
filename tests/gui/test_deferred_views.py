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


def test_the_live_training_page_is_built_when_its_tab_is_first_opened(window):
    """The Train tab opens on the dataset preview: its live page (six run plots, the log, the hardware plots) waits
    for the first look at it, and then shows the hardware plots at once (the engine is ready)."""
    training = window.training
    assert training.pages.currentWidget() is training.preview_page
    assert not training.live_page_built and training.live_page.widget() is None
    training.pages.setCurrentWidget(training.live_page)
    assert training.live_page_built and training.live_page.widget() is not None
    assert training.system.monitor is not None and training.system.curves  # polling, its plots built
    assert training.bottom_row.sizes()[0] > 0 and training.monitor.plots["loss"] is not None
    parts = training._live
    training.pages.setCurrentWidget(training.preview_page)
    training.pages.setCurrentWidget(training.live_page)
    assert training._live is parts  # built once


def test_a_live_page_asked_for_before_the_engine_is_ready_starts_its_hardware_plots_with_the_engine(
        qtbot, styled_app, tmp_runs):
    from PySide6.QtCore import QSettings

    from iamnn_studio.gui.main_window import MainWindow

    QSettings().clear()
    win = MainWindow(runs_dir=str(tmp_runs))
    try:
        system = win.training.system  # built now, before the engine
        assert system.monitor is None and not system.curves
        win.show()
        qtbot.waitUntil(lambda: win.engine_ready, timeout=ENGINE_TIMEOUT_MS)
        assert system.monitor is not None and system.curves
    finally:
        win.training.form.wait_for_background()
        win.close()
        win.deleteLater()
        qtbot.wait(10)


def test_a_live_page_first_asked_for_after_the_window_shut_down_starts_no_polling(window):
    """Nothing would stop the hardware panel's timer once the window has shut its views down."""
    training = window.training
    training.shutdown()
    assert not training.live_page_built
    assert training.system.monitor is None and not training.system._timer.isActive()
