"""The Help menu: About says the versions, the device and where things are kept; Documentation opens the README
(QA: About had no version, no paths, and there was no way to the documentation)."""
from __future__ import annotations

import platform
from pathlib import Path

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


def _installed_readme(monkeypatch, text: str) -> None:
    """As a normal install: no checkout README (its path holds none), the package's metadata carries it."""
    from email.message import Message

    from iamnn_studio.gui import about

    description = Message()
    description.set_payload(text)
    monkeypatch.setattr(about, "CHECKOUT_README", Path("/no-checkout/README.md"))
    monkeypatch.setattr(about.metadata, "metadata", lambda name: description)


def test_the_installed_readme_is_not_written_through_a_file_in_the_shared_temp_folder(monkeypatch, tmp_path):
    """QA: it was written to /tmp/iamnn-studio-README.md: another user's file (or link) there took the write."""
    import tempfile

    from iamnn_studio.gui.about import readme_path

    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    victim = tmp_path / "someone-elses.txt"
    victim.write_text("not yours", encoding="utf-8")
    (shared / "iamnn-studio-README.md").symlink_to(victim)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _installed_readme(monkeypatch, "# IamNN Studio\n")

    copy = readme_path()
    assert copy is not None and copy.read_text(encoding="utf-8") == "# IamNN Studio\n"
    assert victim.read_text(encoding="utf-8") == "not yours"
    assert copy.resolve().is_relative_to((tmp_path / "cache").resolve())  # this user's cache folder


def test_a_readme_beside_an_installed_package_is_not_taken_for_its_own(tmp_path):
    """QA: in site-packages the folder above the package holds whatever README.md another package left there."""
    from iamnn_studio.gui.about import checkout_readme

    package = tmp_path / "site-packages" / "iamnn_studio"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    readme = package.parent / "README.md"
    readme.write_text("# some-other-package\n", encoding="utf-8")
    assert checkout_readme(package / "__init__.py") is None

    (package.parent / "pyproject.toml").write_text("[project]\n", encoding="utf-8")  # a checkout
    assert checkout_readme(package / "__init__.py") == readme.resolve()
    assert checkout_readme(iamnn_studio.__file__) == Path(iamnn_studio.__file__).resolve().parents[1] / "README.md"
