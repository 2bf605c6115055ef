"""The Help menu: the About box (versions, device, where runs, settings and logs are kept) and the documentation.

No torch here: About may be asked for while the engine still loads; torch's version comes from the loader.
"""
from __future__ import annotations

import html
import platform
from importlib import metadata
from pathlib import Path

import PySide6
from PySide6.QtCore import QSettings, QStandardPaths, QUrl, qVersion
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMessageBox, QWidget

import iamnn_studio
from iamnn_studio.crash_log import error_log_pattern

from .engine_loader import EngineInfo

DISTRIBUTION = "iamnn-studio"
README_COPY_NAME = "README.md"


def checkout_readme(package_init: str | Path) -> Path | None:
    """The README of a checkout (or an editable install) beside the package; None for a normal install, where
    the folder above the package is site-packages and a README.md there is some other package's."""
    root = Path(package_init).resolve().parents[1]
    readme = root / "README.md"
    return readme if (root / "pyproject.toml").is_file() and readme.is_file() else None


CHECKOUT_README = checkout_readme(iamnn_studio.__file__)


def about_facts(engine: EngineInfo | None, runs_dir: str) -> list[tuple[str, str]]:
    """(what, value) lines of the About box."""
    device = "the engine is still loading"
    if engine is not None:
        device = f"GPU: {engine.device_name}" if engine.cuda_available else engine.device_name
    return [
        ("Version", iamnn_studio.__version__),
        ("torch", engine.torch_version if engine is not None else "loading…"),
        ("PySide6", f"{PySide6.__version__} (Qt {qVersion()})"),
        ("Python", platform.python_version()),
        ("Device", device),
        ("Runs folder", f"{runs_dir} (each run's train.log is in its folder)"),
        ("Settings", QSettings().fileName()),
        ("Error logs", error_log_pattern()),
    ]


def about_html(engine: EngineInfo | None, runs_dir: str) -> str:
    rows = "".join(f"<tr><td><b>{html.escape(what)}</b>&nbsp;&nbsp;</td><td>{html.escape(value)}</td></tr>"
                   for what, value in about_facts(engine, runs_dir))
    return ("<b>IamNN Studio</b><br>Train, study and use IamNN image classifiers: ResNets whose blocks share their "
            f"weights across iterations and stop early on easy images.<br><br><table>{rows}</table>"
            "<br>Help › Documentation opens the README.")


def show_about(parent: QWidget, engine: EngineInfo | None, runs_dir: str) -> None:
    QMessageBox.about(parent, "About IamNN Studio", about_html(engine, runs_dir))


def readme_path() -> Path | None:
    """The README to open: the checkout's (its docs/ folder beside it), else the installed package's copy of it
    (a wheel ships it as its description), written to the user's cache folder; None if neither is there."""
    if CHECKOUT_README is not None and CHECKOUT_README.is_file():
        return CHECKOUT_README
    try:
        text = metadata.metadata(DISTRIBUTION).get_payload()
    except metadata.PackageNotFoundError:
        return None
    return _write_readme_copy(text) if text else None


def _write_readme_copy(text: str) -> Path | None:
    """The README written where only this user writes (not a fixed name in the shared temp folder, where another
    user's file or link would take the write); None where that folder cannot be written."""
    folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.CacheLocation)
    if not folder:
        return None
    copy = Path(folder) / README_COPY_NAME
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(text, encoding="utf-8")
    except OSError:
        return None
    return copy


def open_documentation(parent: QWidget) -> str:
    """Open the README in the desktop's viewer; the status bar's sentence. Where nothing opens it, a
    message gives the path (selectable, to copy)."""
    readme = readme_path()
    if readme is None:
        QMessageBox.information(parent, "Documentation", "The README is not installed with this copy of "
                                "IamNN Studio: see the project's repository.")
        return "No documentation found"
    if QDesktopServices.openUrl(QUrl.fromLocalFile(str(readme))):
        return f"Opened {readme}"
    QMessageBox.information(parent, "Documentation", f"No program could be started to show the documentation. "
                            f"It is here:\n{readme}" + _guides_note(readme))
    return f"Documentation: {readme}"


def _guides_note(readme: Path) -> str:
    docs = readme.parent / "docs"
    return f"\n\nThe guides (architecture, export, plugins) are in:\n{docs}" if docs.is_dir() else ""
