"""The Use view: drop images, read the halting story of each, move the threshold and watch compute change."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402
from PySide6.QtCore import QMimeData, QPoint, QPointF, QRect, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QImage  # noqa: E402
from PySide6.QtWidgets import QApplication, QToolButton  # noqa: E402

from iamnn_studio.engine.checkpoint import save_checkpoint  # noqa: E402
from iamnn_studio.engine.config import ModelConfig  # noqa: E402
from iamnn_studio.engine.model import build_model  # noqa: E402
from iamnn_studio.gui.inference_view import InferenceView  # noqa: E402
from iamnn_studio.gui.widgets.prediction_card import ErrorCard, PredictionCard  # noqa: E402

pytestmark = pytest.mark.gui

CAPS = (1, 2, 3, 2)
SCORE = 0.4  # every halting head answers this, whatever the image
TIMEOUT = 20_000


def constant_halting_checkpoint(path: Path, threshold: float = 0.7) -> Path:
    """A tiny IamNN whose halting heads always score ``SCORE``: iterations depend on the threshold only.

    Read as hazards, the cumulative score after n scored iterations is 1 - 0.6^n (0.4, 0.64,
    0.784): at threshold 0.7 every block runs to its cap, at 0.3 every block stops after one.
    """
    torch.manual_seed(0)
    model = build_model(ModelConfig(iterations=CAPS, width=4, image_size=16, in_channels=1, num_classes=3,
                                    threshold=threshold))
    with torch.no_grad():
        for block in model.blocks:
            block.halting_head.out.weight.zero_()
            block.halting_head.out.bias.fill_(math.log(SCORE / (1 - SCORE)))
    return save_checkpoint(path, model.eval(), classes=["dark", "grey", "light"], mean=[0.5], std=[0.25])


@pytest.fixture
def files(tmp_path):
    image = tmp_path / "photo.png"
    Image.new("L", (40, 30), color=90).save(image)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    return {"checkpoint": constant_halting_checkpoint(tmp_path / "best.pt"), "image": image, "text": text}


@pytest.fixture
def view(qtbot):
    widget = InferenceView()
    qtbot.addWidget(widget)
    widget.resize(1200, 700)
    widget.show()
    return widget


def open_checkpoint(qtbot, view, path) -> None:
    with qtbot.waitSignal(view.checkpoint_loaded, timeout=TIMEOUT):
        assert view.load_checkpoint(str(path))


def drop(view, paths) -> bool:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    point = QPointF(view.width() / 2, view.height() / 2)
    actions = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(point.toPoint(), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view, enter)
    event = QDropEvent(point, actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view, event)
    return enter.isAccepted() and event.isAccepted()


def plain(label) -> str:
    """The label's text without markup, runs of spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", "", label.text()).split())


def wait_idle(qtbot, view) -> None:
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=TIMEOUT)


def test_dropped_image_gets_a_card_with_iterations_and_halting_charts(qtbot, view, files):
    open_checkpoint(qtbot, view, files["checkpoint"])
    assert drop(view, [files["image"]])
    qtbot.waitUntil(lambda: any(isinstance(c, PredictionCard) and c.prediction for c in view.cards), timeout=TIMEOUT)

    (card,) = view.cards
    assert "1 / 1 · 2 / 2 · 3 / 3 · 2 / 2" in plain(card.iterations_label)  # 0.4, 0.64 < 0.7: caps reached
    assert [label for label, _ in card.probabilities.items()] and len(card.probabilities.items()) == 3
    assert "MACs" in plain(card.macs_label)
    # block 3 ran 3 iterations, scored the first two (the cap iteration has no score)
    block = card.charts.blocks[2]
    assert block.scores == pytest.approx((SCORE, SCORE))
    assert block.cumulative == pytest.approx((0.4, 0.64))
    assert block.threshold == pytest.approx(0.7)
    assert (block.ran, block.cap, block.reached) == (3, 3, None)
    assert card.charts.summary(2).startswith("Block 3 stopped after iteration 3 of 3")


def test_a_result_card_is_built_without_any_pyqtgraph_view(qtbot, view, files):
    """Each card's four pyqtgraph plots cost ~0.1 s to build and ~60 ms to destroy: a dropped folder of
    200 images held the UI thread for 20 s, and needed a build queue and a slow delete queue."""
    from PySide6.QtWidgets import QGraphicsView

    open_checkpoint(qtbot, view, files["checkpoint"])
    assert drop(view, [files["image"]])
    qtbot.waitUntil(lambda: any(isinstance(c, PredictionCard) and c.prediction for c in view.cards), timeout=TIMEOUT)
    (card,) = view.cards
    assert card.findChildren(QGraphicsView) == []
    assert [block.ran for block in card.charts.blocks] == list(CAPS)


def test_unreadable_file_becomes_an_error_card_and_the_good_image_is_still_shown(qtbot, view, files):
    open_checkpoint(qtbot, view, files["checkpoint"])
    drop(view, [files["text"], files["image"]])
    qtbot.waitUntil(lambda: len(view.cards) == 2 and not view.is_busy(), timeout=TIMEOUT)

    error, good = view.cards
    assert isinstance(error, ErrorCard) and "notes.txt" in error.message and "not an image" in error.message
    assert "\n" not in error.message
    assert isinstance(good, PredictionCard) and good.prediction is not None
    assert "1 image " in view.totals_label.text()  # the failed file does not count


def test_a_damaged_image_is_an_error_card_and_nothing_reaches_the_terminal(qtbot, view, files, tmp_path, capfd):
    whole = files["image"].read_bytes()
    damaged = tmp_path / "cut.png"
    damaged.write_bytes(whole[: len(whole) // 2])  # a PNG cut off mid-stream: its decoder fails
    open_checkpoint(qtbot, view, files["checkpoint"])
    capfd.readouterr()
    drop(view, [damaged])
    qtbot.waitUntil(lambda: len(view.cards) == 1 and not view.is_busy(), timeout=TIMEOUT)

    (card,) = view.cards
    assert isinstance(card, ErrorCard) and "cut.png" in card.message
    out, err = capfd.readouterr()
    assert "libpng" not in err and "libpng" not in out  # Qt's decoder would have printed "libpng error: ..."


@pytest.mark.parametrize("with_checkpoint", [True, False])
def test_a_png_cut_to_its_first_40_bytes_says_so_and_prints_nothing(qtbot, view, files, tmp_path, capfd,
                                                                    with_checkpoint):
    """QA: PIL cannot identify a 40-byte PNG (its header and no more), so Qt's reader was tried next, and
    libpng printed "libpng error: Read Error" on the terminal; the user should see only the card."""
    stub = tmp_path / "stub.png"
    stub.write_bytes(files["image"].read_bytes()[:40])
    if with_checkpoint:
        open_checkpoint(qtbot, view, files["checkpoint"])
    capfd.readouterr()
    drop(view, [stub])
    qtbot.waitUntil(lambda: len(view.cards) == 1 and not view.is_busy(), timeout=TIMEOUT)

    (card,) = view.cards
    assert isinstance(card, ErrorCard)
    assert card.message == "Cannot read stub.png: a damaged or incomplete PNG file.", card.message
    out, err = capfd.readouterr()
    assert "libpng" not in err and "libpng" not in out, err


def test_a_dropped_folder_adds_its_images_and_an_empty_one_says_so(qtbot, view, files, tmp_path):
    open_checkpoint(qtbot, view, files["checkpoint"])
    album = tmp_path / "album"
    (album / "more").mkdir(parents=True)
    Image.new("L", (20, 20), color=10).save(album / "a.png")
    Image.new("RGB", (20, 20), color=(200, 0, 0)).save(album / "more" / "b.jpg")
    (album / "readme.txt").write_text("not an image: not picked from a folder")
    (tmp_path / "empty").mkdir()
    assert drop(view, [album, tmp_path / "empty"])
    qtbot.waitUntil(lambda: len(view.cards) == 3 and not view.is_busy(), timeout=TIMEOUT)
    errors = [card for card in view.cards if isinstance(card, ErrorCard)]
    assert [(card.name, card.message) for card in errors] == [("empty", "No images in this folder.")]
    predicted = [card for card in view.cards if isinstance(card, PredictionCard)]
    assert sorted(card.name for card in predicted) == ["a.png", "b.jpg"]  # subfolders too, no text files
    assert all(card.prediction is not None for card in predicted)


def test_a_dropped_folder_names_a_subfolder_it_cannot_read(qtbot, view, files, tmp_path, monkeypatch):
    """QA: an unreadable folder inside a dropped one was skipped without a word (predict names it)."""
    open_checkpoint(qtbot, view, files["checkpoint"])
    for folder in ("album/locked", "album/open", "only/locked"):
        (tmp_path / folder).mkdir(parents=True)
        Image.new("L", (20, 20), color=10).save(tmp_path / folder / "a.png")
    real_scandir = os.scandir

    def scandir(path="."):  # chmod 000 as a user who is not root (the tests run as root)
        if os.path.basename(os.fspath(path)) == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert drop(view, [tmp_path / "album", tmp_path / "only"])
    qtbot.waitUntil(lambda: len(view.cards) == 3 and not view.is_busy(), timeout=TIMEOUT)
    errors = [(card.name, card.message) for card in view.cards if isinstance(card, ErrorCard)]
    assert errors == [("locked", f"Cannot read the folder {tmp_path / 'album' / 'locked'}: permission denied."),
                      ("locked", f"Cannot read the folder {tmp_path / 'only' / 'locked'}: permission denied.")]
    assert [card.name for card in view.cards if isinstance(card, PredictionCard)] == ["a.png"]


def test_an_uncalibrated_model_says_its_iterations_mean_little(qtbot, view, files, tmp_path):
    open_checkpoint(qtbot, view, constant_halting_checkpoint(tmp_path / "stopped.pt", threshold=None))
    assert not view.banner.isHidden() and "never calibrated" in view.banner.text()
    open_checkpoint(qtbot, view, files["checkpoint"])  # calibrated (a threshold was fitted): no such note
    assert view.banner.isHidden() or "never calibrated" not in view.banner.text()


def test_a_resnet_baseline_shows_no_halting_controls(qtbot, view, files, tmp_path):
    resnet = build_model(ModelConfig(iterations=CAPS, width=4, image_size=16, in_channels=1, num_classes=3,
                                     architecture="resnet"))
    path = save_checkpoint(tmp_path / "resnet.pt", resnet.eval(), classes=["dark", "grey", "light"],
                           mean=[0.5], std=[0.25])
    open_checkpoint(qtbot, view, path)
    view.add_image_files([str(files["image"])])
    qtbot.waitUntil(lambda: bool(view.cards) and view.cards[0].prediction is not None, timeout=TIMEOUT)
    for widget in (view.mode_combo, view.threshold_slider, view.threshold_caption, view.legend):
        assert not widget.isVisibleTo(view)
    assert view.no_halting_note.isVisibleTo(view)
    assert "units 1·2·3·2" in plain(view.checkpoint_label)
    card = view.cards[0]
    assert plain(card.iterations_label).startswith("Units per block 1 · 2 · 3 · 2")
    assert not card.charts.isVisibleTo(card)  # no empty halting charts

    open_checkpoint(qtbot, view, files["checkpoint"])  # an IamNN again: its controls are back
    assert view.mode_combo.isVisibleTo(view) and view.threshold_slider.isVisibleTo(view)
    assert not view.no_halting_note.isVisibleTo(view)


def test_moving_the_threshold_reruns_and_changes_iterations_and_macs(qtbot, view, files):
    open_checkpoint(qtbot, view, files["checkpoint"])
    view.add_image_files([str(files["image"])])
    qtbot.waitUntil(lambda: bool(view.cards) and view.cards[0].prediction is not None, timeout=TIMEOUT)
    wait_idle(qtbot, view)
    card = view.cards[0]
    macs_before, totals_before = card.prediction.macs, view.totals_label.text()

    with qtbot.waitSignal(view.predictions_updated, timeout=TIMEOUT):
        view.threshold_slider.setValue(300)  # 0.3: a debounced re-run in the background
    wait_idle(qtbot, view)

    assert card.prediction.iterations == [1, 1, 1, 1]
    assert "1 / 1 · 1 / 2 · 1 / 3 · 1 / 2" in plain(card.iterations_label)
    assert card.prediction.macs < macs_before
    assert view.totals_label.text() != totals_before
    assert card.charts.blocks[2].threshold == pytest.approx(0.3)
    # 0.4 >= 0.3: each stopped at its first iteration; block 1 (cap 1) has no score, nothing to reach
    assert [block.reached for block in card.charts.blocks] == [None, 1, 1, 1]
    assert "reached the threshold 0.3 at iteration 1" in card.charts.summary(1)
    assert view.threshold_value.text() == "0.300"


def test_the_checkpoint_threshold_is_kept_exactly_until_the_slider_moves(qtbot, view, tmp_path, files):
    checkpoint = constant_halting_checkpoint(tmp_path / "odd.pt", threshold=0.6375)
    open_checkpoint(qtbot, view, checkpoint)
    view.add_image_files([str(files["image"])])
    qtbot.waitUntil(lambda: bool(view.cards) and view.cards[0].prediction is not None, timeout=TIMEOUT)
    assert view.cards[0].prediction.threshold == pytest.approx(0.6375)
    assert view.predictor.threshold == pytest.approx(0.6375)


def test_a_model_whose_halting_does_not_pay_says_which_fixed_setting_to_run(qtbot, view, tmp_path):
    import json

    checkpoint = does_not_pay_checkpoint(tmp_path)
    open_checkpoint(qtbot, view, checkpoint)
    assert view.banner.isVisible()
    # QA: "fixed:2 (…) with 90.00 % at 2.00 M costs no more (adaptive 85.00 % at 2.50 M MACs)": the CLI's mode
    # name, no "MACs" after the first figure, and "costs no more" for a setting both cheaper and more accurate
    assert view.banner.text() == (
        "On its test images the halting does not pay on this model. Mode “Fixed iterations per block”, N = 2 is both "
        "cheaper and more accurate: 90.00 % top-1 at 2.00 M MACs per image, against 85.00 % at 2.50 M MACs with "
        "adaptive halting. Select it above to use it.")
    assert view.mode_combo.itemText(view.mode_combo.findData("fixed")) == "Fixed iterations per block"

    evaluation_file = tmp_path / "run" / "eval.json"
    evaluation = json.loads(evaluation_file.read_text())
    evaluation["top1"] = 0.95  # now the halting beats every fixed setting: nothing to say
    evaluation_file.write_text(json.dumps(evaluation))
    open_checkpoint(qtbot, view, checkpoint)
    assert not view.banner.isVisible()


def test_the_advice_of_a_held_out_evaluation_does_not_call_it_a_test_set(qtbot, view, tmp_path):
    """QA: "On its test set: The halting does not pay…" for a run evaluated on its validation images."""
    import json

    checkpoint = does_not_pay_checkpoint(tmp_path)
    evaluation_file = tmp_path / "run" / "eval.json"
    evaluation_file.write_text(json.dumps({**json.loads(evaluation_file.read_text()), "split": "val"}))
    open_checkpoint(qtbot, view, checkpoint)
    text = view.banner.text()
    assert text.startswith("On its held-out images the halting does not pay") and "test" not in text


def does_not_pay_checkpoint(tmp_path) -> Path:
    """A checkpoint whose run's evaluation says fixed:2 does as well as the halting, for less."""
    import json

    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    checkpoint = constant_halting_checkpoint(run / "best.pt")
    fixed = [{"iterations": [1, 1, 1, 1], "mean_macs": 1.0e6, "top1": 0.80},
             {"iterations": [1, 2, 2, 2], "mean_macs": 2.0e6, "top1": 0.90}]
    evaluation = {"architecture": "iamnn", "mode": "adaptive", "images": 100, "top1": 0.85,
                  "macs": {"mean": 2.5e6}, "sweep": {"fixed": fixed, "threshold": []}}
    (run.parent / "eval.json").write_text(json.dumps(evaluation))
    return checkpoint


def test_the_fixed_setting_advice_is_not_repeated_once_that_setting_is_chosen(qtbot, view, tmp_path, files):
    open_checkpoint(qtbot, view, does_not_pay_checkpoint(tmp_path))
    view.add_image_files([str(files["image"])])
    qtbot.waitUntil(lambda: bool(view.cards) and view.cards[0].prediction is not None, timeout=TIMEOUT)
    advice = view.banner.text()
    assert view.banner.isVisible() and advice.endswith("Select it above to use it.")

    with qtbot.waitSignal(view.predictions_updated, timeout=TIMEOUT):
        view.mode_combo.setCurrentIndex(view.mode_combo.findData("fixed"))
        view.fixed_spin.setValue(2)
    wait_idle(qtbot, view)
    text = view.banner.text()
    assert "Select it" not in text, text  # no advice to pick what is picked: it says what the mode does
    assert text.startswith("On its test images the halting does not pay on this model") and "N = 2" in text
    assert "every block runs 2 iterations" in text

    view.fixed_spin.setValue(1)  # another fixed setting: the advice applies again
    assert view.banner.text() == advice
    view.mode_combo.setCurrentIndex(view.mode_combo.findData("adaptive"))
    assert view.banner.text() == advice
    view.banner.findChild(QToolButton).click()  # dismissed: it stays away, whatever the mode
    view.mode_combo.setCurrentIndex(view.mode_combo.findData("fixed"))
    assert view.banner.isHidden()


def accent_pixels(widget) -> int:
    """How many pixels of ``widget`` are painted in the accent blue (the filled part of a slider)."""
    from iamnn_studio.gui.style import COLORS

    image = widget.grab().toImage()
    accent = QColor(COLORS["accent"])
    count = 0
    for y in range(image.height()):
        for x in range(image.width()):
            color = image.pixelColor(x, y)
            if abs(color.red() - accent.red()) + abs(color.green() - accent.green()) \
                    + abs(color.blue() - accent.blue()) < 60:
                count += 1
    return count


def darkest_pixel(widget) -> int:
    """The darkest pixel of ``widget`` as r + g + b: its text colour, for a label."""
    image = widget.grab().toImage()
    return min(sum(image.pixelColor(x, y).getRgb()[:3]) for y in range(image.height()) for x in range(image.width()))


def test_the_threshold_slider_looks_disabled_in_fixed_mode(qtbot, styled_app, view, files):
    open_checkpoint(qtbot, view, files["checkpoint"])
    slider = view.threshold_slider
    assert slider.isEnabled() and accent_pixels(slider) > 50  # adaptive: the blue fill up to the handle
    view.mode_combo.setCurrentIndex(view.mode_combo.findData("fixed"))
    assert not slider.isEnabled()
    assert accent_pixels(slider) == 0  # greyed, not the same blue as a slider that can be moved
    ink = darkest_pixel(view.mode_caption)  # an enabled label's text
    for label in (view.threshold_caption, view.threshold_value):  # grey with the slider
        assert darkest_pixel(label) > ink + 150, label.text()
    view.mode_combo.setCurrentIndex(view.mode_combo.findData("adaptive"))
    assert accent_pixels(slider) > 50 and darkest_pixel(view.threshold_caption) == ink


def test_the_mode_box_and_its_caption_look_disabled_until_a_checkpoint_is_open(qtbot, styled_app, view, files):
    grey = [darkest_pixel(w) for w in (view.mode_caption, view.mode_combo)]  # no checkpoint: nothing to choose
    assert not view.mode_combo.isEnabled()
    open_checkpoint(qtbot, view, files["checkpoint"])
    ink = [darkest_pixel(w) for w in (view.mode_caption, view.mode_combo)]
    for before, after in zip(grey, ink):  # QA: the disabled box looked exactly like the enabled one
        assert before > after + 150


@pytest.mark.parametrize("width", [1024, 1280])
def test_a_cards_figures_stay_on_whole_lines_at_common_window_widths(qtbot, styled_app, view, tmp_path, files, width):
    import json

    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    checkpoint = constant_halting_checkpoint(run / "best.pt")
    evaluation = {"architecture": "iamnn", "mode": "adaptive", "threshold": 0.7, "images": 100, "top1": 0.85,
                  "macs": {"mean": 1.0e6}}
    (run.parent / "eval.json").write_text(json.dumps(evaluation))
    view.resize(width, 700)
    open_checkpoint(qtbot, view, checkpoint)
    view.add_image_files([str(files["image"])])
    qtbot.waitUntil(lambda: bool(view.cards) and view.cards[0].prediction is not None, timeout=TIMEOUT)
    wait_idle(qtbot, view)
    qtbot.wait(50)  # the card's layout settles
    card = view.cards[0]
    assert "(8 of 8)" in plain(card.iterations_label) and "the test average" in plain(card.macs_label)
    line = card.iterations_label.fontMetrics().lineSpacing()
    for label in (card.iterations_label, card.macs_label):  # "(8 of⏎8)", "the⏎test average" were seen at 1024
        assert label.height() < 1.6 * line, (width, plain(label), label.width(), label.height())
        assert label.geometry().right() <= card.close_button.geometry().left()
    if width >= 1280:  # room for both on one row, as before
        assert card.macs_label.y() == card.iterations_label.y()


@pytest.mark.parametrize("width", [960, 1024, 1280])
def test_every_blocks_halting_chart_fits_its_card_at_common_window_widths(qtbot, styled_app, view, files, width):
    """At 960 px (the window's minimum) the row of four charts was wider than the card: Block 4 was cut off."""
    view.resize(width, 564)  # the Use tab of a window this wide
    open_checkpoint(qtbot, view, files["checkpoint"])
    view.add_image_files([str(files["image"])])
    qtbot.waitUntil(lambda: bool(view.cards) and view.cards[0].prediction is not None, timeout=TIMEOUT)
    wait_idle(qtbot, view)
    qtbot.wait(50)  # the card and its charts settle
    card = view.cards[0]
    charts = card.charts
    viewport = view.scroll.viewport()
    assert card.mapTo(viewport, QPoint(card.width(), 0)).x() <= viewport.width()  # no sideways scrolling
    charts_in_card = QRect(charts.mapTo(card, QPoint(0, 0)), charts.size())
    assert card.rect().contains(charts_in_card), (charts_in_card, card.rect())
    for b in range(4):
        drawn = charts.chart_rect(b)
        assert charts.rect().contains(drawn), (f"Block {b + 1}", drawn, charts.rect())
        title = charts.title_rect(b)
        assert drawn.contains(title), (f"Block {b + 1} title", title, drawn)
    assert charts.rows() == 1  # beside the top-5 wherever the four fit there, else in one row under the card
    assert card.charts_below == (width < 1024)


def test_fixed_mode_runs_n_iterations_and_hides_the_threshold(qtbot, view, files):
    open_checkpoint(qtbot, view, files["checkpoint"])
    view.add_image_files([str(files["image"])])
    qtbot.waitUntil(lambda: bool(view.cards) and view.cards[0].prediction is not None, timeout=TIMEOUT)
    with qtbot.waitSignal(view.predictions_updated, timeout=TIMEOUT):
        view.mode_combo.setCurrentIndex(view.mode_combo.findData("fixed"))
        view.fixed_spin.setValue(2)
    wait_idle(qtbot, view)
    card = view.cards[0]
    assert card.prediction.iterations == [1, 2, 2, 2]
    assert not view.threshold_slider.isEnabled()
    assert card.charts.blocks[1].threshold is None  # no threshold line where no threshold decides


@pytest.mark.parametrize("mode", ["fixed", "max"])
def test_a_fixed_mode_shows_a_note_instead_of_halting_charts_and_no_legend(qtbot, view, files, mode):
    """QA: in Fixed mode every card drew its four halting charts with grey columns only, under a legend that
    explained halting scores, cumulative score and threshold, none of which applies; Adaptive brings them back."""
    open_checkpoint(qtbot, view, files["checkpoint"])
    view.add_image_files([str(files["image"])])
    qtbot.waitUntil(lambda: bool(view.cards) and view.cards[0].prediction is not None, timeout=TIMEOUT)
    wait_idle(qtbot, view)
    charts = view.cards[0].charts
    assert charts.note() is None and view.legend.isVisibleTo(view)
    with qtbot.waitSignal(view.predictions_updated, timeout=TIMEOUT):
        view.mode_combo.setCurrentIndex(view.mode_combo.findData(mode))
    wait_idle(qtbot, view)
    charts = view.cards[0].charts
    assert "no halting decision" in charts.note() and charts.height() < charts.row_height()  # one line, no plots
    assert not view.legend.isVisibleTo(view)
    view.resize(960, 700)  # too narrow for four charts beside the top-5, not for the note: it stays under the counts
    qtbot.waitUntil(lambda: view.cards[0].width() < 960, timeout=5_000)
    assert not view.cards[0].charts_below
    view.resize(1200, 700)
    with qtbot.waitSignal(view.predictions_updated, timeout=TIMEOUT):
        view.mode_combo.setCurrentIndex(view.mode_combo.findData("adaptive"))
    wait_idle(qtbot, view)
    charts = view.cards[0].charts
    assert charts.note() is None and charts.height() >= charts.row_height() and view.legend.isVisibleTo(view)
    assert charts.blocks[2].scores == pytest.approx((SCORE, SCORE))


def test_a_runs_held_out_average_is_not_called_the_test_average(qtbot, view, tmp_path, files):
    """QA: "0.94× the test average" for a run without a test split: its evaluation (eval.json's split "val") ran
    on held-out images."""
    import json

    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    checkpoint = constant_halting_checkpoint(run / "best.pt")
    evaluation = {"architecture": "iamnn", "mode": "adaptive", "threshold": 0.7, "images": 100, "top1": 0.85,
                  "macs": {"mean": 1.0e6}, "split": "val"}
    (run.parent / "eval.json").write_text(json.dumps(evaluation))
    open_checkpoint(qtbot, view, checkpoint)
    view.add_image_files([str(files["image"])])
    qtbot.waitUntil(lambda: bool(view.cards) and view.cards[0].prediction is not None, timeout=TIMEOUT)
    wait_idle(qtbot, view)
    card_text, totals = plain(view.cards[0].macs_label), plain(view.totals_label)
    assert "the held-out average" in card_text and "test" not in card_text
    assert "the held-out average" in totals and "test" not in totals


@pytest.mark.parametrize("mode, n", [("max", None), ("fixed", 1)])
def test_a_fixed_mode_measures_an_image_against_its_own_maximum(qtbot, view, files, mode, n):
    """Without an evaluation the card says what share of the mode's maximum an image cost. In max and
    fixed:N that is one value, what ``iamnn-studio predict`` reports as its range: every image costs
    100 % of it (the adaptive maximum, halting heads included, was used before)."""
    open_checkpoint(qtbot, view, files["checkpoint"])  # no eval.json beside it
    view.add_image_files([str(files["image"])])
    qtbot.waitUntil(lambda: bool(view.cards) and view.cards[0].prediction is not None, timeout=TIMEOUT)
    wait_idle(qtbot, view)
    with qtbot.waitSignal(view.predictions_updated, timeout=TIMEOUT):
        view.mode_combo.setCurrentIndex(view.mode_combo.findData(mode))
        if n is not None:
            view.fixed_spin.setValue(n)
    wait_idle(qtbot, view)
    card = view.cards[0]
    low, high = card.prediction.macs_range
    assert low == high == card.prediction.macs
    assert "100 % of the maximum" in plain(card.macs_label)


def test_images_added_before_a_checkpoint_are_classified_once_one_opens(qtbot, view, files):
    view.add_image(QImage(str(files["image"])), "pasted image")
    qtbot.waitUntil(lambda: len(view.cards) == 1, timeout=TIMEOUT)
    assert view.cards[0].prediction is None and "Open a checkpoint" in plain(view.cards[0].iterations_label)

    open_checkpoint(qtbot, view, files["checkpoint"])
    qtbot.waitUntil(lambda: view.cards[0].prediction is not None, timeout=TIMEOUT)
    assert view.cards[0].prediction.iterations == list(CAPS)


def test_a_damaged_checkpoint_shows_a_message_and_keeps_the_view_usable(qtbot, view, tmp_path, files):
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"this is not a checkpoint")
    with qtbot.waitSignal(view.checkpoint_failed, timeout=TIMEOUT) as failed:
        assert view.load_checkpoint(str(damaged))
    assert "damaged.pt" in failed.args[0] and "not an IamNN Studio checkpoint" in failed.args[0]
    assert view.banner.isVisible() and "damaged.pt" in view.banner.text()
    assert view.predictor is None

    assert view.load_checkpoint(str(tmp_path / "missing.pt")) is False
    assert "no such file" in view.banner.text()

    open_checkpoint(qtbot, view, files["checkpoint"])  # a good one still opens afterwards
    assert view.predictor is not None and not view.banner.isVisible()
    with qtbot.waitSignal(view.checkpoint_failed, timeout=TIMEOUT):
        assert view.load_checkpoint(str(damaged))
    # which best.pt stays open: named with its folder, not only "best.pt"
    assert plain(view.checkpoint_label) == f"{files['checkpoint'].parent.name}/best.pt (still open)"


def test_an_in_memory_image_is_classified_like_the_same_file(qtbot, view, files):
    open_checkpoint(qtbot, view, files["checkpoint"])
    view.add_image_files([str(files["image"])])
    view.add_image(Image.open(files["image"]), "from memory")
    qtbot.waitUntil(lambda: len(view.cards) == 2 and all(c.prediction is not None for c in view.cards),
                    timeout=TIMEOUT)
    from_file, from_memory = (card.prediction for card in view.cards)
    assert [label for label, _ in from_memory.top] == [label for label, _ in from_file.top]
    assert [p for _, p in from_memory.top] == pytest.approx([p for _, p in from_file.top])
    assert from_memory.macs == from_file.macs
    assert view.cards[1].name == "from memory"


def test_a_colour_photo_on_a_greyscale_model_says_how_it_was_read(qtbot, view, files, tmp_path):
    from PIL import Image

    photo = tmp_path / "colour.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(photo)
    open_checkpoint(qtbot, view, files["checkpoint"])
    view.add_image_files([str(files["image"]), str(photo)])
    qtbot.waitUntil(lambda: len(view.cards) == 2 and all(c.prediction for c in view.cards), timeout=TIMEOUT)
    grey_card, photo_card = view.cards
    assert plain(grey_card.notes_label) == "Input: resized from 40×30 to 16×16, centre-cropped to a square"
    assert not photo_card.notes_label.isHidden()
    assert "colours converted to greyscale" in plain(photo_card.notes_label)
    assert "resized from 64×48" in plain(photo_card.notes_label)


def test_previewing_a_very_large_picture_warns_nobody(files, monkeypatch):
    import warnings

    from iamnn_studio.gui.inference_view import _read_preview

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the 40x30 photo is now past PIL's warning size
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        preview = _read_preview(str(files["image"]))
    assert preview is not None and (preview.width(), preview.height()) == (40, 30)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_many_cards_are_built_a_few_per_turn_of_the_event_loop_and_cleared_at_once(qtbot, view, files, tmp_path):
    """QA: a dropped folder of 200 images froze the window for 37 s (every card's charts built in one slot),
    and Clear froze it for 61 s (the list laid out again after each card deleted)."""
    from shiboken6 import isValid

    open_checkpoint(qtbot, view, files["checkpoint"])
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"img{i}.png")
        Image.new("L", (16, 16), 40 * i).save(paths[-1])
    view.CARD_BUILD_BUDGET_S = 0.0  # one card per turn
    cards_per_turn = []
    view._show_more.timeout.connect(lambda: cards_per_turn.append(len(view.cards)))
    with qtbot.waitSignal(view.predictions_updated, timeout=TIMEOUT):
        view.add_image_files([str(p) for p in paths])
    assert len(view.cards) == 6 and all(isinstance(c, PredictionCard) and c.prediction for c in view.cards)
    assert len(cards_per_turn) >= 4  # the results waited for later turns (the first card is built at once)
    assert not view.is_busy()

    cards = view.cards
    view.clear()
    assert view.cards == [] and not any(card.isVisible() for card in cards)  # gone from sight at once
    assert view.stack.currentWidget() is view.empty
    qtbot.waitUntil(lambda: not any(isValid(card) for card in cards), timeout=TIMEOUT)


def test_a_newer_result_replaces_one_waiting_for_its_card(qtbot, view):
    """Review: a second outcome for images whose cards were still being built rebuilt the first card and
    then scrolled to the deleted one (RuntimeError); stale results were all drawn, one after another."""
    from iamnn_studio.gui.inference_view import _Outcome

    view.CARD_BUILD_BUDGET_S = 0.0
    entries = [view._new_entry(f"img{i}.png") for i in range(3)]
    keys = [e.key for e in entries]
    drawn = []
    real_error_card = view._show_error_card
    view._show_error_card = lambda entry, message: drawn.append(message) or real_error_card(entry, message)
    view._on_classified(_Outcome(keys=keys, results={k: "old reason" for k in keys}))
    view._on_classified(_Outcome(keys=keys, results={k: "new reason" for k in keys}))
    with qtbot.waitSignal(view.predictions_updated, timeout=TIMEOUT):
        pass
    assert drawn == ["old reason", "new reason", "new reason", "new reason"]  # the first card, then the newer three
    assert [card.message for card in view.cards] == ["New reason."] * 3
    qtbot.wait(50)  # the scroll to the first new card runs (it was the deleted one)

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX thing")
def test_a_named_pipe_gets_no_preview_and_does_not_block(qtbot, view, files, tmp_path):
    """QA: a FIFO named like an image in a dropped folder blocked its reader for ever."""
    from iamnn_studio.gui.inference_view import _read_preview

    pipe = tmp_path / "zz.png"
    os.mkfifo(pipe)
    assert _read_preview(str(pipe)) is None
    open_checkpoint(qtbot, view, files["checkpoint"])
    drop(view, [pipe])
    qtbot.waitUntil(lambda: len(view.cards) == 1 and not view.is_busy(), timeout=TIMEOUT)
    (card,) = view.cards
    assert isinstance(card, ErrorCard) and "not a regular file" in card.message

def test_an_image_only_qt_can_read_is_classified_too(qtbot, view, files, tmp_path):
    svg = tmp_path / "drawing.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20">'
                   '<rect width="20" height="20" fill="#808080"/></svg>')
    open_checkpoint(qtbot, view, files["checkpoint"])
    drop(view, [svg])
    qtbot.waitUntil(lambda: len(view.cards) == 1 and not view.is_busy(), timeout=TIMEOUT)
    (card,) = view.cards
    assert isinstance(card, PredictionCard) and card.prediction is not None  # was: "not an image file"


def test_a_checkpoint_description_too_long_for_the_window_ends_in_an_ellipsis_and_shows_whole_on_hover(
        qtbot, styled_app, view, files):
    open_checkpoint(qtbot, view, files["checkpoint"])
    label = view.checkpoint_label
    assert plain(label).startswith(f"{files['checkpoint'].parent.name}/best.pt — IamNN · caps 1·2·3·2")
    view.resize(960, 640)  # QA: it was cut mid-word ("— 10 c") with nothing saying there was more
    qtbot.waitUntil(lambda: label.shown_text().endswith("…"), timeout=5_000)
    assert label.text() in label.toolTip() and str(files["checkpoint"]) in label.toolTip()
    view.resize(1800, 700)
    qtbot.waitUntil(lambda: label.shown_text() == label.text(), timeout=5_000)


def test_a_model_whose_halting_is_limited_to_one_iteration_disables_the_threshold_and_says_why(qtbot, view,
                                                                                              tmp_path, files):
    """QA: a calibration that limited the halting to 1·1·1·1 left the slider enabled (moving it changed nothing)
    and every chart said "(no halting decision in this mode)" under Mode "Adaptive (halting decides)"."""
    from iamnn_studio.gui.inference_view import ONE_ITERATION_NOTE

    torch.manual_seed(0)
    model = build_model(ModelConfig(iterations=CAPS, width=4, image_size=16, in_channels=1, num_classes=3,
                                    threshold=0.7, halting_caps=(1, 1, 1, 1)))
    checkpoint = save_checkpoint(tmp_path / "one.pt", model.eval(), classes=["dark", "grey", "light"], mean=[0.5],
                                 std=[0.25])
    open_checkpoint(qtbot, view, checkpoint)
    assert "halting at most 1·1·1·1" in view.checkpoint_label.text()
    assert view.mode_combo.currentData() == "adaptive"
    assert not view.threshold_slider.isEnabled()
    assert view.threshold_slider.toolTip() == ONE_ITERATION_NOTE and "one iteration per block" in ONE_ITERATION_NOTE
    view.add_image_files([str(files["image"])])
    qtbot.waitUntil(lambda: bool(view.cards) and view.cards[0].prediction is not None, timeout=TIMEOUT)
    summary = view.cards[0].charts.summary(0)
    assert "in this mode" not in summary and "no halting decision to make" in summary
    charts = view.cards[0].charts  # QA: four empty grey charts; now one line that says why there is nothing to chart
    assert "no halting decision" in charts.note() and charts.height() < charts.row_height()
    assert view.legend.isHidden()  # it explains charts that are not drawn
    view.mode_combo.setCurrentIndex(view.mode_combo.findData("max"))  # every iteration: no halting to chart either
    assert view.legend.isHidden()
    view.mode_combo.setCurrentIndex(view.mode_combo.findData("adaptive"))
    wait_idle(qtbot, view)
    # a model whose halting decides keeps its slider
    open_checkpoint(qtbot, view, files["checkpoint"])
    assert view.threshold_slider.isEnabled() and view.threshold_slider.toolTip() != ONE_ITERATION_NOTE


@pytest.mark.parametrize("mode, values", [("I;16", (0, 65535)), ("F", (0.0, 1.0))])
def test_a_16_bit_or_float_image_is_previewed_as_the_model_reads_it(tmp_path, mode, values):
    """QA: a 16-bit greyscale PNG's thumbnail was clipped to white (PIL's convert("RGBA") clips I;16, I and F),
    while the model read the full range scaled to 8 bits."""
    import numpy as np

    from iamnn_studio.engine.pixels import to_8_bit
    from iamnn_studio.gui.inference_view import _pil_to_qimage, _read_preview

    low, high = values
    ramp = np.tile(np.linspace(low, high, 64), (8, 1))  # dark on the left, bright on the right
    image = Image.fromarray(ramp.astype(np.uint16 if mode == "I;16" else np.float32))
    assert image.mode == mode
    seen_by_model = np.asarray(to_8_bit(image))[4].tolist()
    assert seen_by_model[0] < 10 and seen_by_model[-1] > 245 and len(set(seen_by_model)) > 32  # a real ramp
    previews = [_pil_to_qimage(image)]  # pasted, or given to add_image
    if mode == "I;16":  # PNG keeps 16-bit greyscale; a file goes through the preview reader
        image.save(tmp_path / "ramp16.png")
        previews.append(_read_preview(str(tmp_path / "ramp16.png")))
    for preview in previews:
        assert [preview.pixelColor(x, 4).red() for x in range(64)] == seen_by_model


@pytest.mark.parametrize("mode, top, hot", [("F", 1.0, 20.0), ("I", 255, 300), ("I;16", 65535, None)])
def test_a_large_16_bit_or_float_image_is_shrunk_before_its_8_bit_conversion(tmp_path, monkeypatch, mode, top, hot):
    """Review: the thumbnail converted the full-size image to 8 bits first (in float64: GBs for a ~200 MP scan).
    Shrunk first, it is still what the model reads, scaled by the whole image's peak: a lone ``hot`` pixel, which
    the shrinking averages away, makes the model read these floats as 0-255 rather than 0-1 (and these integers
    as 16-bit rather than 8-bit): a dark image, not the ramp the thumbnail's own peak would show."""
    import numpy as np

    from iamnn_studio.engine.pixels import to_8_bit
    from iamnn_studio.gui import inference_view

    height, width = 1500, 2000
    ramp = np.tile(np.linspace(0, top, width), (height, 1))  # dark on the left, bright on the right
    if hot is not None:
        ramp[0, 0] = hot
    image = Image.fromarray(ramp.astype({"F": np.float32, "I": np.int32, "I;16": np.uint16}[mode]))
    assert image.mode == mode
    image.save(tmp_path / "scan.tif")
    converted_sizes = []
    monkeypatch.setattr(inference_view, "to_8_bit", lambda pil, **kwargs: converted_sizes.append(pil.size)
                        or to_8_bit(pil, **kwargs))

    preview = inference_view._read_preview(str(tmp_path / "scan.tif"))

    assert preview is not None and (preview.width(), preview.height()) == (256, 192)
    assert converted_sizes and all(size == (256, 192) for size in converted_sizes)
    seen_by_model = np.asarray(to_8_bit(image).resize((256, 192), Image.Resampling.BICUBIC), dtype=int)
    shown = np.array([[preview.pixelColor(x, y).red() for x in range(256)] for y in range(0, 192, 16)])
    assert np.abs(shown - seen_by_model[::16]).max() <= 1  # the same up to resampling
    if hot is not None:  # the whole image's scale: dark
        assert seen_by_model.max() <= 2
    else:
        assert seen_by_model[:, 0].max() < 10 and seen_by_model[:, -1].min() > 245


def test_the_peak_read_without_a_copy_scales_as_the_whole_image_does():
    """``peak_value`` (PIL's extrema: no copy of the pixels) gives ``to_8_bit`` the scale its own numpy pass finds,
    NaN and infinities included (PIL's extrema start from the first pixel, here a NaN)."""
    import numpy as np

    from iamnn_studio.engine.pixels import peak_value, to_8_bit

    ramp = np.linspace(0.0, 0.8, 12).reshape(3, 4)
    first = ramp == 0
    floats = [ramp, np.where(ramp > 0.7, np.nan, ramp), np.where(first, np.nan, ramp), np.full((3, 4), np.nan),
              np.where(first, np.nan, ramp * 100), np.where(first, np.inf, ramp), ramp - 1]
    integers = [(ramp * 300).astype(np.int32), (ramp * 300).astype(np.uint16), (ramp * 300 - 500).astype(np.int32)]
    for values in [values.astype(np.float32) for values in floats] + integers:
        image = Image.fromarray(values)
        assert np.array_equal(np.asarray(to_8_bit(image, peak=peak_value(image))), np.asarray(to_8_bit(image)))
    assert peak_value(Image.new("RGB", (2, 2))) is None


@pytest.mark.parametrize("fixed_point, words", [
    ((2.0e6, 0.90), "is both cheaper and more accurate: 90.00 % top-1 at 2.00 M MACs per image, against 85.00 % at "
                    "2.50 M MACs with adaptive halting (beyond two paired standard errors, ±1.05 pt)"),
    ((2.5e6, 0.90), "costs the same and is more accurate: 90.00 % top-1 at 2.50 M MACs per image"),
    ((2.0e6, 0.85), "is as accurate and cheaper: 85.00 % top-1 at 2.00 M MACs per image"),
    ((2.0e6, 0.8498), "is about as accurate and cheaper: 84.98 % top-1 at 2.00 M MACs per image"),
    ((2.5e6, 0.85), "is as accurate at the same cost: 85.00 % top-1 at 2.50 M MACs per image"),
    ((3.0e6, 0.95), "is more accurate but costs 20% more: 95.00 % top-1 at 3.00 M MACs per image"),
])
def test_the_fixed_setting_advice_says_plainly_how_it_compares_with_adaptive(fixed_point, words):
    """Each case the evaluation's verdict can advise a fixed setting in, in words that match its figures."""
    from iamnn_studio.engine.tradeoff import halting_tradeoff
    from iamnn_studio.gui.inference_view import _fixed_against_adaptive

    macs, top1 = fixed_point
    paired = {"only_adaptive_right": 1, "only_fixed_right": 6}  # fixed gets 5 more of the 500 images right
    fixed = [{"iterations": [1, 1, 1, 1], "mean_macs": 1.0e6, "top1": 0.70},
             {"iterations": [2, 2, 2, 2], "mean_macs": macs, "top1": top1, "paired": paired}]
    if macs > 2.5e6:  # a point under the adaptive MACs, so the fixed curve spans them
        fixed.insert(1, {"iterations": [1, 2, 1, 1], "mean_macs": 2.0e6, "top1": 0.84})
    tradeoff = halting_tradeoff({"architecture": "iamnn", "mode": "adaptive", "images": 500, "top1": 0.85,
                                 "macs": {"mean": 2.5e6}, "sweep": {"fixed": fixed}})
    assert tradeoff["outcome"] == "does not pay" and tradeoff["suggested_mode"] == "fixed:2"
    assert _fixed_against_adaptive(tradeoff).startswith(words)


def test_each_card_added_is_laid_out_and_measured_a_bounded_number_of_times(qtbot, view, files, tmp_path,
                                                                             monkeypatch):
    """QA: dropping 150 images held the window ~0.6 s at a time. Each card added squeezed every card above it
    into the list's old height, then the list grew and laid them all out again: layout passes grew with the
    square of the cards, and each pass measured every card's rich-text figures (~20,000 QLabel.heightForWidth
    calls) and chart titles (~13,000 minimum_chart_width calls) again."""
    from collections import Counter

    from PySide6.QtWidgets import QLabel

    from iamnn_studio.gui.widgets.halting_chart import HaltingCharts

    open_checkpoint(qtbot, view, files["checkpoint"])
    paths = []
    for i in range(16):
        paths.append(tmp_path / f"img{i}.png")
        Image.new("L", (16, 16), 15 * i).save(paths[-1])
    calls = Counter()

    def counted(cls, name):
        original = getattr(cls, name)
        monkeypatch.setattr(cls, name, lambda self, *args: calls.update([name]) or original(self, *args))

    counted(PredictionCard, "resizeEvent")  # a card laid out again at another size
    counted(QLabel, "heightForWidth")  # a label's text laid out to answer its height
    counted(HaltingCharts, "minimum_chart_width")  # asked by every card resize and layout pass
    view.CARD_BUILD_BUDGET_S = 0.0  # one card per turn of the event loop: a layout pass per card
    with qtbot.waitSignal(view.predictions_updated, timeout=TIMEOUT):
        view.add_image_files([str(p) for p in paths])
    qtbot.wait(100)  # the last layout passes
    assert len(view.cards) == 16
    # a few times per card, not per card per card added (before: 286, 2,161 and 417 calls for these 16 cards)
    assert calls["resizeEvent"] <= 4 * 16, calls
    assert calls["heightForWidth"] <= 24 * 16, calls
    assert calls["minimum_chart_width"] <= 16 * 16, calls


def test_a_large_pasted_image_is_read_in_the_background_and_kept_as_a_thumbnail(qtbot, view, files, monkeypatch):
    """QA: pasting a 6000×6000 image held the window 2-6 s (its PNG encoding ran on the UI thread), and its
    card kept the whole image as its "thumbnail" (an 8000×8000 16-bit paste kept 122 MB for the preview alone).
    A PIL image given to add_image was converted whole for its preview too."""
    import threading

    import iamnn_studio.gui.inference_view as inference_view
    from iamnn_studio.gui.inference_view import PREVIEW_SIZE

    converted_on = []
    original = inference_view._qimage_to_pil
    monkeypatch.setattr(inference_view, "_qimage_to_pil",
                        lambda image: converted_on.append(threading.current_thread()) or original(image))
    open_checkpoint(qtbot, view, files["checkpoint"])
    pasted = QImage(1200, 900, QImage.Format.Format_Grayscale16)
    pasted.fill(QColor(120, 120, 120))
    view.add_image(pasted, "pasted image")
    assert threading.main_thread() not in converted_on  # not read on the UI thread, now or later
    view.add_image(Image.new("I;16", (1200, 900), 30000), "from memory")
    qtbot.waitUntil(lambda: len(view.cards) == 2 and all(c.prediction is not None for c in view.cards),
                    timeout=TIMEOUT)
    assert converted_on and threading.main_thread() not in converted_on
    for card in view.cards:
        assert card.prediction.notes == ["resized from 1200×900 to 16×16, centre-cropped to a square"]
    for entry in view._entries:
        assert entry.preview is not None
        assert max(entry.preview.width(), entry.preview.height()) <= PREVIEW_SIZE  # a thumbnail, not the image
