"""Export a checkpoint: a plain copy, ONNX, TorchScript, or any format a plugin registered.

The formats come from the engine's ``EXPORTERS`` registry (read in the background, so opening the
dialog never waits for torch). The export itself runs in a child process, the CLI's ``export`` command
(``export_process``): torch.export and the ONNX exporter hold the GIL for seconds, which froze the
window when they ran in one of its threads. A busy line with Cancel (which kills the child and leaves no
file) shows meanwhile; it ends with the written path or the CLI's one-line error. A checkpoint copy, a
plain file copy, still runs in a thread.

When the checkpoint is the one open on the Use tab, the dialog offers the halting mode and threshold
set there (pre-selected) or the checkpoint's own; the engine bakes the chosen one into the graph.
Widths follow the font, so a large application font does not clip the paths.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QSize, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .export_process import ExportOutcome, ExportProcess, ExportRequest
from .widgets import theme
from .widgets.message_banner import MessageBanner
from .widgets.show_folder import show_folder
from .widgets.tasks import BackgroundRunner, import_engine

#: Not an exporter of the engine: the checkpoint file itself, copied atomically.
COPY = "checkpoint"
COPY_LABEL = "Checkpoint copy (IamNN Studio and the CLI)"
#: Shown until the registry is read; the real labels replace these.
KNOWN_FORMATS = (("onnx", "ONNX (onnxruntime and most runtimes)", ".onnx"),
                 ("torchscript", "TorchScript (libtorch, deprecated)", ".pt"))
FIXED_GRAPH_NOTE = ("The exported graph computes every iteration and applies the halting as masks: the "
                    "checkpoint's answers, iterations and MAC figures at {halting}, but no compute is saved at "
                    "run time.")
#: A run trained with --no-calibrate never fitted its halting head: it runs at full depth, exported as evaluated.
LEFT_UNFITTED_NOTE = ("The exported graph runs every iteration of every block (mode max): the run was trained with "
                      "--no-calibrate, so its halting head was never fitted and the model runs at full depth, in the "
                      "export as in the app.")
#: A ResNet baseline has no halting: every image runs every unit, in the export as in the app.
RESNET_NOTE = ("The exported graph is the ResNet baseline as trained: every unit of every block runs for every "
               "image (a ResNet has no halting), so its answers and MAC figures are the checkpoint's.")
COPY_NOTE = "The checkpoint file itself: open it in the Use tab or with iamnn-studio predict."
#: Widths in average characters of the dialog's font (620 and 120 pixels at the app's 10-pt font).
DIALOG_WIDTH_CHARS = 88
BUSY_WIDTH_CHARS = 17
USE_TAB = "use-tab"
#: Typing in the checkpoint field looks at the path (file system calls, slow on a network share) once it
#: pauses this long, not at every key; Export looks at once.
CHECK_DELAY_MS = 200
OWN = "own"


@dataclass(frozen=True)
class UseTabHalting:
    """The halting set on the Use tab for the checkpoint open there: an export of that checkpoint offers it."""

    checkpoint: str
    mode: str  # "adaptive", "fixed:N" or "max"
    threshold: float | None = None  # what an adaptive mode halts at

    def same_as(self, mode: str, threshold: float | None) -> bool:
        if mode != self.mode:
            return False
        return mode != "adaptive" or (threshold is not None and self.threshold is not None
                                      and abs(threshold - self.threshold) < 1e-9)


def _use_tab_words(use: UseTabHalting) -> str:
    """The Use tab's setting in words before the checkpoint's caps are read (or where they cannot be)."""
    if use.mode == "adaptive" and use.threshold is not None:
        return f"adaptive, threshold {use.threshold:.3f}"  # as export.describe_halting says it: no caps needed
    return use.mode


@dataclass(frozen=True)
class _OwnHalting:
    """A checkpoint's saved halting and, in the engine's words, that and the Use tab's setting applied to it."""

    mode: str
    threshold: float | None  # adaptive only
    words: str  # "adaptive, threshold 0.700", "fixed:99 (iterations 1-2-3-2)"
    use_tab_words: str | None  # the Use tab's setting on this checkpoint's model, None without one
    architecture: str = "iamnn"  # "resnet": a baseline without halting
    full_depth: bool = False  # adaptive, trained with --no-calibrate: its own is mode max, as the Use tab runs it


def halting_words(config: Any, mode: str | None = None, threshold: float | None = None) -> str:
    """The halting an export of a checkpoint with this ``ModelConfig`` carries, with ``mode`` and ``threshold``
    in place of its own (None: its own), in the engine's words: the exported file's ``halting`` metadata
    (``export.describe_halting``), so a fixed mode says the iterations each block really runs, its cap
    holding N back ("fixed:99 (iterations 1-2-3-2)"). Imports the engine (torch): call it off the UI thread."""
    changes = {"mode": mode} if mode is not None else {}
    if threshold is not None:
        changes["threshold"] = threshold
    return import_engine("export").describe_halting(dataclasses.replace(config, **changes) if changes else config)


class ExportDialog(QDialog):
    """Choose checkpoint, format and output file; ``exported(path)`` after a successful export."""

    exported = Signal(str)

    def __init__(self, checkpoint_path: str | None = None, parent: QWidget | None = None, *,
                 use_tab: UseTabHalting | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export model")
        self._use_tab = use_tab
        self._own_halting: tuple[str, _OwnHalting | None] | None = None  # (checkpoint, its own setting)
        self._runner = BackgroundRunner(self)
        # Export waits for the format list, read in the background: the buttons follow the runner, since
        # setting the same suggested file name again fires no textChanged (they stayed disabled for good).
        self._runner.busy_changed.connect(self._update_buttons)
        # Reads a checkpoint's settings for the note alone (is it a ResNet?): apart, so Export never waits on it
        self._note_runner = BackgroundRunner(self)
        self._exporting = False  # only an export (not the format list) keeps the dialog open
        self._export = ExportProcess(self)  # every format but a copy: in a child process
        self._export.succeeded.connect(self._on_exported_in_child)
        self._export.failed.connect(self._on_failed)
        self._child_export: _ChildExport | None = None
        self._suffixes: dict[str, str] = {COPY: ".pt", **{name: suffix for name, _, suffix in KNOWN_FORMATS}}
        self._output_edited = False
        self.last_path: str | None = None
        self.last_error: str | None = None
        self._fitting_height = False  # _fit_height is resizing the dialog
        self._offered: tuple[str, bool] | None = None  # (checkpoint text, whether the Use tab's halting is on offer)
        self._check_timer = QTimer(self)
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(CHECK_DELAY_MS)
        self._check_timer.timeout.connect(self._check_checkpoint)
        self._build()
        self.installEventFilter(self)  # the height follows the rows shown (see eventFilter)
        self._size_to_font()
        self._load_formats()
        if checkpoint_path:
            self.checkpoint_edit.setText(str(checkpoint_path))  # looked at at once: not typed
        self._update_buttons()

    # ================================================================ layout
    def _build(self) -> None:
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("a .pt checkpoint or a run folder, e.g. runs/<run>/checkpoints/best.pt")
        self.checkpoint_edit.textChanged.connect(self._on_checkpoint_changed)
        # Return or leaving the field: look now (Return on a just-pasted path would meet a disabled Export)
        self.checkpoint_edit.editingFinished.connect(self._check_pending_checkpoint)
        browse_checkpoint = QPushButton("Browse…")
        browse_checkpoint.clicked.connect(self._choose_checkpoint)
        checkpoint_row = QHBoxLayout()
        checkpoint_row.addWidget(self.checkpoint_edit, 1)
        checkpoint_row.addWidget(browse_checkpoint)

        # Which halting the export carries: only offered for the checkpoint open on the Use tab.
        self.halting_combo = QComboBox()
        self.halting_combo.setToolTip("The mode and threshold baked into the exported graph: as set on the Use "
                                      "tab, or as saved in the checkpoint")
        self.halting_combo.currentIndexChanged.connect(self._on_halting_changed)

        self.format_combo = QComboBox()
        self.format_combo.addItem(COPY_LABEL, COPY)
        for name, label, _ in KNOWN_FORMATS:
            self.format_combo.addItem(label, name)
        self.format_combo.currentIndexChanged.connect(self._on_format_changed)
        self.format_combo.currentIndexChanged.connect(self._clear_result)
        self.format_note = _WrappedNote()
        self.format_note.setWordWrap(True)
        self.format_note.setProperty("role", "muted")

        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("where to write the exported file")
        self.output_edit.textEdited.connect(self._on_output_edited)
        self.output_edit.textChanged.connect(self._update_buttons)
        self.output_edit.textChanged.connect(self._clear_result)
        self.browse_output = QPushButton("Browse…")
        self.browse_output.clicked.connect(self._choose_output)
        output_row = QHBoxLayout()
        output_row.addWidget(self.output_edit, 1)
        output_row.addWidget(self.browse_output)

        form = QFormLayout()
        form.setHorizontalSpacing(theme.SPACING)
        form.setVerticalSpacing(theme.SPACING)
        form.addRow("Checkpoint", checkpoint_row)
        form.addRow("Halting", self.halting_combo)
        form.addRow("Format", self.format_combo)
        form.addRow("", self.format_note)  # its own row: a wrapped label inside a nested box was overdrawn
        form.addRow("Save as", output_row)

        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setTextVisible(False)
        self.busy_label = QLabel("Exporting… this can take a minute.")
        self.busy_label.setProperty("role", "muted")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the export: nothing is written, an existing file stays as it was")
        self.cancel_button.clicked.connect(self.cancel_export)
        busy_row = QHBoxLayout()
        busy_row.addWidget(self.busy)
        busy_row.addWidget(self.busy_label, 1)
        busy_row.addWidget(self.cancel_button)
        self.busy_widget = QWidget()
        self.busy_widget.setLayout(busy_row)
        busy_row.setContentsMargins(0, 0, 0, 0)
        self.busy_widget.hide()
        self.result = MessageBanner()  # its × and a changed path hide it: the dialog gives its room back

        self.reveal_button = QPushButton("Show in folder")
        self.reveal_button.clicked.connect(self._reveal)
        self.reveal_button.hide()
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        self.export_button = QPushButton("Export")
        self.export_button.setObjectName("Primary")
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.start_export)
        buttons = QHBoxLayout()
        buttons.addWidget(self.reveal_button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        buttons.addWidget(self.export_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(theme.MARGIN + 4, theme.MARGIN + 4, theme.MARGIN + 4, theme.MARGIN)
        layout.setSpacing(theme.SPACING)
        layout.addLayout(form)
        layout.addWidget(self.busy_widget)
        layout.addWidget(self.result)
        layout.addStretch(1)
        layout.addLayout(buttons)
        self._form = form
        self._update_halting_offer()
        self._on_format_changed()

    def _size_to_font(self) -> None:
        """Widths in characters of the current font: fixed pixels clipped the paths under a 14-pt font."""
        chars = self.fontMetrics().averageCharWidth()
        self.setMinimumWidth(DIALOG_WIDTH_CHARS * chars)
        self.busy.setFixedWidth(BUSY_WIDTH_CHARS * chars)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt name)
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange and hasattr(self, "busy"):
            self._size_to_font()  # the height follows from the layout's request (see eventFilter)

    # ================================================================ formats
    def _load_formats(self) -> None:
        def work(report):
            export = import_engine("export")
            try:
                import_engine("plugins").load_plugins()  # plugins may add formats
            except Exception:  # a broken plugin must not hide the built-in formats
                pass
            formats = []
            for name in export.EXPORTERS.names():
                entry = export.EXPORTERS.get(name)
                formats.append((name, getattr(entry, "label", name), getattr(entry, "suffix", "")))
            return formats

        self._runner.submit(work, self._set_formats, lambda message: None)

    def _set_formats(self, formats: list[tuple[str, str, str]]) -> None:
        current = self.format_combo.currentData()
        self.format_combo.blockSignals(True)
        self.format_combo.clear()
        self.format_combo.addItem(COPY_LABEL, COPY)
        for name, label, suffix in formats:
            self.format_combo.addItem(label or name, name)
            self._suffixes[name] = suffix or f".{name}"
        index = self.format_combo.findData(current)
        self.format_combo.setCurrentIndex(max(index, 0))
        self.format_combo.blockSignals(False)
        self._on_format_changed()

    def formats(self) -> list[str]:
        return [self.format_combo.itemData(i) for i in range(self.format_combo.count())]

    def set_format(self, name: str) -> bool:
        index = self.format_combo.findData(name)
        if index >= 0:
            self.format_combo.setCurrentIndex(index)
        return index >= 0

    @Slot()
    def _on_format_changed(self, *_: Any) -> None:
        self._update_note()
        self._update_halting_row()
        self._suggest_output()

    def _update_note(self) -> None:
        offered = self._offers_use_tab_halting()
        if self.format_combo.currentData() == COPY:
            # a copy is the file as saved: the Use tab's setting is not in it
            self.format_note.setText(COPY_NOTE + (" It keeps the checkpoint's own halting setting: to export the Use "
                                                  "tab's, choose another format." if offered else ""))
        elif self._read_settings() is not None and self._read_settings().architecture == "resnet":
            self.format_note.setText(RESNET_NOTE)  # no halting to apply, as masks or otherwise
        elif offered:
            self.format_note.setText(FIXED_GRAPH_NOTE.format(halting="the halting chosen above"))
        elif self._read_settings() is not None and self._read_settings().full_depth:
            self.format_note.setText(LEFT_UNFITTED_NOTE)
        else:
            self.format_note.setText(FIXED_GRAPH_NOTE.format(halting="its saved mode and threshold"))

    def _read_settings(self) -> _OwnHalting | None:
        """What the background read found in the checkpoint named now; None until it has ended (or where it failed)."""
        source = self.checkpoint_edit.text().strip() if hasattr(self, "checkpoint_edit") else ""
        if self._own_halting is None or self._own_halting[0] != source:
            return None
        return self._own_halting[1]

    # ================================================================ halting
    def _offers_use_tab_halting(self) -> bool:
        """Whether the checkpoint to export is the one open on the Use tab (so its settings are on offer).
        Asked of the file system once per checkpoint text (each check of the field starts afresh)."""
        text = self.checkpoint_edit.text().strip() if hasattr(self, "checkpoint_edit") else ""
        if self._use_tab is None or not text:
            return False
        if self._offered is None or self._offered[0] != text:
            named = _named_checkpoint(Path(text).expanduser())
            self._offered = (text, _same_path(named, Path(self._use_tab.checkpoint).expanduser()))
        return self._offered[1]

    def _update_halting_offer(self) -> None:
        """Fill the Halting choice for the checkpoint now named: the Use tab's setting first (what the user
        chose last), then the checkpoint's own, read in the background; one line when they are the same."""
        offered = self._offers_use_tab_halting()
        use = self._use_tab
        source = self.checkpoint_edit.text().strip()
        own = self._own_halting[1] if self._own_halting is not None and self._own_halting[0] == source else None
        self.halting_combo.blockSignals(True)
        previous = self.halting_combo.currentData()
        self.halting_combo.clear()
        if offered:
            if own is not None and use.same_as(own.mode, own.threshold):
                self.halting_combo.addItem(f"The checkpoint's own, as on the Use tab: {own.words}", OWN)
            else:
                # a fixed mode's words need the checkpoint's caps: its bare mode until they are read
                use_words = own.use_tab_words if own is not None and own.use_tab_words else _use_tab_words(use)
                self.halting_combo.addItem(f"As set on the Use tab: {use_words}", USE_TAB)
                self.halting_combo.addItem(f"The checkpoint's own: {own.words}" if own is not None
                                           else "The checkpoint's own setting", OWN)
                self.halting_combo.setCurrentIndex(max(0, self.halting_combo.findData(previous)))
        # read for every checkpoint named, offered or not: the note depends on its architecture too
        if source and own is None and (self._own_halting is None or self._own_halting[0] != source):
            self._read_own_halting(source, self._runner if offered else self._note_runner)
        self.halting_combo.setEnabled(self.halting_combo.count() > 1)
        self.halting_combo.blockSignals(False)
        self._update_halting_row()

    def _update_halting_row(self) -> None:
        if hasattr(self, "_form"):  # a copy carries the file as saved: nothing to choose
            shown = self._offers_use_tab_halting() and self.format_combo.currentData() != COPY
            if shown != self.halting_combo.isVisibleTo(self):
                self._form.setRowVisible(self.halting_combo, shown)  # its room comes and goes (see eventFilter)

    def _read_own_halting(self, source: str, runner: BackgroundRunner) -> None:
        """The checkpoint's saved mode and threshold, read without building its model, and in the engine's
        words both that and the Use tab's setting (they depend on the checkpoint's caps); its architecture
        for the note. On ``runner``: the dialog's own where the Halting choice waits for it, else one that
        keeps Export enabled meanwhile."""
        self._own_halting = (source, None)  # asked: not again for this path
        use = self._use_tab

        def work(report):
            config, left_unfitted = import_engine("checkpoint").halting_settings(source)
            full_depth = left_unfitted and config.mode == "adaptive"  # as the engine exports it (export.own_mode)
            if full_depth:
                config = dataclasses.replace(config, mode="max")
            return _OwnHalting(config.mode, config.halting_threshold if config.mode == "adaptive" else None,
                               halting_words(config),
                               halting_words(config, use.mode, use.threshold) if use is not None else None,
                               config.architecture, full_depth)

        def done(own: _OwnHalting) -> None:
            if self._own_halting is not None and self._own_halting[0] == source:
                self._own_halting = (source, own)
                self._update_halting_offer()
                self._update_note()

        runner.submit(work, done, lambda message: None)  # unreadable: the export itself will say why

    @Slot()
    def _on_halting_changed(self, *_: Any) -> None:
        self._clear_result()

    def halting_override(self) -> tuple[str, float | None] | None:
        """(mode, threshold) the export carries instead of the checkpoint's own, or None for its own."""
        use = self._use_tab
        if use is None or self.halting_combo.currentData() != USE_TAB or not self._offers_use_tab_halting() \
                or self.format_combo.currentData() == COPY:
            return None
        return use.mode, (use.threshold if use.mode == "adaptive" else None)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt name)
        """The one place the height is fitted: whatever changes the rows (the Halting row, the busy line or the
        message shown or hidden, the note's text, a font, another width and so the note's wrapping) makes
        the layout ask the dialog for a new size, once the event loop runs; and a first show fits too.
        A filter on the dialog itself, not an ``event`` override: with that one, where every event's Qt
        handling was called from Python, a test run hung while background reads were in flight."""
        if watched is self and event.type() in (QEvent.Type.LayoutRequest, QEvent.Type.Show):
            self._fit_height()  # it activates the layout first
        return False

    def _fit_height(self) -> None:
        """Exactly as tall as the rows shown at the dialog's width: it grows for every line of the (wrapped) note
        and messages and for the Halting row, and shrinks when they go. Only growing left an empty band above
        the buttons once the Halting row hid or the note got shorter, and a taller size asked for (680 x 300)
        showed one too; so the height is fixed to the content's and follows the width (a wider dialog wraps
        the note in fewer lines)."""
        layout = self.layout()
        if layout is None or self._fitting_height:
            return
        self._fitting_height = True
        try:
            layout.activate()
            width = self.width()
            needed = layout.totalHeightForWidth(width) if layout.hasHeightForWidth() else layout.totalSizeHint().height()
            needed = max(needed, layout.totalMinimumSize().height())
            if self.minimumHeight() != needed or self.maximumHeight() != needed:
                self.setFixedHeight(needed)
        finally:
            self._fitting_height = False

    # ================================================================ paths
    def _suggest_output(self) -> None:
        """Name the output after the checkpoint, with the format's suffix. A path the user typed keeps
        its folder and name: a folder gets the suggested file name inside it, and only a suffix of
        one of the formats is swapped ("model.onnx" -> "model.pt"; "model.v2" -> "model.v2.onnx")."""
        checkpoint = self.checkpoint_edit.text().strip() if hasattr(self, "checkpoint_edit") else ""
        if not checkpoint or not hasattr(self, "output_edit"):
            return
        suffix = self._suffixes.get(self.format_combo.currentData(), "")
        folder, name = self._suggested_name(_named_checkpoint(Path(checkpoint).expanduser()), suffix)
        typed = self.output_edit.text().strip()
        previous, self._suggested = getattr(self, "_suggested", None), name
        if not (self._output_edited and typed):
            self.output_edit.setText(str(folder / name))
            return
        current = Path(typed).expanduser()
        if typed.endswith(("/", os.sep)) or current.name in ("", ".", "..") or _is_dir(current):
            self.output_edit.setText(str(current / name))
        elif current.name == previous:  # the user chose the folder, this dialog the name: name it afresh
            self.output_edit.setText(str(current.with_name(name)))
        elif current.suffix in {*self._suffixes.values(), ".pt"}:
            self.output_edit.setText(str(current.with_suffix(suffix)))
        elif suffix:
            self.output_edit.setText(str(current.with_name(current.name + suffix)))

    def _suggested_name(self, source: Path, suffix: str) -> tuple[Path, str]:
        """(folder, file name) for an export of ``source``: runs/<run>/checkpoints/best.pt -> runs/<run>-best.onnx."""
        in_run = source.parent.name == "checkpoints"  # runs/<run>/checkpoints/best.pt
        folder = source.parent.parent if in_run else source.parent
        stem = f"{folder.name}-{source.stem}" if in_run else source.stem
        fmt = self.format_combo.currentData()
        if suffix == source.suffix:  # a .pt next to a .pt: say what it is
            stem += "-copy" if fmt == COPY else f".{fmt}"
        return folder, f"{stem}{suffix}"

    def _on_checkpoint_changed(self, text: str) -> None:
        """Nothing here touches the file system: typing stays quick on a slow or network path."""
        self._clear_result()
        self._update_buttons()
        if self.checkpoint_edit.isModified():  # typed: looked at once the typing pauses
            self._check_timer.start()
        else:  # set (Browse…, the app): at once
            self._check_checkpoint()

    def _check_pending_checkpoint(self) -> None:
        """A path typed a moment ago is looked at now, not after the pause (Return, Export, Browse…)."""
        if self._check_timer.isActive():
            self._check_checkpoint()

    def _check_checkpoint(self) -> None:
        """Look at the checkpoint path named (once): the Halting offer, the note and the suggested output."""
        self._check_timer.stop()
        self._offered = None  # the file system may have changed since the last look
        self._update_halting_offer()
        self._update_note()
        self._suggest_output()

    @Slot()
    def _clear_result(self, *_: Any) -> None:
        """The last export's message speaks of other paths once one changes, or a new export starts."""
        if not hasattr(self, "reveal_button") or self.is_busy():  # still being built, or busy
            return
        self.last_error = None
        self.result.hide()
        self.reveal_button.hide()

    def _on_output_edited(self, text: str) -> None:
        self._output_edited = bool(text.strip())

    def _choose_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint", self.checkpoint_edit.text(),
                                              "Checkpoints (*.pt *.pth *.ckpt);;All files (*)")
        if path:
            self.checkpoint_edit.setText(path)

    def _choose_output(self) -> None:
        self._check_pending_checkpoint()  # the suggestion for the path just typed, not the one before
        suffix = self._suffixes.get(self.format_combo.currentData(), "")
        pattern = f"{self.format_combo.currentText()} (*{suffix});;All files (*)" if suffix else "All files (*)"
        # Opens where Export would write (a relative name lies beside the suggestion, not in the app's working
        # folder), with the file name chosen. The dialog's own overwrite question would come twice: we ask in
        # start_export.
        path, _ = QFileDialog.getSaveFileName(self, "Export to", str(self._absolute_output(self.output_edit.text())),
                                              pattern, options=QFileDialog.Option.DontConfirmOverwrite)
        if path:
            self.output_edit.setText(path)
            self._output_edited = True

    @Slot()
    def _update_buttons(self, *_: Any) -> None:
        busy = self.is_busy()
        ready = bool(self.checkpoint_edit.text().strip()) and bool(self.output_edit.text().strip())
        self.export_button.setEnabled(ready and not busy)
        self.close_button.setEnabled(not self._exporting)

    # ================================================================ export
    @Slot()
    def start_export(self) -> bool:
        """Check the paths, confirm an overwrite, then export in the background; False if not started."""
        self._check_pending_checkpoint()  # typed a moment ago: the offer and suggestion follow the final path
        typed = self.output_edit.text().strip()
        fmt = self.format_combo.currentData()
        self._clear_result()
        try:
            source, target = self._checked_paths(typed)
            created = None if _exists(target.parent) else target.parent  # the export makes it: say so
            exists = target.exists()
        except _Refused as refusal:
            return self._fail(str(refusal))
        except (OSError, ValueError) as error:  # e.g. a name too long for the file system
            return self._fail(f"Cannot use this file name: {_path_problem(error)}.")
        if exists and fmt != COPY and import_engine("export").suffix_mismatch(fmt, target):
            # most likely another kind of file named by mistake (run.toml): never replaced, as the CLI refuses
            return self._fail(f"{target.name} exists and its suffix is not that of {fmt} files: not replaced "
                              "(remove it first, or choose another name).")
        if exists:
            answer = QMessageBox.question(self, "Replace file?", f"{target.name} already exists in {target.parent}. "
                                          "Replace it?", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                          QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return False

        halting = self.halting_override()
        mode, threshold = halting if halting is not None else (None, None)
        self.result.hide()
        self.cancel_button.setVisible(fmt != COPY)  # a copy is a file copy: quick, and in a thread
        self.busy_widget.show()
        self._exporting = True
        if fmt == COPY:
            self._runner.submit(lambda report: (str(_copy_checkpoint(source, target)), [], None, created, None),
                                self._on_exported, self._on_failed)
        else:  # the user answered the overwrite question above: the child may replace the file
            self._child_export = _ChildExport(target, created, _first_missing_folder(target.parent),
                                              halting is not None)
            self._export.start(ExportRequest(Path(os.path.abspath(source)), fmt, target, replace=exists,
                                             mode=mode, threshold=threshold))
        self._update_buttons()
        return True

    @Slot()
    def cancel_export(self) -> bool:
        """Stop the export in its child: nothing is written (a folder it created goes too, if empty). A child
        that had already written the file is an export that finished: said as such, with its path."""
        cancelled = self._export.cancel()
        if cancelled is None:
            return False
        if cancelled.finished is not None:
            self._on_exported_in_child(cancelled.finished, lead="The export had finished before Cancel. ")
            return True
        if self._child_export is not None and self._child_export.first_made is not None:
            _remove_empty_folders(self._child_export.target.parent, self._child_export.first_made)
        self._child_export = None
        self._exporting = False
        self.busy_widget.hide()
        self.last_error = None
        self.result.show_message("Export cancelled: nothing was written.", "info")
        self._update_buttons()
        return True

    def _checked_paths(self, typed: str) -> tuple[Path, Path]:
        """(checkpoint file, absolute output file), or ``_Refused`` saying why not. A run folder stands for
        its best.pt (else last.pt), as in the CLI; a relative output name is taken in the folder the
        dialog suggests (the app's working folder is nothing the user sees)."""
        text = self.checkpoint_edit.text().strip()
        checkpoint = import_engine("checkpoint")
        if not text:
            raise _Refused("Choose a checkpoint to export.")
        try:
            source = checkpoint.run_checkpoint(text)
            missing = not source.is_file()
        except checkpoint.CheckpointError as error:
            raise _Refused(f"{error}.") from None
        except (OSError, ValueError) as error:
            raise _Refused(f"Cannot use this checkpoint path: {_path_problem(error)}.") from None
        if missing:
            raise _Refused(f"No checkpoint file at {source}.")
        if not typed:
            raise _Refused("Give a file name to save as.")
        target = self._absolute_output(typed)
        if target.resolve() == source.resolve():
            raise _Refused("Choose another output file: it is the checkpoint itself.")
        if target.is_dir():
            raise _Refused(f"{target} is a folder: give a file name.")
        try:
            output = import_engine("runs").output_file(target)
        except ValueError as error:
            raise _Refused(f"Cannot write {target}: {error}.") from None
        _refuse_unwritable(output)  # at once: an export runs for seconds before it writes (QA: 4-5 s for ONNX)
        return source, output

    def _absolute_output(self, typed: str) -> Path:
        """The output file ``typed`` names, for Export and Browse… alike: a relative name lies in the folder
        of the suggested one (the checkpoint's run folder); with no checkpoint yet, in the home folder."""
        target = Path(typed.strip()).expanduser()
        checkpoint = self.checkpoint_edit.text().strip()
        if not target.is_absolute():
            source = _named_checkpoint(Path(checkpoint).expanduser())  # the engine's run_checkpoint, without torch
            target = (self._suggested_name(source, "")[0] if checkpoint else Path.home()) / target
        return Path(os.path.abspath(target))  # ".." folded, links kept (output_file follows them)

    def _on_exported_in_child(self, outcome: ExportOutcome, *, lead: str = "") -> None:
        job, self._child_export = self._child_export, None
        # the Use tab's setting, in the words the exported file's metadata has
        words = outcome.halting if job is not None and job.halting_overridden else None
        self._on_exported((outcome.path, list(outcome.caveats), outcome.warning,
                           job.created if job is not None else None, words), lead=lead)

    def _on_exported(self, outcome: tuple[str, list[str], str | None, Path | None, str | None], *,
                     lead: str = "") -> None:
        path, caveats, mismatch, created, words = outcome
        self._exporting = False
        self.busy_widget.hide()
        self.last_path, self.last_error = path, None
        caveat = "".join(f" Note: {c[0].upper()}{c[1:]}." for c in caveats)
        caveat += f" Note: {mismatch}." if mismatch else ""  # starts with the path: not capitalised
        made = f" (created the folder {created})" if created is not None else ""
        halting = f" Halting: {words}, as set on the Use tab." if words else ""
        self.result.show_message(f"{lead}Exported to {path}{made}.{halting}{caveat}",
                                 "warning" if caveats or mismatch else "info")
        self.reveal_button.show()
        self._update_buttons()
        self.exported.emit(path)

    def _on_failed(self, message: str) -> None:
        self._child_export = None
        self._exporting = False
        self.busy_widget.hide()
        self._fail(f"Export failed: {message}")
        self._update_buttons()

    def _fail(self, message: str) -> bool:
        self.last_error = message
        self.result.show_error(message)
        return False

    def _reveal(self) -> None:
        if self.last_path:
            show_folder(self, Path(self.last_path).parent)

    def is_busy(self) -> bool:
        return self._runner.is_busy() or self._export.is_running()

    def reject(self) -> None:
        if self._exporting:  # stay open: an export goes on until it ends or Cancel stops it, never unseen
            return
        super().reject()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if self._exporting:
            event.ignore()
            return
        super().closeEvent(event)


class _WrappedNote(QLabel):
    """A wrapped label whose size hint is its height at the width it has. A form row takes the size hint,
    which QLabel works out for a narrower guess of its width: lines of empty room stood under the note."""

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return self._at_width(super().sizeHint())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt name): never squeezed to fewer lines than it has
        return self._at_width(super().minimumSizeHint())

    def _at_width(self, hint: QSize) -> QSize:
        if self.wordWrap() and self.width() > 0:
            return QSize(hint.width(), self.heightForWidth(self.width()))
        return hint

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self.updateGeometry()  # another width, another height: the form asks again


@dataclass(frozen=True)
class _ChildExport:
    """The export running in a child process, as the dialog needs it once the child ends."""

    target: Path
    created: Path | None  # the target's folder, where the export makes it (the message says so)
    first_made: Path | None  # the outermost folder the export makes: a cancel removes it again, if empty
    halting_overridden: bool  # the Use tab's setting, not the checkpoint's own: the message names it


class _Refused(Exception):
    """A path the dialog will not export from or to; the message is one sentence for the user."""


def _path_problem(error: BaseException) -> str:
    """Why the system refused a path, as the end of a sentence: "file name too long"."""
    if isinstance(error, ValueError) and "null" in str(error):
        return "it contains a NUL character"
    reason = (error.strerror if isinstance(error, OSError) else None) or str(error) or type(error).__name__
    return reason[0].lower() + reason[1:]


#: Why a folder takes no file, in words, by the system's error (others: the system's own words).
UNWRITABLE_REASONS = {
    errno.EROFS: "it is on a read-only disk or mount",
    errno.EACCES: "you have no permission to write there",
    errno.EPERM: "you have no permission to write there",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "your disk quota is used up",
}


def _refuse_unwritable(output: Path) -> None:
    """``_Refused`` when ``output`` cannot be written: its folder (or the nearest one that exists, where the
    export makes the rest) takes no new file. Found by creating one there, as the export's temp file is."""
    missing = _first_missing_folder(output.parent)
    folder = missing.parent if missing is not None else output.parent
    if not _is_dir(folder):
        raise _Refused(f"Cannot write {output}: {folder} is a file, not a folder.")
    try:
        handle, probe = tempfile.mkstemp(prefix=".iamnn-write-test.", dir=folder)
    except OSError as error:
        reason = UNWRITABLE_REASONS.get(error.errno) or _path_problem(error)
        raise _Refused(f"Cannot write in {folder}: {reason}. Choose another folder.") from None
    os.close(handle)
    os.unlink(probe)


def _named_checkpoint(path: Path) -> Path:
    """The file a run folder stands for, to name the output after (no torch here: the export itself asks
    the engine's ``run_checkpoint``); anything else is itself."""
    if _is_dir(path):
        for name in ("best.pt", "last.pt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
    return path


def _same_path(a: Path, b: Path) -> bool:
    """The same file, links and ".." resolved (no file system error escapes: a bad name is no match)."""
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a name too long, a NUL character: no folder of that name
        return False


def _first_missing_folder(folder: Path) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist yet; None if ``folder`` exists."""
    missing = None
    while not _exists(folder) and folder != folder.parent:
        missing, folder = folder, folder.parent
    return missing


def _remove_empty_folders(folder: Path, up_to: Path) -> None:
    """Remove ``folder`` and its parents up to ``up_to`` (included) while they are empty: a cancelled export
    leaves no folder it made behind."""
    try:
        folder, up_to = Path(os.path.abspath(folder)), Path(os.path.abspath(up_to))
        while folder == up_to or up_to in folder.parents:
            folder.rmdir()  # OSError once one is not empty
            folder = folder.parent
    except OSError:
        pass


def _copy_checkpoint(source: Path, target: Path) -> Path:
    """Copy atomically (temp file + fsync + rename), after checking the copy is a loadable checkpoint."""
    import_engine("checkpoint").load_checkpoint(source)  # refuse to copy a damaged or foreign file
    io = import_engine("io")
    try:
        with source.open("rb") as reader:
            io.atomic_write(target, lambda fh: shutil.copyfileobj(reader, fh))
    except OSError as error:
        raise ValueError(f"cannot write {target}: {error.strerror or error}") from None
    return target
