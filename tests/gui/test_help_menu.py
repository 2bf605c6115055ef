"""The Help menu: About says the versions, the device and where things are kept; Documentation opens the README
(QA: About had no version, no paths, and there was no way to the documentation)."""
from __future__ import annotations

import platform

import PySide6
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMenu, QMessageBox

import iamnn_studio

pytestmark = pytest.mark.gui


def help_actions(window) -> list[str]:
    menu = next(menu for menu in window.menuBar().findChildren(QMenu) if menu.title() == "&Help")
    return [action.text() for action in menu.actions()]


def test_about_names_the_versions_the_device_and_where_runs_settings_and_logs_are(window, monkeypatch, tmp_runs):
    shown = []
    monkeypatch.setattr(QMessageBox, "about", staticmethod(lambda parent, title, text: shown.append(text)))
    window.show_about()
    text = shown[-1]
    import torch

    for fact in (iamnn_studio.__version__, torch.__version__.split("+")[0], PySide6.__version__,
                 platform.python_version(), window.engine_info.device_name, str(tmp_runs), QSettings().fileName(),
                 "iamnn-studio-error-*.log"):
        assert fact in text, fact


def test_about_before_the_engine_loaded_says_so_without_importing_torch():
    from iamnn_studio.gui.about import about_facts

    facts = dict(about_facts(None, "/somewhere/runs"))
    assert facts["torch"] == "loading…" and "loading" in facts["Device"]
    assert facts["Version"] == iamnn_studio.__version__


def test_documentation_opens_the_readme_or_says_where_it_is(window, file_manager, record_dialogs):
    assert help_actions(window)[0] == "Documentation"
    asked = file_manager(opens=True)
    window.documentation_action.trigger()
    assert len(asked) == 1 and asked[0].endswith("README.md")
    with open(asked[0], encoding="utf-8") as readme:
        assert "IamNN Studio" in readme.read()
    assert window.statusBar().currentMessage() == f"Opened {asked[0]}"

    asked = file_manager(opens=False)  # no desktop to open it: the path, to read it by hand
    window.documentation_action.trigger()
    kind, title, text = record_dialogs[-1]
    assert title == "Documentation" and asked[0] in text
