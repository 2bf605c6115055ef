"""A note beside a row of buttons that wraps instead of cutting the buttons' text off.

``ActionRowLayout`` lays out one widget (the note: a word-wrapped label, or a title block) and buttons
after it. When the buttons fit with room for the note (``note_room`` pixels) they share one line, the
note on the left, as a QHBoxLayout would; otherwise the note takes its own line and the buttons go
under it, right-aligned, in as many rows as they need. Under a large font (a user's accessibility
setting) a row of buttons that fits at 10 pt can be wider than the window: squeezed by a box layout,
"Open in Study" became "pen in Stud".
"""
from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QSizePolicy, QWidget, QWidgetItem


class ActionRowLayout(QLayout):
    """``set_note(widget)`` then ``addWidget(button)`` for each button, left to right."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 8, note_room: int = 160) -> None:
        super().__init__(parent)
        self._note: QLayoutItem | None = None
        self._buttons: list[QLayoutItem] = []
        self._spacing = spacing
        self.note_room = note_room  # the least width the note keeps beside the buttons on one line
        self.align_top = False  # buttons beside the note sit at its top (a title block), not its middle
        self.setContentsMargins(0, 0, 0, 0)

    # ------------------------------------------------------------------ QLayout's interface
    def set_note(self, widget: QWidget) -> None:
        self.addChildWidget(widget)
        self._note = QWidgetItem(widget)
        self.invalidate()

    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802 (Qt name)
        self._buttons.append(item)

    def _items(self) -> list[QLayoutItem]:
        return ([self._note] if self._note is not None else []) + self._buttons

    def count(self) -> int:
        return len(self._items())

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802
        items = self._items()
        return items[index] if 0 <= index < len(items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802
        items = self._items()
        if not 0 <= index < len(items):
            return None
        item = items[index]
        if item is self._note:
            self._note = None
        else:
            self._buttons.remove(item)
        return item

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802
        return Qt.Orientation.Horizontal

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self) -> QSize:  # noqa: N802 - everything on one line
        buttons = self._shown_buttons()
        width = sum(b.sizeHint().width() for b in buttons) + self._spacing * max(0, len(buttons) - 1)
        height = max((b.sizeHint().height() for b in buttons), default=0)
        note = self._shown_note()
        if note is not None:
            width += note.sizeHint().width() + (self._spacing if buttons else 0)
            height = max(height, note.sizeHint().height())
        margins = self.contentsMargins()
        return QSize(width + margins.left() + margins.right(), height + margins.top() + margins.bottom())

    def minimumSize(self) -> QSize:  # noqa: N802
        """As narrow as the widest button (or the note's least width); as low as one line. The
        height that wrapping takes comes from ``heightForWidth`` at the width given (the least
        width's, every button on its own row, would make the window's least height absurd)."""
        items = self._shown_buttons()
        note = self._shown_note()
        if note is not None:
            items.append(note)
        margins = self.contentsMargins()
        width = max((item.minimumSize().width() for item in items), default=0)
        height = max((item.minimumSize().height() for item in items), default=0)
        return QSize(width + margins.left() + margins.right(), height + margins.top() + margins.bottom())

    # ------------------------------------------------------------------ the arrangement
    def _shown_buttons(self) -> list[QLayoutItem]:
        return [item for item in self._buttons if not item.isEmpty()]

    def _shown_note(self) -> QLayoutItem | None:
        return self._note if self._note is not None and not self._note.isEmpty() else None

    def one_line(self, width: int) -> bool:
        """Whether the note and every button share one line at this width (of the layout)."""
        margins = self.contentsMargins()
        room = width - margins.left() - margins.right()
        buttons = self._shown_buttons()
        needed = sum(b.sizeHint().width() for b in buttons) + self._spacing * max(0, len(buttons) - 1)
        if self._shown_note() is not None and buttons:
            needed += self._spacing + self.note_room
        return needed <= room

    def _rows(self, room: int) -> list[list[QLayoutItem]]:
        """The buttons in rows no wider than ``room``, in order (a button wider than the room gets a row)."""
        rows: list[list[QLayoutItem]] = []
        used = 0
        for item in self._shown_buttons():
            width = min(item.sizeHint().width(), room)
            if rows and used + self._spacing + width <= room:
                rows[-1].append(item)
                used += self._spacing + width
            else:
                rows.append([item])
                used = width
        return rows

    def _arrange(self, rect: QRect, move: bool) -> int:
        """Place the items in ``rect`` (when ``move``); the height that takes."""
        margins = self.contentsMargins()
        area = rect.adjusted(margins.left(), margins.top(), -margins.right(), -margins.bottom())
        room = max(0, area.width())
        note = self._shown_note()
        buttons = self._shown_buttons()
        if self.one_line(rect.width()):
            widths = [b.sizeHint().width() for b in buttons]
            buttons_width = sum(widths) + self._spacing * max(0, len(buttons) - 1)
            note_width = room - buttons_width - (self._spacing if buttons else 0) if note is not None else 0
            note_height = note.heightForWidth(note_width) if note is not None and note.hasHeightForWidth() \
                else (note.sizeHint().height() if note is not None else 0)
            button_height = max((b.sizeHint().height() for b in buttons), default=0)
            height = max(note_height, button_height)
            if move:
                if note is not None:
                    top = 0 if self.align_top else (height - note_height) // 2
                    note.setGeometry(QRect(area.left(), area.top() + top, note_width, note_height))
                x = area.right() + 1 - buttons_width
                for item, width in zip(buttons, widths):
                    top = 0 if self.align_top else (height - item.sizeHint().height()) // 2
                    item.setGeometry(QRect(QPoint(x, area.top() + top), QSize(width, item.sizeHint().height())))
                    x += width + self._spacing
            return height + margins.top() + margins.bottom()

        y = area.top()
        if note is not None:
            note_height = note.heightForWidth(room) if note.hasHeightForWidth() else note.sizeHint().height()
            if move:
                note.setGeometry(QRect(area.left(), y, room, note_height))
            y += note_height + (self._spacing if buttons else 0)
        for row in self._rows(room):
            widths = [min(item.sizeHint().width(), room) for item in row]
            row_height = max(item.sizeHint().height() for item in row)
            x = area.right() + 1 - (sum(widths) + self._spacing * (len(row) - 1))
            if move:
                for item, width in zip(row, widths):
                    item.setGeometry(QRect(QPoint(x, y), QSize(width, item.sizeHint().height())))
                    x += width + self._spacing
            y += row_height + self._spacing
        if buttons:
            y -= self._spacing
        return y - area.top() + margins.top() + margins.bottom()


def action_row_policy(widget: QWidget) -> None:
    """A widget holding an ``ActionRowLayout`` grows in height as its rows wrap."""
    policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
    policy.setHeightForWidth(True)
    widget.setSizePolicy(policy)
