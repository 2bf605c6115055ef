"""Show a folder in the system's file manager, or say where it is when that cannot be done."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMessageBox, QWidget

TITLE = "Cannot open the folder"


def show_folder(parent: QWidget, folder: str | Path) -> bool:
    """Open ``folder`` in the file manager; True if one took it. QA: where none can be started (no desktop, no
    xdg-open) ``openUrl`` answers False and nothing happened: a message now says so and gives the path, which
    the user can select and copy (the app's Fusion style makes message text selectable)."""
    folder = Path(folder)
    if not folder.is_dir():  # deleted or moved since it was listed: a file manager would only complain
        QMessageBox.warning(parent, TITLE, f"The folder no longer exists:\n{folder}")
        return False
    if QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
        return True
    QMessageBox.warning(parent, TITLE, f"No file manager could be started to show it. The folder is:\n{folder}")
    return False
