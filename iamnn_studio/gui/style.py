"""One look for every view: colours, fonts, spacing, the Qt style sheet and pyqtgraph defaults.

Views import the names here instead of writing colours inline, so the app stays consistent:
``COLORS`` for text and surfaces, ``BLOCK_COLORS`` for the four IamNN blocks (the same colour for
block 2 in every plot), ``SERIES`` for train/validation curves, ``SPACING`` for layouts.
``apply_style(app)`` is called once at start-up; ``configure_pyqtgraph()`` before any plot exists.
"""
from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPalette
from PySide6.QtWidgets import QApplication, QLabel, QWidget

#: Surfaces and text: a calm light theme with one accent colour.
COLORS: dict[str, str] = {
    "window": "#F5F6F8",
    "surface": "#FFFFFF",
    "surface_alt": "#F0F2F5",
    "border": "#DDE1E6",
    "border_strong": "#C4CAD2",
    "text": "#1F2328",
    "text_muted": "#5B6470",
    "text_faint": "#8A939E",
    "accent": "#2563EB",
    "accent_hover": "#1D4ED8",
    "accent_soft": "#E8EFFD",
    "success": "#15803D",
    "warning": "#B45309",
    "error": "#C62828",
    "error_soft": "#FDECEC",
}

#: The four IamNN blocks, Okabe-Ito colours (distinguishable with colour-blindness).
BLOCK_COLORS: tuple[str, str, str, str] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7")

#: Train and validation series in every plot.
SERIES: dict[str, str] = {"train": "#2563EB", "val": "#E4572E", "other": "#6B7280"}

#: Layout spacing in pixels: outer margins of a page, gap between sections, gap inside a form.
SPACING: dict[str, int] = {"page": 16, "section": 14, "row": 8, "tight": 4}

FONT_FAMILIES = ["Inter", "Segoe UI", "SF Pro Text", "Cantarell", "Noto Sans", "DejaVu Sans"]
#: The size the layout is designed at, and the smallest the app uses (desktops default to 9-10 pt).
BASE_POINT_SIZE = 10
#: The largest desktop font the app follows: at 960 x 640 (the window's minimum) every tab still fits
#: at 16 pt; a larger desktop font would leave the forms a few words wide.
MAX_POINT_SIZE = 16


def block_color(block: int) -> str:
    """Colour of block ``block`` (0-based), the same in every plot of the app."""
    return BLOCK_COLORS[block % len(BLOCK_COLORS)]


def scaled_pt(design_pt: float) -> float:
    """A font size drawn at ``design_pt`` under the app's 10-pt font, scaled to the application font
    in use (a user's larger font must enlarge titles and captions too, not leave them smaller than
    the text around them); to the nearest half point."""
    app = QApplication.instance()
    base = app.font().pointSizeF() if app is not None else -1.0
    if base <= 0:  # no application yet, or a font sized in pixels
        base = float(BASE_POINT_SIZE)
    return round(design_pt * base / BASE_POINT_SIZE * 2) / 2


def scaled_px(design_px: float, font: QFont | None = None) -> int:
    """A length drawn at ``design_px`` under the app's 10-pt font (a column, a bar, a chart's height),
    grown with ``font`` (default: the application font) by the ratio of their line heights: text that
    grows must get room that grows with it. Never below ``design_px``: the 10-pt layout is the smallest."""
    if font is None:
        app = QApplication.instance()
        font = app.font() if app is not None else QFont()
    reference = QFont(font)
    reference.setPointSizeF(BASE_POINT_SIZE)
    ratio = QFontMetricsF(font).height() / QFontMetricsF(reference).height()
    return round(design_px * max(1.0, ratio))


def desktop_point_size(desktop: QFont) -> float:
    """The point size of the desktop's font, also when the platform gives it in pixels."""
    if desktop.pointSizeF() > 0:
        return desktop.pointSizeF()
    app = QApplication.instance()
    screen = app.primaryScreen() if app is not None else None
    dpi = screen.logicalDotsPerInchY() if screen is not None else 96.0
    return desktop.pixelSize() * 72.0 / dpi if desktop.pixelSize() > 0 else float(BASE_POINT_SIZE)


def app_font(desktop: QFont | None = None) -> QFont:
    """The app's font: its own families, at the desktop's point size (``desktop``; default: the
    application's font before ``apply_style`` replaces it) within 10 to 16 pt.

    Users who raise the desktop font to read more easily expect every app to follow, so a larger
    desktop size is kept; 10 pt stays the floor (the layout is designed at 10 pt, and desktops that
    default to 9 pt made the app look cramped), and 16 pt the ceiling (``MAX_POINT_SIZE``: beyond it
    the tabs no longer fit the window's 960 x 640 minimum). Half points are kept, anything finer is
    rounded away."""
    if desktop is None:
        app = QApplication.instance()
        desktop = app.font() if app is not None else QFont()
    size = min(max(desktop_point_size(desktop), float(BASE_POINT_SIZE)), float(MAX_POINT_SIZE))
    font = QFont()
    font.setFamilies(FONT_FAMILIES)
    font.setPointSizeF(round(size * 2) / 2)
    return font


STYLE_SHEET = """
QMainWindow, QDialog {{ background: {window}; }}
QWidget {{ color: {text}; }}
QToolTip {{ background: {surface}; color: {text}; border: 1px solid {border}; padding: 4px; }}

QTabWidget::pane {{ border: none; background: {window}; }}
QTabBar::tab {{
    background: transparent; color: {text_muted}; padding: 8px 18px; margin-right: 2px;
    border: none; border-bottom: 2px solid transparent; font-weight: 600;
}}
QTabBar::tab:selected {{ color: {accent}; border-bottom: 2px solid {accent}; }}
QTabBar::tab:hover:!selected {{ color: {text}; }}

QFrame#Card {{ background: {surface}; border: 1px solid {border}; border-radius: 8px; }}
QLabel#CardTitle {{ font-weight: 600; font-size: {title_pt}pt; }}
QLabel#Muted, QLabel[role="muted"] {{ color: {text_muted}; }}
QLabel[role="error"] {{ color: {error}; }}
QLabel[role="warning"] {{ color: {warning}; }}
QLabel[role="hint"] {{ color: {text_faint}; }}
QLabel[role="figure"] {{ color: {text}; font-weight: 600; }}
QLabel[dimsWhenDisabled="true"]:disabled {{ color: {text_faint}; }}  /* a control's caption and value */
QComboBox:disabled, QSpinBox:disabled, QDoubleSpinBox:disabled, QLineEdit:disabled {{ color: {text_faint}; }}

QPushButton {{
    background: {surface}; border: 1px solid {border_strong}; border-radius: 5px;
    padding: 6px 14px; min-height: 18px;
}}
QPushButton:hover {{ background: {surface_alt}; }}
QPushButton:disabled {{ color: {text_faint}; border-color: {border}; }}
QPushButton#Primary {{ background: {accent}; color: white; border: 1px solid {accent}; font-weight: 600; }}
QPushButton#Primary:hover {{ background: {accent_hover}; }}
QPushButton#Primary:disabled {{ background: {border_strong}; border-color: {border_strong}; color: {surface}; }}

QProgressBar {{
    background: {surface_alt}; border: none; border-radius: 4px; height: 8px; text-align: center;
}}
QProgressBar::chunk {{ background: {accent}; border-radius: 4px; }}

QListWidget {{ background: {surface}; border: 1px solid {border}; border-radius: 6px; }}
QListWidget::item {{ padding: 3px 6px; }}
QScrollArea {{ border: none; background: transparent; }}
QScrollArea > QWidget > QWidget {{ background: transparent; }}
QStatusBar {{ background: {surface}; border-top: 1px solid {border}; color: {text_muted}; }}
QStatusBar::item {{ border: none; }}
QToolBar {{ background: {surface}; border: none; border-bottom: 1px solid {border}; spacing: 4px; padding: 3px; }}
QMenuBar {{ background: {surface}; }}
QSplitter::handle {{ background: {window}; }}
"""


def style_sheet() -> str:
    return STYLE_SHEET.format(**COLORS, title_pt=f"{scaled_pt(BASE_POINT_SIZE + 1):g}")


def apply_style(app: QApplication) -> None:
    """The app-wide font, palette and style sheet (Fusion, so every platform looks the same)."""
    desktop = QFont(app.font())  # the desktop's font, before the style or the app replaces it
    app.setStyle("Fusion")
    app.setFont(app_font(desktop))
    palette = app.palette()
    palette.setColor(QPalette.ColorRole.Window, QColor(COLORS["window"]))
    palette.setColor(QPalette.ColorRole.Base, QColor(COLORS["surface"]))
    palette.setColor(QPalette.ColorRole.AlternateBase, QColor(COLORS["surface_alt"]))
    palette.setColor(QPalette.ColorRole.Text, QColor(COLORS["text"]))
    palette.setColor(QPalette.ColorRole.WindowText, QColor(COLORS["text"]))
    palette.setColor(QPalette.ColorRole.Highlight, QColor(COLORS["accent"]))
    palette.setColor(QPalette.ColorRole.PlaceholderText, QColor(COLORS["text_faint"]))
    # Disabled inputs must look disabled: grey text on the window colour (the roles above set every group).
    disabled = QPalette.ColorGroup.Disabled
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        palette.setColor(disabled, role, QColor(COLORS["text_faint"]))
    palette.setColor(disabled, QPalette.ColorRole.Base, QColor(COLORS["surface_alt"]))
    # A disabled slider (the Use tab's threshold in a fixed mode) fills its groove grey, not in the
    # accent blue of one that can be moved; a selection in a disabled list turns grey likewise.
    palette.setColor(disabled, QPalette.ColorRole.Highlight, QColor(COLORS["border_strong"]))
    app.setPalette(palette)
    app.setStyleSheet(style_sheet())
    if not getattr(app, "_iamnn_follows_font", False):  # card titles follow a later application font
        app.fontChanged.connect(lambda _font: app.setStyleSheet(style_sheet()))
        app._iamnn_follows_font = True


def configure_pyqtgraph() -> None:
    """White plots, muted axes; antialias and OpenGL off (cheap repaints while training)."""
    import pyqtgraph as pg  # a gui module may be used without plots; keep the import local

    pg.setConfigOptions(
        background=COLORS["surface"], foreground=COLORS["text_muted"], antialias=False, useOpenGL=False
    )


def set_role(label: QLabel, role: str) -> QLabel:
    """Give a label a style role (``muted``, ``error``, ``hint``) and re-polish it."""
    label.setProperty("role", role)
    repolish(label)
    return label


def set_invalid(widget: QWidget, invalid: bool) -> None:
    """Tint an input red (or back). Through the palette, not the style sheet: a style-sheet border
    on spin and combo boxes makes Fusion drop their arrows."""
    if bool(widget.property("invalid")) == invalid:
        return
    widget.setProperty("invalid", invalid)
    palette = widget.palette()
    base = QApplication.palette().color(QPalette.ColorRole.Base)
    palette.setColor(QPalette.ColorRole.Base, QColor(COLORS["error_soft"]) if invalid else base)
    palette.setColor(QPalette.ColorRole.Button, QColor(COLORS["error_soft"]) if invalid
                     else QApplication.palette().color(QPalette.ColorRole.Button))
    widget.setPalette(palette)
    inner = getattr(widget, "lineEdit", None)  # a spin box paints its text field separately
    if callable(inner) and inner() is not None:
        inner().setPalette(palette)


def repolish(widget: QWidget) -> None:
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)
