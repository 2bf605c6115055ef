"""The main window: four tabs (Train, Use, Study, Runs), a menu and toolbar, drops, paste, status bar.

Imports only Qt, pyqtgraph and torch-free gui modules, so the window shows before torch loads.
The engine loads in the background (``engine_loader``); the Use, Study and Runs views are
created once it is ready (their modules may import the engine), and every engine-dependent
action waits for it. Whatever the user asks before then (a dropped file, a pasted image) is
queued and done once the engine is there.
"""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QByteArray, QEvent, QMimeData, QObject, Qt, QTimer, QUrl, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .engine_loader import EngineInfo, EngineLoader, shared_loader
from .file_kinds import CHECKPOINT_FILTER, DroppedRun, dropped_run, is_checkpoint, is_config
from .forms.settings import Setting, restore_settings, save_settings
from .garbage import freeze_long_lived
from .style import COLORS, SPACING, set_role
from .training_view import TrainingView

APP_TITLE = "IamNN Studio"
WEB_ADDRESS_REFUSED = "Web addresses are not fetched: save the image to disk first, then drop the file."
WEB_SCHEMES = ("http", "https", "ftp")
SETTINGS_GROUP = "main_window"
#: The engine starts loading at the window's first paint, or after this many ms if it is not painted.
ENGINE_LOAD_FALLBACK_MS = 500

#: Tab name -> (module, class) of the views another part of the GUI provides.
LAZY_VIEWS = {
    "Use": ("iamnn_studio.gui.inference_view", "InferenceView"),
    "Study": ("iamnn_studio.gui.analysis_view", "AnalysisView"),
    "Runs": ("iamnn_studio.gui.runs_view", "RunsView"),
}
#: Views built the first time they are needed (their tab opened, a run shown in them), not when the engine is ready:
#: Study's fifteen plots took a third of the window's start (~0.2-0.5 s of a frozen window).
DEFERRED_VIEWS = {"Study"}


def confirm_stop_on_close(parent: QWidget, *, paused: bool = False, stopping: bool = False,
                          evaluating: bool = False) -> bool:
    """Ask whether to stop the run (training, paused or already stopping) and close; True means stop and close."""
    agree = "Stop and close"
    if stopping:  # Stop was clicked: the run only saves its checkpoint, and closing waits for that
        title, text = "A run is stopping", "A run is stopping (saving its checkpoint)."
        details = "Close once it has saved? The window waits for the run to end, then closes."
        agree = "Close when stopped"
    elif paused:
        title, text = "A run is paused", "A run is paused."
        details = "Stop it and close? Its progress is saved in its last checkpoint, and the run can be continued later."
    else:
        title, text = "A run is training", "A run is still training."
        details = "Stop it and close? The last checkpoint is kept, and the run can be continued later."
    if evaluating:
        details += f" {EVALUATION_LOST}"
    return _ask_stop_and_close(parent, title, text, details, agree=agree)


#: What closing costs an evaluation in the Study tab (its results are written only once it ends).
EVALUATION_LOST = "The evaluation running in the Study tab stops too, and writes no eval.json."


def confirm_stop_evaluation_on_close(parent: QWidget) -> bool:
    """Ask whether to stop the Study tab's evaluation and close; True means stop and close."""
    return _ask_stop_and_close(parent, "An evaluation is running", "An evaluation is running — stop it and close?",
                               "Its results are not saved (no eval.json is written); you can evaluate the run "
                               "again later.")


def _ask_stop_and_close(parent: QWidget, title: str, text: str, details: str, *,
                        agree: str = "Stop and close") -> bool:
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle(title)
    box.setText(text)
    box.setInformativeText(details)
    stop = box.addButton(agree, QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is stop


class ViewHost(QStackedWidget):
    """A tab's content: a placeholder until the real view exists (or a message if it failed)."""

    def __init__(self, message: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.placeholder = QWidget()
        layout = QVBoxLayout(self.placeholder)
        self.message = QLabel(message)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        set_role(self.message, "muted")
        layout.addWidget(self.message)
        self.addWidget(self.placeholder)
        self.view: QWidget | None = None
        self.failed = False  # the view could not be built: its message stays

    def set_view(self, view: QWidget) -> None:
        self.view = view
        self.addWidget(view)
        self.setCurrentWidget(view)

    def show_failure(self, text: str) -> None:
        self.failed = True
        self.message.setText(text)
        set_role(self.message, "error")


def load_view(module: str, name: str) -> tuple[QWidget | None, str]:
    """Create view ``module.name``; (None, reason) if it cannot be imported or built."""
    import importlib

    try:
        cls = getattr(importlib.import_module(module), name)
        return cls(), ""
    except Exception as error:  # one broken view must not take the others down
        return None, f"{type(error).__name__}: {error}"


class FirstPaintWatcher(QObject):
    """Calls ``then`` once, right after ``widget`` first paints, and stops watching.

    An event filter rather than an ``event()`` override: an override would run Python (holding
    the GIL) around every event the window gets, its deletion included, where Qt may wait for a
    worker thread that itself needs the GIL.
    """

    def __init__(self, widget: QWidget, then: Callable[[], None]) -> None:
        super().__init__(widget)
        self._then = then
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Paint:
            watched.removeEventFilter(self)
            QTimer.singleShot(0, self._then)  # after this paint is on screen
        return False


class MainWindow(QMainWindow):
    """IamNN Studio's window. ``engine_ready`` is True once the engine and all views are loaded."""

    geometry_b64 = Setting("")
    last_tab = Setting("Train")
    runs_dir = Setting("")
    last_checkpoint = Setting("")
    # the Use tab's halting for that checkpoint ({"checkpoint", "mode", "threshold"}): it comes back with it
    last_halting = Setting({})
    run_form = Setting({})

    def __init__(self, runs_dir: str | None = None, loader: EngineLoader | None = None) -> None:
        super().__init__()
        restore_settings(self, SETTINGS_GROUP)
        self._saved_halting = self.last_halting  # applied once, when its checkpoint first opens
        if runs_dir:
            self.runs_dir = str(Path(runs_dir).expanduser().resolve())
        elif not self.runs_dir:
            self.runs_dir = str(Path.cwd() / "runs")
        self.setWindowTitle(APP_TITLE)
        self.setAcceptDrops(True)
        self.setMinimumSize(960, 640)  # a 1024 x 768 screen must fit it
        self.engine_info: EngineInfo | None = None
        self.engine_ready = False
        self._pending: list[Callable[[], None]] = []
        self._close_after_stop = False
        # "Loaded x.toml" of a drop that also opens a checkpoint: said again with the checkpoint's outcome, which
        # comes later and replaced it at once
        self._drop_note = ""
        # "1 more run folder not opened…": said after the outcome of the checkpoint that the drop opens
        self._drop_warning = ""
        # "Train longer"'s next step in the status bar ("Settings of <run>…, then Start") and its update once the
        # form's checks land: both end when a run starts, the step done
        self._train_longer_prefix = ""
        self._train_longer_update: Callable[[], None] | None = None

        self.training = TrainingView()
        self.training.set_runs_dir(self.runs_dir)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.training, "Train")
        self.hosts: dict[str, ViewHost] = {}
        for name in LAZY_VIEWS:
            self.hosts[name] = ViewHost("Loading the engine…")
            self.tabs.addTab(self.hosts[name], name)
        self.setCentralWidget(self.tabs)
        self._select_tab(self.last_tab)
        self.tabs.currentChanged.connect(self._on_tab_changed)

        self._build_actions()
        self._build_status_bar()
        self._restore_geometry()

        self.training.run_state_changed.connect(self.set_run_status)
        self.training.run_state_changed.connect(self._show_training_in_runs_tab)
        self.training.run_started.connect(self._on_run_started)
        self.training.run_ended.connect(self._on_run_ended)
        self.training.open_in_study.connect(self.open_run_in_study)
        self.training.use_model.connect(self.open_checkpoint)

        self.loader = loader or shared_loader()
        self.loader.ready.connect(self._on_engine_ready)
        self.loader.failed.connect(self._on_engine_failed)
        # torch's import starts once the window has painted: begun earlier, it competes with building
        # the window for the GIL and the window shows ~40 % later (benchmarks/bench_startup.py). A
        # window that is never painted (hidden, minimised) still gets its engine shortly after.
        self._engine_load_requested = False
        self._first_paint = FirstPaintWatcher(self, self._start_engine_loading)
        QTimer.singleShot(ENGINE_LOAD_FALLBACK_MS, self._start_engine_loading)

    def _start_engine_loading(self) -> None:
        if not self._engine_load_requested:
            self._engine_load_requested = True
            self.loader.start()

    # ------------------------------------------------------------- building
    def _build_actions(self) -> None:
        def action(text: str, slot: Callable, shortcut: Any = None, tip: str = "") -> QAction:
            act = QAction(text, self)
            if shortcut is not None:
                act.setShortcut(shortcut)
            act.setStatusTip(tip)
            act.triggered.connect(slot)
            return act

        self.open_config_action = action("Open run config…", self.choose_config_file, QKeySequence.StandardKey.Open,
                                         "Load the run settings from a TOML file (the CLI's format)")
        self.save_config_action = action("Save run config…", self.choose_save_config_file,
                                         QKeySequence.StandardKey.Save, "Save the run settings as a TOML file")
        self.open_checkpoint_action = action("Open checkpoint…", self.choose_checkpoint_file, "Ctrl+Shift+O",
                                             "Open a trained model in the Use tab")
        self.export_action = action("Export…", self.show_export_dialog, "Ctrl+E",
                                    "Export a checkpoint to ONNX, TorchScript or a plugin's format")
        self.runs_dir_action = action("Choose runs folder…", self.choose_runs_dir, None,
                                      "Where new runs are saved and the Runs tab looks")
        self.paste_action = action("Paste image", self.paste, QKeySequence.StandardKey.Paste,
                                   "Classify the image on the clipboard in the Use tab")
        self.quit_action = action("Quit", self.close, None, "Quit IamNN Studio")
        # The platform's key where it has one (none on Windows, nor offscreen), and Ctrl+Q everywhere.
        quit_keys = QKeySequence.keyBindings(QKeySequence.StandardKey.Quit)
        self.quit_action.setShortcuts(quit_keys + [key for key in (QKeySequence("Ctrl+Q"),) if key not in quit_keys])
        self.engine_actions = [self.open_config_action, self.save_config_action, self.open_checkpoint_action,
                               self.export_action, self.paste_action]
        for act in self.engine_actions:
            act.setEnabled(False)
        self.addAction(self.paste_action)

        file_menu = self.menuBar().addMenu("&File")
        for act in (self.open_config_action, self.save_config_action, None, self.open_checkpoint_action,
                    self.export_action, None, self.runs_dir_action, None, self.quit_action):
            if act is None:
                file_menu.addSeparator()
            else:
                file_menu.addAction(act)
        edit_menu = self.menuBar().addMenu("&Edit")
        edit_menu.addAction(self.paste_action)
        help_menu = self.menuBar().addMenu("&Help")
        self.documentation_action = action("Documentation", self.open_documentation,
                                           QKeySequence.StandardKey.HelpContents,
                                           "Open the README: what each tab does, the CLI, the guides")
        help_menu.addAction(self.documentation_action)
        help_menu.addAction(action("About IamNN Studio", self.show_about, None,
                                   "Versions, device, and where runs, settings and logs are kept"))


    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        bar.setSizeGripEnabled(False)
        self.engine_label = QLabel("Loading engine…")
        self.run_label = QLabel("Idle")
        self._run_status = "Idle"
        self.engine_label.setContentsMargins(SPACING["row"], 0, SPACING["row"], 0)
        self.run_label.setContentsMargins(SPACING["row"], 0, SPACING["row"], 0)
        bar.addWidget(self.engine_label)
        bar.addPermanentWidget(self.run_label)

    @Slot(str)
    def set_run_status(self, text: str) -> None:
        """The run's state in the status bar: elided to fit (a long failure sentence must not widen
        the window); the whole sentence is in the tooltip."""
        self.run_label.setToolTip(text)
        self._run_status = text
        width = max(200, int(self.width() * 0.55))
        self.run_label.setText(self.run_label.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, width))

    def run_status(self) -> str:
        """The full run status sentence (the label may show it shortened)."""
        return self._run_status

    def _restore_geometry(self) -> None:
        if self.geometry_b64:
            try:
                self.restoreGeometry(QByteArray(base64.b64decode(self.geometry_b64)))
                return
            except (ValueError, TypeError):
                pass
        self.resize(1280, 800)

    def _select_tab(self, name: str) -> None:
        for index in range(self.tabs.count()):
            if self.tabs.tabText(index) == name:
                self.tabs.setCurrentIndex(index)

    def view(self, name: str) -> Any:
        """The real Use / Study / Runs view (built now if it waited to be needed), or None before the engine
        loaded (or if it failed)."""
        host = self.hosts.get(name)
        if host is None:
            return None
        if host.view is None and self.engine_ready and not host.failed:
            self._build_view(name)
        return host.view

    def _build_view(self, name: str) -> None:
        module, cls = LAZY_VIEWS[name]
        view, reason = load_view(module, cls)
        if view is None:
            self.hosts[name].show_failure(f"The {name} view failed to load: {reason}")
        else:
            self.hosts[name].set_view(view)

    def _on_tab_changed(self, index: int) -> None:
        name = self.tabs.tabText(index)
        if name in DEFERRED_VIEWS:
            self.view(name)  # its first showing builds it

    # --------------------------------------------------------------- engine
    @Slot(object)
    def _on_engine_ready(self, info: EngineInfo) -> None:
        if self.engine_ready:
            return
        self.engine_info = info
        for name in LAZY_VIEWS:
            if name not in DEFERRED_VIEWS:
                self._build_view(name)
        self._connect_views()
        self.training.set_engine_ready(info, self.run_form or None)
        for act in self.engine_actions:
            act.setEnabled(True)
        self.engine_ready = True
        self._on_tab_changed(self.tabs.currentIndex())  # the window came back on a tab that waited to be built
        freeze_long_lived()  # torch and the views live as long as the app: no collection need walk them again
        text = info.summary
        details = [f"Loaded in {info.seconds:.1f} s"]
        details += [f"missing {name}: {reason}" for name, reason in info.missing.items()]
        details += [f"plugin {line}" for line in info.plugin_lines]
        if info.missing:
            text += f" · {len(info.missing)} part(s) missing"
        if info.plugin_failures:
            text += f" · {len(info.plugin_failures)} plugin(s) failed"
            self.statusBar().showMessage("Plugin failed: " + info.plugin_failures[0], 10000)
        self.engine_label.setText(text)
        self.engine_label.setToolTip("\n".join(details))
        pending, self._pending = self._pending, []
        for job in pending:
            job()

    @Slot(str)
    def _on_engine_failed(self, message: str) -> None:
        self.engine_label.setText(f"Engine failed to load: {message}")
        self.engine_label.setStyleSheet(f"color: {COLORS['error']};")
        for host in self.hosts.values():
            host.show_failure(f"The engine failed to load: {message}")
        self.training.header.subtitle.setText(f"The engine failed to load: {message}")
        self.training.form.loading.setText(f"The engine failed to load:\n{message}")
        set_role(self.training.form.loading, "error")

    def _connect_views(self) -> None:
        runs = self.view("Runs")
        if runs is not None:
            _call(runs, "set_runs_dir", self.runs_dir)
            _connect(runs, "open_run", self.open_run_in_study)
            _connect(runs, "continue_run", self.continue_run)
            _connect(runs, "train_from", self.train_from_run)
            _connect(runs, "use_checkpoint", self.open_checkpoint)
            _connect(runs, "runs_dir_changed", self._on_runs_view_folder)
            self._show_training_in_runs_tab()
        use = self.view("Use")
        if use is not None:
            _connect(use, "checkpoint_loaded", self._remember_checkpoint)
            _connect(use, "checkpoint_failed", self._on_checkpoint_failed)
        if self.last_checkpoint and Path(self.last_checkpoint).is_file() and self.view("Use") is not None:
            _call(self.view("Use"), "load_checkpoint", self.last_checkpoint)

    def when_ready(self, job: Callable[[], None]) -> None:
        """Run ``job`` now if the engine is loaded, else as soon as it is."""
        if self.engine_ready:
            job()
        else:
            self._pending.append(job)
            self.statusBar().showMessage("The engine is still loading; this will happen once it is ready.", 5000)

    # ------------------------------------------------------------- commands
    @Slot(str)
    def open_checkpoint(self, path: str) -> None:
        self._drop_note = self._drop_warning = ""  # its outcome is this checkpoint's alone

        def job() -> None:
            view = self.view("Use")
            if view is None:
                self._error("Cannot open the checkpoint", "The Use view is not available.")
                return
            self._select_tab("Use")
            if view.load_checkpoint(str(path)):  # loading has started: checkpoint_loaded or _failed follows
                self.statusBar().showMessage(f"Opening {Path(path).name}…", 5000)

        self.when_ready(job)

    @Slot(str)
    def open_run_in_study(self, run_dir: str) -> None:
        self._show_in_study(run_dir, select=True)

    def _show_in_study(self, run_dir: str, *, select: bool) -> None:
        def job() -> None:
            view = self.view("Study")
            if view is not None:
                view.show_run(str(run_dir))
                if select:
                    self._select_tab("Study")

        self.when_ready(job)

    @Slot(str)
    def continue_run(self, run_dir: str) -> None:
        def job() -> None:
            if self.training.holds_run(run_dir):  # QA: "a run is already training" for the run paused here
                self._select_tab("Train")
                if self.training.state == "paused":
                    self.training.toggle_pause()
                return
            if self._busy_training("Stop it first, then continue the other run."):
                return
            self._select_tab("Train")
            self.training.continue_run(str(run_dir))

        self.when_ready(job)

    @Slot(str)
    def train_from_run(self, run_dir: str) -> None:
        """Fill the Train form with the run's settings, starting from its weights under a new name."""
        def job() -> None:
            if self._busy_training("Wait for it to end, or stop it first."):
                return
            from iamnn_studio.engine.config import RunConfig

            try:
                config = RunConfig.load(Path(run_dir) / "config.toml")
            except (OSError, ValueError, TypeError) as error:
                self._error("Cannot read the run's settings", f"{Path(run_dir).name}: {error}")
                return
            config.init_from = str(run_dir)
            config.name = f"{Path(run_dir).name}-longer"
            config.max_steps = None
            self.training.form.set_config(config)
            self.training.leave_result()  # the header tells this new run, not the one that ended here
            self._select_tab("Train")
            self._say_train_longer_step(Path(run_dir).name)

        self.when_ready(job)

    def _say_train_longer_step(self, run_name: str) -> None:
        """The status bar's next step after "Train longer". While the dataset's folder (or the weights) is being
        checked the form is not valid yet though no field is wrong (QA: it said "fix the fields marked in red" with
        none red, then Ready half a second later): say it checks, and say the real next step once the verdict lands."""
        self._end_train_longer_step()  # an earlier "Train longer"'s
        form = self.training.form
        bar = self.statusBar()
        prefix = f"Settings of {run_name}, starting from its weights: "
        self._train_longer_prefix = prefix

        def next_step() -> str | None:
            if form.errors:  # e.g. its dataset's plugin is gone
                return "fix the fields marked in red, then Start"
            if form.dataset.checking() or form.training.checking_start_from():  # no verdict yet: Start waits for it
                return None
            if form.is_valid:
                return "choose the epochs (and a smaller learning rate), then Start"
            return "fix the dataset (see the Dataset card), then Start"

        step = next_step()
        if step is not None:
            bar.showMessage(prefix + step, 15000)
            return
        waiting = prefix + "checking its dataset and weights, then choose the epochs and Start"
        bar.showMessage(waiting, 15000)

        def on_checked() -> None:
            landed = next_step()
            if landed is None:
                return
            form.revalidated.disconnect(on_checked)
            self._train_longer_update = None
            # not replaced by another message meanwhile; gone after its 15 s (a slow check): said anew
            if bar.currentMessage() in (waiting, ""):
                bar.showMessage(prefix + landed, 15000)

        form.revalidated.connect(on_checked)
        self._train_longer_update = on_checked

    def _end_train_longer_step(self) -> None:
        """Take back "Train longer"'s next step: a run started (QA: "…choose the epochs…, then Start" stayed up
        to 15 s, past Start and even past the end of a short run), or another "Train longer" says its own."""
        prefix, self._train_longer_prefix = self._train_longer_prefix, ""
        if prefix and self.statusBar().currentMessage().startswith(prefix):
            self.statusBar().clearMessage()
        update, self._train_longer_update = self._train_longer_update, None
        if update is not None:  # the form's checks had not landed: nothing is to say it once they do
            self.training.form.revalidated.disconnect(update)

    def add_images(self, paths: list[str]) -> None:
        def job() -> None:
            view = self.view("Use")
            if view is not None:
                self._select_tab("Use")
                view.add_image_files([str(p) for p in paths])

        self.when_ready(job)

    def load_config_file(self, path: str) -> bool:
        if not self.engine_ready:
            self.when_ready(lambda: self.load_config_file(path))
            return False
        if self._busy_training(f"Wait for it to end, or stop it first, then open {Path(path).name}."):
            return False
        error = self.training.form.load_file(path)
        if error:
            self._error("Cannot load the run config", error)
            return False
        self._select_tab("Train")
        problems = len(self.training.form.errors)
        note = f": {problems} setting{'s' if problems != 1 else ''} to fix, marked in red" if problems else ""
        self.statusBar().showMessage(f"Loaded {Path(path).name}{note}", 8000 if problems else 5000)
        return True

    def save_config_file(self, path: str) -> bool:
        error = self.training.form.save_file(path)
        if error:
            self._error("Cannot save the run config", error)
            return False
        self.statusBar().showMessage(f"Saved {Path(path).name}", 5000)
        return True

    def choose_config_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open run config", self.runs_dir, "Run configs (*.toml)")
        if path:
            self.load_config_file(path)

    def choose_save_config_file(self) -> None:
        name = self.training.form.training.name.text().strip() or "run"
        start = str(Path(self.runs_dir).parent / f"{name}.toml")
        path, _ = QFileDialog.getSaveFileName(self, "Save run config", start, "Run configs (*.toml)")
        if path:
            if not path.endswith(".toml"):
                path += ".toml"
            self.save_config_file(path)

    def choose_checkpoint_file(self) -> None:
        start = self.last_checkpoint or self.runs_dir
        path, _ = QFileDialog.getOpenFileName(self, "Open checkpoint", start, CHECKPOINT_FILTER)
        if path:
            self.open_checkpoint(path)

    def choose_runs_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the runs folder", self.runs_dir)
        if folder:
            self.set_runs_dir(folder)

    def set_runs_dir(self, folder: str) -> None:
        self.runs_dir = str(folder)
        self.training.set_runs_dir(self.runs_dir)
        runs = self.view("Runs")
        if runs is not None:
            _call(runs, "set_runs_dir", self.runs_dir)

    @Slot(str)
    def _on_runs_view_folder(self, folder: str) -> None:
        """The Runs tab chose another folder: new runs go there too."""
        self.runs_dir = str(folder)
        self.training.set_runs_dir(self.runs_dir)

    @Slot(str)
    def _remember_checkpoint(self, path: str) -> None:
        """Only a checkpoint that loaded comes back at the next start; the first time it opens in a session, with
        the halting the user had set for it."""
        self.last_checkpoint = str(path)
        saved, self._saved_halting = self._saved_halting, None
        if isinstance(saved, dict) and saved.get("checkpoint") == str(path) and isinstance(saved.get("mode"), str):
            _call(self.view("Use"), "apply_halting_setting", saved["mode"], saved.get("threshold"))
        self._say_checkpoint_outcome(f"Opened {Path(path).name}", 5000)

    @Slot(str)
    def _on_checkpoint_failed(self, message: str) -> None:
        self._say_checkpoint_outcome(message, 8000)

    def _say_checkpoint_outcome(self, message: str, timeout_ms: int) -> None:
        """The checkpoint's outcome in the status bar, after what the drop that brought it loaded, if anything."""
        note, self._drop_note = self._drop_note, ""
        warning, self._drop_warning = self._drop_warning, ""
        self.statusBar().showMessage(" · ".join(part for part in (note, message, warning) if part),
                                     timeout_ms + 3000 * (bool(note) + bool(warning)))

    def show_export_dialog(self) -> None:
        def job() -> None:
            try:
                from .export_dialog import ExportDialog

                dialog = ExportDialog(self.export_source(), self, use_tab=self.use_tab_halting())
            except Exception as error:
                self._error("Export is unavailable", f"{type(error).__name__}: {error}")
                return
            dialog.exec()
            dialog.deleteLater()  # each opening builds a new one: a closed one's checks and reads end with it

        self.when_ready(job)

    def export_source(self) -> str | None:
        """The checkpoint File > Export starts from: the one open in the Use tab while that tab is shown,
        else the current run's, else the last one opened."""
        use = self.view("Use")
        in_use = use.checkpoint_path() if use is not None and hasattr(use, "checkpoint_path") else None
        if in_use and self.tabs.tabText(self.tabs.currentIndex()) == "Use":
            return in_use
        return self.training.checkpoint_path() or in_use or self.last_checkpoint or None

    def use_tab_halting(self) -> Any:
        """The halting mode and threshold set on the Use tab for the checkpoint open there (an
        ``export_dialog.UseTabHalting``), or None: no checkpoint open, or a model without halting."""
        from .export_dialog import UseTabHalting

        use = self.view("Use")
        if use is None or not hasattr(use, "halting_setting"):  # the export offers the checkpoint's own only
            return None
        path = use.checkpoint_path()
        setting = use.halting_setting()  # as the Use tab applies it to its predictions
        if not path or setting is None:
            return None
        mode, threshold = setting
        return UseTabHalting(path, mode, threshold)

    @Slot()
    def paste(self) -> None:
        """Ctrl+V: an image (or image files) from the clipboard goes to the Use tab."""
        mime = QGuiApplication.clipboard().mimeData()
        if mime is None:
            return
        if not self.handle_mime(mime, accept_image_data=True):
            self.statusBar().showMessage("The clipboard holds no image.", 4000)

    def show_about(self) -> None:
        from .about import show_about

        show_about(self, self.engine_info, self.runs_dir)

    def open_documentation(self) -> None:
        from .about import open_documentation

        self.statusBar().showMessage(open_documentation(self), 8000)

    # ---------------------------------------------------------- drag & drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        mime = event.mimeData()
        if _local_files(mime) or mime.hasImage() or _web_addresses(mime):  # a web address: to say it is not fetched
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: ANN001 - Qt's signature
        event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        if self.handle_mime(event.mimeData(), accept_image_data=True):
            event.acceptProposedAction()
        else:
            event.ignore()

    def handle_mime(self, mime: QMimeData, *, accept_image_data: bool) -> bool:
        """A run config -> Train form; a run folder -> its checkpoint in the Use tab and its report in the Study
        tab; checkpoints, images and folders of images -> Use tab (``file_kinds``: a file that is neither a config
        nor a checkpoint is tried as an image). A web address is said not to be fetched."""
        dropped = [(path, dropped_run(path)) for path in _local_files(mime)]
        runs = [run for _, run in dropped if run is not None]
        files = [_run_checkpoint(path, run) for path, run in dropped]
        configs = [f for f in files if is_config(f)]
        rest = [f for f in files if f and not is_config(f)]
        self._drop_note = self._drop_warning = ""
        self.statusBar().clearMessage()  # the news of an earlier drop is not this one's
        notes = []
        checkpoints = [f for f in rest if is_checkpoint(f)]
        if configs and self.load_config_file(configs[0]) and checkpoints:
            notes.append(self.statusBar().currentMessage())  # "Loaded x.toml…", said with the checkpoint's news
        if runs:  # the Use tab opens the last checkpoint dropped: Study shows that one's run where it is one
            shown = next((run for run in reversed(runs) if checkpoints and run.checkpoint == checkpoints[-1]), runs[-1])
            self._drop_warning = _runs_not_opened(len({run.folder for run in runs} - {shown.folder}))
            notes.append(self._open_dropped_run(shown, opens_checkpoint=bool(checkpoints)))
        self._drop_note = " · ".join(note for note in notes if note)
        if rest:
            self.add_images(rest)  # the Use tab opens the checkpoint among them, classifies the rest
        if files:
            return True
        if accept_image_data and mime.hasImage():
            image = mime.imageData()
            if image is not None and not image.isNull():
                def job() -> None:
                    view = self.view("Use")
                    if view is not None:
                        self._select_tab("Use")
                        view.add_image(image, "pasted image")

                self.when_ready(job)
                return True
        if _web_addresses(mime):
            self.statusBar().showMessage(WEB_ADDRESS_REFUSED, 8000)
            return True
        return False

    def _open_dropped_run(self, run: DroppedRun, *, opens_checkpoint: bool) -> str:
        """Show a dropped run folder's report in the Study tab; the note said with its checkpoint's outcome."""
        name = Path(run.folder).name
        if opens_checkpoint:  # the Use tab opens it: that tab is shown, the report waits in the Study tab
            self._show_in_study(run.folder, select=False)
            return f"Run {name}: its report is in the Study tab"
        self._show_in_study(run.folder, select=True)
        warning, self._drop_warning = self._drop_warning, ""  # no checkpoint outcome follows to say it after
        news = f"Run {name} has no checkpoint yet: its report is shown in the Study tab"
        self.statusBar().showMessage(f"{news} · {warning}" if warning else news, 11000 if warning else 8000)
        return ""

    # ---------------------------------------------------------------- runs
    def _show_training_in_runs_tab(self, _sentence: str = "") -> None:
        """Tell the Runs tab which run the Train tab holds and in what state: it offers Resume for that one."""
        runs = self.view("Runs")
        if runs is not None:
            held = self.training.last_run_dir if self.training.is_running else None
            _call(runs, "set_training_here", held, self.training.state)

    def _on_run_started(self) -> None:
        self._end_train_longer_step()
        self.run_form = self.training.form.values()
        save_settings(self, SETTINGS_GROUP)

    @Slot(str)
    def _on_run_ended(self, outcome: str) -> None:
        runs = self.view("Runs")
        if runs is not None:
            _call(runs, "refresh")
        if self._close_after_stop:
            self.close()

    # ---------------------------------------------------------------- close
    def closeEvent(self, event: QCloseEvent) -> None:
        if self._close_after_stop and self.training.is_running:  # already stopping: wait for the run to end
            event.ignore()
            return
        # The run's end closes again: the user already agreed, and an evaluation they stopped may still look
        # busy (its cancelled result has not reached the UI thread yet), so they are not asked twice.
        if not self._close_after_stop and not self._confirm_close():
            event.ignore()
            return
        self._stop_evaluation()
        if self.training.is_running:
            self._close_after_stop = True
            self.training.stop_run()
            self.set_run_status("Stopping… the window closes once the run has saved its checkpoint")
            event.ignore()
            return
        self.save_state()
        self.training.shutdown()
        event.accept()

    def _confirm_close(self) -> bool:
        """Ask before closing throws work away: a run (training, paused, stopping), an evaluation; True means close."""
        evaluating = self._evaluating()
        if self.training.is_running:
            state = self.training.state
            return confirm_stop_on_close(self, paused=state == "paused", stopping=state == "stopping",
                                         evaluating=evaluating)
        return confirm_stop_evaluation_on_close(self) if evaluating else True

    def _evaluating(self) -> bool:
        study = self.hosts["Study"].view  # not built: nothing to evaluate
        return bool(_call(study, "is_evaluating")) if study is not None else False

    def _stop_evaluation(self) -> None:
        """Closing stops an evaluation at once (not only when the app quits): a hidden window must not
        write an eval.json after the user chose to throw it away."""
        study = self.hosts["Study"].view  # not built: nothing to stop
        if study is not None:
            _call(study, "stop_evaluation")

    def quit_without_asking(self) -> None:
        """Logout, ``kill`` or Ctrl-C in the launching terminal: remember the session and end the event
        loop; ``app.main`` then stops a running run with a checkpoint (``TrainingView.stop_at_exit``)."""
        self.save_state()
        self.training.shutdown()  # as closing the window does: the system monitor stops polling
        QApplication.exit(0)  # not quit(): in Qt 6 that closes the window first, which would ask about the run

    def save_state(self) -> None:
        self.geometry_b64 = base64.b64encode(bytes(self.saveGeometry())).decode("ascii")
        self.last_tab = self.tabs.tabText(self.tabs.currentIndex())
        use = self.view("Use")
        halting = _call(use, "halting_setting") if use is not None else None
        if halting is not None and use.checkpoint_path():
            self.last_halting = {"checkpoint": use.checkpoint_path(), "mode": halting[0], "threshold": halting[1]}
        if self.engine_ready:
            self.run_form = self.training.form.values()
        save_settings(self, SETTINGS_GROUP)

    @Slot(str)
    def show_unexpected_error(self, sentence: str) -> None:
        """A bug reached the event loop: say so in the status bar (the traceback is in a log file)."""
        self.statusBar().showMessage(sentence, 30_000)

    def _busy_training(self, what_to_do: str) -> bool:
        """True (and says so) when a run is training: the Train form cannot take another one now."""
        if self.training.is_running:
            self._error("A run is already training", what_to_do)
        return self.training.is_running

    def _error(self, title: str, message: str) -> None:
        self.statusBar().showMessage(message, 8000)
        QMessageBox.warning(self, title, message)


def _local_files(mime: QMimeData) -> list[str]:
    """The local files and folders a drop or paste carries (web addresses are not fetched)."""
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if isinstance(url, QUrl) and url.isLocalFile()]


def _runs_not_opened(count: int) -> str:
    """What the status bar says of the run folders a drop left out: one run is opened (Use and Study show one)."""
    if count <= 0:
        return ""
    return f"{count} more run folder{'s' if count != 1 else ''} not opened: drop one run at a time"


def _run_checkpoint(path: str, run: DroppedRun | None) -> str:
    """A dropped path as the Use tab takes it: a run folder is its checkpoint ("" while it has none). Each path
    keeps its own ``dropped_run`` result: matching by folder name missed "run1/" (Finder's folder drops)."""
    return path if run is None else run.checkpoint or ""


def _web_addresses(mime: QMimeData) -> list[str]:
    """The web addresses a drop or paste carries, as links or as plain text (neither is fetched)."""
    urls = [url.toString() for url in mime.urls() if url.scheme().lower() in WEB_SCHEMES] if mime.hasUrls() else []
    text = mime.text().strip() if mime.hasText() else ""
    if not urls and len(text.split()) == 1:  # one word: an address, not a sentence that quotes one
        url = QUrl(text)
        if url.scheme().lower() in WEB_SCHEMES or text.lower().startswith("www."):
            urls.append(text)
    return urls


def _call(view: Any, method: str, *args: Any) -> Any:
    fn = getattr(view, method, None)
    return fn(*args) if callable(fn) else None


def _connect(view: Any, signal: str, slot: Callable) -> None:
    sig = getattr(view, signal, None)
    if sig is not None:
        sig.connect(slot)
