"""Datasets decoded once into memory as uint8 tensors, and the tensor ops that batch and augment them.

``load_dataset(cfg)`` is the entry point; ``DATASETS`` lists the providers (plugins register more).
torchvision is imported only by the providers that read its formats, so the synthetic demo starts fast.
"""
from __future__ import annotations

import dataclasses
import numbers

from ..config import DataConfig
from . import cifar, idx, imagefolder, svhn, synthetic  # noqa: F401  (each registers its providers)
from .augment import AUGMENT_MODES, augment_batch, augment_steps, crop_padding, normalize, resize_images
from .base import DATASETS, DatasetProvider, DownloadStopped, InputShape, datasets_root, downloading, stop_downloads
from .batches import iterate_batches
from .bundle import (
    DatasetBundle, ImageTensors, LabelError, channel_stats, check_classes_and_labels, class_counts, held_out_count,
    held_out_total, preview, split_off,
)

__all__ = [
    "AUGMENT_MODES", "augment_steps", "DATASETS", "DatasetBundle", "DatasetContractError", "DatasetProvider",
    "DownloadStopped", "downloading", "stop_downloads", "ImageTensors", "InputShape", "augment_batch",
    "channel_stats", "class_counts", "crop_padding", "dataset_availability", "datasets_root", "declared_input_shape",
    "default_augment", "evaluation_split_of", "held_out_count", "held_out_total", "iterate_batches",
    "known_channels_and_classes", "load_dataset", "normalize", "offline_verdict", "preview", "resize_images",
    "split_off",
]


def dataset_provider(name: str) -> DatasetProvider:
    """The provider registered as ``name``; a name not (yet) known loads the plugins first, so a dataset a
    plugin adds works wherever a built-in one does (the CLI loads plugins only when something asks)."""
    if name not in DATASETS:
        from ..plugins import load_plugins

        load_plugins()
    return DATASETS.get(name)  # ValueError naming the known datasets


def load_dataset(cfg: DataConfig, seed: int = 0) -> DatasetBundle:
    """Decode the dataset ``cfg`` names; every user error is a ``ValueError`` saying what to do."""
    cfg.validate()
    provider = dataset_provider(cfg.name)
    _check_options(provider, cfg)
    bundle = _provider_load(provider, cfg, seed)
    if cfg.image_size is not None and _image_shapes(bundle) - {(cfg.image_size, cfg.image_size)}:  # any split
        bundle = _resized(bundle, cfg.image_size)
    if "flip" in augment_steps(cfg.augment) and "flip" not in augment_steps(provider.default_augment):
        bundle.notes.append(
            f"augment {cfg.augment!r} mirrors images, which changes what {provider.label} images mean; "
            f"its default is {provider.default_augment!r}"
        )
    return bundle


class DatasetContractError(ValueError):
    """A dataset provider (a plugin's) broke the contract of docs/plugins.md; the message names it and how."""


#: The image channels a model may take: image files are read as grey or RGB (``inference.load_image``), so a model
#: of grey+alpha or RGBA images would fit no file that predict or the app is given.
IMAGE_CHANNELS = (1, 3)


def _provider_load(provider: DatasetProvider, cfg: DataConfig, seed: int) -> DatasetBundle:
    """``provider.load``, held to the contract: a plugin's that fails other than with a ``ValueError`` for the user,
    or returns anything but a bundle of square images of one size, of 1 or 3 channels, in at least 2 classes with
    labels among them, is refused naming the dataset and its plugin (an ``AttributeError`` deep in training, or MACs
    counted for the wrong size, would say neither)."""
    try:
        bundle = provider.load(cfg, seed=seed)
    except LabelError as exc:  # from_splits names the bundle as the plugin did, not as the user chose it
        raise _label_error(provider, cfg.name, exc) from None
    except ValueError:  # the provider's own sentence for the user (a missing folder, a stopped download)
        raise
    except Exception as exc:
        if _is_built_in(provider) or isinstance(exc, MemoryError):
            raise  # the studio's own bug, or memory the caller reports as such
        message = " ".join(str(exc).split()) or "(no message)"
        raise DatasetContractError(f"{_whose(cfg.name)}: load() failed: {type(exc).__name__}: {message[:300]}") \
            from exc
    if not isinstance(bundle, DatasetBundle):
        shown = "None" if bundle is None else f"a {type(bundle).__name__}"
        raise DatasetContractError(f"{_whose(cfg.name)}: load() returned {shown}, not a DatasetBundle "
                                   "(build one with DatasetBundle.from_splits; see docs/plugins.md)")
    try:  # again: a bundle built without from_splits was not checked on the way
        check_classes_and_labels(bundle.name, bundle.num_classes,
                                 [(split, bundle.split(split)) for split in ("train", "val", "test")])
    except LabelError as exc:
        raise _label_error(provider, cfg.name, exc) from None
    _check_channels(cfg.name, bundle)
    if cfg.image_size is None:  # a run that sets data.image_size gets every split resized and cropped to it
        _check_image_sizes(cfg.name, bundle)
    _check_declared_shape(provider, cfg, bundle)
    return bundle


def _check_declared_shape(provider: DatasetProvider, cfg: DataConfig, bundle: DatasetBundle) -> None:
    """What ``load`` gave must be what the provider declares (``shape`` / ``input_shape(cfg)``): the app sizes the
    model, its MACs and parameters, and the init_from check reads the channels and classes from the declaration
    before anything is decoded, then the run would train another model without a word."""
    try:
        declared = provider.input_shape(cfg)
    except ValueError:  # options loading has refused already, or ones only loading checks: nothing declared
        return
    except Exception as exc:
        if _is_built_in(provider):
            raise
        message = " ".join(str(exc).split()) or "(no message)"
        raise DatasetContractError(f"{_whose(cfg.name)}: input_shape() failed: {type(exc).__name__}: "
                                   f"{message[:300]}") from exc
    if declared is None:  # only loading can tell (an image folder)
        return
    if not (isinstance(declared, tuple) and len(declared) == 3
            and all(isinstance(n, numbers.Integral) and not isinstance(n, bool) for n in declared)):
        shown = repr(declared) if len(repr(declared)) <= 80 else repr(declared)[:77] + "..."
        raise DatasetContractError(f"{_whose(cfg.name)}: its shape or input_shape() is {shown}, not an "
                                   "InputShape(channels, size, classes) or None (see docs/plugins.md)")
    declared = InputShape(*(int(n) for n in declared))
    loaded = InputShape(channels=bundle.in_channels, size=bundle.image_size, classes=bundle.num_classes)
    if cfg.image_size is not None:  # every split is resized to data.image_size, which then is the size declared
        declared, loaded = declared._replace(size=cfg.image_size), loaded._replace(size=cfg.image_size)
    if declared != loaded:
        def said(shape: InputShape) -> str:
            return f"{shape.channels}-channel {shape.size} px images in {shape.classes} classes"

        raise DatasetContractError(
            f"{_whose(cfg.name)}: it declares {said(declared)} (its shape or input_shape()), but its load() gave "
            f"{said(loaded)}: make them agree, or declare None where only loading can tell (see docs/plugins.md)")


def _image_shapes(bundle: DatasetBundle) -> set[tuple[int, int]]:
    """The (height, width) of the images of every split that has images."""
    return {tuple(split.images.shape[-2:]) for split in (bundle.train, bundle.val, bundle.test) if len(split)}


def _check_image_sizes(name: str, bundle: DatasetBundle) -> None:
    """Images must be square and of one size in every split: the model is sized, and its MACs counted, for the
    training images' side alone."""
    sizes = {split: tuple(getattr(bundle, split).images.shape[-2:]) for split in ("train", "val", "test")
             if len(getattr(bundle, split))}
    fix = "; or set data.image_size in the run config to resize and crop every split to that square"
    for split, (height, width) in sizes.items():
        if height != width:
            raise DatasetContractError(f"{_whose(name)}: its {split} images are {height}×{width} (height × width), "
                                       f"not square: the images of every split must be square and of one size{fix}")
    if len(set(sizes.values())) > 1:
        said = ", ".join(f"{split} {height}×{width}" for split, (height, width) in sizes.items())
        raise DatasetContractError(f"{_whose(name)}: its splits' images differ in size ({said}): the images of "
                                   f"every split must be of one size{fix}")


def _label_error(provider: DatasetProvider, name: str, error: LabelError) -> ValueError:
    """A plugin's classes or labels refused naming the dataset as the user chose it and its plugin; a built-in
    dataset's error as it is (its files are at fault, and it names them)."""
    if _is_built_in(provider):
        return error
    advice = ": its load() must give each image a label among its classes (see docs/plugins.md)" if error.cause else ""
    return DatasetContractError(_whose(name) + error.predicate + advice)


def _check_channels(name: str, bundle: DatasetBundle) -> None:
    """Images of 1 or 3 channels, as many in every split: refused here, not at predict time (no image file fits a
    model of 4) nor in the first evaluation (a model of 3 channels cannot read test images of 1)."""
    channels = {split: int(bundle.split(split).images.shape[1]) for split in ("train", "val", "test")
                if len(bundle.split(split))}
    for split, count in channels.items():
        if count not in IMAGE_CHANNELS:
            raise DatasetContractError(
                f"{_whose(name)}: its {split} images have {count} channels: a model takes 1 (grey) or 3 (RGB), as "
                "image files are read to predict; drop the alpha channel (grey+alpha to grey, RGBA to RGB)")
    if len(set(channels.values())) > 1:
        said = ", ".join(f"{split} {count}" for split, count in channels.items())
        raise DatasetContractError(f"{_whose(name)}: its splits' images differ in channels ({said}): the images of "
                                   "every split must be all grey or all RGB")


def _is_built_in(provider: DatasetProvider) -> bool:
    return type(provider).__module__.startswith(__name__ + ".")


def _whose(name: str) -> str:
    """``dataset 'stripes' (plugin stripes_data)``: the dataset and the plugin that registered it, where known."""
    from ..plugins import plugin_reports

    plugin = next((r for r in plugin_reports() if ("datasets", name) in r.contributes), None)
    return f"dataset {name!r}" + (f" (plugin {plugin.name})" if plugin is not None else "")


def dataset_availability() -> dict[str, tuple[bool, str]]:
    """{name: (usable offline, why)} for every registered dataset, from cheap file checks only."""
    return {name: offline_verdict(DATASETS.get(name), None) for name in DATASETS}


def offline_verdict(provider: DatasetProvider, root: str | None) -> tuple[bool, str]:
    """``provider.available_offline(root)`` as ``(available, why)``. A plugin's check that raises, or answers
    anything but a ``(bool, why)`` pair, is ``(False, "cannot check: ...")``: a broken plugin must not hide the
    other datasets nor crash ``iamnn-studio info`` or the app's form."""
    try:
        verdict = provider.available_offline(root)
    except Exception as exc:  # noqa: BLE001 - a plugin's code may raise anything
        return False, f"cannot check: {str(exc) or type(exc).__name__}"
    # a truth value of any integer kind (numpy's bool_, 0/1, ``is_dir() and count``) is an answer; None or text is not
    if not (isinstance(verdict, (tuple, list)) and len(verdict) == 2 and _is_truth_value(verdict[0])):
        shown = repr(verdict)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return False, f"cannot check: available_offline returned {shown}, not (available, why)"
    available, why = verdict
    return bool(available), "" if why is None else str(why)


def _is_truth_value(value: object) -> bool:
    import numpy

    return isinstance(value, (numbers.Integral, numpy.bool_))  # numpy's bool is not an Integral


def declared_input_shape(cfg: DataConfig) -> InputShape | None:
    """The (channels, size, classes) ``load_dataset(cfg)`` will give, without decoding anything.

    None when only loading can tell (an image folder) or when ``cfg`` names no usable dataset or
    options (``load_dataset`` then says what is wrong).
    """
    try:
        shape = dataset_provider(cfg.name).input_shape(cfg)
    except ValueError:
        return None
    if shape is not None and cfg.image_size is not None:
        shape = shape._replace(size=cfg.image_size)  # load_dataset resizes to it
    return shape


def known_channels_and_classes(cfg: DataConfig) -> tuple[int | None, int | None]:
    """The image channels and class count ``load_dataset(cfg)`` will give, each None where a glance cannot tell:
    the declared shape, or for an image folder its class folders and first image (no loading)."""
    shape = declared_input_shape(cfg)
    if shape is not None:
        return shape.channels, shape.classes
    try:
        provider = dataset_provider(cfg.name)
    except ValueError:
        return None, None
    if isinstance(provider, imagefolder.ImageFolderProvider):
        return imagefolder.peek_channels_and_classes(cfg)
    return None, None


def evaluation_split_of(cfg: DataConfig) -> str | None:
    """The split an evaluation of a run on ``cfg`` will measure, without loading: "test", "val" (an image folder
    without test/: its held-out images stand in), or None where a glance cannot tell (e.g. a plugin's dataset)."""
    try:
        return dataset_provider(cfg.name).evaluation_split(cfg)
    except (ValueError, OSError):  # an unknown dataset or an unreadable folder: loading will say what is wrong
        return None


def default_augment(name: str) -> str:
    """The augmentation that suits dataset ``name`` (``crop`` for digits, which must not be mirrored)."""
    return dataset_provider(name).default_augment


def _check_options(provider: DatasetProvider, cfg: DataConfig) -> None:
    unknown = sorted(set(cfg.options) - set(provider.options))
    if unknown:
        known = ", ".join(sorted(provider.options)) or "none"
        raise ValueError(f"data.options.{unknown[0]}: not an option of {cfg.name} (its options: {known})")


def _resized(bundle: DatasetBundle, size: int) -> DatasetBundle:
    native = " and ".join(str(h) if h == w else f"{h}×{w}"
                          for h, w in sorted(_image_shapes(bundle) - {(size, size)}))
    splits = {
        name: ImageTensors(resize_images(split.images, size), split.labels)
        for name, split in (("train", bundle.train), ("val", bundle.val), ("test", bundle.test))
    }
    return dataclasses.replace(
        bundle, **splits, notes=[*bundle.notes, f"resized from {native} to {size} px as data.image_size asks"]
    )
