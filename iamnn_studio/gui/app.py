"""Start IamNN Studio: ``python -m iamnn_studio.gui.app [--runs-dir DIR]``.

The window is shown first; torch and the engine load afterwards in one background thread
(``engine_loader``), so the first window appears in a fraction of torch's import time.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..malloc_tuning import tune_malloc
from ..path_options import file_option, folder_option

ORGANIZATION = "IamNN"
APPLICATION = "IamNN Studio"


def build_parser() -> argparse.ArgumentParser:
    """The app's options; the CLI checks them strictly with this parser before the app opens."""
    parser = argparse.ArgumentParser(prog="iamnn-studio gui",
                                     description="Open the desktop app (what `iamnn-studio` without a command does).")
    parser.add_argument("--runs-dir", metavar="DIR", type=folder_option,
                        help="folder where runs are saved and listed (remembered for next time)")
    parser.add_argument("--screenshot", metavar="PATH", type=file_option,  # grab the window once ready, quit
                        help=argparse.SUPPRESS)
    parser.add_argument("--screenshot-delay-ms", type=int, default=1500, help=argparse.SUPPRESS)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args, _qt_args = build_parser().parse_known_args(argv)  # the rest is Qt's (-platform, -style, ...)
    return args


def icon_path() -> str | None:
    """The app icon from the installed package, or from the checkout's resources/ folder."""
    try:
        from importlib.resources import files

        icon = files("iamnn_studio.resources").joinpath("icons", "iamnn.svg")
        if icon.is_file():
            return str(icon)
    except (ModuleNotFoundError, TypeError):
        pass
    fallback = Path(__file__).resolve().parents[2] / "resources" / "icons" / "iamnn.svg"
    return str(fallback) if fallback.is_file() else None


def import_pyqtgraph_without_cuda() -> None:
    """Import pyqtgraph without its optional CUDA bindings (about 0.3 s of start-up).

    pyqtgraph's RawImageWidget imports ``cuda.bindings.runtime`` when it is installed (torch's
    CUDA wheels bring it) to upload GPU arrays to OpenGL, which this app never does. Hiding the
    module during pyqtgraph's import makes that optional import fail fast; afterwards the entry
    is removed, so torch or anyone else can still import the real module.
    """
    if "pyqtgraph" in sys.modules:
        return
    blocked = "cuda.bindings.runtime"
    hidden = blocked not in sys.modules
    if hidden:
        sys.modules[blocked] = None  # type: ignore[assignment]
    try:
        import pyqtgraph  # noqa: F401
    finally:
        if hidden and sys.modules.get(blocked, 0) is None:
            del sys.modules[blocked]


def display_problem(environ=os.environ, platform: str = sys.platform, reachable=None) -> str | None:
    """Why no window can open here, in one sentence (Qt itself would abort with a core dump).

    ``reachable(environ)`` says whether the display the environment names answers (default:
    ``display_reachable``): a DISPLAY left over from a closed session aborts Qt just the same.
    An explicit ``QT_QPA_PLATFORM`` of ``xcb`` or ``wayland`` (or a ``;`` list of them, as Qt
    accepts) is checked the same way, for the display servers it names only; any other platform
    (offscreen, minimal, vnc, eglfs, ...) needs no display server and is left to Qt.
    """
    if not platform.startswith("linux"):
        return None
    requested = [entry.split(":", 1)[0].strip().lower()
                 for entry in environ.get("QT_QPA_PLATFORM", "").split(";") if entry.strip()]
    if any(name != "xcb" and not name.startswith("wayland") for name in requested):
        return None
    keys = ["WAYLAND_DISPLAY", "DISPLAY"]
    if requested:  # only the servers Qt was told to use
        keys = [key for key in keys if any((name == "xcb") == (key == "DISPLAY") for name in requested)]
        if "WAYLAND_DISPLAY" in keys and environ.get("WAYLAND_SOCKET"):
            return None  # a connection handed over by the compositor: nothing to check
        environ = {key: value for key, value in environ.items()
                   if key in keys or key not in ("WAYLAND_DISPLAY", "DISPLAY")}
    named = [f"{key}={environ[key]}" for key in keys if environ.get(key)]
    if requested and "WAYLAND_DISPLAY" in keys and not environ.get("WAYLAND_DISPLAY"):
        environ = {**environ, "WAYLAND_DISPLAY": "wayland-0"}  # what Wayland's client library falls back to
        named.insert(0, "WAYLAND_DISPLAY (unset, so wayland-0)")
    advice = "run it in a desktop session, under `xvfb-run iamnn-studio`, or use the command line (`iamnn-studio --help`)"
    if not named:
        unset = " and ".join(keys) + (" is unset" if len(keys) == 1 else " are unset")
        if requested:
            unset = f"QT_QPA_PLATFORM={environ['QT_QPA_PLATFORM']} but {unset}"
        return f"no display to open the window on ({unset}): {advice}"
    if not (reachable or display_reachable)(environ):
        return f"the display in {' and '.join(named)} does not answer (its session may have ended): {advice}"
    return None


def display_reachable(environ=os.environ) -> bool:
    """Whether the Wayland socket or the X server the environment names accepts a connection.

    Only what can be checked at once: a local X display (":N", abstract or file socket) or a
    Wayland socket. A remote X display ("host:N") is assumed to answer.
    """
    import re
    import socket

    def connects(address) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(address)
            return True
        except OSError:
            return False

    wayland = environ.get("WAYLAND_DISPLAY")
    if wayland:
        path = wayland if wayland.startswith("/") else os.path.join(environ.get("XDG_RUNTIME_DIR", ""), wayland)
        if connects(path):
            return True
    display = environ.get("DISPLAY")
    if display:
        local = re.fullmatch(r"(?:unix)?:(\d+)(?:\.\d+)?", display)
        if local is None:
            return True
        socket_path = f"/tmp/.X11-unix/X{local.group(1)}"
        return connects("\0" + socket_path) or connects(socket_path)
    return False


#: Libraries of Qt's xcb platform plugin that desktops often lack, and the Debian/Ubuntu packages holding them:
#: the Makefile's XCB_LIBS, which `make desktop-deps` installs.
XCB_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-icccm.so.4": "libxcb-icccm4", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0", "libxcb-xkb.so.1": "libxcb-xkb1",
}


def xcb_libraries_problem(environ=os.environ, platform: str = sys.platform, plugin: Path | None = None,
                          ldd=None) -> str | None:
    """Why Qt's X11 (xcb) platform plugin cannot load here, in one line naming the packages to install; None
    where it can, or where Qt may use another platform.

    Qt 6.5+ aborts with a core dump when a library of its xcb plugin is missing, and its message names
    xcb-cursor whichever one it is. ``ldd(plugin)`` (default: the ``ldd`` command, about 30 ms) lists the
    plugin's libraries as the dynamic loader finds them, so only what the loader cannot find is named.
    """
    if not platform.startswith("linux") or not _only_xcb(environ):
        return None
    plugin = plugin or _xcb_plugin()
    if plugin is None or not plugin.is_file():
        return None
    missing = missing_libraries(plugin, ldd)
    if not missing:
        return None
    packages = [XCB_PACKAGES[name] for name in missing if name in XCB_PACKAGES]
    others = [name for name in missing if name not in XCB_PACKAGES]
    install = f"`sudo apt-get install {' '.join(packages)}`" if packages else ""
    if others:
        install += (" and " if install else "") + f"the packages holding {_and_list(others)}"
    them = "it" if len(missing) == 1 else "them"
    return (f"Qt's X11 platform plugin cannot load: {_and_list(missing)} {'is' if len(missing) == 1 else 'are'} "
            f"missing. Install {them} (Debian/Ubuntu: {install}, or `sudo make desktop-deps` in the source folder; "
            "see README.md), or use the command line (`iamnn-studio --help`)")


def missing_libraries(library: Path, ldd=None) -> list[str]:
    """The shared libraries ``library`` needs that the dynamic loader cannot find (``ldd``'s "not found"), each
    once; none where ``ldd`` cannot tell (not installed, not a library)."""
    import re

    listing = (ldd or _ldd_output)(library)
    return list(dict.fromkeys(re.findall(r"^\s*(\S+) => not found", listing, re.M)))


def _ldd_output(library: Path) -> str:
    import subprocess

    try:
        return subprocess.run(["ldd", str(library)], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _only_xcb(environ) -> bool:
    """Whether Qt will load the xcb plugin and nothing else: QT_QPA_PLATFORM names only xcb, or is unset on a
    session with no Wayland in sight (Qt picks Wayland there). A list with a fallback, or a plugin folder of the
    user's own, is left to Qt."""
    if environ.get("QT_QPA_PLATFORM_PLUGIN_PATH") or environ.get("QT_PLUGIN_PATH"):
        return False
    requested = [entry.split(":", 1)[0].strip().lower()
                 for entry in environ.get("QT_QPA_PLATFORM", "").split(";") if entry.strip()]
    if requested:
        return all(name == "xcb" for name in requested)
    return not environ.get("WAYLAND_DISPLAY") and environ.get("XDG_SESSION_TYPE", "").lower() != "wayland"


def _xcb_plugin() -> Path | None:
    """The xcb platform plugin of the Qt that PySide6 loads (its plugins folder), None where there is none."""
    try:
        from PySide6.QtCore import QLibraryInfo
    except ImportError:
        return None
    path = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms" / "libqxcb.so"
    return path if path.is_file() else None


def _and_list(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def main(argv: list[str] | None = None) -> int:
    # Before torch can load (it loads later, in the engine loader): OpenMP threads that spin while
    # idle steal the UI thread's core on small machines (docs/research/ui-lag.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    tune_malloc()  # large CPU activations reuse heap memory instead of page-faulting in fresh maps
    args = parse_args(sys.argv[1:] if argv is None else argv)
    problem = display_problem() or xcb_libraries_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    from PySide6.QtCore import QCoreApplication, QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationDisplayName(APPLICATION)

    import_pyqtgraph_without_cuda()
    from .error_report import install_error_hook
    from .main_window import MainWindow
    from .qt_messages import install_message_filter
    from .quit_signals import quit_on_signals
    from .style import apply_style

    install_message_filter()
    from .garbage import UiThreadGarbageCollector

    app.garbage_collector = UiThreadGarbageCollector(app)  # never a worker thread freeing the UI's Qt objects
    apply_style(app)
    icon = icon_path()
    if icon:
        app.setWindowIcon(QIcon(icon))
    window = MainWindow(runs_dir=args.runs_dir)
    install_error_hook(window.show_unexpected_error)
    quit_on_signals(app, window.quit_without_asking)  # logout, kill, Ctrl-C: a running run stops with a checkpoint
    window.show()

    if args.screenshot:
        target = args.screenshot
        window.resize(1280, 800)  # the documented size, whatever geometry was remembered

        def grab() -> None:
            window.grab().save(target)
            window.close()

        def after_engine(*_args: object) -> None:
            QTimer.singleShot(args.screenshot_delay_ms, grab)

        window.loader.ready.connect(after_engine)
        window.loader.failed.connect(after_engine)

    code = app.exec()
    window.training.stop_at_exit()  # quit without closing the window (e.g. logout): stop the run cleanly
    window.loader.wait()  # the import thread must not outlive the application object
    # Deliver what the threads posted after the loop ended (the run's last events hold Python objects):
    # left queued, Qt would free them while Python shuts down, which crashed the process now and then.
    app.sendPostedEvents()
    app.processEvents()
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main())
