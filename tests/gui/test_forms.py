"""The run form: inline errors in the config's words, live caps and figures, TOML in and out."""
from __future__ import annotations

import pytest

from .conftest import checkpoint_of, tiny_run_values

pytestmark = pytest.mark.gui


@pytest.fixture
def form(window):
    return window.training.form


def test_invalid_width_is_explained_inline_and_blocks_start(qtbot, window, form):
    start = window.training.header.start
    qtbot.waitUntil(lambda: start.isEnabled(), timeout=30_000)
    row = form.model.rows["model.width"]

    form.model.width.setValue(0)
    assert not row.error_label.isHidden()
    assert "must be a positive integer" in row.error
    assert not start.isEnabled()
    assert window.training.header.title.text() == "Not ready to train"
    assert form.errors == {"model.width": row.error}

    form.model.width.setValue(8)
    assert row.error_label.isHidden() and row.error == ""
    qtbot.waitUntil(lambda: start.isEnabled(), timeout=30_000)
    assert window.training.header.title.text() == "Ready to train"


def test_a_width_past_the_bound_or_too_big_for_this_computer_blocks_start(qtbot, window, form, monkeypatch):
    import iamnn_studio.engine.estimate as estimate

    start = window.training.header.start
    form.set_values(tiny_run_values(form))
    qtbot.waitUntil(lambda: start.isEnabled() and form.figures is not None, timeout=30_000)
    row = form.model.rows["model.width"]
    form.model.width.setValue(4096)  # a typo's extra digit: refused before anything is built
    assert "must be at most 1024" in row.error and not start.isEnabled()

    # within the bound but more than this computer's memory: said once the (meta-device) sizing is back
    monkeypatch.setattr(estimate, "available_memory_bytes", lambda device="cpu": 10 * 2**20)
    form.model.width.setValue(64)
    qtbot.waitUntil(lambda: "choose a smaller width" in row.error, timeout=30_000)
    assert "GB to train" in row.error and not start.isEnabled() and not form.is_valid
    monkeypatch.setattr(estimate, "available_memory_bytes", lambda device="cpu": 2**40)
    form.model.width.setValue(4)
    qtbot.waitUntil(lambda: start.isEnabled(), timeout=30_000)
    assert row.error == ""


def test_a_batch_too_big_for_this_computer_is_flagged_under_the_batch_size_and_blocks_start(
        qtbot, fresh_sizing_cache, window, form, monkeypatch):
    """The activations are sized once per model shape, by the form's sizing child; batch edits rescale them."""
    import iamnn_studio.engine.estimate as estimate
    from iamnn_studio.engine.config import ModelConfig

    start, row = window.training.header.start, form.training.rows["batch_size"]
    values = tiny_run_values(form, train_size=4096)  # 3,072 training images: a batch of 65,536 takes them all
    form.set_values(values)
    qtbot.waitUntil(lambda: start.isEnabled() and form.figures is not None and form.preview_data is not None
                    and form.preview_data.split_sizes(0.25)[0] == 3072, timeout=30_000)
    key = estimate.training_memory_key(ModelConfig.from_dict(form.values()["model"]).validate())
    qtbot.waitUntil(lambda: key in form.training_memories, timeout=120_000)  # the child imports torch first
    memory = form.training_memories[key]
    assert memory == estimate.training_memory(ModelConfig.from_dict(form.values()["model"]).validate())
    assert memory.bytes_per_image > 0  # was: TrainingMemory(parameters, 0, 0), no batch ever too big

    available = memory.needed(64)  # the parameters fit, 64 images too, not 3,072 (QA: 65,536 was OOM-killed)
    monkeypatch.setattr(estimate, "available_memory_bytes", lambda device="cpu": available)
    form._compute_figures()  # the same model, sized again
    qtbot.waitUntil(lambda: form.figures is not None and form.figures.available == available, timeout=30_000)
    form.training.batch_size.setValue(65_536)
    assert row.error.startswith("a batch of 3,072 images (every training image: a batch of 65,536 never holds more)")
    assert "choose a batch size of at most 64" in row.error and not row.error_label.isHidden()
    assert not start.isEnabled() and not form.is_valid and form.model.rows["model.width"].error == ""
    form.training.batch_size.setValue(32)
    assert row.error == "" and start.isEnabled()

    form.model.depth.set_value(50)  # a deeper model keeps more per image: sized again, after a pause in editing
    deeper = estimate.training_memory_key(ModelConfig.from_dict(form.values()["model"]).validate())
    assert deeper != key and deeper not in form.training_memories
    qtbot.waitUntil(lambda: deeper in form.training_memories, timeout=30_000)
    assert form.training_memories[deeper].bytes_per_image > memory.bytes_per_image
    qtbot.waitUntil(lambda: "batch_size" in form.errors, timeout=30_000)  # 32 images of it no longer fit
    assert "choose a batch size of at most" in row.error and not start.isEnabled()


def test_every_bad_field_gets_its_own_message(form):
    form.training.lr.setText("fast")
    form.training.lr.textEdited.emit("fast")
    form.training.epochs.setValue(0)
    assert "learning rate must be > 0" in form.training.rows["lr"].error
    assert "positive integer" in form.training.rows["epochs"].error
    assert set(form.errors) == {"lr", "epochs"}


@pytest.mark.parametrize("text, said", [("inf", "must be at most 100, got inf"), ("1e999", "must be at most 100, got inf"),
                                        ("0,1", "must be > 0, got '0,1'")])
def test_a_learning_rate_that_is_no_finite_number_is_refused_inline(form, text, said):
    """An infinite one is too big: "must be > 0, got inf" told the user the opposite."""
    form.training.lr.setText(text)
    form.training.lr.textEdited.emit(text)
    assert f"learning rate {said}" in form.training.rows["lr"].error
    assert not form.is_valid


def test_the_seed_takes_the_clis_whole_range_and_a_larger_one_from_a_file_is_explained(form, tmp_path):
    """The seed was a 32-bit spin box: seeds the CLI takes (to 2**53 - 1) did not fit, and were clamped."""
    row, largest = form.training.rows["seed"], 2**53 - 1
    values = form.values()
    values["seed"] = largest
    form.set_values(values)
    assert form.training.seed.text() == str(largest) and form.values()["seed"] == largest
    assert "seed" not in form.errors and row.error == ""

    (tmp_path / "big-seed.toml").write_text(f"seed = {largest + 1}\n")
    assert form.load_file(tmp_path / "big-seed.toml") is None
    assert form.training.seed.text() == str(largest + 1)  # shown as in the file, not clamped
    assert row.error == f"must be an integer in [0, 2**53 - 1], got {largest + 1}" and not form.is_valid

    form.training.seed.setText("12x")
    form.training.seed.textEdited.emit("12x")
    assert row.error == "must be an integer in [0, 2**53 - 1], got '12x'"
    form.training.seed.setText("7")
    form.training.seed.textEdited.emit("7")
    assert row.error == "" and form.values()["seed"] == 7


def test_custom_caps_errors_show_under_the_depth_row(form):
    form.model.depth.set_value("custom")
    form.model.custom_caps.setText("1, two, 2")
    form.model.custom_caps.textEdited.emit("1, two, 2")
    assert "four whole numbers" in form.model.rows["model.depth"].error
    form.model.custom_caps.setText("1, 2, 2, 1")
    form.model.custom_caps.textEdited.emit("1, 2, 2, 1")
    assert form.model.rows["model.depth"].error == ""
    assert form.model.caps_label.text() == "caps 1 · 2 · 2 · 1"


@pytest.mark.parametrize("typed, got", [("0, 1, x", "0, 1, x"), ("1,2", "1, 2"), ("-1 2 2 1", "-1, 2, 2, 1"),
                                         ("", "nothing")])
def test_bad_custom_caps_are_told_in_the_fields_words_not_as_a_python_tuple(form, typed, got):
    """QA: typing "0, 1, x" said "needs four positive integers, got (0, 1, 'x')"."""
    form.model.depth.set_value("custom")
    form.model.custom_caps.setText(typed)
    form.model.custom_caps.textEdited.emit(typed)
    assert form.model.rows["model.depth"].error == \
        f"needs four whole numbers of 1 or more, one per block (e.g. 1, 2, 2, 1), got {got}"
    form.model.custom_caps.setText("1, 2, 2, 1000")  # past the bound: the config's own sentence
    form.model.custom_caps.textEdited.emit("1, 2, 2, 1000")
    assert form.model.rows["model.depth"].error.startswith("at most ")


def test_depth_choice_shows_the_iteration_caps_it_implies(form):
    from iamnn_studio.engine.config import DEPTH_ITERATIONS

    form.model.depth.set_value(34)
    assert form.model.caps_label.text() == "caps 3 · 4 · 6 · 3"
    form.model.depth.set_value(152)
    assert form.model.caps_label.text() == "caps " + " · ".join(map(str, DEPTH_ITERATIONS[152]))


def test_parameter_count_and_macs_follow_the_model_after_a_pause(qtbot, form):
    import torch

    from iamnn_studio.engine import ModelConfig, build_model
    from iamnn_studio.gui.forms.model_panel import format_count

    form.set_values(tiny_run_values(form))
    qtbot.waitUntil(lambda: form.preview_data is not None and form.preview_data.name == "synthetic", timeout=30_000)
    form.model.width.setValue(6)
    model_values = form.values()["model"]
    assert model_values["width"] == 6
    model = build_model(ModelConfig.from_dict(model_values))
    expected = sum(p.numel() for p in model.parameters())
    qtbot.waitUntil(lambda: form.figures is not None and form.figures.parameters == expected, timeout=30_000)
    low, high = model.macs_range()
    # the floor is a calibrated stop at every block's first iteration, where no halting head runs
    # (QA: the form said 780 k-1.58 M, the calibrated model then ran at 720 k)
    ones = torch.ones(1, 4, dtype=torch.long)
    floor = int(model.macs_for(ones, torch.zeros_like(ones)))
    assert model_values["halting"] == "calibrated" and floor < low
    assert (form.figures.macs_min, form.figures.macs_max) == (floor, high)
    assert form.model.figures.text().startswith(f"{format_count(expected)} parameters")


def test_the_form_estimates_the_training_time_and_warns_about_long_cpu_runs(qtbot, form, monkeypatch):
    from iamnn_studio.engine.estimate import estimate_training_seconds
    from iamnn_studio.gui.widgets.formatting import rough_duration

    values = tiny_run_values(form)
    values.update(device="cpu", max_steps=None, epochs=2)
    form.set_values(values)
    qtbot.waitUntil(lambda: form.preview_data is not None and form.preview_data.name == "synthetic", timeout=30_000)
    qtbot.waitUntil(lambda: form.figures is not None and form.figures.train_macs > 0, timeout=30_000)
    train_images = sum(form.preview_data.counts["train"])
    expected = estimate_training_seconds(form.figures.train_macs, 2 * train_images, form.figures.cpu_flops)
    estimate = form.training.estimate
    qtbot.waitUntil(lambda: estimate.text() == f"{rough_duration(expected)} of training on this CPU", timeout=5_000)
    assert estimate.property("role") == "muted"

    import iamnn_studio.gui.forms.run_form as run_form

    monkeypatch.setattr(run_form, "LONG_CPU_RUN_S", expected * 10)  # "long": whatever this machine's speed
    form.training.epochs.setValue(40)  # 20x the images: said in the warning colour, with what would shorten it
    assert "GPU" in estimate.text() and estimate.property("role") == "warning"
    form.training.limit_steps.setChecked(True)
    form.training.max_steps.setValue(1)  # the step limit caps the images seen
    assert estimate.text() == "under a minute of training on this CPU"


def show_a_cpu_estimate(qtbot, form):
    """A tiny run for 2 epochs on the CPU, shown until its training-time estimate is: (values, estimate label)."""
    values = tiny_run_values(form)
    values.update(device="cpu", max_steps=None, epochs=2)
    form.set_values(values)
    qtbot.waitUntil(lambda: form.figures is not None and form.preview_data is not None, timeout=30_000)
    estimate = form.training.estimate
    qtbot.waitUntil(lambda: estimate.text().endswith("of training on this CPU"), timeout=5_000)
    return values, estimate


def test_no_training_time_is_estimated_for_invalid_epochs_batch_or_model(qtbot, form):
    values, estimate = show_a_cpu_estimate(qtbot, form)
    form.training.epochs.setValue(0)  # QA: "under a minute of training" next to "must be a positive integer"
    assert "epochs" in form.errors and estimate.text() == ""
    form.training.epochs.setValue(2)
    assert estimate.text().endswith("of training on this CPU")
    form.training.batch_size.setValue(0)
    assert "batch_size" in form.errors and estimate.text() == ""
    form.training.batch_size.setValue(32)
    form.model.eps.setText("nan")  # the model's size is not shown: neither is a time from the previous model's
    form.model.eps.textEdited.emit("nan")
    qtbot.waitUntil(lambda: form.model.figures.text().startswith("Fix the model settings"), timeout=5_000)
    assert form.figures is None and estimate.text() == ""


@pytest.fixture
def held_preview(monkeypatch):
    """Dataset previews wait until the test sets the returned event (decoding is slow on a real dataset)."""
    import threading

    import iamnn_studio.gui.forms.run_form as run_form

    gate = threading.Event()
    real = run_form.load_preview
    monkeypatch.setattr(run_form, "load_preview", lambda *args: gate.wait(30) and real(*args))
    yield gate
    gate.set()


def test_model_size_shows_for_a_builtin_dataset_before_its_preview_decodes(qtbot, held_preview, window):
    form = window.training.form
    qtbot.waitUntil(lambda: "1×28×28, 10 classes" in form.model.figures_detail.text(), timeout=10_000)
    form.dataset.provider.set_value("cifar100")
    qtbot.waitUntil(lambda: "3×32×32, 100 classes" in form.model.figures_detail.text(), timeout=10_000)
    assert form.preview_data is None and "parameters" in form.model.figures.text()

    form.dataset.provider.set_value("imagefolder")  # its shape is only known once its images are read
    qtbot.waitUntil(lambda: "once the images have been read" in form.model.figures.text(), timeout=10_000)
    assert form.model.figures_detail.text() == ""
    held_preview.set()


def test_dataset_preview_shows_every_class_with_counts(qtbot, form):
    form.set_values(tiny_run_values(form))
    qtbot.waitUntil(lambda: form.preview_data is not None and form.preview_data.name == "synthetic", timeout=30_000)
    data = form.preview_data
    assert data.num_classes == 10 and data.in_channels == 1 and data.image_size == 28
    assert sum(data.counts["train"]) + sum(data.counts["val"]) == 256
    assert sum(data.counts["test"]) == 64
    assert "10 classes" in form.preview.summary.text()


def test_a_bad_image_folder_is_explained_inline_and_blocks_start(qtbot, window, form, tmp_path):
    form.set_values(tiny_run_values(form))
    qtbot.waitUntil(lambda: form.preview.data is not None, timeout=30_000)  # another dataset's samples shown
    assert not form.dataset.download.isVisibleTo(form)  # generated data: nothing to download
    form.dataset.provider.set_value("cifar10")
    assert form.dataset.download.isVisibleTo(form)
    form.dataset.provider.set_value("imagefolder")
    assert not form.dataset.download.isVisibleTo(form)
    form.dataset.folder.setText(str(tmp_path / "no-such-folder"))
    form.dataset.folder.editingFinished.emit()
    qtbot.waitUntil(lambda: form.dataset_error is not None, timeout=30_000)
    assert "folder not found" in form.dataset.status.text()
    assert not window.training.header.start.isEnabled()
    # the preview no longer shows the previous dataset, and says what is wrong, not "download it"
    assert form.preview.data is None and form.preview.grid.count() == 0
    assert "folder not found" in form.preview.summary.text() and "download" not in form.preview.summary.text()


def test_a_preview_still_decoding_when_the_dataset_turns_out_missing_does_not_clear_its_reason(
        qtbot, held_preview, window, tmp_path):
    """A preview of the previous dataset, still decoding when the newly chosen folder was found missing, landed
    afterwards: it showed the old dataset's samples and cleared "folder not found", so Start was enabled for a
    folder that is not there (a full-suite run failed one test in three on this)."""
    form = window.training.form
    form.set_values(tiny_run_values(form))  # synthetic: its preview waits on the gate
    qtbot.waitUntil(lambda: form._tasks.is_busy("preview"), timeout=30_000)
    form.dataset.provider.set_value("imagefolder")
    form.dataset.folder.setText(str(tmp_path / "no-such-folder"))
    form.dataset.folder.editingFinished.emit()
    qtbot.waitUntil(lambda: form.dataset_error is not None, timeout=30_000)
    held_preview.set()  # the synthetic preview decodes now
    qtbot.wait(1500)
    assert form.dataset_error is not None and "folder not found" in form.dataset_error
    assert form.preview_data is None
    assert not window.training.header.start.isEnabled()


def test_the_start_blocker_follows_the_newest_dataset_problem(qtbot, window, form, tmp_path):
    subtitle = window.training.header.subtitle
    form.dataset.provider.set_value("imagefolder")
    for folder, words in ((tmp_path / "missing", "folder not found"), (tmp_path, "class subfolder")):
        form.dataset.folder.setText(str(folder))
        form.dataset.folder.editingFinished.emit()
        # the folder is checked in the form's background queue, behind the default dataset's first read and
        # the model's figures (slow on a loaded machine: 10 s ran out twice in full parallel runs of the suite)
        qtbot.waitUntil(lambda: words in subtitle.text(), timeout=30_000)
        assert not window.training.header.start.isEnabled()


def test_an_image_folder_with_a_class_folder_it_cannot_read_blocks_start(qtbot, window, form, tmp_path,
                                                                         lock_folders_named):
    """QA: "✓ 3 classes" and "locked 0 0 0" with a grey note; Start trained a model that never saw the class."""
    root = _image_folder(tmp_path / "photos", per_class=2)
    (root / "class1").rename(root / "locked")
    lock_folders_named("locked")
    form.dataset.provider.set_value("imagefolder")
    form.dataset.folder.setText(str(root))
    form.dataset.folder.editingFinished.emit()
    problem = f"cannot read the class folder {root / 'locked'}: permission denied"
    qtbot.waitUntil(lambda: form.dataset_error is not None and problem in form.dataset.status.text(), timeout=30_000)
    assert problem in form.preview.summary.text()
    assert not window.training.header.start.isEnabled()


def test_too_few_held_out_images_to_calibrate_block_start(qtbot, window, form):
    start = window.training.header.start
    values = tiny_run_values(form, train_size=60)
    values["data"]["val_fraction"] = 0.1  # one held-out image of each of the 10 classes of 6 images
    form.set_values(values)
    row = form.dataset.rows["data.val_fraction"]
    qtbot.waitUntil(lambda: "held-out images" in row.error, timeout=30_000)
    # 33 % holds out 20 (2 of each class's 6): round(19.8), shared out per class
    assert "leaves 10 of its 60: use a validation split of at least 33 %" in row.error and not start.isEnabled()
    form.model.architecture.set_value("resnet")  # nothing to calibrate
    qtbot.waitUntil(lambda: row.error == "", timeout=10_000)


def _image_folder(root, classes=3, per_class=40):
    """``root/<class>/<n>.png``: small RGB images, ``classes * per_class`` of them."""
    from PIL import Image

    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for n in range(per_class):
            Image.new("RGB", (12, 12), (40 * c, 3 * n, 90)).save(folder / f"{n}.png")
    return root


def test_a_larger_validation_split_clears_the_calibration_error_of_a_small_image_folder(qtbot, window, form,
                                                                                         tmp_path):
    start, row = window.training.header.start, form.dataset.rows["data.val_fraction"]
    values = tiny_run_values(form)
    values["data"].update(name="imagefolder", root=str(_image_folder(tmp_path / "img data ñ")), options={},
                          val_fraction=0.1)
    form.set_values(values)
    qtbot.waitUntil(lambda: "held-out images" in row.error, timeout=30_000)
    assert "leaves 12 of its 120: use a validation split of at least 17 %" in row.error and not start.isEnabled()
    assert "108 train · 12 validation" in form.preview.summary.text()

    form.dataset.val_percent.setValue(16)  # 19 held out: still too few, and the message says so at once
    assert "leaves 19 of its 120" in row.error and not start.isEnabled()
    form.dataset.val_percent.setValue(25)  # 30 held out: the error goes at once, before the preview is read again
    assert row.error == "" and "data.val_fraction" not in form.errors
    qtbot.waitUntil(lambda: "90 train · 30 validation" in form.preview.summary.text(), timeout=30_000)
    qtbot.waitUntil(start.isEnabled, timeout=30_000)
    assert sum(form.preview_data.counts["val"]) == 30 and row.error == ""

    form.dataset.val_percent.setValue(10)  # and back: the error returns
    assert "leaves 12 of its 120" in row.error and not start.isEnabled()
    qtbot.waitUntil(lambda: "108 train · 12 validation" in form.preview.summary.text(), timeout=30_000)
    assert "leaves 12 of its 120" in row.error and not start.isEnabled()


def test_an_image_folder_with_its_own_small_val_folder_is_told_to_add_images_there_not_to_move_the_split(
        qtbot, window, form, tmp_path):
    root = tmp_path / "photos"
    _image_folder(root / "train", classes=2, per_class=10)
    _image_folder(root / "val", classes=2, per_class=3)  # 6 validation images of its own
    values = tiny_run_values(form)
    values["data"].update(name="imagefolder", root=str(root), options={}, val_fraction=0.1)
    form.set_values(values)
    row = form.dataset.rows["data.val_fraction"]
    qtbot.waitUntil(lambda: "held-out images" in row.error, timeout=30_000)
    assert "leaves 6 of its 26: use more images in its validation folder (val/)" in row.error
    assert "validation split of at least" not in row.error and not form.preview_data.carved


def test_the_forms_split_sizes_are_the_engines():
    import torch

    from iamnn_studio.engine.data import ImageTensors, split_off
    from iamnn_studio.gui.forms.dataset_panel import PreviewData

    for n in (0, 1, 2, 7, 120, 1001):
        labels = torch.arange(n) % 3 if n != 7 else torch.tensor([0, 1, 2, 3, 4, 5, 5])  # 7: classes of one
        data = ImageTensors(torch.zeros(n, 1, 1, 1, dtype=torch.uint8), labels)
        counts = torch.bincount(labels, minlength=6).tolist()
        for method in ("per-class", "random"):
            shown = PreviewData("x", [], None, None, {"train": counts, "val": [0] * 6, "test": []}, 1, 1,
                                carved=True, val_split=method)
            for fraction in (0.0, 0.001, 0.1, 0.17, 0.25, 0.5, 0.99):
                held = len(split_off(data, fraction, seed=0, method=method)[1])
                assert shown.split_sizes(fraction) == (n - held, held), (n, fraction, method)


def test_the_form_counts_a_plugins_random_split_as_the_trainer_draws_it(monkeypatch):
    """Review: a plugin that names no split method draws at random; the form counted it per class (the trainer
    counts it as drawn), so its train/val sizes and calibration check differed from the run's."""
    import torch

    import iamnn_studio.engine.data as data_module
    from iamnn_studio.engine.data import DatasetBundle, ImageTensors
    from iamnn_studio.gui.forms.dataset_panel import load_preview

    labels = torch.tensor([0] * 49 + [1] * 49 + [2] * 2)
    train = ImageTensors(torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), labels)
    plugin = DatasetBundle.from_splits("plugin", ["a", "b", "rare"], train, None, val_fraction=0.1, seed=0)
    monkeypatch.setattr(data_module, "load_dataset", lambda config, seed: plugin)
    shown = load_preview({"name": "synthetic", "val_fraction": 0.1, "val_split": "per-class"}, seed=0)
    assert shown.val_split == "random"


def test_a_dataset_of_rgba_images_is_refused_in_the_form_before_any_run(qtbot, window, form, monkeypatch):
    """QA: a plugin's RGBA dataset trained a model that no image file fits (found only at predict time)."""
    import torch

    from iamnn_studio.engine.data import DATASETS, DatasetBundle, ImageTensors

    start = window.training.header.start
    qtbot.waitUntil(lambda: start.isEnabled(), timeout=30_000)
    rgba = ImageTensors(torch.zeros(40, 4, 8, 8, dtype=torch.uint8), torch.arange(40) % 2)
    monkeypatch.setattr(DATASETS.get("synthetic"), "load", lambda cfg, *, seed: DatasetBundle.from_splits(
        "synthetic", ["a", "b"], rgba, rgba, val_fraction=cfg.val_fraction, seed=seed))
    form.set_values(tiny_run_values(form, train_size=128))  # other options: the preview is read again
    qtbot.waitUntil(lambda: form.dataset_error is not None, timeout=30_000)
    assert "its train images have 4 channels: a model takes 1 (grey) or 3 (RGB)" in form.preview.summary.text()
    assert not start.isEnabled() and not form.is_valid


def test_no_validation_split_is_allowed_and_says_what_it_changes(form):
    note = form.dataset.val_note
    assert not note.isVisibleTo(form)
    form.dataset.val_percent.setValue(0)
    assert note.isVisibleTo(form) and "last epoch's model is kept" in note.text()
    assert "data.val_fraction" not in form.errors
    values = tiny_run_values(form)
    values["data"]["val_fraction"] = 0.2
    form.set_values(values)  # loading a config updates it too
    assert not note.isVisibleTo(form)


def test_a_missing_dataset_is_told_in_the_apps_words_with_the_folders_whole_path(qtbot, form, tmp_path, monkeypatch):
    """QA: the card said "allow downloads (--download; in the app, Allow download)", and for the folder "svhn"
    "looked ... in svhn", relative to a working folder the app does not show."""
    monkeypatch.chdir(tmp_path)
    form.dataset.provider.set_value("cifar10")
    form.dataset.folder.setText("svhn")
    form.dataset.folder.editingFinished.emit()
    qtbot.waitUntil(lambda: form.dataset_error is not None, timeout=30_000)
    for text in (form.dataset.status.text(), form.preview.summary.text()):
        assert "tick “Allow download”" in text and "--download" not in text, text
        assert f"in {tmp_path / 'svhn'}" in text, text
    form.wait_for_background()


def test_a_builtin_dataset_missing_from_a_typed_folder_says_so(qtbot, window, form, tmp_path):
    form.dataset.provider.set_value("fashion-mnist")
    form.dataset.folder.setText(str(tmp_path / "elsewhere"))
    form.dataset.folder.editingFinished.emit()
    qtbot.waitUntil(lambda: form.dataset_error is not None, timeout=30_000)
    summary = form.preview.summary.text()
    assert str(tmp_path / "elsewhere") in summary and "not on this computer" not in summary
    assert not window.training.header.start.isEnabled()


def test_the_dataset_list_follows_the_typed_folder(qtbot, form, tmp_path):
    import pickle

    import numpy as np
    from PySide6.QtCore import Qt

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = np.zeros((2, 3072), dtype=np.uint8)
        (folder / name).write_bytes(pickle.dumps({"data": rows, "labels": [0, 1]}, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=2))
    box = form.dataset.provider
    form.dataset.provider.set_value("cifar10")
    form.dataset.folder.setText(str(tmp_path))
    form.dataset.folder.editingFinished.emit()
    qtbot.waitUntil(lambda: form.dataset.status.text().startswith("✓ found in"), timeout=30_000)  # checked off the UI thread
    assert box.itemText(box.currentIndex()) == "CIFAR-10  ·  available offline"  # QA: it still said "needs download"
    form.dataset.folder.setText(str(tmp_path / "elsewhere"))
    form.dataset.folder.editingFinished.emit()
    qtbot.waitUntil(lambda: box.itemText(box.currentIndex()) == "CIFAR-10  ·  needs download", timeout=30_000)
    assert "elsewhere" in box.itemData(box.currentIndex(), Qt.ItemDataRole.ToolTipRole)
    form.wait_for_background()


def test_a_dataset_whose_files_do_not_read_is_not_listed_as_available(qtbot, form, tmp_path):
    import pickle

    import numpy as np

    def cifar_folder(root, damaged: bool):
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = pickle.dumps({"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [0, 1]}, protocol=2)
            (folder / name).write_bytes(batch[:40] if damaged and name == "data_batch_2" else batch)
        (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
        return root

    box = form.dataset.provider
    box.set_value("cifar10")
    for root, damaged in ((tmp_path / "good", False), (tmp_path / "truncated", True), (tmp_path / "good", False)):
        if not root.exists():
            cifar_folder(root, damaged)
        form.dataset.folder.setText(str(root))
        form.dataset.folder.editingFinished.emit()
        if damaged:  # a read error replaces a good preview
            qtbot.waitUntil(lambda: "cannot read" in (form.dataset_error or ""), timeout=30_000)
            # QA: the list said "available offline" above the red "cannot read …", and an empty scrollbar stayed
            assert box.itemText(box.currentIndex()) == "CIFAR-10  ·  files unreadable"
            assert form.dataset.status.text().startswith("cannot read")
            assert not form.preview.scroll.isVisibleTo(form.preview)
        else:
            qtbot.waitUntil(lambda: form.preview_data is not None and form.dataset_error is None, timeout=30_000)
            assert box.itemText(box.currentIndex()) == "CIFAR-10  ·  available offline"
            assert form.preview.scroll.isVisibleTo(form.preview)
    form.wait_for_background()


def test_each_dataset_keeps_its_own_folder(form, tmp_path):
    form.dataset.provider.set_value("imagefolder")
    form.dataset.folder.setText(str(tmp_path))
    form.dataset.provider.set_value("cifar10")
    assert form.dataset.folder.text() == "" and form.values()["data"]["root"] is None
    form.dataset.provider.set_value("imagefolder")
    assert form.dataset.folder.text() == str(tmp_path)


def test_run_config_round_trips_through_toml(qtbot, window, form, tmp_path):
    from iamnn_studio.engine.config import RunConfig

    values = tiny_run_values(form, name="round-trip")
    values["model"]["halting"] = "act"
    values["model"]["tau"] = 0.005
    values["lr"] = 0.05
    form.set_values(values)
    path = tmp_path / "run.toml"
    assert window.save_config_file(str(path))
    saved = RunConfig.load(path)
    assert saved.to_dict() == form.config().to_dict()

    form.model.width.setValue(32)
    form.training.name.setText("changed")
    assert window.load_config_file(str(path))
    assert form.config().to_dict() == saved.to_dict()
    assert form.model.tau.text() == "0.005"


def test_a_config_file_with_values_no_choice_offers_flags_each_instead_of_keeping_the_shown_choice(
        qtbot, window, form, tmp_path):
    form.training.optimizer.set_value("adamw")  # what the form showed before the file
    path = tmp_path / "odd.toml"
    path.write_text('optimizer = "adam"\nschedule = "linear"\ndevice = "tpu"\n'
                    '[data]\nname = "synthetic"\naugment = "rotate"\n'
                    '[model]\ndepth = 7\nmode = "sometimes"\nhalting = "guess"\n')
    assert window.load_config_file(str(path))
    values = form.values()
    assert (values["optimizer"], values["schedule"], values["device"]) == ("adam", "linear", "tpu")
    assert (values["model"]["depth"], values["model"]["mode"], values["data"]["augment"]) == (7, "sometimes", "rotate")
    for key in ("optimizer", "schedule", "device", "data.augment", "model.depth", "model.mode"):
        assert key in form.errors, key
    assert form.model.rows["model.depth"].error.startswith("7 is not a ResNet depth")
    assert form.training.optimizer.currentText() == "adam  ·  not a choice"
    assert not window.training.header.start.isEnabled()
    form.training.optimizer.set_value("sgd")  # a real choice clears that field's error
    form.training.optimizer.choice_changed.emit()
    assert "optimizer" not in form.errors


def test_a_saved_config_names_folders_absolutely(window, form, tmp_path, monkeypatch):
    from iamnn_studio.engine.config import RunConfig

    monkeypatch.chdir(tmp_path)
    values = tiny_run_values(form, name="relative")
    values["data"]["root"] = "data"  # typed relative to the folder the app was started in
    form.set_values(values)
    assert window.save_config_file(str(tmp_path / "run.toml"))
    assert RunConfig.load(tmp_path / "run.toml").data.root == str(tmp_path / "data")  # was "data"


def test_a_bad_toml_file_gives_a_message_not_a_crash(window, form, record_dialogs, tmp_path):
    before = form.values()
    bad = tmp_path / "broken.toml"
    bad.write_text("epochs = [unclosed\n", encoding="utf-8")
    assert not window.load_config_file(str(bad))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[model]\nwidht = 8\n", encoding="utf-8")
    assert not window.load_config_file(str(unknown))
    assert [d[1] for d in record_dialogs] == ["Cannot load the run config"] * 2
    assert "broken.toml" in record_dialogs[0][2] and "not valid TOML" in record_dialogs[0][2]
    assert "widht" in record_dialogs[1][2]
    assert form.values() == before


def _plugin_gone_config(form, path):
    """A run config naming the dataset 'myshapes', which only a plugin that is not loaded registers."""
    from iamnn_studio.engine.config import RunConfig

    values = tiny_run_values(form, name="plug")
    values["data"].update(name="myshapes", options={})
    values["model"].update(width=6, depth=34)
    RunConfig.from_dict(values).save(path)
    return path


def _assert_flags_the_missing_plugin(qtbot, window, form):
    start, row = window.training.header.start, form.dataset.rows["data.name"]
    assert form.dataset.provider.value() == "myshapes"
    assert "the dataset 'myshapes' comes from a plugin that is not loaded" in row.error
    assert form.errors["data.name"] == row.error
    assert form.dataset.status.text() == ""  # not the previous dataset's "found" line
    assert not start.isEnabled() and window.training.header.title.text() == "Not ready to train"
    # the preview does not go on showing the previous dataset
    qtbot.waitUntil(lambda: form.preview.data is None and "myshapes" in form.preview.summary.text(), timeout=10_000)
    assert form.preview_data is None and not start.isEnabled()
    form.dataset.provider.set_value("synthetic")  # another dataset: the error goes
    qtbot.waitUntil(start.isEnabled, timeout=30_000)
    assert row.error == "" and "data.name" not in form.errors


def test_train_longer_on_a_run_whose_dataset_plugin_is_gone_flags_the_dataset(qtbot, window, form, tmp_runs):
    from iamnn_studio.engine.config import DataConfig, RunConfig
    from iamnn_studio.engine.data import declared_input_shape

    run = tmp_runs / "plug"
    (run / "checkpoints").mkdir(parents=True)
    _plugin_gone_config(form, run / "config.toml")
    shape = declared_input_shape(DataConfig(name="synthetic"))  # its weights fit the dataset chosen at the end
    checkpoint_of(RunConfig.load(run / "config.toml").model.to_dict(), run / "checkpoints" / "best.pt",
                  in_channels=shape.channels, image_size=shape.size, num_classes=shape.classes)
    qtbot.waitUntil(lambda: form.preview_data is not None, timeout=30_000)  # the default dataset shown first
    window.train_from_run(str(run))  # raised KeyError in the dataset card, the form half-loaded
    values = form.values()
    assert values["model"]["width"] == 6 and values["model"]["depth"] == 34
    assert values["init_from"] == str(run) and values["name"] == "plug-longer"
    # the next step is not Start: it is blocked (it said "choose the epochs ..., then Start")
    assert window.statusBar().currentMessage().endswith("fix the fields marked in red, then Start")
    _assert_flags_the_missing_plugin(qtbot, window, form)


def test_a_config_file_with_max_steps_0_has_no_step_limit(window, form, tmp_path):
    (tmp_path / "capped.toml").write_text("max_steps = 30\n")
    (tmp_path / "unlimited.toml").write_text("max_steps = 0\n")  # the file's way to say no limit
    assert window.load_config_file(str(tmp_path / "capped.toml"))
    assert form.training.limit_steps.isChecked() and form.values()["max_steps"] == 30
    assert window.load_config_file(str(tmp_path / "unlimited.toml"))
    # QA: the box stayed ticked and read "at most 0 steps"
    assert not form.training.limit_steps.isChecked() and form.values()["max_steps"] is None


def test_a_config_files_bad_numbers_are_quoted_as_the_file_has_them(window, form, tmp_path):
    """The spin boxes clamped the file's -3 and "ten" before they were checked: every message said "got 0"
    (the CLI says "got -3"), and a step limit of -5 became a valid 1. Editing a field leaves the file's value."""
    from iamnn_studio.engine.config import RunConfig
    from iamnn_studio.gui.forms.validation import collect_errors

    path = tmp_path / "clamped.toml"
    path.write_text('name = "clamped"\nepochs = "ten"\nbatch_size = -8\nmax_steps = -5\n'
                    '[data]\nname = "synthetic"\nval_fraction = 1.5\n'
                    '[model]\ndepth = 18\nwidth = -3\nmode = "fixed:-2"\n')
    assert window.load_config_file(str(path))
    expected = collect_errors(RunConfig.load(path).to_dict())  # the CLI's words for the file
    assert expected["model.width"].endswith("got -3") and expected["epochs"].endswith("got 'ten'")
    for key in ("model.width", "epochs", "batch_size", "max_steps", "model.mode", "data.val_fraction"):
        assert form.errors.get(key) == expected[key], key
    assert form.model.rows["model.width"].error == "must be a positive integer, got -3"

    form.model.width.setValue(8)  # the user's own values replace the file's
    form.training.epochs.setValue(3)
    assert "model.width" not in form.errors and form.values()["model"]["width"] == 8
    assert "epochs" not in form.errors and form.values()["epochs"] == 3
    assert form.errors["batch_size"] == "must be a positive integer, got -8"  # untouched: still the file's


@pytest.mark.parametrize("fraction, words", [(1.5, "must be below 100 %; the file says 150 %"),
                                             (-0.2, "must be 0 % or more; the file says -20 %")])
def test_a_config_files_bad_split_and_caps_are_told_in_the_fields_own_terms(window, form, tmp_path, fraction, words):
    """QA: the split box showed "99 %" above "must be in [0, 1), got 1.5"; the red caps "1, 2" had no message of
    their own (the file's unused depth 7 was blamed instead) and "caps 1 · 2" showed beside them as if valid."""
    path = tmp_path / "bad-values.toml"
    path.write_text(f'[data]\nname = "synthetic"\nval_fraction = {fraction}\n[model]\niterations = [1, 2]\ndepth = 7\n')
    assert window.load_config_file(str(path))
    assert form.dataset.rows["data.val_fraction"].error == words
    assert form.model.rows["model.depth"].error == \
        "needs four whole numbers of 1 or more, one per block (e.g. 1, 2, 2, 1), got 1, 2"
    assert "model.depth" not in form.errors and not form.model.caps_label.isVisibleTo(form)
    form.model.custom_caps.setText("1, 2, 2, 1")
    form.model.custom_caps.textEdited.emit("1, 2, 2, 1")
    assert form.model.rows["model.depth"].error == "" and form.model.caps_label.text() == "caps 1 · 2 · 2 · 1"
    assert form.model.caps_label.isVisibleTo(form)


def test_a_config_file_naming_an_unknown_dataset_flags_the_dataset(qtbot, window, form, record_dialogs, tmp_path):
    qtbot.waitUntil(lambda: form.preview_data is not None, timeout=30_000)
    assert window.load_config_file(str(_plugin_gone_config(form, tmp_path / "plug.toml")))
    assert record_dialogs == [] and form.values()["model"]["width"] == 6
    assert "1 setting to fix" in window.statusBar().currentMessage()
    _assert_flags_the_missing_plugin(qtbot, window, form)


def test_collect_errors_names_each_bad_field_once():
    from iamnn_studio.engine.config import RunConfig
    from iamnn_studio.gui.forms.validation import collect_errors

    values = RunConfig().to_dict()
    values["model"]["width"] = 0
    values["data"]["val_fraction"] = 1.5
    values["batch_size"] = -1
    errors = collect_errors(values)
    assert set(errors) == {"model.width", "data.val_fraction", "batch_size"}
    assert collect_errors(RunConfig().to_dict()) == {}


def test_declared_settings_persist_with_their_types(styled_app):
    from iamnn_studio.gui.forms.settings import Setting, restore_settings, save_settings

    class Panel:
        count = Setting(3)
        ratio = Setting(0.5)
        names = Setting(["a"])
        options = Setting({"x": 1})

    first = Panel()
    first.count, first.ratio, first.names, first.options = 7, 0.25, ["b", "c"], {"y": [1, 2]}
    save_settings(first, "test_panel")
    second = Panel()
    restore_settings(second, "test_panel")
    assert (second.count, second.ratio, second.names, second.options) == (7, 0.25, ["b", "c"], {"y": [1, 2]})
    assert Panel().count == 3  # a fresh object starts from the default


def test_every_augmentation_mode_can_be_chosen_in_the_form(form):
    from iamnn_studio.engine.config import AUGMENT_MODES

    box = form.training.augment
    offered = [box.itemData(i) for i in range(box.count())]
    assert sorted(offered) == sorted(AUGMENT_MODES)
    config = form.config()
    config.data.augment = "flip-erase"
    form.set_config(config)  # e.g. a loaded settings file: shown as it is, and started as it is
    assert box.value() == "flip-erase" and form.config().data.augment == "flip-erase"


def _type_start_from(form, path) -> None:
    form.training.init_from.setText(str(path))
    form.training.init_from.textEdited.emit(str(path))


def test_start_from_weights_needs_an_existing_checkpoint_and_reaches_the_config(qtbot, window, form, tmp_path):
    start = window.training.header.start
    form.set_values(tiny_run_values(form))
    qtbot.waitUntil(lambda: start.isEnabled() and form.input_shape_known, timeout=30_000)
    row = form.training.rows["init_from"]

    _type_start_from(form, tmp_path / "gone.pt")
    assert "no such checkpoint or run folder" in row.error and not start.isEnabled()

    checkpoint = checkpoint_of(form.values()["model"], tmp_path / "best.pt")
    _type_start_from(form, checkpoint)
    assert row.error == ""
    qtbot.waitUntil(lambda: start.isEnabled(), timeout=30_000)
    assert form.config().init_from == str(checkpoint)

    form.training.init_from.clear()
    form.training.init_from.textEdited.emit("")
    assert form.config().init_from is None  # empty: new weights


def test_start_from_is_read_off_the_ui_thread_and_flagged_like_the_other_fields(qtbot, window, form, tmp_path,
                                                                               monkeypatch):
    """QA: a text file as "Start from" was accepted until Start was pressed, and the engine's refusal then named
    "Init_from" and "units 2-3-4-2" where the form says "Start from" and "caps"."""
    import threading

    import iamnn_studio.engine.checkpoint as checkpoint_module

    start, row = window.training.header.start, form.training.rows["init_from"]
    form.set_values(tiny_run_values(form))
    qtbot.waitUntil(lambda: start.isEnabled() and form.input_shape_known, timeout=30_000)
    readers = []
    load = checkpoint_module.load_checkpoint
    monkeypatch.setattr(checkpoint_module, "load_checkpoint",
                        lambda *args, **kwargs: readers.append(threading.current_thread()) or load(*args, **kwargs))

    notes = tmp_path / "notes.pt"
    notes.write_text("not weights")
    _type_start_from(form, notes)
    assert not start.isEnabled() and start.toolTip() == "Reading the checkpoint to start from…"
    qtbot.waitUntil(lambda: row.error != "", timeout=30_000)
    assert row.error.startswith("notes.pt is not an IamNN Studio checkpoint") and not start.isEnabled()

    other = checkpoint_of(form.values()["model"], tmp_path / "wider.pt", width=8)
    _type_start_from(form, other)
    qtbot.waitUntil(lambda: "wider.pt holds" in row.error, timeout=30_000)
    assert "holds an IamNN (caps 1·2·2·1) of width 8" in row.error and "this run builds an IamNN (caps 1·2·2·1) " \
        "of width 4" in row.error and not start.isEnabled()
    form.model.width.setValue(8)  # now the same network: the checkpoint fits
    qtbot.waitUntil(lambda: start.isEnabled(), timeout=30_000)
    assert row.error == "" and readers and threading.main_thread() not in readers


def test_the_dataset_list_says_what_each_dataset_needs():
    from iamnn_studio.gui.forms.dataset_panel import ProviderEntry, _availability_word

    def entry(**kwargs):
        return ProviderEntry(**{"name": "x", "label": "X", "description": "", "available": False, "reason": "", **kwargs})

    assert _availability_word(entry(available=True)) == "available offline"
    assert _availability_word(entry(reason="not found in ~/datasets")) == "needs download"
    assert _availability_word(entry(reason="not found", downloadable=False)) == "files not found"
    assert _availability_word(entry(reason="cannot check: offline check exploded")) == "cannot check"


def test_a_choice_cut_short_is_whole_in_its_tooltip(qtbot, styled_app):
    """A choice box sized by its column cut "IamNN (shared, adaptive)" to "IamNN (shared, adap" with no
    way to read the rest: its tooltip gives the choice whole, before the row's own explanation."""
    from iamnn_studio.gui.forms.fields import ChoiceBox

    box = ChoiceBox([("IamNN (shared, adaptive)", "iamnn"), ("ResNet baseline (unshared)", "resnet")])
    box.setToolTip("IamNN shares one block's weights")
    qtbot.addWidget(box)
    box.show()
    box.resize(box.minimumSizeHint().width(), box.height())
    assert box.text_is_cut()
    assert box.tooltip_text() == "IamNN (shared, adaptive)\n\nIamNN shares one block's weights"
    box.resize(box.whole_text_width(), box.height())
    assert not box.text_is_cut()
    assert box.tooltip_text() == "IamNN shares one block's weights"


def _type_folder(qtbot, window, form, path) -> None:
    """The user clicks into the dataset's folder field, replaces its text by ``path`` and presses no key
    after it (no Enter, the focus stays in the field)."""
    from PySide6.QtTest import QTest

    folder = form.dataset.folder
    window.activateWindow()
    folder.setFocus()
    qtbot.waitUntil(folder.hasFocus, timeout=5_000)
    folder.selectAll()
    QTest.keyClicks(folder, str(path))


def test_each_bad_image_folder_typed_says_why_after_a_pause_in_typing(qtbot, window, form, tmp_path):
    """QA: a folder typed without Enter kept the previous verdict (a good folder's "✓ 3 classes", Start
    enabled): the real reason came only from Start. The engine's check tells the cases apart."""
    header = window.training.header
    good = _image_folder(tmp_path / "good", classes=2, per_class=30)
    values = tiny_run_values(form)
    values["data"].update(name="imagefolder", root=str(good), options={}, val_fraction=0.5)
    form.set_values(values)
    qtbot.waitUntil(lambda: header.start.isEnabled(), timeout=30_000)
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "one" / "cats").mkdir(parents=True)
    for path, words in ((tmp_path / "missing", "folder not found"), (tmp_path / "a-file", "not a folder"),
                        (tmp_path / "empty", "has 0 class subfolder"), (tmp_path / "one", "has 1 class subfolder")):
        _type_folder(qtbot, window, form, path)
        assert not header.start.isEnabled()  # at once: the folder typed has not been checked yet
        qtbot.waitUntil(lambda: words in form.dataset.status.text(), timeout=30_000)
        assert str(path) in form.dataset.status.text() and form.dataset.folder.hasFocus()
        qtbot.waitUntil(lambda: words in header.subtitle.text(), timeout=30_000)
        assert not header.start.isEnabled() and words in header.start.toolTip()
    _type_folder(qtbot, window, form, good)
    qtbot.waitUntil(lambda: header.start.isEnabled(), timeout=30_000)
    assert form.dataset.status.text().startswith("✓ 2 classes")


def test_a_dataset_folder_typed_then_start_clicked_is_checked_before_training(qtbot, window, form, tmp_path,
                                                                           record_dialogs):
    """QA: a Fashion-MNIST folder typed without Enter left Start enabled; pressing it launched a run the engine
    refused ("Could not start: Fashion-MNIST not found …")."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    training, header = window.training, window.training.header
    qtbot.waitUntil(lambda: header.start.isEnabled(), timeout=30_000)
    assert form.dataset.provider.value() == "fashion-mnist"
    _type_folder(qtbot, window, form, tmp_path / "elsewhere")
    QTest.mouseClick(header.start, Qt.MouseButton.LeftButton)
    assert training.session is None and training.outcome is None and record_dialogs == []
    qtbot.waitUntil(lambda: "Fashion-MNIST not found" in header.subtitle.text(), timeout=30_000)
    assert str(tmp_path / "elsewhere") in header.subtitle.text() and not header.start.isEnabled()


def test_the_dataset_folder_is_checked_off_the_ui_thread(qtbot, window, form, tmp_path, monkeypatch):
    import threading

    from iamnn_studio.engine.data import DATASETS

    provider = DATASETS.get("imagefolder")
    threads = []
    real = provider.available_offline
    monkeypatch.setattr(provider, "available_offline", lambda root: threads.append(threading.current_thread())
                        or real(root))
    form.dataset.provider.set_value("imagefolder")
    form.dataset.folder.setText(str(tmp_path / "missing"))
    form.dataset.folder.editingFinished.emit()
    qtbot.waitUntil(lambda: "folder not found" in form.dataset.status.text(), timeout=30_000)
    assert threads and threading.main_thread() not in threads


def test_a_check_that_breaks_the_contract_says_what_it_returned(qtbot, window, form, tmp_path, monkeypatch):
    """QA: ``info`` crashed where the form said "cannot check: cannot unpack non-iterable bool object"; both now
    read the check through one helper, which names what a plugin's ``available_offline`` returned."""
    from iamnn_studio.engine.data import DATASETS

    monkeypatch.setattr(DATASETS.get("imagefolder"), "available_offline", lambda root: True)
    form.dataset.provider.set_value("imagefolder")
    form.dataset.folder.setText(str(tmp_path / "any"))
    form.dataset.folder.editingFinished.emit()
    qtbot.waitUntil(lambda: "available_offline returned True" in form.dataset.status.text(), timeout=30_000)
    assert "cannot check" in form.dataset.status.text()


@pytest.fixture
def held_checks(monkeypatch):
    """The image-folder provider's ``available_offline`` blocks, for a folder whose path holds "held", until
    ``release`` is set (a slow disk, a dead network mount); set at the end whatever happened."""
    import threading

    from iamnn_studio.engine.data import DATASETS

    provider = DATASETS.get("imagefolder")
    real = provider.available_offline
    release = threading.Event()

    def held(root):
        if root and "held" in str(root):
            release.wait(60)
        return real(root)

    monkeypatch.setattr(provider, "available_offline", held)
    yield release
    release.set()


def test_start_waits_for_the_verdict_on_a_typed_folder_that_comes_back_with_its_dataset(qtbot, window, form,
                                                                                        tmp_path, held_checks):
    """Review: an image folder typed, another dataset chosen before its check, then the image folder again: the
    folder came back unchecked ("Checking the folder…") with Start enabled and "Ready to train"; Start then
    failed with "Image folder not found"."""
    header = window.training.header
    qtbot.waitUntil(lambda: header.start.isEnabled(), timeout=30_000)
    first = form.dataset.provider.value()
    form.dataset.provider.set_value("imagefolder")
    missing = tmp_path / "held-missing"
    _type_folder(qtbot, window, form, missing)
    form.dataset.provider.set_value(first)  # before the folder was checked
    qtbot.waitUntil(lambda: header.start.isEnabled(), timeout=30_000)
    form.dataset.provider.set_value("imagefolder")  # the typed folder comes back; its check is held
    assert form.dataset.folder.text() == str(missing)
    assert not header.start.isEnabled() and header.title.text() == "Not ready to train"
    assert "Checking" in header.subtitle.text() and "Checking" in header.start.toolTip()
    held_checks.set()
    qtbot.waitUntil(lambda: "folder not found" in header.subtitle.text(), timeout=30_000)
    assert not header.start.isEnabled() and str(missing) in header.start.toolTip()


def test_start_waits_for_the_verdict_on_a_loaded_configs_folder(qtbot, window, form, tmp_path, held_checks):
    """Review: a config whose image folder is missing left Start enabled until its check answered."""
    header = window.training.header
    qtbot.waitUntil(lambda: header.start.isEnabled(), timeout=30_000)
    values = tiny_run_values(form)
    values["data"].update(name="imagefolder", root=str(tmp_path / "held-missing"), options={})
    form.set_values(values)
    assert not header.start.isEnabled() and not form.is_valid
    assert header.subtitle.text() == "Checking the dataset's folder…"
    held_checks.set()
    qtbot.waitUntil(lambda: "folder not found" in header.subtitle.text(), timeout=30_000)
    assert not header.start.isEnabled()


def test_a_hung_folder_check_holds_up_neither_the_next_folder_nor_closing(qtbot, window, form, tmp_path,
                                                                         held_checks, monkeypatch):
    """Review: one check of a folder that never answers (a dead network mount) held up every later check (one
    thread for all), and closing the window waited for it."""
    import time

    import iamnn_studio.gui.forms.dataset_panel as dataset_panel
    from iamnn_studio.gui.forms.dataset_panel import DatasetPanel, provider_entries

    header = window.training.header
    qtbot.waitUntil(lambda: header.start.isEnabled(), timeout=30_000)
    monkeypatch.setattr(dataset_panel, "FOLDER_CHECK_TIMEOUT_MS", 400, raising=False)
    good = _image_folder(tmp_path / "good", classes=2, per_class=30)
    hung = tmp_path / "held-mount"
    form.dataset.provider.set_value("imagefolder")
    form.dataset.val_percent.setValue(50)  # enough held-out images of the 60 to calibrate the halting
    _type_folder(qtbot, window, form, hung)
    form.dataset.folder.editingFinished.emit()  # checked at once: it hangs
    assert not header.start.isEnabled()
    # After the time limit the folder has a verdict: it does not answer. Start says so.
    qtbot.waitUntil(lambda: "does not answer" in form.dataset.status.text(), timeout=10_000)
    assert str(hung) in form.dataset.status.text()
    qtbot.waitUntil(lambda: "does not answer" in header.start.toolTip(), timeout=10_000)
    form.dataset.folder.editingFinished.emit()  # Enter again: the check still runs, its verdict stays
    qtbot.waitUntil(lambda: "does not answer" in form.dataset.status.text(), timeout=10_000)
    # The user gives up on the network drive and types a local folder: it is checked meanwhile.
    _type_folder(qtbot, window, form, good)
    form.dataset.folder.editingFinished.emit()
    qtbot.waitUntil(lambda: header.start.isEnabled(), timeout=30_000)
    assert form.dataset.status.text().startswith("✓ 2 classes")

    # A panel whose check hangs goes at once (the window closing, the app quitting).
    panel = DatasetPanel()
    panel.set_providers(provider_entries())
    panel.provider.set_value("imagefolder")
    panel.folder.setText(str(tmp_path / "held-other"))
    panel.folder.editingFinished.emit()
    qtbot.wait(100)
    started = time.monotonic()
    panel.deleteLater()
    from PySide6.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    assert time.monotonic() - started < 0.5
    held_checks.set()  # the hung calls return now: the late verdict of the deleted panel is dropped quietly
    qtbot.wait(200)
    assert form.dataset.status.text().startswith("✓ 2 classes") and header.start.isEnabled()


def test_a_good_folder_after_a_bad_one_clears_the_bad_ones_reason_at_once(qtbot, window, form, tmp_path,
                                                                         monkeypatch):
    """Review: after a missing folder, a good one typed showed "✓ 2 classes" in the card while the header and
    Start's tooltip kept "folder not found: …/missing" until its preview had been read."""
    import threading

    import iamnn_studio.gui.forms.run_form as run_form

    header = window.training.header
    qtbot.waitUntil(lambda: header.start.isEnabled(), timeout=30_000)
    good = _image_folder(tmp_path / "good", classes=2, per_class=30)
    form.dataset.provider.set_value("imagefolder")
    form.dataset.val_percent.setValue(50)  # enough held-out images of the 60 to calibrate the halting
    _type_folder(qtbot, window, form, tmp_path / "missing")
    qtbot.waitUntil(lambda: "folder not found" in header.subtitle.text(), timeout=30_000)
    read = threading.Event()
    real = run_form.load_preview
    monkeypatch.setattr(run_form, "load_preview", lambda *args: (read.wait(60), real(*args))[1])
    try:
        _type_folder(qtbot, window, form, good)
        qtbot.waitUntil(lambda: form.dataset.status.text().startswith("✓ 2 classes"), timeout=30_000)
        for text in (header.subtitle.text(), header.start.toolTip(), form.preview.summary.text()):
            assert "not found" not in text, text
        assert form.dataset_error is None
    finally:
        read.set()
    qtbot.waitUntil(lambda: header.start.isEnabled() and form.preview_data is not None, timeout=30_000)


def test_a_config_for_one_gpu_by_number_shows_a_gpu_and_no_cpu_time(qtbot, form):
    """Review: ``device = "cuda:1"`` validates (the engine takes cuda:N), but the device box said "cuda:1 · not a
    choice" and the time estimate was the CPU's."""
    values, estimate = show_a_cpu_estimate(qtbot, form)
    values["device"] = "cuda:1"
    form.set_values(values)
    device = form.training.device
    assert device.value() == "cuda:1" and "device" not in form.errors
    assert "not a choice" not in device.currentText() and "GPU 1" in device.currentText()
    assert form.values()["device"] == "cuda:1"
    qtbot.waitUntil(lambda: estimate.text() == "", timeout=5_000)  # a GPU's time is not this CPU's
    device.set_value("cpu")
    assert estimate.text().endswith("of training on this CPU")
    device.set_value("cuda:1")  # still a choice, as another GPU would be
    assert estimate.text() == ""
    values["device"] = "cuda:x"  # not a GPU: still flagged
    form.set_values(values)
    assert "not a choice" in device.currentText() and "device" in form.errors


def test_a_preview_of_the_previous_dataset_does_not_land_while_the_new_folder_is_checked(
        qtbot, held_preview, held_checks, window, tmp_path):
    """Review: while a loaded config's image folder was being checked, the previous dataset's preview stayed
    (or, still decoding, landed) under the new dataset: its samples and counts showed, and "no error" stood
    until the verdict came."""
    form = window.training.form
    form.set_values(tiny_run_values(form))  # synthetic: its preview waits on the gate
    qtbot.waitUntil(lambda: form._tasks.is_busy("preview"), timeout=30_000)
    values = tiny_run_values(form)
    values["data"] = {**values["data"], "name": "imagefolder", "root": str(tmp_path / "held-folder")}
    form.set_values(values)  # a config of an image folder whose check blocks until released
    qtbot.waitUntil(lambda: form.dataset.checking(), timeout=10_000)
    qtbot.wait(600)  # the form's debounced preview request has come and gone meanwhile
    held_preview.set()  # the synthetic preview decodes now, while the folder is still being checked
    qtbot.wait(1500)
    # no other dataset's samples under this one (the default Fashion-MNIST's stayed, or the synthetic landed)
    assert form.preview_data is None and form.preview.data is None
    assert not window.training.header.start.isEnabled()
    held_checks.set()
    qtbot.waitUntil(lambda: form.dataset_error is not None and "folder not found" in form.dataset_error,
                    timeout=30_000)


def test_a_dataset_without_download_leaves_no_gap_where_its_download_row_was(qtbot, form):
    """QA: with the Image folder dataset, a blank gap stood between Folder and Validation split, the room kept
    for the hidden "Allow download" row."""
    dataset = form.dataset

    def gap(upper, lower) -> int:
        return lower.mapTo(dataset, lower.rect().topLeft()).y() - upper.mapTo(dataset, upper.rect().bottomLeft()).y()

    folder = dataset.rows["data.root"].widget
    dataset.provider.set_value("cifar10")
    qtbot.waitUntil(lambda: dataset.download.isVisible() and gap(folder, dataset.download) > 0, timeout=5_000)
    between_rows = gap(folder, dataset.download)  # the room between two shown rows
    dataset.provider.set_value("imagefolder")
    qtbot.waitUntil(lambda: not dataset.download.isVisible(), timeout=5_000)
    qtbot.waitUntil(lambda: gap(folder, dataset.val_percent) <= between_rows + 1, timeout=5_000)


def in_view(scroll, widget) -> bool:
    """Whether ``widget`` shows whole in the scroll area's viewport."""
    from PySide6.QtCore import QRect

    top_left = widget.mapTo(scroll.viewport(), widget.rect().topLeft())
    return scroll.viewport().rect().contains(QRect(top_left, widget.size()))


@pytest.mark.parametrize("size", [(960, 640), (800, 600)])
def test_start_greyed_out_by_a_field_below_the_fold_scrolls_to_it_and_focuses_it(qtbot, window, form, size):
    """QA: "Fix the fields marked in red first", and the red field was scrolled out of sight in a small window."""
    from PySide6.QtCore import Qt

    start, scroll, batch = window.training.header.start, form.pages.widget(1), form.training.batch_size
    window.resize(*size)
    window.activateWindow()
    qtbot.waitUntil(lambda: start.isEnabled(), timeout=30_000)
    scroll.verticalScrollBar().setValue(0)
    batch.setValue(0)
    qtbot.wait(50)  # laid out at the new size
    assert not start.isEnabled() and "batch_size" in form.errors
    assert not in_view(scroll, batch) and not batch.hasFocus()  # below the fold: the test means something

    qtbot.mouseClick(start, Qt.MouseButton.LeftButton)
    assert in_view(scroll, batch) and in_view(scroll, form.training.rows["batch_size"].error_label)
    qtbot.waitUntil(batch.hasFocus, timeout=5_000)

    scroll.verticalScrollBar().setValue(0)  # Start pressed from code (the button's own path) does the same
    assert not window.training.start_run() and in_view(scroll, batch)


def test_a_dataset_that_loads_other_than_it_declares_is_refused_in_the_form(qtbot, window, form, monkeypatch):
    """QA: the form sized the model from the dataset's declared 3 channels and 10 classes, then the run trained a
    1-channel model of 4 classes without a word."""
    import torch

    from iamnn_studio.engine.data import DATASETS, DatasetBundle, ImageTensors

    start = window.training.header.start
    qtbot.waitUntil(lambda: start.isEnabled(), timeout=30_000)
    grey = ImageTensors(torch.zeros(40, 1, 16, 16, dtype=torch.uint8), torch.arange(40) % 4)
    monkeypatch.setattr(DATASETS.get("synthetic"), "load", lambda cfg, *, seed: DatasetBundle.from_splits(
        "synthetic", list("abcd"), grey, grey, val_fraction=cfg.val_fraction, seed=seed))
    values = tiny_run_values(form, train_size=128)
    values["data"]["options"].update(channels=3, image_size=16)  # declared: 3-channel 16 px images in 10 classes
    form.set_values(values)
    qtbot.waitUntil(lambda: form.dataset_error is not None, timeout=30_000)
    assert ("dataset 'synthetic': it declares 3-channel 16 px images in 10 classes (its shape or input_shape()), but "
            "its load() gave 1-channel 16 px images in 4 classes") in form.preview.summary.text()
    assert not start.isEnabled() and not form.is_valid
