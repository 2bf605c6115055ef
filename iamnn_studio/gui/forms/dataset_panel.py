"""The dataset card (which data, where, validation split) and the preview grid of sample images.

The panel only edits ``DataConfig`` fields; loading a preview is the run form's background job,
whose result (``PreviewData``) the ``DatasetPreview`` shows: a few images of every class with
the class's image counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..style import COLORS, SPACING, scaled_pt, set_role
from ..worker import DetachedTasks
from .fields import ChoiceBox, FormCard, LoadedValueSpinBox, hbox_widget, muted

PREVIEW_PER_CLASS = 8
PREVIEW_MAX_CLASSES = 20
THUMB_PX = 44
THUMB_COLUMN = 5  # class name, three counts, a gap, then the samples
#: A folder being typed is checked after this pause in typing (and at once on Enter or when the field loses focus).
FOLDER_CHECK_DELAY_MS = 500
#: A folder whose check has not answered after this long (a dead network mount) gets "does not answer" as its
#: verdict; the check goes on, and its answer, should it come, replaces that verdict.
FOLDER_CHECK_TIMEOUT_MS = 10_000


#: What the engine's download advice (``data.base.ALLOW_DOWNLOADS``, worded for both the command line and the app)
#: says in the app, which has no --download option.
ALLOW_DOWNLOADS_IN_APP = "tick “Allow download”"


def in_app_words(message: str) -> str:
    """An engine message about a dataset in the app's words."""
    from iamnn_studio.engine.data.base import ALLOW_DOWNLOADS

    return message.replace(ALLOW_DOWNLOADS, ALLOW_DOWNLOADS_IN_APP)


NO_VALIDATION_NOTE = ("No validation split: the last epoch's model is kept, progress is measured on the test "
                      "images, and the halting is calibrated on training images.")


@dataclass
class ProviderEntry:
    """A dataset of the registry as the drop-down shows it."""

    name: str
    label: str
    description: str
    available: bool
    reason: str
    downloadable: bool = True  # whether "Allow download" means anything for it
    unreadable: bool = False  # its files are where the check looked, but reading them failed (the preview's error)


@dataclass
class PreviewData:
    """What the preview grid shows; computed in the background from a decoded dataset."""

    name: str
    classes: list[str]
    images: np.ndarray  # uint8 [N, C, H, W], grouped by class
    labels: np.ndarray  # int64 [N]
    counts: dict[str, list[int]]  # split -> images per class
    in_channels: int
    image_size: int
    notes: list[str] = field(default_factory=list)
    val_fraction: float = 0.0  # the validation split it was read with
    carved: bool = False  # whether its validation images were that share of the training pool
    val_split: str = "per-class"  # how that share was drawn (data.val_split)

    def split_sizes(self, val_fraction: float) -> tuple[int, int]:
        """(train, validation) image totals at ``val_fraction``, without reading the dataset again:
        a carved split moves images between the two as the engine's ``split_off`` would."""
        from iamnn_studio.engine.data import held_out_total

        train, val = sum(self.counts["train"]), sum(self.counts["val"])
        if not self.carved or val_fraction == self.val_fraction:
            return train, val
        held = held_out_total(self.pool_sizes(), val_fraction, self.val_split)
        return train + val - held, held

    def pool_sizes(self) -> list[int]:
        """The images of each class that training and validation share (what a split divides)."""
        return [n_train + n_val for n_train, n_val in zip(self.counts["train"], self.counts["val"])]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape_text(self) -> str:
        return f"{self.in_channels}×{self.image_size}×{self.image_size}"


def load_preview(data_values: dict[str, Any], seed: int, per_class: int = PREVIEW_PER_CLASS) -> PreviewData:
    """Decode the dataset ``data_values`` describes and pick sample images (runs off the UI thread)."""
    from iamnn_studio.engine.config import DataConfig
    from iamnn_studio.engine.data import class_counts, load_dataset, preview

    config = DataConfig.from_dict(data_values)
    try:
        bundle = load_dataset(config, seed=seed)
    except ValueError as error:
        raise ValueError(in_app_words(str(error))) from None
    images, labels = preview(bundle, per_class=per_class)
    counts = {
        split: class_counts(bundle.split(split), bundle.num_classes) for split in ("train", "val", "test")
    }
    fraction = float(data_values.get("val_fraction") or 0.0)
    # A dataset that brings its own validation images (a val/ folder) keeps them whatever the split says
    carved = bundle.val_carved
    return PreviewData(
        name=bundle.name,
        classes=list(bundle.classes),
        images=images.numpy().copy(),
        labels=labels.numpy().copy(),
        counts=counts,
        in_channels=bundle.in_channels,
        image_size=bundle.image_size,
        notes=list(bundle.notes),
        val_fraction=fraction,
        carved=carved,
        val_split=bundle.val_split or config.val_split,  # a plugin that names no method draws at random
    )


def provider_entries() -> list[ProviderEntry]:
    """Every registered dataset with its offline availability (cheap file checks)."""
    from iamnn_studio.engine.data import DATASETS, dataset_availability

    availability = dataset_availability()
    entries = []
    for name in DATASETS:
        provider = DATASETS.get(name)
        available, reason = availability.get(name, (False, "unknown"))
        entries.append(ProviderEntry(name, provider.label, provider.description, available, in_app_words(reason),
                                     bool(getattr(provider, "downloadable", True))))
    return entries


class DatasetPanel(FormCard):
    """Dataset, folder, download permission and validation split.

    Whether the chosen dataset is here (the provider's ``available_offline``, given the folder typed) is
    checked in a background thread, one per check: a folder on a slow or hung network drive must not freeze
    the window, nor hold up the check of the next folder (after ``FOLDER_CHECK_TIMEOUT_MS`` it "does not
    answer"). ``availability_checked(changed)`` says when a verdict arrives for the dataset and folder shown;
    until they have one, ``checking()`` is True (Start waits for it), and ``folder_unchecked()`` while the
    folder the user typed waits for its own.
    """

    changed = Signal()
    availability_checked = Signal(bool)  # whether the verdict is new (or answers a folder the user typed)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Dataset", parent=parent)
        self._entries: dict[str, ProviderEntry] = {}

        self.provider = ChoiceBox()
        self.provider.setMinimumWidth(180)
        self.add_row("data.name", "Dataset", self.provider, full_width=True)
        self.description = muted("", wrap=True)
        self.grid.addWidget(self.description, self.grid.rowCount(), 0, 1, 2)

        self.folder = QLineEdit()
        self.folder.setPlaceholderText("Default places")
        self.folder.setClearButtonEnabled(True)
        self.browse = QPushButton("Browse…")
        self.add_row(
            "data.root", "Folder", hbox_widget(self.folder, self.browse, first_fills=True), inputs=[self.folder],
            tooltip="Where the dataset's files are; for an image folder, one sub-folder of images per class",
        )
        self.download = QCheckBox("Allow download")
        self.download.setToolTip("Let torchvision download the dataset if it is not on this computer")
        self.add_row("data.download", "", self.download)

        self.val_percent = LoadedValueSpinBox()
        self.val_percent.setRange(0, 99)
        self.val_percent.setSuffix(" %")
        self.val_percent.setMaximumWidth(90)
        self.add_row(
            "data.val_fraction", "Validation split", self.val_percent,
            tooltip="Share of the training images held out to validate (and to calibrate halting)",
        )
        self.val_note = muted(NO_VALIDATION_NOTE, wrap=True)
        self.val_note.setStyleSheet(f"color: {COLORS['warning']};")
        self.val_note.hide()
        self.grid.addWidget(self.val_note, self.grid.rowCount(), 0, 1, 2)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.grid.addWidget(self.status, self.grid.rowCount(), 0, 1, 2)

        self._extra: dict[str, Any] = {}  # DataConfig fields this card does not edit (kept as loaded)
        self._folders: dict[str, str] = {}  # the folder typed for each dataset: an image folder is no CIFAR root
        self._shown_provider = self.provider.value()
        # (dataset, folder) -> (available, reason): the latest verdict of each; checked again whenever shown
        self._verdicts: dict[tuple[str, str], tuple[bool, str]] = {}
        self._unreadable: set[tuple[str, str]] = set()  # (dataset, folder)s whose files could not be read
        self._unchecked = False  # the user typed (or browsed to) a folder whose verdict has not arrived yet
        self._checks = DetachedTasks(self)
        self._folder_timer = QTimer(self)
        self._folder_timer.setSingleShot(True)
        self._folder_timer.setInterval(FOLDER_CHECK_DELAY_MS)
        self._folder_timer.timeout.connect(self._refresh_availability)
        self.provider.choice_changed.connect(self._on_provider_changed)
        self.folder.textEdited.connect(self._on_folder_typed)
        self.folder.editingFinished.connect(self._on_folder_edited)
        self.browse.clicked.connect(self._choose_folder)
        self.download.toggled.connect(self.changed)
        self.val_percent.valueChanged.connect(self.changed)
        self.val_percent.valueChanged.connect(lambda percent: self.val_note.setVisible(percent == 0))

    # ------------------------------------------------------------------ providers
    def set_providers(self, entries: list[ProviderEntry]) -> None:
        current = self.provider.value()
        self._entries = {e.name: e for e in entries}
        for entry in entries:  # what the default places held when the list was made (no folder typed)
            self._verdicts.setdefault((entry.name, ""), (entry.available, entry.reason))
        self.provider.blockSignals(True)
        self.provider.set_choices((_choice_text(e), e.name) for e in entries)
        for index, entry in enumerate(entries):
            self.provider.setItemData(index, entry.reason, Qt.ItemDataRole.ToolTipRole)
        if current is not None:
            self.provider.set_value(current)
        self.provider.blockSignals(False)
        self._show_provider_details()

    def provider_label(self) -> str:
        entry = self._entries.get(self.provider.value() or "")
        return entry.label if entry else (self.provider.value() or "")

    def _on_provider_changed(self) -> None:
        if self._shown_provider is not None:
            self._folders[self._shown_provider] = self.folder.text()
        self._shown_provider = self.provider.value()
        self.folder.setText(self._folders.get(self._shown_provider or "", ""))
        self._unchecked = False
        self._folder_timer.stop()
        self._show_provider_details()
        self.changed.emit()

    def _on_folder_typed(self, _text: str) -> None:
        """A key pressed in the folder field: the verdict shown is another folder's. Start waits, and the
        folder is checked once typing pauses (QA: a folder typed without Enter was never checked, and
        Start launched a run the engine then refused)."""
        self._unchecked = True
        self._folder_timer.start()
        self.show_status("busy", "Checking the folder…")
        self.changed.emit()

    def _on_folder_edited(self) -> None:
        """Enter, or the field lost its focus (the user clicked elsewhere, even on Start): check it now."""
        self._unchecked = True
        self._folder_timer.stop()
        self._refresh_availability()
        self.changed.emit()

    def folder_unchecked(self) -> bool:
        """Whether the folder the user typed still waits for its verdict."""
        return self._unchecked

    def checking(self) -> bool:
        """Whether the dataset and folder shown have no verdict yet (the preview and Start wait for it)."""
        return self._unchecked or self._availability_key() not in self._verdicts

    def checking_reason(self) -> str:
        """Why Start waits while ``checking()``."""
        return "Checking the dataset's folder…" if self.folder.text().strip() else \
            "Checking whether the dataset is here…"

    def _availability_key(self) -> tuple[str, str]:
        return self.provider.value() or "", self.folder.text().strip()

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the dataset folder", self.folder.text())
        if folder:
            self.folder.setText(folder)
            self._on_folder_edited()

    def _show_provider_details(self) -> None:
        entry = self._entries.get(self.provider.value() or "")
        self.description.setText(entry.description if entry else "")
        self.folder.setPlaceholderText(
            "Choose a folder of images" if self.provider.value() == "imagefolder" else "Default places"
        )
        self._show_download_row(self.downloadable())
        self._refresh_availability()

    def _show_download_row(self, visible: bool) -> None:
        """Show or hide the "Allow download" row, its label and the breathing room above it too (QA: hidden,
        it left a blank gap between Folder and Validation split, the room kept for it)."""
        self.rows["data.download"].set_visible(visible)
        row = self.grid.getItemPosition(self.grid.indexOf(self.download))[0]
        self.grid.setRowMinimumHeight(row - 1, 6 if visible else 0)

    def downloadable(self) -> bool:
        entry = self._entries.get(self.provider.value() or "")
        return entry.downloadable if entry else not self.unknown_dataset()

    def unknown_dataset(self) -> str | None:
        """Why the chosen dataset cannot be used when no loaded provider has its name (a run or a config
        file made with a plugin's dataset, that plugin not loaded now), else None."""
        name = self.provider.value()
        if not name or not self._entries or name in self._entries:
            return None
        from iamnn_studio.engine.plugins import user_plugin_dirs

        folders = " or ".join(str(folder) for folder in user_plugin_dirs()) or "a plugin folder"
        return (f"the dataset '{name}' comes from a plugin that is not loaded (or the name is misspelt): put that "
                f"plugin in {folders} and restart IamNN Studio, or choose another dataset")

    def _refresh_availability(self) -> None:
        """Re-check the chosen dataset with the folder as typed, in the background (the provider's file
        checks: the engine's own words for a missing folder, a file, a folder without class folders...).
        The last verdict for this dataset and folder shows meanwhile, if there is one."""
        name = self.provider.value()
        if not name or not self._entries:
            return
        if self.unknown_dataset():
            self.show_status("error", "")  # the dataset row says what is wrong: no other line about it
            return
        from iamnn_studio.engine.data import DATASETS, offline_verdict

        key = self._availability_key()
        known = self._verdicts.get(key)
        if known is not None and not self._unchecked:
            self._show_verdict(name, *known)
        else:
            self.show_status("busy", "Checking the folder…" if key[1] else "Checking…")
        provider, folder = DATASETS.get(name), key[1] or None

        def check() -> tuple[bool, str]:  # a plugin's check that fails says "cannot check: ..."; the form stays usable
            available, reason = offline_verdict(provider, folder)
            return available, in_app_words(reason)

        # Each (dataset, folder) has its own check: one that hangs holds up no other. A folder whose check still
        # runs is not checked again: that check answers (at once "does not answer" if it is past its limit).
        where = "the folder does not answer" if folder else "its default places do not answer"
        silent = f"{where} after {FOLDER_CHECK_TIMEOUT_MS / 1000:g} s (a network drive?)" \
            + (f": {folder}" if folder else "")
        self._checks.submit(key, check, lambda verdict: self._on_checked(key, verdict),
                            lambda message: self._on_checked(key, (False, f"cannot check: {message}")),
                            timeout_ms=FOLDER_CHECK_TIMEOUT_MS,
                            on_timeout=lambda: self._on_checked(key, (False, silent)))

    def _on_checked(self, key: tuple[str, str], verdict: tuple[bool, str]) -> None:
        """A verdict for ``key``: kept for when it is shown again; shown (and said) if it is shown now."""
        previous = self._verdicts.get(key)
        self._verdicts[key] = verdict
        if key != self._availability_key() or self.unknown_dataset():
            return  # typed on since (its own check follows) or another dataset chosen
        typed, self._unchecked = self._unchecked, False
        self._show_verdict(key[0], *verdict)
        self.availability_checked.emit(typed or verdict != previous)

    def _show_verdict(self, name: str, available: bool, reason: str) -> None:
        entry = self._entries[name]
        entry.available, entry.reason = available, reason
        # The list said what the default places hold: a folder typed since may hold it, or may not.
        self._show_choice_text(name, reason)
        if not entry.unreadable:  # its files are here but did not read: "✓ found" would say they are fine
            self.show_status("ok" if available else "warning", reason)

    def _show_choice_text(self, name: str, tooltip: str) -> None:
        entry = self._entries[name]
        entry.unreadable = (name, self.folder.text().strip()) in self._unreadable
        index = self.provider.findData(name)
        self.provider.setItemText(index, _choice_text(entry))
        self.provider.setItemData(index, tooltip, Qt.ItemDataRole.ToolTipRole)

    def show_read_result(self, error: str | None) -> None:
        """How reading the dataset shown went (the preview): the check only finds its files, so damaged ones
        passed it, and the list said "available offline" above "cannot read …" (QA). An error marks the list's
        line and shows under the card; None (read fine) takes the mark away."""
        key = self._availability_key()
        (self._unreadable.add if error else self._unreadable.discard)(key)
        if key[0] in self._entries:
            self._show_choice_text(key[0], error or self._entries[key[0]].reason)
        if error:
            self.show_status("error", error)

    def show_status(self, kind: str, text: str) -> None:
        """One line under the card: ``ok`` (green), ``warning``, ``error`` (red) or ``busy``."""
        prefix = {"ok": "✓ ", "warning": "", "error": "", "busy": ""}.get(kind, "")
        color = {"ok": COLORS["success"], "warning": COLORS["warning"], "error": COLORS["error"]}.get(
            kind, COLORS["text_muted"]
        )
        self.status.setStyleSheet(f"color: {color};")
        self.status.setText(prefix + text[:400])
        self.status.setVisible(bool(text))  # no empty line's gap at the card's foot

    def is_available(self) -> bool:
        verdict = self._verdicts.get(self._availability_key())
        return bool(verdict and verdict[0]) or (self.download.isChecked() and self.downloadable())

    def wait_for_checks(self, timeout_ms: int = 30_000) -> bool:
        return self._checks.wait(timeout_ms)

    # --------------------------------------------------------------------- values
    def load_values(self, data: dict[str, Any]) -> None:
        for widget in (self.provider, self.folder, self.download, self.val_percent):
            widget.blockSignals(True)
        if not self.provider.set_value(data.get("name")) and data.get("name"):
            # unknown (its plugin not loaded?): keep it visible, the form says what is wrong with it
            self.provider.addItem(f"{data['name']}  ·  not loaded", data["name"])
            self.provider.set_value(data["name"])
        self.folder.setText(data.get("root") or "")
        self._shown_provider = self.provider.value()
        self.download.setChecked(bool(data.get("download", False)))
        fraction = data.get("val_fraction", 0.1)
        number = isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and math.isfinite(fraction)
        self.val_percent.show_value(fraction, round(fraction * 100) if number else None)  # 1.5 stays 1.5, not 99 %
        self._extra = {k: v for k, v in data.items() if k not in ("name", "root", "download", "val_fraction")}
        for widget in (self.provider, self.folder, self.download, self.val_percent):
            widget.blockSignals(False)
        self.val_note.setVisible(not self.val_percent.keeps_loaded and self.val_percent.value() == 0)
        self._unchecked = False
        self._folder_timer.stop()
        self._show_provider_details()

    def values_into(self, data: dict[str, Any]) -> None:
        data.update(self._extra)
        data["name"] = self.provider.value() or data.get("name", "")
        data["root"] = self.folder.text().strip() or None
        data["download"] = self.download.isChecked()
        box = self.val_percent
        data["val_fraction"] = box.loaded if box.keeps_loaded else box.value() / 100.0


class DatasetPreview(QWidget):
    """Sample images of every class with counts, plus a one-line summary of the dataset."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(SPACING["page"], SPACING["page"], SPACING["page"], SPACING["page"])
        layout.setSpacing(SPACING["section"])
        self.summary = QLabel("The dataset preview appears once the engine has loaded.")
        self.summary.setWordWrap(True)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)  # alone while no samples
        set_role(self.summary, "muted")
        layout.addWidget(self.summary)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # thumbnails fit instead
        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setHorizontalSpacing(6)
        self.grid.setVerticalSpacing(6)
        self.scroll.setWidget(self.grid_host)
        layout.addWidget(self.scroll, 1)
        self.data: PreviewData | None = None
        self._thumbnails: list[QLabel] = []  # every sample image, in grid columns THUMB_COLUMN onwards

    def show_message(self, text: str, error: bool = False, clear: bool = False) -> None:
        """A line instead of the summary; ``error`` or ``clear`` also takes away the samples shown
        (they belong to a dataset the form no longer has)."""
        self.summary.setText(text)
        set_role(self.summary, "error" if error else "muted")
        if error or clear:
            self.data = None
            self._clear_grid()
            # the emptied grid keeps its last size until Qt lays it out again: its scroll area showed an empty
            # scrollbar under a read error (QA); without samples there is nothing to scroll
            self.scroll.hide()

    def set_data(self, data: PreviewData) -> None:
        self.data = data
        self._clear_grid()
        self.scroll.show()
        sizes = {split: sum(counts) for split, counts in data.counts.items()}
        summary = (
            f"<b>{data.num_classes} classes</b> · images {data.shape_text} · "
            f"{sizes['train']:,} train · {sizes['val']:,} validation · {sizes['test']:,} test"
        )
        if data.notes:
            summary += f"<br><span style='color:{COLORS['text_faint']}'>{'; '.join(data.notes)}</span>"
        self.summary.setText(summary)
        set_role(self.summary, "muted")
        header_style = f"color: {COLORS['text_faint']}; font-size: {scaled_pt(9):g}pt;"
        for column, text in enumerate(("Class", "Train", "Val", "Test")):
            label = QLabel(text)
            label.setStyleSheet(header_style)
            self.grid.addWidget(label, 0, column)
        shown = min(data.num_classes, PREVIEW_MAX_CLASSES)
        for c in range(shown):
            row = c + 1
            name = QLabel(data.classes[c])
            name.setMinimumWidth(110)
            self.grid.addWidget(name, row, 0)
            for column, split in enumerate(("train", "val", "test"), start=1):
                count = QLabel(f"{data.counts[split][c]:,}")
                count.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                set_role(count, "muted")
                # never narrower than its number: a bare minimum width replaces the label's own,
                # and a large font then cut "54,000" to "l,000"
                count.setMinimumWidth(max(48, count.sizeHint().width()))
                self.grid.addWidget(count, row, column)
            for k, image in enumerate(data.images[data.labels == c][:PREVIEW_PER_CLASS]):
                thumb = QLabel()
                thumb.setPixmap(thumbnail(image, THUMB_PX))
                thumb.setFixedSize(THUMB_PX, THUMB_PX)
                thumb.setProperty("sample", k)
                self.grid.addWidget(thumb, row, THUMB_COLUMN + k)
                self._thumbnails.append(thumb)
        if data.num_classes > shown:
            more = muted(f"… and {data.num_classes - shown} more classes")
            self.grid.addWidget(more, shown + 1, 0, 1, 4)
        self.grid.setColumnMinimumWidth(4, 10)
        self.grid.setColumnStretch(THUMB_COLUMN + PREVIEW_PER_CLASS, 1)
        self.grid.setRowStretch(shown + 2, 1)
        self._fit_thumbnails()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._fit_thumbnails()

    def _fit_thumbnails(self) -> None:
        """Show as many samples per class as the width holds: a narrow window must not scroll sideways."""
        if not self._thumbnails:
            return
        self.grid.activate()
        first = self.grid.cellRect(1, THUMB_COLUMN)  # where the samples start, after the names and counts
        if not first.isValid():
            return
        spacing = self.grid.horizontalSpacing()
        room = self.scroll.viewport().width() - first.x()
        fits = max(1, min(PREVIEW_PER_CLASS, (room + spacing) // (THUMB_PX + spacing)))
        for thumb in self._thumbnails:
            thumb.setVisible(thumb.property("sample") < fits)

    def _clear_grid(self) -> None:
        self._thumbnails = []
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()


def thumbnail(image: np.ndarray, size: int) -> QPixmap:
    """A uint8 [C, H, W] image as a crisp (nearest-neighbour) pixmap of ``size`` px."""
    channels, height, width = image.shape
    if channels == 1:
        pixels = np.ascontiguousarray(image[0])
        qimage = QImage(pixels.data, width, height, width, QImage.Format.Format_Grayscale8)
    else:
        pixels = np.ascontiguousarray(np.transpose(image[:3], (1, 2, 0)))
        qimage = QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    pixmap = QPixmap.fromImage(qimage.copy())  # copy: the numpy buffer may go away
    return pixmap.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)


def _choice_text(entry: ProviderEntry) -> str:
    """The dataset list's line for ``entry``: its name and whether its files are here."""
    if entry.name == "imagefolder":
        return f"{entry.label}  ·  your own images"
    return f"{entry.label}  ·  {_availability_word(entry)}"


def _availability_word(entry: ProviderEntry) -> str:
    """What the dataset list says beside a dataset's name (its tooltip says why)."""
    if entry.available:
        return "files unreadable" if entry.unreadable else "available offline"
    if str(entry.reason).startswith("cannot check"):  # a plugin's own check failed
        return "cannot check"
    return "needs download" if entry.downloadable else "files not found"
