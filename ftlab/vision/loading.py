"""Data sets by name and seeded train / val / test DataLoaders with the model's preprocessing.

Introduced in lesson 02. All images are resized once (as uint8 tensors) to the image size
in use, so each batch only augments and normalises: the loader keeps well ahead of the model
on a laptop CPU with ``num_workers=0``, which also works everywhere Jupyter does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch.utils.data import DataLoader

from ..errors import DataError, UsageError
from ..splits import DATASETS, Loaders, Splits, register_dataset, stratified_subset, subset_parts
from ..splits import dataset as registered
from .data import elpv
from .folders import image_folder
from .models import preprocessing, pretrained
from .transforms import augmentation, preprocess

__all__ = ["dataset", "Loaders", "loaders", "stratified_subset", "with_augmentation"]

register_dataset("elpv", "vision", elpv)


def dataset(name: str, **kwargs) -> Splits:
    """An image data set by name (``"elpv"``, from ftlab's one registry) or, for a folder path, :func:`image_folder`.

    Args:
        name: a registered data set name or a path to a class-per-folder image tree.
        **kwargs: passed on (e.g. ``classes=4`` for ELPV).

    Returns:
        :class:`~ftlab.Splits`.
    """
    if name not in DATASETS and (Path(name).expanduser().exists() or "/" in name):
        return image_folder(name, **kwargs)
    try:
        return registered(name, "vision", **kwargs)
    except DataError as err:
        raise DataError(f"{err} Or pass the path of a folder with one sub-folder per class.") from None


def loaders(splits: Splits, model: torch.nn.Module | Mapping[str, Any] | None = None, image_size: int | None = None,
            batch_size: int = 32, augment: str = "none", subset: int | float | None = None,
            eval_subset: int | float | None = None, seed: int = 0, num_workers: int = 0,
            eval_batch_size: int | None = None) -> Loaders:
    """Train / val / test DataLoaders for a model.

    Args:
        splits: the :class:`Splits` of a data set (``ft.vision.elpv()``, ``ft.vision.image_folder()``).
        model: the model the batches are for (its own preprocessing is used), or its preprocessing
            config (``ft.vision.preprocessing(model)``); None: EfficientNet-Lite0's.
        image_size: side length instead of the model's input size (small = fast lessons).
        batch_size: training batch size.
        augment: ``"none"``, ``"light"`` or ``"strong"`` (training split only).
        subset: a stratified subset of the training split (images per class or a fraction).
        eval_subset: the same for the validation and test splits (quick runs only).
        seed: shuffling and subset seed: the same seed gives the same batches.
        num_workers: DataLoader worker processes (0 = in the main process, works in any notebook).
        eval_batch_size: batch size of val/test (default: 2 x batch_size).

    Returns:
        :class:`Loaders` with ``train``, ``val``, ``test``, ``classes`` and ``config``.
    """
    config = preprocessing(model if model is not None else pretrained(weights=None)) \
        if model is None or isinstance(model, torch.nn.Module) else model
    data = splits
    if not isinstance(data, Splits):
        raise UsageError(f"loaders() needs the Splits of a data set (ftlab.elpv(), ftlab.image_folder()), "
                         f"not {type(data).__name__}.")
    for name, value in (("batch_size", batch_size), ("image_size", image_size if image_size is not None else 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(f"{name} must be a whole number of at least 1, got {value!r}"
                            + (" (image_size is the side of the square input in pixels, e.g. 96 or 224)."
                               if name == "image_size" else "."))
    size = int(image_size or config["input_size"][-1])
    interp = config.get("interpolation", "bilinear")
    parts = subset_parts(data, subset, eval_subset, seed)
    made = {}
    for split, part in parts.items():
        train = split == "train"
        ds = part.resized(size, interp).with_transform(preprocess(config, size),
                                                       augmentation(augment, size) if train else None)
        made[split] = DataLoader(
            ds, batch_size=batch_size if train else (eval_batch_size or 2 * batch_size),
            shuffle=train, drop_last=False, num_workers=num_workers,
            generator=torch.Generator().manual_seed(seed) if train else None,
            persistent_workers=num_workers > 0)
    used = {**dict(config), "image_size": size, "augment": augment, "batch_size": batch_size,
            "subset": subset, "seed": seed, "data": data.name}
    return Loaders(made["train"], made["val"], made["test"], list(data.classes), used)


def with_augmentation(loaders: Loaders, augment: str) -> Loaders:
    """The same loaders with another augmentation preset on the training split (same images, batches, seed)."""
    if loaders.config.get("augment") == augment:
        return loaders
    old = loaders.train
    size = loaders.config["image_size"]
    ds = old.dataset.with_transform(old.dataset.transform, augmentation(augment, size))
    train = DataLoader(ds, batch_size=old.batch_size, shuffle=True, num_workers=old.num_workers,
                       generator=torch.Generator().manual_seed(loaders.config.get("seed", 0)),
                       persistent_workers=old.num_workers > 0)
    return Loaders(train, loaders.val, loaders.test, loaders.classes, {**loaders.config, "augment": augment})
