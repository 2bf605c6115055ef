"""Colours, spacing and plot styling of the Use, Study and Runs views, in one place.

The app's ``iamnn_studio.gui.style.COLORS`` is the source of truth; this module names the roles
these views need and keeps fallbacks so a view also works on its own.
"""
from __future__ import annotations

from typing import Any

try:  # the shell's palette wins where it defines the same names
    from iamnn_studio.gui.style import BLOCK_COLORS as _BLOCK_COLORS
    from iamnn_studio.gui.style import COLORS as _COLORS
    from iamnn_studio.gui.style import SERIES as _SERIES
    from iamnn_studio.gui.style import scaled_pt
except Exception:  # not importable: keep the defaults below
    _COLORS, _SERIES = {}, {}

    def scaled_pt(design_pt: float) -> float:
        return design_pt
    _BLOCK_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7")  # Okabe-Ito


def _pick(name: str, default: str) -> str:
    return _COLORS.get(name, default)


# Neutral surfaces and text
BACKGROUND = _pick("surface_alt", "#f0f2f5")  # insets inside a card: tracks, thumbnails
WINDOW = _pick("window", "#f5f6f8")
SURFACE = _pick("surface", "#ffffff")
BORDER = _pick("border", "#dde1e6")
TEXT = _pick("text", "#1f2328")
TEXT_MUTED = _pick("text_muted", "#5b6470")
TEXT_FAINT = _pick("text_faint", "#8a939e")

# Meaning
ACCENT = _pick("accent", "#2563eb")  # the main series: predictions, halting scores, this run
ACCENT_SOFT = "#bfd2f8"  # the other top-5 bars: lighter than the accent, still visible on white
SECONDARY = _SERIES.get("val", "#e4572e")  # the comparison series: fixed settings, validation
GOOD = _pick("success", "#15803d")
WARNING = _pick("warning", "#b45309")
ERROR = _pick("error", "#c62828")
ERROR_SOFT = _pick("error_soft", "#fdecec")

# Plots
PLOT_BACKGROUND = SURFACE
PLOT_AXIS = _pick("border_strong", "#c4cad2")
PLOT_TEXT = TEXT_MUTED
COLORMAP = "viridis"  # confusion matrix: perceptually uniform, colour-blind safe



def block_color(block: int) -> str:
    """The colour of block ``block`` (0-based), the same as in the training view."""
    return _BLOCK_COLORS[block % len(_BLOCK_COLORS)]


# Spacing (px)
SPACING = 12
MARGIN = 16
CARD_RADIUS = 8


def card_stylesheet(object_name: str, background: str = SURFACE, border: str = BORDER) -> str:
    """A rounded, bordered panel; scoped by object name so children keep their own look."""
    return (
        f"#{object_name} {{ background: {background}; border: 1px solid {border}; "
        f"border-radius: {CARD_RADIUS}px; }}"
    )


def pt(design_pt: float) -> str:
    """A CSS font size drawn at ``design_pt`` under a 10-pt application font, scaled to the one in use."""
    return f"{scaled_pt(design_pt):g}pt"


def muted(text: str) -> str:
    return f'<span style="color:{TEXT_MUTED}">{text}</span>'


def style_plot(plot_item: Any, *, title: str | None = None, left: str | None = None,
               bottom: str | None = None) -> None:
    """Calm axes on a light background: grey axis lines and text, optional labels."""
    import pyqtgraph as pg

    for name in ("left", "bottom"):
        axis = plot_item.getAxis(name)
        axis.setPen(pg.mkPen(PLOT_AXIS, width=1))
        axis.setTextPen(pg.mkPen(PLOT_TEXT))
        axis.enableAutoSIPrefix(False)  # "epoch (x0.001)" under 0-0.4 epochs reads as a bug
    if title:
        plot_item.setTitle(title, color=TEXT, size=pt(9))
    if left:
        plot_item.setLabel("left", left, color=PLOT_TEXT)
    if bottom:
        plot_item.setLabel("bottom", bottom, color=PLOT_TEXT)
    plot_item.setMenuEnabled(False)
    plot_item.hideButtons()
