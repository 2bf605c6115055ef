"""Reading image files of every kind, and predictions that tell the halting story truthfully."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from iamnn_studio.engine.evaluate import evaluate
from iamnn_studio.engine.halting import act_step, hazard_step
from iamnn_studio.engine.inference import (
    ImageError,
    Prediction,
    PredictionFailure,
    Predictor,
    cumulative_halting,
    halting_story,
    load_image,
)
from iamnn_studio.engine.data.augment import resize_images
from iamnn_studio.engine.pixels import to_8_bit
from tiny_models import CLASSES, MEAN, STD, save_varied_checkpoint, tiny_config, varied_images


# --------------------------------------------------------------------------- images
def test_greyscale_and_colour_files_become_model_sized_uint8(tmp_path):
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "wide.png")
    grey = load_image(tmp_path / "wide.png", in_channels=1, image_size=16)
    colour = load_image(tmp_path / "wide.png", in_channels=3, image_size=16)
    assert grey.shape == (1, 16, 16) and grey.dtype == torch.uint8
    assert colour.shape == (3, 16, 16)
    assert colour[:, 8, 8].tolist() == [255, 0, 0]
    assert grey[0, 8, 8].item() == 76  # ITU-R 601 luma of pure red


def test_what_was_done_to_an_image_is_noted(tmp_path):
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "red.png")
    Image.new("RGB", (16, 16), (90, 90, 90)).save(tmp_path / "grey_rgb.png")  # RGB file, grey content
    Image.new("LA", (16, 16), (0, 0)).save(tmp_path / "clear.png")

    def notes_of(name, channels):
        notes = []
        load_image(tmp_path / name, in_channels=channels, image_size=16, notes=notes)
        return notes

    assert notes_of("red.png", 1) == ["colours converted to greyscale (the model reads grey images)",
                                      "resized from 40×20 to 16×16, centre-cropped to a square"]
    assert notes_of("red.png", 3) == ["resized from 40×20 to 16×16, centre-cropped to a square"]
    assert notes_of("grey_rgb.png", 1) == []  # nothing was lost: no note
    assert notes_of("clear.png", 1) == ["transparent pixels filled with white"]


def test_only_see_through_pixels_are_noted_as_filled(tmp_path):
    """QA: every RGBA or LA file, even one fully opaque, said "transparent pixels filled with white"."""
    Image.new("RGBA", (16, 16), (10, 20, 30, 255)).save(tmp_path / "opaque.png")
    Image.new("LA", (16, 16), (90, 255)).save(tmp_path / "opaque_grey.png")
    half = Image.new("RGBA", (16, 16), (10, 20, 30, 255))
    half.putpixel((3, 3), (10, 20, 30, 128))
    half.save(tmp_path / "one_pixel.png")
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.save(tmp_path / "unused_entry.png", transparency=0)  # a transparent entry no pixel uses
    palette.putpixel((0, 0), 0)
    palette.save(tmp_path / "used_entry.png", transparency=0)

    def notes_of(name):
        notes = []
        load_image(tmp_path / name, in_channels=3, image_size=16, notes=notes)
        return notes

    assert notes_of("opaque.png") == []
    assert "transparent pixels filled with white" not in notes_of("opaque_grey.png")
    assert "transparent pixels filled with white" not in notes_of("unused_entry.png")
    assert notes_of("one_pixel.png") == ["transparent pixels filled with white"]
    assert notes_of("used_entry.png") == ["transparent pixels filled with white"]


@pytest.mark.parametrize("name", ["anim.gif", "pages.tiff", "anim.webp"])
def test_an_image_of_several_frames_is_read_from_its_first_and_says_so(tmp_path, name):
    """QA: an animated GIF was classified from its first frame with no word about the others."""
    frames = [Image.new("RGB", (16, 16), (v, v, v)) for v in (10, 200, 90)]
    frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], lossless=True)
    notes = []
    tensor = load_image(tmp_path / name, in_channels=1, image_size=16, notes=notes)
    assert tensor.unique().tolist() == [10]  # the first frame
    assert notes == ["first of 3 frames used (the model reads one picture)"]
    pasted = []  # a PIL image opened elsewhere (the app's pasted images) is read the same way
    load_image(Image.open(tmp_path / name), in_channels=1, image_size=16, notes=pasted)
    assert pasted == notes
    frames[0].save(tmp_path / f"still{(tmp_path / name).suffix}")
    single = []
    load_image(tmp_path / f"still{(tmp_path / name).suffix}", in_channels=1, image_size=16, notes=single)
    assert single == []


def test_transparency_is_flattened_over_white(tmp_path):
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png", in_channels=1, image_size=16).unique().tolist() == [255]


def test_palette_image_is_read_through_its_palette(tmp_path):
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.save(tmp_path / "palette.png")
    assert load_image(tmp_path / "palette.png", in_channels=3, image_size=16)[:, 0, 0].tolist() == [10, 200, 30]


def test_sixteen_bit_greyscale_keeps_its_full_range(tmp_path):
    values = np.array([[0, 32768], [65535, 65535]], dtype=np.uint16).repeat(8, 0).repeat(8, 1)
    Image.fromarray(values).save(tmp_path / "deep.png")
    tensor = load_image(tmp_path / "deep.png", in_channels=1, image_size=16)
    assert tensor[0, 0, 0].item() == 0 and tensor[0, 0, 15].item() == 128 and tensor[0, 15, 0].item() == 255


def test_pil_images_are_accepted(tmp_path):
    assert load_image(Image.new("L", (32, 32), 7), in_channels=1, image_size=16).unique().tolist() == [7]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("cat.txt", b"meow", "cannot read cat.txt: not an image file"),
        ("half.png", None, "cannot read half.png: damaged image"),
    ],
)
def test_bad_files_raise_one_sentence(tmp_path, name, content, message):
    if content is None:  # a PNG cut in half
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        content = data[: len(data) // 2]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageError, match=message):
        load_image(tmp_path / name, in_channels=1, image_size=16)


@pytest.mark.parametrize(("fmt", "keep"), [("PNG", 40), ("GIF", 16), ("TIFF", 16), ("BMP", 16)])
def test_an_image_cut_short_after_its_signature_is_called_damaged_not_a_non_image(tmp_path, fmt, keep):
    """QA: a PNG cut to its first 40 bytes (signature and header) was "not an image file"; the app's Use tab
    already said "a damaged or incomplete PNG file" (Qt's reader) where no checkpoint was open."""
    whole = tmp_path / f"whole.{fmt.lower()}"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(whole, fmt)
    stub = tmp_path / f"stub.{fmt.lower()}"
    stub.write_bytes(whole.read_bytes()[:keep])
    with pytest.raises(ImageError) as raised, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_image(stub, in_channels=1, image_size=16)
    assert str(raised.value) == f"cannot read {stub.name}: a damaged or incomplete {fmt} file"
    assert [str(w.message) for w in caught] == []  # the sentence says it all: no PIL "Corrupt EXIF data" on stderr


@pytest.mark.parametrize("content", [b"meow", b"", b"<html><body>not a picture</body></html>", b"\0" * 64])
def test_a_file_that_only_has_an_image_name_is_still_not_an_image(tmp_path, content):
    (tmp_path / "fake.png").write_bytes(content)
    with pytest.raises(ImageError, match=r"^cannot read fake.png: not an image file$"):
        load_image(tmp_path / "fake.png", in_channels=1, image_size=16)


def test_missing_file_and_folder_are_named(tmp_path):
    with pytest.raises(ImageError, match="cannot read ghost.png: no such file"):
        load_image(tmp_path / "ghost.png", in_channels=1, image_size=16)
    with pytest.raises(ImageError, match="it is a folder"):
        load_image(tmp_path, in_channels=1, image_size=16)


def test_a_big_picture_loads_without_pil_noise_and_a_bomb_is_refused(tmp_path, monkeypatch):
    import warnings

    Image.new("L", (40, 40), 90).save(tmp_path / "big.png")  # 1,600 px
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # PIL warns past this, refuses past twice it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_image(tmp_path / "big.png", in_channels=1, image_size=16).shape == (1, 16, 16)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    # QA: a 400-Mpx picture said only "the image is too large": its size and the limit, in words
    with pytest.raises(ImageError, match=r"cannot read big.png: the image is too large \(1,600 pixels; the most "
                                         r"it reads is 1,000 pixels\)"):
        load_image(tmp_path / "big.png", in_channels=1, image_size=16)


@pytest.mark.parametrize("name, mode, orientation", [("photo.jpg", "RGB", 1), ("rotated.jpg", "RGB", 6),
                                                     ("scan.png", "I;16", 1), ("overlay.png", "RGBA", 1)])
def test_a_large_picture_is_shrunk_before_its_full_size_copies(tmp_path, monkeypatch, name, mode, orientation):
    """QA: a 12000×12000 JPEG took 3.5 GB and 15 s to classify at 28×28: every step (EXIF copy, conversion,
    numpy, torch, the float resize) ran at full size. Now a JPEG is decoded at a reduced scale and any large
    picture box-averaged to a few times the model's size first; the model sees the same, the note the true size."""
    import iamnn_studio.engine.inference as inference

    y, x = np.mgrid[0:900, 0:1200]
    ramp = (x / 1199 * 0.7 + y / 899 * 0.3)  # smooth: shrinking in steps must not change what the model sees
    if mode == "I;16":
        image = Image.fromarray((ramp * 65535).astype(np.uint16))
    elif mode == "RGBA":
        image = Image.fromarray(np.dstack([ramp * 255, 255 - ramp * 255, ramp * 128, 255 - ramp * 200]).astype(np.uint8))
    else:
        image = Image.fromarray(np.dstack([ramp * 255, 255 - ramp * 255, ramp * 128]).astype(np.uint8))
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(tmp_path / name, **({"exif": exif, "quality": 95} if name.endswith(".jpg") else {}))
    reference = Image.open(tmp_path / name)
    reference = to_8_bit(ImageOps.exif_transpose(reference))
    if reference.mode == "RGBA":
        reference = Image.alpha_composite(Image.new("RGBA", reference.size, (255, 255, 255, 255)), reference)
    full = torch.from_numpy(np.asarray(reference.convert("L"), dtype=np.uint8).copy())[None, None]
    expected = resize_images(full, 16)[0]

    resized = []
    monkeypatch.setattr(inference, "resize_images", lambda x, size: resized.append(tuple(x.shape)) or resize_images(x, size))
    notes = []
    tensor = load_image(tmp_path / name, in_channels=1, image_size=16, notes=notes)
    assert min(resized[0][2:]) < 8 * 16, resized  # not 900 px: no full-size copy reached the resize
    assert (tensor.int() - expected.int()).abs().max() <= 2
    size = "900×1200" if orientation == 6 else "1200×900"
    assert notes[-1] == f"resized from {size} to 16×16, centre-cropped to a square"


# --------------------------------------------------------------------------- halting arithmetic
def test_cumulative_scores_follow_each_halting_rule():
    assert cumulative_halting([0.5, 0.5], "calibrated") == pytest.approx([0.5, 0.75])
    assert cumulative_halting([0.5, 0.5], "act") == pytest.approx([0.5, 1.0])
    assert cumulative_halting([], "act") == []


def test_a_cumulative_score_exactly_on_the_float32_threshold_is_explained_as_reached():
    """The model compares float32 scores with the threshold in float32: float32(0.9) >= 0.9 there, but
    0.89999997... < 0.9 in float64, where the explanation used to compare, and said "not reached"."""
    on_the_boundary = float(np.float32(0.9))
    assert on_the_boundary < 0.9  # the trap: in float64 it falls short
    for halting in ("calibrated", "act"):
        cumulative, reached = halting_story([on_the_boundary], halting, 0.9)
        assert cumulative == [on_the_boundary] and reached == 1
        model_halts = (act_step if halting == "act" else hazard_step)(
            torch.zeros(1), torch.tensor([on_the_boundary]), 0.9)[0]
        assert bool(model_halts)  # what halting.py, the model's rule, decides on the same numbers
    assert halting_story([0.2, 0.2], "calibrated", 0.9) == ([pytest.approx(0.2), pytest.approx(0.36)], None)


@pytest.mark.parametrize("channels", [1, 3])
def test_a_lab_tiff_is_read_in_its_colours_for_a_grey_or_colour_model(tmp_path, channels):
    from PIL import ImageCms

    red = Image.new("RGB", (8, 8), (200, 30, 40))
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    ImageCms.applyTransform(red, to_lab).save(tmp_path / "lab.tif")
    # QA: a greyscale model's "cannot read lab.tif: conversion from LAB to RGB not supported"
    notes: list[str] = []
    pixels = load_image(tmp_path / "lab.tif", in_channels=channels, image_size=8, notes=notes)
    expected = torch.tensor([200, 30, 40]) if channels == 3 else torch.tensor([red.convert("L").getpixel((0, 0))])
    assert (pixels[:, 0, 0].int() - expected).abs().max() <= 3
    assert ("colours converted to greyscale (the model reads grey images)" in notes) == (channels == 1)


def test_a_model_halting_on_the_float32_threshold_is_explained_as_halting_there(checkpoint, images):
    """End to end: every halting head scores exactly float32(0.9) under threshold 0.9, so the model stops each
    block after its first iteration; the prediction says the threshold was reached there."""
    predictor = Predictor.from_checkpoint(checkpoint)
    predictor.threshold = 0.9
    for block in predictor.model.blocks:
        block.halting_head.score = lambda features, n: torch.full((features.shape[0],), 0.9)
    for prediction in predictor.predict(images[:4]):
        assert prediction.iterations == [1, 1, 1, 1]
        assert prediction.halting == [[], [float(np.float32(0.9))], [float(np.float32(0.9))], [float(np.float32(0.9))]]
        assert prediction.reached == [None, 1, 1, 1]  # block 1 (cap 1) runs no head: its cap stopped it
        assert prediction.to_dict()["reached"] == [None, 1, 1, 1]
        assert_halting_story_is_consistent(prediction, "calibrated")


# --------------------------------------------------------------------------- predictor
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_varied_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def images():
    return list(varied_images(24).images)


def assert_halting_story_is_consistent(prediction: Prediction, halting: str) -> None:
    """The reported scores and cumulative values explain the reported iterations exactly."""
    for b, (n, cap) in enumerate(zip(prediction.iterations, prediction.caps)):
        scores, cumulative = prediction.halting[b], prediction.cumulative[b]
        assert len(scores) == len(cumulative) == min(n, cap - 1)
        assert cumulative == cumulative_halting(scores, halting)  # the model's float32 values, exactly
        # halted where the scores reached the threshold, compared as the model compares (float32); else at its limit
        assert prediction.reached[b] == (n if n < cap else None)


def test_predictions_explain_their_iterations(checkpoint, images):
    predictor = Predictor.from_checkpoint(checkpoint)
    predictions = predictor.predict(images)
    assert len(predictions) == 24
    for prediction in predictions:
        assert [label for label, _ in prediction.top] != [] and len(prediction.top) == 3
        probabilities = [p for _, p in prediction.top]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1.0)
        assert prediction.threshold == 0.7 and prediction.caps == [1, 2, 3, 2]
        low, high = prediction.macs_range
        assert low <= prediction.macs <= high
        assert_halting_story_is_consistent(prediction, "calibrated")
    assert len({tuple(p.iterations) for p in predictions}) > 1  # the images halt differently


def test_act_halting_story_is_consistent(tmp_path, images):
    save_varied_checkpoint(tmp_path / "act.pt", tiny_config(halting="act", threshold=0.9))
    for prediction in Predictor.from_checkpoint(tmp_path / "act.pt").predict(images):
        assert_halting_story_is_consistent(prediction, "act")


def test_threshold_moves_iterations_and_macs(checkpoint, images):
    predictor = Predictor.from_checkpoint(checkpoint)
    predictor.threshold = 0.1
    cheap = predictor.predict(images)
    predictor.threshold = 0.95
    dear = predictor.predict(images)
    assert sum(p.macs for p in cheap) < sum(p.macs for p in dear)
    assert sum(map(sum, (p.iterations for p in cheap))) < sum(map(sum, (p.iterations for p in dear)))
    assert all(p.threshold == 0.95 for p in dear)


def test_bad_threshold_or_mode_leaves_the_predictor_unchanged(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint)
    with pytest.raises(ValueError, match="threshold"):
        predictor.threshold = 1.5
    assert predictor.threshold == 0.7
    with pytest.raises(ValueError, match="mode"):
        predictor.mode = "sometimes"
    assert predictor.mode == "adaptive"


def test_fixed_mode_runs_the_same_iterations_for_every_image(checkpoint, images):
    predictor = Predictor.from_checkpoint(checkpoint)
    predictor.mode = "fixed:2"
    for prediction in predictor.predict(images[:4]):
        assert prediction.iterations == [1, 2, 2, 2]
        assert prediction.halting == [[], [], [], []] and prediction.threshold is None


def test_predictions_do_not_depend_on_the_batch(checkpoint, images):
    predictor = Predictor.from_checkpoint(checkpoint)
    together = predictor.predict(images)
    predictor.batch_size = 5
    apart = predictor.predict(images)
    assert [p.iterations for p in together] == [p.iterations for p in apart]
    assert [p.macs for p in together] == [p.macs for p in apart]


def test_one_broken_file_does_not_stop_the_others(checkpoint, tmp_path, images):
    good = tmp_path / "good.png"
    Image.fromarray(images[3][0].numpy()).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    predictor = Predictor.from_checkpoint(checkpoint)

    results = predictor.predict_files([broken, good])
    assert isinstance(results[0], PredictionFailure)
    assert results[0].source == str(broken) and "broken.png" in results[0].message
    assert isinstance(results[1], Prediction) and results[1].source == str(good)
    direct = predictor.predict([images[3]])[0]
    assert results[1].top == direct.top and results[1].iterations == direct.iterations
    assert results[1].notes == direct.notes == []  # a model-sized greyscale file needs no adapting


def test_a_colour_photo_for_a_greyscale_model_says_so_in_its_prediction(checkpoint, tmp_path):
    Image.new("RGB", (64, 48), (20, 140, 60)).save(tmp_path / "photo.jpg")
    predictor = Predictor.from_checkpoint(checkpoint)
    [result] = predictor.predict_files([tmp_path / "photo.jpg"])
    assert result.notes[0].startswith("colours converted to greyscale")
    assert result.to_dict()["notes"] == result.notes


def test_images_of_another_size_or_float_are_accepted(checkpoint, images):
    predictor = Predictor.from_checkpoint(checkpoint)
    [big] = predictor.predict([torch.full((1, 40, 40), 200, dtype=torch.uint8)])
    [small] = predictor.predict([torch.full((1, 16, 16), 200, dtype=torch.uint8)])
    [unit] = predictor.predict([torch.full((1, 16, 16), 200 / 255)])
    assert big.top == small.top == unit.top
    with pytest.raises(ImageError, match="3 channels, the model takes 1"):
        predictor.predict([torch.zeros(3, 16, 16, dtype=torch.uint8)])


def test_mean_test_macs_comes_from_the_run_evaluation(tmp_path):
    path = tmp_path / "checkpoints" / "best.pt"  # a run folder's layout; eval.json sits at its root
    model = save_varied_checkpoint(path)
    assert Predictor.from_checkpoint(path).mean_test_macs is None
    report = evaluate(model, varied_images(48), mean=MEAN, std=STD, classes=CLASSES, batch_size=48)
    (tmp_path / "eval.json").write_text(json.dumps(report))

    predictor = Predictor.from_checkpoint(path)
    assert predictor.mean_test_macs == report["macs"]["mean"]
    predictor.threshold = 0.3
    point = next(p for p in report["sweep"]["threshold"] if p["threshold"] == 0.3)
    assert predictor.mean_test_macs == point["mean_macs"]
    predictor.mode = "fixed:1"
    assert predictor.mean_test_macs == report["sweep"]["fixed"][0]["mean_macs"]


@pytest.mark.parametrize("damage", [{"adaptivity": [1]}, {"sweep": [1]}, {"classes": "abc"}])
def test_a_damaged_run_evaluation_is_no_evaluation(tmp_path, damage):
    """Review: an eval.json with "adaptivity": [1] or "sweep": [1] failed the Use tab's checkpoint load."""
    path = tmp_path / "checkpoints" / "best.pt"
    model = save_varied_checkpoint(path)
    report = evaluate(model, varied_images(48), mean=MEAN, std=STD, classes=CLASSES, batch_size=48)
    (tmp_path / "eval.json").write_text(json.dumps({**report, **damage}))
    predictor = Predictor.from_checkpoint(path)
    assert predictor.mean_test_macs is None
    predictor.mode = "fixed:1"
    assert predictor.mean_test_macs is None


@pytest.mark.parametrize("mode", ["max", "fixed:1", "fixed:2"])
def test_a_fixed_mode_reports_its_own_macs_range_like_the_command_line(checkpoint, images, mode):
    """Python (and the Use tab, which shows '% of the maximum' without an evaluation) said the adaptive
    range in max / fixed:N, while ``predict`` said the mode's: a max-mode image cost more than its 'maximum'."""
    predictor = Predictor.from_checkpoint(checkpoint)
    predictor.mode = mode
    predictions = predictor.predict(images[:4])
    macs = {p.macs for p in predictions}
    assert len(macs) == 1  # every image runs the same iterations and no halting head
    assert predictor.macs_range == (min(macs), min(macs))
    assert all(p.macs_range == predictor.macs_range for p in predictions)
    predictor.mode = "adaptive"
    assert predictor.macs_range == predictor.model.macs_range()  # the halting's range again


def test_a_refused_picture_past_a_million_pixels_is_sized_in_megapixels(tmp_path, monkeypatch):
    Image.new("L", (2000, 1000), 90).save(tmp_path / "huge.png")  # 2 Mpx
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600_000)  # refused past 1.2 Mpx
    with pytest.raises(ImageError, match=r"too large \(2 megapixels; the most it reads is 1.2 megapixels\): "
                                         r"shrink it"):
        load_image(tmp_path / "huge.png", in_channels=1, image_size=16)


def test_a_model_trained_without_calibration_runs_at_full_depth_and_is_not_called_stopped(tmp_path):
    """QA: predict ran a --no-calibrate model adaptively, paid its unfitted head's MACs and said its run "stopped
    before calibration"; evaluate already runs it at full depth, as the README says it runs."""
    from iamnn_studio.engine.config import DataConfig, RunConfig

    config = tiny_config(threshold=None)
    run = RunConfig(data=DataConfig(name="synthetic"), model=config, calibrate_halting=False)
    save_varied_checkpoint(tmp_path / "left.pt", config, run_config=run)
    stopped = RunConfig(data=DataConfig(name="synthetic"), model=config)  # calibrate_halting left on: it stopped
    save_varied_checkpoint(tmp_path / "stopped.pt", config, run_config=stopped)
    images = []
    for value in (10, 128, 250):
        images.append(tmp_path / f"grey-{value}.png")
        Image.fromarray(np.full((16, 16), value, dtype=np.uint8)).save(images[-1])

    left = Predictor.from_checkpoint(tmp_path / "left.pt")
    assert left.left_unfitted and not left.uncalibrated and left.mode == "max"
    results = left.predict_files(images)
    assert all(list(r.iterations) == list(left.model.caps) for r in results)

    before = Predictor.from_checkpoint(tmp_path / "stopped.pt")
    assert before.uncalibrated and not before.left_unfitted and before.mode == "adaptive"
