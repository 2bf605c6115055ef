"""The Help menu: the About box (versions, device, where runs, settings and logs are kept) and the documentation.

No torch here: About may be asked for while the engine still loads; torch's version comes from the loader.
"""
from __future__ import annotations

import html
import platform
import tempfile
from importlib import metadata
from pathlib import Path

import PySide6
from PySide6.QtCore import QSettings, QUrl, qVersion
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMessageBox, QWidget

import iamnn_studio
from iamnn_studio.crash_log import error_log_pattern

from .engine_loader import EngineInfo

DISTRIBUTION = "iamnn-studio"
#: The README of a checkout (or an editable install), beside the package.
CHECKOUT_README = Path(iamnn_studio.__file__).resolve().parents[1] / "README.md"


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
    (a wheel ships it as its description), written to a temp file; None if neither is there."""
    if CHECKOUT_README.is_file():
        return CHECKOUT_README
    try:
        text = metadata.metadata(DISTRIBUTION).get_payload()
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    copy = Path(tempfile.gettempdir()) / "iamnn-studio-README.md"
    try:
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
