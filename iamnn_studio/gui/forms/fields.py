"""Building blocks of the forms: a titled card of labelled rows, each with an inline error line.

Every row is keyed by the config field it edits (``"model.width"``, ``"data.val_fraction"``,
``"lr"``), so a ``ValueError("width: ...")`` from ``RunConfig.validate()`` lands under the right
input. Number inputs accept whatever the user types; the config decides what is valid.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from PySide6.QtCore import QEvent, QSize, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QStylePainter,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QStyle,
    QStyleOptionComboBox,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from ..style import SPACING, set_invalid, set_role

LABEL_WIDTH = 118


class FieldRow:
    """One labelled input (or a composite widget) with its error line below it."""

    def __init__(self, key: str, label: QLabel, widget: QWidget, error: QLabel, inputs: list[QWidget]) -> None:
        self.key, self.label, self.widget, self.error_label = key, label, widget, error
        self.inputs = inputs  # the widgets that turn red

    def show_error(self, message: str | None) -> None:
        self.error_label.setText(message or "")
        self.error_label.setVisible(bool(message))
        for widget in self.inputs:
            set_invalid(widget, bool(message))

    @property
    def error(self) -> str:
        return self.error_label.text()

    def set_visible(self, visible: bool) -> None:
        self.label.setVisible(visible and bool(self.label.text()))
        self.widget.setVisible(visible)
        if not visible:
            self.error_label.setVisible(False)
        elif self.error_label.text():
            self.error_label.setVisible(True)


class FormCard(QFrame):
    """A white card with a title and a two-column grid: labels on the left, inputs on the right."""

    def __init__(self, title: str, subtitle: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Card")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(SPACING["page"], 12, SPACING["page"], 14)
        outer.setSpacing(SPACING["row"])
        heading = QLabel(title)
        heading.setObjectName("CardTitle")
        outer.addWidget(heading)
        if subtitle:
            outer.addWidget(muted(subtitle, wrap=True))
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(12)
        self.grid.setVerticalSpacing(2)
        self.grid.setColumnMinimumWidth(0, LABEL_WIDTH)
        self.grid.setColumnStretch(1, 1)
        outer.addLayout(self.grid)
        self.rows: dict[str, FieldRow] = {}

    def add_row(
        self,
        key: str,
        label: str,
        widget: QWidget,
        *,
        inputs: Iterable[QWidget] | None = None,
        hint: str = "",
        tooltip: str = "",
        full_width: bool = False,
    ) -> FieldRow:
        """A labelled input (``full_width``: the input spans both columns, the label is hidden)."""
        row = self.grid.rowCount()
        label_widget = QLabel(label)
        label_widget.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        if tooltip:
            label_widget.setToolTip(tooltip)
            widget.setToolTip(tooltip)
        if row > 0:
            self.grid.setRowMinimumHeight(row, 6)  # breathing room between rows
            row += 1
        column = 0 if full_width else 1
        if full_width:
            label_widget.setVisible(False)
            self.grid.addWidget(widget, row, 0, 1, 2)
        else:
            self.grid.addWidget(label_widget, row, 0)
            self.grid.addWidget(widget, row, 1)
        if hint:
            row += 1
            self.grid.addWidget(hint_label(hint), row, column, 1, 2 - column)
        error = QLabel()
        error.setWordWrap(True)
        set_role(error, "error")
        error.setVisible(False)
        self.grid.addWidget(error, row + 1, column, 1, 2 - column)
        field = FieldRow(key, label_widget, widget, error, list(inputs) if inputs is not None else [widget])
        self.rows[key] = field
        return field

    def add_full_width(self, widget: QWidget) -> None:
        row = self.grid.rowCount()
        self.grid.addWidget(widget, row, 0, 1, 2)


class FloatEdit(QLineEdit):
    """A number typed as text ("0.1", "5e-4"): ``value()`` is a float, or the raw text if it is none.

    The config's ``validate()`` then explains what is wrong with the raw text.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMaximumWidth(140)

    def value(self) -> float | str:
        text = self.text().strip()
        try:
            return float(text)
        except ValueError:
            return text

    def set_value(self, value: Any) -> None:
        self.setText(format_number(value))


class IntEdit(QLineEdit):
    """A whole number typed as text: ``value()`` is an int, or the raw text if it is none.

    Unlike a ``QSpinBox`` (32-bit, and silently clamping) it holds any size, e.g. the seeds up to
    2**53 - 1 that the CLI takes; the config's ``validate()`` says what is out of range.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMaximumWidth(160)

    def value(self) -> int | str:
        text = self.text().strip()
        return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else text

    def set_value(self, value: Any) -> None:
        self.setText("" if value is None else str(value))


class LoadedValueSpinBox(QSpinBox):
    """A spin box that keeps a loaded value it cannot show (-3, "ten", past its range) until the user edits it:
    ``value_or_loaded()`` is then the file's own value, so that the config's message quotes it ("got -3"),
    not the clamped one ("got 0"), and a bad value is never made good by clamping."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loaded: Any = None
        self.keeps_loaded = False  # the box shows a stand-in for ``loaded``, not ``loaded`` itself
        self.valueChanged.connect(self._forget_loaded)
        self.lineEdit().textEdited.connect(self._forget_loaded)

    def show_value(self, value: Any, shown: int | None = None) -> None:
        """Show ``value`` (or ``shown``, its number in the box's own units); the box's least value where
        it is no whole number."""
        if shown is None and isinstance(value, int) and not isinstance(value, bool):
            shown = value
        self.setValue(self.minimum() if shown is None else shown)
        self.loaded, self.keeps_loaded = value, shown is None or self.value() != shown

    def value_or_loaded(self) -> Any:
        return self.loaded if self.keeps_loaded else self.value()

    def _forget_loaded(self) -> None:
        self.keeps_loaded = False


class ChoiceBox(QComboBox):
    """A combo box of (label, value) pairs; ``value()`` / ``set_value()`` speak in values.

    Sized by its column, not by its longest entry; where the column cuts the choice short, the box's
    tooltip gives it whole (and the Train tab widens the column where the window has room for it)."""

    choice_changed = Signal()

    def __init__(self, choices: Iterable[tuple[str, Any]] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Size to the column, not to the longest entry: long labels must not widen the form.
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(8)
        self.set_choices(choices)
        self.currentIndexChanged.connect(lambda _index: self.choice_changed.emit())

    def set_choices(self, choices: Iterable[tuple[str, Any]]) -> None:
        current = self.value()
        self.blockSignals(True)
        self.clear()
        for label, value in choices:
            self.addItem(label, value)
        self.blockSignals(False)
        if current is not None:
            self.set_value(current)

    def whole_text_width(self) -> int:
        """The width at which the current choice shows whole."""
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        metrics = self.fontMetrics()
        text = QSize(metrics.horizontalAdvance(self.currentText()), metrics.height())
        return self.style().sizeFromContents(QStyle.ContentsType.CT_ComboBox, option, text, self).width()

    def text_is_cut(self) -> bool:
        return self.whole_text_width() > self.width()

    def shown_text(self) -> str:
        """The choice as the box draws it: whole, or shortened with "…" to its text field (QComboBox clips
        it mid-letter: "IamNN (shared, adap" at 14 pt in a 960-px window)."""
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        field = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                            QStyle.SubControl.SC_ComboBoxEditField, self)
        return self.fontMetrics().elidedText(self.currentText(), Qt.TextElideMode.ElideRight, max(0, field.width()))

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if self.isEditable() or not self.text_is_cut():
            super().paintEvent(event)
            return
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        option.currentText = self.shown_text()
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)

    def tooltip_text(self) -> str:
        """What the box's tooltip says: the choice, where the box cuts it short, then the row's own tooltip."""
        parts = [self.currentText()] if self.text_is_cut() else []
        return "\n\n".join(parts + ([self.toolTip()] if self.toolTip() else []))

    def event(self, event: QEvent) -> bool:  # noqa: D102 (Qt name)
        if event.type() == QEvent.Type.ToolTip and self.text_is_cut():
            QToolTip.showText(event.globalPos(), self.tooltip_text(), self)
            return True
        return super().event(event)

    def value(self) -> Any:
        return self.currentData()

    def set_value(self, value: Any) -> bool:
        index = self.findData(value)
        if index >= 0:
            self.setCurrentIndex(index)
        return index >= 0

    def show_value(self, value: Any) -> None:
        """Select ``value``, adding it when no choice has it (a config file's typo): the form then keeps the
        file's value and validation flags it, instead of silently keeping whatever was shown before."""
        if value is not None and not self.set_value(value):
            self.addItem(f"{value}  ·  not a choice", value)
            self.set_value(value)


def format_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def muted(text: str, *, wrap: bool = False) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(wrap)
    return set_role(label, "muted")


def hint_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return set_role(label, "hint")


def hbox_widget(*widgets: QWidget, first_fills: bool = False) -> QWidget:
    """Several inputs side by side in one form row; ``first_fills``: the first input takes the spare width."""
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(SPACING["row"])
    for index, widget in enumerate(widgets):
        layout.addWidget(widget, 1 if first_fills and index == 0 else 0)
    if not first_fills:
        layout.addStretch(1)
    return box
