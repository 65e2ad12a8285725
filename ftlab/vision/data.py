"""Image data sets as uint8 tensors decoded once and cached: :class:`ImageSet`, :class:`Splits` and ELPV.

Introduced in lesson 01. The flow is: decoded uint8 tensors (cached on disk) → a fixed,
stratified train/val/test split (:class:`Splits`) → :func:`ftlab.loaders` adds the two
transform stages (augmentation for training, then the model's preprocessing) and makes
seeded DataLoaders. Your own class-per-folder images come in through :mod:`ftlab.vision.folders`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from ..errors import DataError
from ..files import atomic_save, cache_file, stable_hash
from ..splits import Splits, stratified_split

__all__ = ["ImageSet", "Splits", "stratified_split", "elpv"]

ELPV_TEST_FRACTION = 0.25   # Deitsch et al. 2019: 1,968 training cells of 2,624
ELPV_SPLIT_SEED = 0         # fixed, so every run is scored on the same 656 test cells


@dataclass
class ImageSet(torch.utils.data.Dataset):
    """Images as one uint8 tensor ``[N, C, H, W]`` with integer targets; indexable like any Dataset.

    Attributes:
        images: uint8 tensor ``[N, C, H, W]``.
        targets: int64 tensor ``[N]`` of class indices.
        classes: class names, index = target.
        groups: optional per-image group label (ELPV: module type ``mono``/``poly``).
        name: where it came from, e.g. ``"elpv2/train"``.
        transform: the model's preprocessing, applied to each uint8 ``[C, H, W]`` image in ``__getitem__``.
        augment: random augmentation applied before ``transform`` (training only; None = none).
            The two stages stay apart, so feature caching can drop the random one.
    """

    images: torch.Tensor
    targets: torch.Tensor
    classes: list[str]
    groups: list[str] | None = None
    name: str = "images"
    transform: Callable | None = field(default=None, repr=False)
    augment: Callable | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.augment is not None:
            x = self.augment(x)
        return (self.transform(x) if self.transform is not None else x), int(self.targets[i])

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        return f"ImageSet({self.name!r}, {len(self)} images {c}x{h}x{w}, counts={self.counts()})"

    def subset(self, indices, name: str | None = None) -> "ImageSet":
        """A new ImageSet with the given indices (tensors are indexed, not copied needlessly)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        groups = [self.groups[i] for i in idx.tolist()] if self.groups is not None else None
        return replace(self, images=self.images[idx], targets=self.targets[idx],
                       groups=groups, name=name or self.name)

    def with_transform(self, transform: Callable | None, augment: Callable | None = None) -> "ImageSet":
        """The same images (shared memory) with another preprocessing ``transform`` and ``augment`` stage."""
        return replace(self, transform=transform, augment=augment)

    def without_augmentation(self) -> "ImageSet":
        """The same images and preprocessing, without the random augmentation stage."""
        return replace(self, augment=None)

    def cache_key(self) -> str:
        """A hash of what a model sees (the pixels, their shape, the preprocessing), not of the labels."""
        return stable_hash(list(self.images.shape), repr(self.transform), self.images)

    def resized(self, size: int, interpolation: str = "bilinear") -> "ImageSet":
        """All images resized once (antialiased) to ``size x size``, still uint8.

        Resizing the whole tensor up front makes small classroom image sizes cheap:
        the per-batch transforms then only augment and normalise.
        """
        if tuple(self.images.shape[-2:]) == (size, size):
            return self
        mode = TF.InterpolationMode(interpolation)
        chunks = [TF.resize(c, [size, size], interpolation=mode, antialias=True)
                  for c in self.images.split(512)]
        return replace(self, images=torch.cat(chunks) if chunks else self.images[..., :size, :size])

    def counts(self) -> dict[str, int]:
        """Images per class, by class name."""
        n = torch.bincount(self.targets, minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, n))


def _elpv_raw() -> dict:
    """All 2,624 ELPV cells decoded once into uint8, cached on disk (warm load: well under a second)."""
    from elpv_dataset.__about__ import __version__ as version
    from elpv_dataset.utils import load_dataset

    path = cache_file("elpv", f"elpv-{version}.pt")
    if path.is_file():
        return torch.load(path, mmap=True, weights_only=True)
    images, probs, types = load_dataset()
    raw = {"images": torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1),
           "probs": torch.tensor(np.array(probs, dtype=np.float64)),
           "types": [str(t) for t in types]}
    atomic_save(raw, path)
    return raw


def elpv(classes: int = 2, val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """The real ELPV solar-cell data set: 2,624 grayscale 300x300 electroluminescence cells.

    Labels are defect probabilities {0, 1/3, 2/3, 1} from experts. ``classes=4`` keeps the
    four levels; ``classes=2`` is functional (p < 0.5) vs defective (p >= 0.5). The test
    split is 25 % (656 cells), stratified by defect level x module type (mono/poly) with a
    fixed seed, so training has 1,968 cells as in Deitsch et al. 2019 and the same split
    serves 2 and 4 classes. A validation part (``val_fraction`` of those 1,968, stratified,
    seeded by ``seed``) is carved off for early stopping.

    Args:
        classes: 2 or 4.
        val_fraction: share of the 1,968 training cells held out for validation.
        seed: seed of the validation carve-out (the test split never changes).

    Returns:
        :class:`Splits`; ``print(ftlab.elpv())`` shows the class counts of each split.

    Example:
        >>> splits = ftlab.elpv(classes=2)
        >>> len(splits.train), len(splits.val), len(splits.test)
        (1771, 197, 656)
    """
    if classes not in (2, 4):
        raise DataError(f"ELPV has 2 or 4 classes, not {classes!r}: use classes=2 "
                        "(functional / defective) or classes=4 (defect probability 0, 1/3, 2/3, 1).")
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}.")
    raw = _elpv_raw()
    level = torch.round(raw["probs"] * 3).long()                      # 0, 1, 2, 3
    targets = level if classes == 4 else (raw["probs"] >= 0.5).long()
    names = ["p=0", "p=1/3", "p=2/3", "p=1"] if classes == 4 else ["functional", "defective"]
    types = raw["types"]
    strata = [f"{int(lv)}-{t}" for lv, t in zip(level, types)]
    full = ImageSet(raw["images"], targets, names, types, name=f"elpv{classes}")
    train_idx, test_idx = stratified_split(len(full), strata, ELPV_TEST_FRACTION, ELPV_SPLIT_SEED)
    fit_idx, val_idx = stratified_split(len(train_idx), [strata[i] for i in train_idx], val_fraction, seed)
    return Splits(train=full.subset(train_idx[fit_idx], f"elpv{classes}/train"),
                  val=full.subset(train_idx[val_idx], f"elpv{classes}/val"),
                  test=full.subset(test_idx, f"elpv{classes}/test"), name=f"ELPV ({classes} classes)")
