"""Data sets by name and seeded train / val / test DataLoaders with the model's preprocessing.

Introduced in lesson 02. All images are resized once (as uint8 tensors) to the image size
in use, so each batch only augments and normalises: the loader keeps well ahead of the model
on a laptop CPU with ``num_workers=0``, which also works everywhere Jupyter does.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Mapping

import torch
from torch.utils.data import DataLoader

from ..errors import DataError, UsageError
from ..splits import Loaders, Splits, stratified_subset, subset_parts
from .data import elpv
from .folders import image_folder
from .models import preprocessing
from .transforms import augmentation, preprocess

__all__ = ["DATASETS", "dataset", "Loaders", "loaders", "stratified_subset", "with_augmentation"]

DATASETS = {"elpv": elpv}


def dataset(name: str, **kwargs) -> Splits:
    """A data set by name (``"elpv"``) or, for an existing folder path, :func:`ftlab.image_folder`.

    Args:
        name: a registered data set name or a path to a class-per-folder image tree.
        **kwargs: passed on (e.g. ``classes=4`` for ELPV).

    Returns:
        :class:`~ftlab.Splits`.
    """
    if name in DATASETS:
        return DATASETS[name](**kwargs)
    if Path(name).expanduser().exists() or "/" in name:
        return image_folder(name, **kwargs)
    close = difflib.get_close_matches(name, list(DATASETS), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise DataError(f"Unknown data set {name!r}.{hint} Known data sets: {', '.join(DATASETS)}; "
                    "or pass the path of a folder with one sub-folder per class.")


def loaders(data: Splits, config: Mapping[str, Any], image_size: int | None = None,
            batch_size: int = 32, augment: str = "none", subset: int | float | None = None,
            eval_subset: int | float | None = None, seed: int = 0, num_workers: int = 0,
            eval_batch_size: int | None = None) -> Loaders:
    """Train / val / test DataLoaders for a model.

    Args:
        data: the :class:`Splits` of a data set (``ftlab.elpv()``, ``ftlab.image_folder()``).
        config: the model's preprocessing (``ftlab.preprocessing(model)``), or a model.
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
    if isinstance(config, torch.nn.Module):
        config = preprocessing(config)
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
