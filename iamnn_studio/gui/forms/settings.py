"""Settings declared once on a class and persisted in QSettings (the Orange ``Setting`` idea).

::

    class MainWindow(QMainWindow):
        runs_dir = Setting("")
        last_tab = Setting("Train")

        def __init__(self):
            restore_settings(self, "main_window")   # values come back from the last session
        def closeEvent(self, event):
            save_settings(self, "main_window")      # and are written when the window closes

Values are stored as JSON text, so ints, floats, bools, lists and dicts come back with their
types on every platform (QSettings' INI backend returns plain strings). A stored value that no
longer decodes, or has another type than the default, is ignored: the default wins.
"""
from __future__ import annotations

import json
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QSettings

T = TypeVar("T")


class Setting(Generic[T]):
    """A persisted attribute with a default; reads and writes like a plain attribute."""

    def __init__(self, default: T) -> None:
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]
        return obj.__dict__.get(self.name, _copy(self.default))

    def __set__(self, obj: Any, value: T) -> None:
        obj.__dict__[self.name] = value


def declared_settings(obj: Any) -> dict[str, Setting]:
    found: dict[str, Setting] = {}
    for cls in reversed(type(obj).__mro__):
        found.update({name: value for name, value in vars(cls).items() if isinstance(value, Setting)})
    return found


def restore_settings(obj: Any, group: str) -> None:
    """Set every declared Setting of ``obj`` from QSettings group ``group`` (defaults where absent)."""
    store = QSettings()
    for name, setting in declared_settings(obj).items():
        raw = store.value(f"{group}/{name}")
        if raw is None:
            continue
        try:
            value = json.loads(str(raw))
        except (TypeError, ValueError):
            continue
        if _same_kind(value, setting.default):
            setattr(obj, name, value)


def save_settings(obj: Any, group: str) -> None:
    """Write every declared Setting of ``obj`` to QSettings group ``group``."""
    store = QSettings()
    for name in declared_settings(obj):
        store.setValue(f"{group}/{name}", json.dumps(getattr(obj, name)))
    store.sync()


def _same_kind(value: Any, default: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _copy(value: T) -> T:
    return json.loads(json.dumps(value)) if isinstance(value, (dict, list)) else value
