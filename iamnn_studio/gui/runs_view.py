"""The "Runs" tab: every past run in the runs folder, and what to do with one.

A table (name, dataset, model, status, epochs, validation and test accuracy, created) read by the engine's
``list_runs`` in the background. Open a run in Study (double click, or Return), continue a stopped one,
use its best checkpoint in the Use tab, or reveal its folder. Folders the engine cannot read
are listed as "unreadable" with the reason, never hidden and never fatal.
"""
from __future__ import annotations

import html
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QStyle,
    QStyleOptionHeader,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..split_words import HELD_OUT
from .widgets import formatting, theme
from .widgets.action_row import ActionRowLayout
from .widgets.empty_state import EmptyState
from .widgets.message_banner import MessageBanner
from .widgets.show_folder import show_folder
from .widgets.tasks import BackgroundRunner, import_engine

#: "Val. acc.": the best epoch's validation accuracy (status.json); "Test acc.": eval.json's top-1.
COLUMNS = ("Name", "Dataset", "Model", "Status", "Epochs", "Val. acc.", "Test acc.", "Created")
#: Columns that elide ("…", whole in the tooltip) when the table is too narrow for every column's text;
#: the others are short (states, numbers, dates) and always show their whole text.
ELIDED_COLUMNS = (COLUMNS.index("Name"), COLUMNS.index("Model"))
#: An elided column narrower than this shows too little of its text to tell runs apart; where the others leave
#: less (a 14-pt font in a 960 px window) the table scrolls sideways rather than cut a column meant to be whole.
MIN_ELIDED_WIDTH = 80
STATUS_COLUMN = COLUMNS.index("Status")
#: States from which training can go on from checkpoints/last.pt.
CONTINUABLE = ("stopped", "interrupted", "failed", "paused")
#: A run without a readable status.json: its last.pt tells whether it can go on (``RunSummary.resume_problem``).
UNKNOWN_STATE = "unknown"
CONTINUE_TIP = "Resume a stopped or interrupted run from its last checkpoint"
#: The Train tab's states (TrainingView.state) of a run this window holds, as the Runs tab words them.
HELD_WORDS = {"starting": "starting", "running": "training", "paused": "paused", "stopping": "stopping"}
#: The Train tab's states its run's status cell shows at once (the others wait for the run's status.json).
HELD_STATUSES = ("running", "paused")
STATUS_COLORS = {
    "running": theme.ACCENT,
    "completed": theme.GOOD,
    "failed": theme.ERROR,
    "unreadable": theme.ERROR,
    "interrupted": theme.WARNING,
    "stopped": theme.WARNING,
}
#: The least room, in characters, the selected run's detail keeps beside the buttons on one line.
DETAIL_CHARS = 20
TRAIN_LONGER_TIP = ("A new run with this run's settings that starts from its weights (its best.pt, else its last.pt; "
                    "its own schedule): set the epochs in the Train tab, then Start")


def train_longer_tip(checkpoint: Path | None) -> str:
    """The "Train longer" tooltip, naming the checkpoint it starts from (the engine's ``run_checkpoint``: best.pt,
    else last.pt). QA: it promised the best weights to a run that has only last.pt."""
    if checkpoint is None:
        return TRAIN_LONGER_TIP
    which = ("its best weights (checkpoints/best.pt)" if checkpoint.name == "best.pt" else
             f"its last weights (checkpoints/{checkpoint.name}: it has no best.pt yet)")
    return (f"A new run with this run's settings that starts from {which}, on its own schedule: set the epochs "
            "in the Train tab, then Start")
#: While a run in the list is training and the tab is shown, re-read the folder this often.
LIVE_REFRESH_MS = 5000
#: While the only runs training are ones this machine cannot check (another host's, on a shared runs folder:
#: they never end from here if that host went away), look this often whether their status.json or
#: metrics.jsonl changed, and re-read the folder only when one did.
REMOTE_CHECK_MS = 30_000
#: The files a training process rewrites as it goes: their (mtime, size) tell a live run from a stale one.
WATCHED_FILES = ("status.json", "metrics.jsonl")


class _SortItem(QTableWidgetItem):
    """A cell that sorts by a hidden key (numbers, times) instead of its text."""

    def __init__(self, text: str, key: Any) -> None:
        super().__init__(text)
        self.key = key

    def __lt__(self, other: QTableWidgetItem) -> bool:  # noqa: D105
        if not isinstance(other, _SortItem):
            return super().__lt__(other)
        if (self.key is None) != (other.key is None):
            # an empty cell ("–", "?") goes last whichever way the column sorts: best accuracy first, then the unknowns
            table = self.tableWidget()
            descending = table is not None and table.horizontalHeader().sortIndicatorOrder() == Qt.SortOrder.DescendingOrder
            return (self.key is None) == descending
        return self.key is not None and self.key < other.key


class _SortArrowHeader(QHeaderView):
    """Keeps room for the sort arrow in the sorted column only. Qt 6 keeps it in every column (22 px
    each, over 150 px in all), which pushed Test acc. and Created off a 960 px window."""

    def sectionSizeFromContents(self, logical_index: int) -> QSize:  # noqa: N802 (Qt name)
        if logical_index == self.sortIndicatorSection():
            return super().sectionSizeFromContents(logical_index)
        # Qt's own measure of a section (QHeaderView::sectionSizeFromContents), without the arrow
        option = QStyleOptionHeader()
        self.initStyleOption(option)
        option.section = logical_index
        option.text = str(self.model().headerData(logical_index, self.orientation()) or "")
        bold = QFont(self.font())
        bold.setBold(True)
        option.fontMetrics = QFontMetrics(bold)
        return self.style().sizeFromContents(QStyle.ContentsType.CT_HeaderSection, option, QSize(), self)


class RunsView(QWidget):
    """Browse runs; ``open_run``, ``continue_run`` (run folder) and ``use_checkpoint`` (a .pt) ask the shell to act."""

    open_run = Signal(str)
    continue_run = Signal(str)
    use_checkpoint = Signal(str)
    train_from = Signal(str)  # a run folder: a new run starting from its weights
    runs_dir_changed = Signal(str)  # the user picked another runs folder
    refreshed = Signal()
    polled = Signal()  # the live timer looked at runs this machine cannot check, found them unchanged, listed nothing

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._runs_dir: Path | None = None
        self._runs: list[Any] = []
        self._runner = BackgroundRunner(self)
        # "Train longer" reads the run's checkpoints to check them (never on the UI thread), apart from the listing;
        # the same check finds the checkpoint "Use" can open (best.pt, else a readable last.pt)
        self._checker = BackgroundRunner(self)
        # run path -> (file stamps, Train longer's problem or None, (checkpoint to use, why not best.pt) or None)
        self._train_longer: dict[str, tuple[tuple, str | None, tuple | None]] = {}
        # (run path, file stamps) of the checks submitted and not answered yet: a refresh (every listing, every
        # 5 s while a run trains) must not queue the same checkpoint read again behind the one still running
        self._train_longer_checking: set[tuple[str, tuple]] = set()
        # The run this window's Train tab holds (its resolved folder) and its state there; see set_training_here
        self._held: tuple[str, str] | None = None
        self._listing = False  # a listing is in the background
        self._list_again = False  # asked for another while it ran: one more, not one per request
        self._live = QTimer(self, interval=LIVE_REFRESH_MS)
        self._live.timeout.connect(self._poll)
        # Runs listed as "running": whether one can be checked from here (a process of this machine), and the
        # file stamps of those that cannot (see live_watch), as the last listing found them.
        self._local_running = False
        self._remote_stamps: dict[str, tuple] = {}
        self._build()
        self._update_actions()

    # ================================================================ public API
    def set_runs_dir(self, path: str) -> None:
        self._runs_dir = Path(path).expanduser()
        self.folder_label.setText(str(self._runs_dir))
        self.folder_label.setToolTip(str(self._runs_dir))
        if not self._runs:
            self.empty.set_text("Reading the runs folder…", str(self._runs_dir))
        self.refresh()

    def set_training_here(self, run_dir: str | None, state: str) -> None:
        """The run this window's Train tab is training, or has paused (its folder), and its state there
        (``TrainingView.state``); None once it has ended. For that run Continue resumes the paused run, and
        Train longer waits: QA found both offered for it, both ending in "A run is already training"."""
        held = (str(Path(run_dir).resolve()), state) if run_dir else None
        if held != self._held:  # the Train tab reports every progress sentence: act on a change only
            before, self._held = self._held, held
            self._show_held_statuses({entry[0] for entry in (before, held) if entry is not None})
            self._update_actions()

    def _show_held_statuses(self, paths: set[str]) -> None:
        """Rewrite the status cells of the runs in ``paths`` (resolved folders) for the Train tab's state now, shown
        or not: QA saw "running" for the run paused here until the tab was shown again and listed the folder."""
        by_path = {str(run.path): run for run in self._runs}
        cells = []  # first found, then rewritten: a sorted table may move a row whose cell changes
        for row in range(self.table.rowCount()):
            path = self.table.item(row, 0).data(Qt.ItemDataRole.UserRole)
            if path in by_path and str(Path(path).resolve()) in paths:
                cells.append((self.table.item(row, STATUS_COLUMN), by_path[path]))
        for item, run in cells:
            _show_status(item, run, self._held_state(run))

    def _held_state(self, run: Any | None) -> str | None:
        """The Train tab's state of ``run`` where this window holds it, else None."""
        if run is None or self._held is None:
            return None
        path, state = self._held
        return state if str(Path(run.path).resolve()) == path else None

    def runs_dir(self) -> str | None:
        return str(self._runs_dir) if self._runs_dir else None

    def refresh(self) -> None:
        """Re-read the runs folder in the background; the selection is kept where possible."""
        self._list(None)

    def _list(self, unless_unchanged: dict[str, tuple] | None) -> None:
        """List the folder in the background; with ``unless_unchanged`` (run folder -> file stamps), only if
        one of those stamps changed (a few stats instead of reading every run)."""
        if self._runs_dir is None:
            self._set_watch(False, {})
            self._show_runs([])
            return
        if self._listing:  # a slow folder (a network drive) must not pile up one listing per timer tick
            if unless_unchanged is None:
                self._list_again = True
            return
        folder = self._runs_dir
        self._listing = True

        def work(report):
            if unless_unchanged is not None and all(
                    file_stamps(Path(path)) == stamps for path, stamps in unless_unchanged.items()):
                return None  # nothing those runs' writers would touch has changed: no listing
            runs = import_engine("runs")
            listed = runs.list_runs(folder)
            return folder, listed, live_watch(folder, listed, runs.read_json_object)

        self._runner.submit(work, self._on_listed, self._on_list_failed)

    @Slot()
    def _poll(self) -> None:
        """The live timer's tick: a full listing while a run of this machine trains; while only runs this
        machine cannot check are "running", a look at their files, and a listing only when they changed."""
        if self._local_running or not self._remote_stamps:
            self.refresh()
        else:
            self._list(dict(self._remote_stamps))

    def live_interval(self) -> int | None:
        """How often the shown tab looks again (ms), or None when no listed run is training."""
        if self._local_running:
            return LIVE_REFRESH_MS
        return REMOTE_CHECK_MS if self._remote_stamps else None

    def _set_watch(self, local_running: bool, remote_stamps: dict[str, tuple]) -> None:
        self._local_running = local_running
        self._remote_stamps = dict(remote_stamps)

    def _listing_done(self) -> bool:
        """End a listing; True (and a new listing started) when another was asked for meanwhile."""
        self._listing = False
        if self._list_again:
            self._list_again = False
            self.refresh()
            return True
        return False

    def runs(self) -> list[Any]:
        """The RunSummary objects shown, in table order."""
        paths = [self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) for row in range(self.table.rowCount())]
        by_path = {str(run.path): run for run in self._runs}
        return [by_path[p] for p in paths if p in by_path]

    def select_run(self, path: str) -> bool:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == str(path):
                self.table.selectRow(row)
                return True
        return False

    # ================================================================ layout
    def _build(self) -> None:
        title = QLabel("Runs folder")
        title.setStyleSheet("font-weight: 600;")
        self.folder_label = QLabel("none chosen")
        self.folder_label.setProperty("role", "muted")
        self.folder_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        change = QPushButton("Change…")
        change.setToolTip("Choose the folder that holds your runs")
        change.clicked.connect(self._choose_folder)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.setSpacing(theme.SPACING)
        top.addWidget(title)
        top.addWidget(self.folder_label, 1)
        top.addWidget(change)
        top.addWidget(self.refresh_button)

        self.table = QTableWidget(0, len(COLUMNS))
        header = _SortArrowHeader(Qt.Orientation.Horizontal, self.table)
        header.setSectionsClickable(True)  # as the table's own header: a click sorts by that column
        self.table.setHorizontalHeader(header)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        for column, tip in (("Val. acc.", "Validation accuracy: the best epoch's, on images held out of training"),
                            ("Test acc.", "Test accuracy: top-1 on the test images, once the run is evaluated "
                                          "(eval.json); – while it is not")):
            self.table.horizontalHeaderItem(COLUMNS.index(column)).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        # an overflow of 20 px (a large font, see _fit_elided_columns) scrolls 20 px, not a whole column
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.table.verticalHeader().setDefaultSectionSize(30)
        header.setHighlightSections(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        for column in range(len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)  # spare width goes to the end: no column is squeezed below its text
        # Name and Model share the width the others leave (see _fit_elided_columns); the user may drag them.
        for column in ELIDED_COLUMNS:
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Interactive)
        self._widths_set_by_user = False
        self._fitting = False  # True while the view itself sizes the columns, not the user
        header.sectionResized.connect(self._on_section_resized)
        header.sortIndicatorChanged.connect(self._fit_elided_columns)  # the sort arrow's room moved
        self._table_viewport = self.table.viewport()  # its width changes with the window and the scroll bar
        self._table_viewport.installEventFilter(self)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COLUMNS.index("Created"), Qt.SortOrder.DescendingOrder)
        self.table.itemSelectionChanged.connect(self._update_actions)
        self.table.itemDoubleClicked.connect(self._on_double_click)
        self.table.installEventFilter(self)  # Return / Enter on a selected row opens it, as a double click does
        self.table.setStyleSheet(
            f"QTableWidget {{ background: {theme.SURFACE}; border: 1px solid {theme.BORDER}; border-radius: 6px;"
            f" alternate-background-color: {theme.WINDOW}; }}"
            f"QTableWidget::item {{ padding: 0 8px; }}"
            f"QTableWidget::item:selected {{ background: #dbe6fb; color: {theme.TEXT}; }}"
            f"QHeaderView::section {{ background: {theme.SURFACE}; border: none; border-bottom: 1px solid {theme.BORDER};"
            f" padding: 6px 8px; font-weight: 600; color: {theme.TEXT_MUTED}; }}"
        )

        self.empty = EmptyState("No runs folder chosen",
                                "Choose the folder that holds your training runs (each run is a folder with "
                                "config.toml, metrics.jsonl and checkpoints/).")
        self.empty.add_action("Choose runs folder…", self._choose_folder)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.table)

        self.detail = QLabel()
        self.detail.setProperty("role", "muted")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.open_button = QPushButton("Open in Study")
        self.open_button.setObjectName("Primary")
        self.open_button.setToolTip("Accuracy, compute and adaptivity of the selected run (or double click it, "
                                    "or press Return)")
        self.open_button.clicked.connect(self._emit_open)
        self.use_button = QPushButton("Use best checkpoint")
        self.use_button.setToolTip("Classify your own images with this run's best checkpoint")
        self.use_button.clicked.connect(self._emit_use)
        self.continue_button = QPushButton("Continue training")
        self.continue_button.setToolTip(CONTINUE_TIP)
        self.continue_button.clicked.connect(self._emit_continue)
        self.train_from_button = QPushButton("Train longer…")
        self.train_from_button.setToolTip(TRAIN_LONGER_TIP)
        self.train_from_button.clicked.connect(self._emit_train_from)
        self.reveal_button = QPushButton("Show folder")
        self.reveal_button.setToolTip("Open the run's folder in the file manager")
        self.reveal_button.clicked.connect(self._reveal)
        # The run's detail beside the buttons while they fit with room for it; under a large font the
        # detail moves above them and the buttons wrap (at 14 pt they are wider than a 960 px window).
        self.actions = ActionRowLayout(spacing=theme.SPACING)
        self.actions.set_note(self.detail)
        for button in (self.reveal_button, self.train_from_button, self.continue_button, self.use_button,
                       self.open_button):
            self.actions.addWidget(button)
        self._fit_detail_room()

        self.banner = MessageBanner()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(theme.MARGIN, theme.MARGIN, theme.MARGIN, theme.MARGIN)
        layout.setSpacing(theme.SPACING)
        layout.addLayout(top)
        layout.addWidget(self.banner)
        layout.addWidget(self.stack, 1)
        layout.addLayout(self.actions)

    # ================================================================ results
    def _on_listed(self, result: tuple[Path, list[Any], tuple[bool, dict[str, tuple]]] | None) -> None:
        if self._listing_done():  # outdated: a newer listing is on its way
            return
        if result is None:  # a look at runs this machine cannot check: their files are as they were
            self.polled.emit()
            return
        folder, runs, watch = result
        if folder != self._runs_dir:
            return
        self._set_watch(*watch)
        self.banner.hide()
        self._show_runs(runs)

    def _on_list_failed(self, message: str) -> None:
        if self._listing_done():
            return
        self.banner.show_error(f"Could not read the runs folder: {message}")
        self._set_watch(False, {})
        self._show_runs([])

    def _show_runs(self, runs: list[Any]) -> None:
        if runs and runs == self._runs and self.table.rowCount() == len(runs):
            self._update_actions()  # a checkpoint may have appeared
            self._after_listing(runs)  # nothing else changed: the table, its selection and sorting stay as they are
            return
        selected = self._selected_path()
        self._runs = list(runs)
        self.table.setSortingEnabled(False)
        self.table.setRowCount(0)  # then fill: replacing 2,400 items one by one re-measured the columns each time (8 s)
        self.table.setRowCount(len(runs))
        for row, run in enumerate(runs):
            for column, item in enumerate(_row_items(run, self._held_state(run))):
                self.table.setItem(row, column, item)
        self.table.setSortingEnabled(True)
        self._fit_elided_columns()
        if selected is None or not self.select_run(selected):
            self.table.clearSelection()
        if runs:
            self.stack.setCurrentWidget(self.table)
        else:
            self.stack.setCurrentWidget(self.empty)
            folder = self._runs_dir
            if folder is not None and folder.exists() and not folder.is_dir():
                self.empty.set_text("This is a file, not a folder",
                                    f"{folder} cannot hold runs: choose another runs folder.")
            else:
                where = str(folder) if folder else "no runs folder chosen"
                missing = " (this folder does not exist yet: the first run creates it)" \
                    if folder is not None and not folder.exists() else ""
                self.empty.set_text(
                    "No runs yet",
                    f"Runs you train in the Train tab (or with the iamnn-studio CLI) appear here. "
                    f"Looking in: {where}{missing}",
                )
        self._update_actions()
        self._after_listing(runs)

    def _after_listing(self, runs: list[Any]) -> None:
        # Only a shown tab follows a training run: listing 300 runs every 5 s behind another tab was idle CPU.
        # A run another host trains is only looked at every REMOTE_CHECK_MS: from here it never ends when that
        # host went away, and listing the folder every 5 s for it cost 3 % of a core for good.
        interval = self.live_interval() if any(run.status == "running" for run in runs) else None
        if self.isVisible() and interval is not None:
            if self._live.interval() != interval:
                self._live.setInterval(interval)  # restarts an active timer
            if not self._live.isActive():
                self._live.start()
        else:
            self._live.stop()
        self.refreshed.emit()

    # ================================================================ actions
    def _selected_run(self) -> Any | None:
        path = self._selected_path()
        return next((run for run in self._runs if str(run.path) == path), None)

    def _selected_path(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    @Slot()
    def _update_actions(self) -> None:
        run = self._selected_run()
        readable = run is not None and run.status != "unreadable"
        self.open_button.setEnabled(readable)
        self.reveal_button.setEnabled(run is not None)
        held = self._held_state(run)
        self._show_continue(run, readable, held)
        problem = self._show_train_longer(run, held)
        checkpoint = self._show_use(run)
        if run is None:
            self.detail.setText("Select a run to open it, use its checkpoint or continue training it."
                                if self._runs else "")
        elif run.status == "unreadable":
            usable = "; its checkpoint can still be used" if checkpoint is not None else ""
            self.detail.setText(f"<span style='color:{theme.ERROR}'>{html.escape(run.name)} cannot be read: "
                                f"{html.escape(run.reason)}</span>{usable}")
        else:
            self._show_detail(run, held, problem)

    def _show_detail(self, run: Any, held: str | None, problem: str | None) -> None:
        """The selected run's reason (or folder), then what is wrong with its files and why a button is off."""
        # every line escaped: joined by <br>, the label shows rich text ("expected a < b" in a reason)
        lines = [html.escape(f"{run.name}: {run.reason}" if run.reason else str(run.path), quote=False)]
        if run.config_problem:  # QA: such a run was "unreadable", though its status.json tells how it went
            lines.append(_warning(f"config.toml cannot be read ({run.config_problem}): its model and dataset are "
                                  "unknown"))
        if run.evaluation_problem:  # QA: a damaged eval.json showed "–" and no word on why
            lines.append(_warning(f"eval.json cannot be read ({run.evaluation_problem}); open the run in Study and "
                                  "evaluate it again"))
        if held is not None:
            lines.append(html.escape(f"This run is {HELD_WORDS.get(held, held)} in the Train tab of this window",
                                     quote=False))
        elif _continue_problem(run):  # QA: a run without status.json showed Continue off and no word on why
            lines.append(_warning(f"Continue training: {_continue_problem(run)}"))
        if problem:  # say why the button is off
            lines.append(_warning(f"Train longer: {problem}"))
        self.detail.setText("<br>".join(lines))

    def _show_continue(self, run: Any | None, readable: bool, held: str | None) -> None:
        """Continue from last.pt; for the run paused in this window's Train tab, Resume (the window resumes it)."""
        button = self.continue_button
        if held is None:
            button.setText("Continue training")
            problem = _continue_problem(run) if run is not None else None
            button.setToolTip(CONTINUE_TIP if problem is None
                              else f"Continue training cannot resume this run: {problem}")
            button.setEnabled(readable and _can_continue(run))
        elif held == "paused":
            button.setText("Resume training")
            button.setToolTip("This run is paused in the Train tab of this window: resume it where it left off")
            button.setEnabled(True)
        else:
            button.setText("Continue training")
            button.setToolTip(f"This run is {HELD_WORDS.get(held, held)} in the Train tab of this window")
            button.setEnabled(False)

    def _show_train_longer(self, run: Any | None, held: str | None = None) -> str | None:
        """Offer "Train longer" only where it can start: the run's config.toml readable and describing the
        network its checkpoint holds (QA: an emptied config.toml read as the default settings, so the Train tab
        got another network and the engine refused its weights). The engine decides (``runs.train_longer_problem``,
        the trainer's own test of the weights) in the background, reading the checkpoint; until it is known the
        button waits. Returns the problem, if one is known."""
        button = self.train_from_button
        if held is not None:  # the Train tab has this run in hand: no second run beside it
            button.setEnabled(False)
            button.setToolTip(f"This run is {HELD_WORDS.get(held, held)} in the Train tab: stop it there (or let it "
                              "finish) first, then train longer from its weights")
            return None
        checkpoint = _checkpoint_of(run) if run is not None else None
        if checkpoint is None:
            button.setEnabled(False)
            button.setToolTip(TRAIN_LONGER_TIP if run is None else
                              f"{TRAIN_LONGER_TIP}. {run.name} has no checkpoint to start from yet")
            return None
        key, stamps = str(run.path), _check_stamps(run)
        known = self._train_longer.get(key)
        if known is None or known[0] != stamps:
            button.setEnabled(False)
            button.setToolTip("Checking that the run's settings describe its checkpoint…")
            if (key, stamps) not in self._train_longer_checking:
                self._train_longer_checking.add((key, stamps))
                self._checker.submit(
                    lambda _report: _check_checkpoints(key),
                    lambda result: self._on_train_longer_checked(key, stamps, *result),
                    lambda message: self._on_train_longer_checked(key, stamps, f"cannot check it: {message}", None))
            return None
        problem = known[1]
        button.setEnabled(problem is None)
        button.setToolTip(train_longer_tip(checkpoint) if problem is None
                          else f"Train longer cannot start from this run: {problem}")
        return problem

    def _on_train_longer_checked(self, key: str, stamps: tuple, problem: str | None, use: tuple | None) -> None:
        self._train_longer_checking.discard((key, stamps))
        self._train_longer[key] = (stamps, problem, use)
        if self._selected_path() == key:
            self._update_actions()

    def _use_choice(self, run: Any | None) -> tuple[Path | None, str | None]:
        """(the checkpoint "Use" opens, why best.pt was passed over): the background check's once it has looked
        at the run's files as they are now (QA: a damaged best.pt was offered, and the Use tab could not open it),
        until then best.pt, else last.pt."""
        if run is None:
            return None, None
        known = self._train_longer.get(str(run.path))
        if known is not None and known[0] == _check_stamps(run) and known[2] is not None:
            return known[2]
        return _checkpoint_of(run), None

    def _show_use(self, run: Any | None) -> Path | None:
        """Offer the checkpoint the Use tab can open; returns it. An unreadable run's checkpoint still opens: it
        holds its own settings, not the run's config.toml."""
        checkpoint, passed_over = self._use_choice(run)
        button = self.use_button
        button.setEnabled(checkpoint is not None)
        # A run stopped in its first epoch has only last.pt: the button must not promise its best one.
        kind = "last" if checkpoint is not None and checkpoint.name == "last.pt" else "best"
        button.setText(f"Use {kind} checkpoint")
        if checkpoint is None and passed_over:
            button.setToolTip(f"No checkpoint of this run can be opened: {passed_over}")
        else:
            why = f" ({passed_over or 'it has no best.pt yet'})" if kind == "last" else ""
            button.setToolTip(f"Classify your own images with this run's {kind} checkpoint{why}")
        return checkpoint

    def _fit_detail_room(self) -> None:
        """The detail keeps about 20 characters beside the buttons, else it goes above them."""
        self.actions.note_room = DETAIL_CHARS * self.detail.fontMetrics().averageCharWidth()
        self.actions.invalidate()

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self._fit_detail_room()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt name)
        if "table" not in self.__dict__:  # Qt may deliver an event while Python tears the view down (seen once)
            return False
        if watched is self._table_viewport and event.type() == QEvent.Type.Resize:
            self._fit_elided_columns()
        elif (watched is self.table and event.type() == QEvent.Type.KeyPress
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
                and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier and self._selected_run() is not None):
            self._emit_open()
            return True
        return super().eventFilter(watched, event)

    @Slot(QTableWidgetItem)
    def _on_double_click(self, item: QTableWidgetItem) -> None:
        self.table.selectRow(item.row())
        self._emit_open()

    def _emit_open(self) -> None:
        run = self._selected_run()
        if run is not None and run.status != "unreadable":
            self.open_run.emit(str(run.path))

    def _emit_use(self) -> None:
        checkpoint, _ = self._use_choice(self._selected_run())
        if checkpoint is not None:
            self.use_checkpoint.emit(str(checkpoint))

    def _emit_continue(self) -> None:
        run = self._selected_run()
        if run is not None and self.continue_button.isEnabled():
            self.continue_run.emit(str(run.path))

    def _emit_train_from(self) -> None:
        run = self._selected_run()
        if run is not None and self.train_from_button.isEnabled():
            self.train_from.emit(str(run.path))

    def _reveal(self) -> None:
        run = self._selected_run()
        if run is not None:
            show_folder(self, run.path)

    def _choose_folder(self) -> None:
        start = str(self._runs_dir) if self._runs_dir else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Choose the runs folder", start)
        if folder:
            self.set_runs_dir(folder)
            self.runs_dir_changed.emit(folder)

    def _column_width_wanted(self, column: int) -> int:
        """The width that shows the column's title and every cell whole (as Qt sizes a column to its contents)."""
        return max(self.table.sizeHintForColumn(column), self.table.horizontalHeader().sectionSizeHint(column))

    @Slot()
    def _fit_elided_columns(self) -> None:
        """Name and Model share the width the other columns leave, so that no column is off-screen: each
        whole where it fits, else the model keeps half (a 140-character name must not squeeze it
        out) and the rest goes to the name, the column that tells runs apart; both elide beyond. Where even
        their least widths do not fit (a large font in a small window), the table scrolls sideways."""
        if self._widths_set_by_user:
            return
        name_column, model_column = ELIDED_COLUMNS
        viewport = self.table.viewport().width()
        whole = sum(self._column_width_wanted(c) for c in range(len(COLUMNS)) if c not in ELIDED_COLUMNS)
        room = viewport - whole
        name_least, model_least = (self._least_elided_width(c) for c in ELIDED_COLUMNS)
        name_wanted = self._column_width_wanted(name_column)
        model = min(self._column_width_wanted(model_column), max(model_least, room - name_wanted, room // 2))
        name = max(name_least, min(name_wanted, room - model))
        header = self.table.horizontalHeader()
        self._fitting = True
        try:
            header.resizeSection(name_column, name)
            header.resizeSection(model_column, model)
            # The last column stretches into spare width only. QA: under a 14-pt font in a 960 px window the
            # columns overflowed and the stretched last one took the overflow ("27 Nov 1…" in Created): now it
            # keeps its whole text and the table scrolls sideways by the few pixels missing.
            header.setStretchLastSection(whole + name + model <= viewport)
        finally:
            self._fitting = False

    def _least_elided_width(self, column: int) -> int:
        """An elided column's least width: ``MIN_ELIDED_WIDTH``, and its whole title (wider under a large font)."""
        return max(MIN_ELIDED_WIDTH, self.table.horizontalHeader().sectionSizeHint(column))

    @Slot(int, int, int)
    def _on_section_resized(self, index: int, old: int, new: int) -> None:
        if index in ELIDED_COLUMNS and not self._fitting:
            self._widths_set_by_user = True  # dragged: keep the user's widths

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        if self._runs_dir is not None:
            self.refresh()  # restarts the live refresh if a run is still training

    def hideEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().hideEvent(event)
        self._live.stop()

    def sizeHint(self) -> QSize:
        return QSize(1000, 600)


def checkable_here(status: dict[str, Any] | None) -> bool:
    """Whether this machine can tell if the process that wrote ``status`` (status.json) still runs: it names a
    pid of this host. The engine takes any other "running" status at its word (``effective_state``), so such
    a run stays "running" here for as long as its file says so."""
    if not status:
        return False
    pid = status.get("pid")
    return isinstance(pid, int) and not isinstance(pid, bool) and status.get("host") == socket.gethostname()


def file_stamps(run_dir: Path) -> tuple:
    """(mtime_ns, size) of the folder itself (a file or folder made in it) and of each of the files a training
    process rewrites, None for one missing or unreadable."""
    stamps = []
    for path in (run_dir, *(run_dir / name for name in WATCHED_FILES)):
        try:
            info = os.stat(path)
            stamps.append((info.st_mtime_ns, info.st_size))
        except (OSError, ValueError):
            stamps.append(None)
    return tuple(stamps)


def live_watch(runs_dir: Path, runs: list[Any], read_json_object) -> tuple[bool, dict[str, tuple]]:
    """(whether a "running" run can be checked from here, {run folder: file stamps} of those that cannot,
    and of ``runs_dir`` itself when there are such runs: a run started meanwhile must still show up);
    ``read_json_object`` is the engine's, passed by the background listing (this module imports the engine
    there only, never on its own import)."""
    local, remote = False, {}
    for run in runs:
        if run.status != "running":
            continue
        folder = Path(run.path)
        if checkable_here(read_json_object(folder / "status.json")):
            local = True
        else:
            remote[str(folder)] = file_stamps(folder)
    if remote:
        remote[str(runs_dir)] = file_stamps(Path(runs_dir))
    return local, remote


def _stamps(*paths: Path) -> tuple:
    """(size, modification time) of each file: a check holds until one of them changes."""
    stamps = []
    for path in paths:
        try:
            stat = path.stat()
            stamps.append((stat.st_size, stat.st_mtime_ns))
        except OSError:
            stamps.append(None)
    return tuple(stamps)


def _checkpoint_of(run: Any) -> Path | None:
    """The run's best checkpoint, else its last one."""
    folder = Path(run.path) / "checkpoints"
    for name in ("best.pt", "last.pt"):
        if (folder / name).is_file():
            return folder / name
    return None


def _check_stamps(run: Any) -> tuple:
    """The stamps of the files the background check of a run reads: its settings and both checkpoints."""
    folder = Path(run.path)
    return _stamps(folder / "config.toml", folder / "checkpoints" / "best.pt", folder / "checkpoints" / "last.pt")


def _check_checkpoints(run_dir: str) -> tuple[str | None, tuple[Path | None, str | None]]:
    """(why Train longer cannot start, the checkpoint Use can open and why best.pt was passed over); reads the
    checkpoints (torch): in the background only. Each checkpoint is loaded once for both answers."""
    runs = import_engine("runs")
    load = runs.CheckpointLoads()
    return runs.train_longer_problem(run_dir, load), runs.checkpoint_to_use(run_dir, load)


def _can_continue(run: Any) -> bool:
    """Whether Continue can resume ``run`` from its last.pt: by its state, or where status.json or config.toml
    is unreadable, by what the listing found in last.pt (the trainer's resume takes the settings stored there)."""
    if run.resume_checked:
        return run.status in (*CONTINUABLE, UNKNOWN_STATE) and run.resume_problem is None
    return run.status in CONTINUABLE and (Path(run.path) / "checkpoints" / "last.pt").is_file()


def _continue_problem(run: Any) -> str | None:
    """Why Continue cannot resume a run that a resume would otherwise suit, as the listing found it in last.pt."""
    if run.resume_checked and run.status in (*CONTINUABLE, UNKNOWN_STATE):
        return run.resume_problem
    return None


def _warning(text: str) -> str:
    return f"<span style='color:{theme.WARNING}'>{html.escape(text)}</span>"


def _created_text(created: datetime | None) -> str:
    """"26 Nov 14:02" this year (short enough for a 960 px window), "2025-11-26" before."""
    if created is None:
        return "–"
    return created.strftime("%d %b %H:%M" if created.year == datetime.now().year else "%Y-%m-%d")


def _show_status(item: _SortItem, run: Any, held: str | None) -> None:
    """The status cell of ``run``: the Train tab's own state where this window trains or pauses it (its status.json
    is read only at the next listing), else the listing's."""
    state = held if held in HELD_STATUSES else run.status
    item.setText(state if held in HELD_STATUSES else run.status_text)
    item.key = state
    color = STATUS_COLORS.get(state)
    item.setData(Qt.ItemDataRole.ForegroundRole, QBrush(QColor(color)) if color else None)
    if held in HELD_STATUSES:
        item.setToolTip(f"{state.capitalize()} in the Train tab of this window")
    else:
        item.setToolTip(run.reason or "")


def _row_items(run: Any, held: str | None = None) -> list[QTableWidgetItem]:
    created = datetime.fromtimestamp(run.created) if run.created else None
    # "0 / 1 (+40 steps)" for a run its step limit ended; the tooltip adds "of 844" (a 960 px window needs the room)
    epochs = run.epochs_text(" / ", brief=True)
    held_out = run.test_split == "val"  # no test split: its held-out images stood in (and chose the model)
    items = [
        _SortItem(run.name, run.name.lower()),
        _SortItem(run.dataset, run.dataset),
        _SortItem(run.model, run.model),
        _SortItem("", None),  # the status: _show_status
        # unknown progress (no status.json, a checkpoint that does not tell) sorts last, as other empty cells
        _SortItem(epochs, None if run.epochs_done is None else (run.epochs_done, run.step or 0)),
        _SortItem(formatting.percent(run.best_accuracy), run.best_accuracy),
        _SortItem(formatting.percent(run.test_accuracy) + (" (val)" if held_out else ""), run.test_accuracy),
        _SortItem(_created_text(created), run.created),
    ]
    items[0].setData(Qt.ItemDataRole.UserRole, str(run.path))
    items[0].setToolTip(f"{run.name}\n{run.path}")  # the whole name, when the column shows it shortened
    items[2].setToolTip(run.model)  # likewise the model
    items[4].setToolTip(run.epochs_text(" / "))
    if created is not None:
        items[7].setToolTip(created.strftime("%Y-%m-%d %H:%M:%S"))
    _show_status(items[STATUS_COLUMN], run, held)
    if run.status == "unreadable":
        for item in items[1:3]:
            item.setForeground(QBrush(QColor(theme.TEXT_FAINT)))
    items[5].setToolTip("The best epoch's accuracy on the validation images held out of training")
    if run.test_accuracy is None:
        items[6].setToolTip("Not evaluated on the test set yet: open the run in Study and evaluate it")
    elif held_out:
        items[6].setToolTip(f"Top-1 accuracy on {HELD_OUT} images (eval.json): the dataset has no test images, and "
                            "these also chose the model, so it is optimistic")
    else:
        items[6].setToolTip("Top-1 accuracy on the test images (eval.json)")
    for item in items[4:7]:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return items
