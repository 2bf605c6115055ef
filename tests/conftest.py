"""Shared test set-up: offscreen Qt, passive OpenMP threads, QSettings in a temp folder.

PySide6 is imported only inside fixtures, so engine-only test runs work without Qt.
"""

from __future__ import annotations

import os

import pytest

# Before anything creates a QApplication or loads torch (setdefault: a caller's choice wins).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Tests see the repo's plugins/ only, never the developer's own ~/.config/iamnn-studio/plugins.
import tempfile as _tempfile

os.environ["IAMNN_STUDIO_PLUGINS"] = _tempfile.mkdtemp(prefix="iamnn-test-plugins-")

# A shell starts a background job (`make test &`, some CI runners) with SIGINT ignored, and an
# ignored signal stays ignored in every child: Python then never raises KeyboardInterrupt and the
# Ctrl-C tests would test nothing. Put back Python's own handler (children then start with SIGINT
# at its default again).
import signal as _signal

if _signal.getsignal(_signal.SIGINT) is _signal.SIG_IGN:
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)

ORGANIZATION = "IamNN"
APPLICATION = "IamNN Studio"


@pytest.fixture(scope="session", autouse=True)
def isolated_qsettings(tmp_path_factory):
    """Point every QSettings of the test session at a temp folder, never at ~/.config.

    Yields the folder, or None when PySide6 is not installed (engine-only runs).
    """
    try:
        from PySide6.QtCore import QCoreApplication, QSettings
    except ImportError:
        yield None
        return
    folder = tmp_path_factory.mktemp("qsettings")
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    # NativeFormat too: on Linux it is also an INI file, used by QSettings(organization, app).
    for fmt in (QSettings.Format.IniFormat, QSettings.Format.NativeFormat):
        for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
            QSettings.setPath(fmt, scope, str(folder))
    yield folder


@pytest.fixture
def tmp_runs(tmp_path):
    """An empty runs folder for one test."""
    runs = tmp_path / "runs"
    runs.mkdir()
    return runs


@pytest.fixture
def lock_folders_named(monkeypatch):
    """``lock_folders_named(name)``: folders called ``name`` cannot be listed, as after chmod 000 for a user who
    is not root (root reads every folder, and the tests run as root). ``os.walk`` lists through ``os.scandir``;
    ``Path.iterdir`` does not (it uses ``os.listdir`` on Python 3.11): code listing that way is not locked."""
    real_scandir = os.scandir

    def lock(name: str) -> None:
        def scandir(path="."):
            if os.path.basename(os.fspath(path)) == name:
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)

    return lock
