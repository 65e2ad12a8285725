"""Transforms on uint8 image tensors, in two stages kept apart: augmentation, then preprocessing.

Everything here works on ``torch.uint8`` tensors of shape ``[C, H, W]`` (C = 1 for the
grayscale solar cells, 3 for photos) with ``torchvision.transforms.v2``. Stage 1,
:func:`augmentation`, is random and runs on the training split only; stage 2,
:func:`preprocess`, is the model's own (size, mean, std and interpolation from
:func:`ftlab.preprocessing`; nothing about them is hard-coded here). An :class:`~ftlab.ImageSet`
holds them as ``augment`` and ``transform``, so feature caching can drop the random stage
without guessing which ops are which. :data:`D4` are the 8 exact symmetries of a
square image, the views that ``ft.extract`` can cache.

Augmentation presets (train split only):

* ``"none"``: no augmentation.
* ``"light"``: horizontal and vertical flips, a random multiple of 90 degrees, shifts of
  up to 5 % of the side. For a square solar cell the 8 flips/rotations are exact
  symmetries: a crack stays a crack, a dark inactive area stays dark, so the label is
  preserved (only the busbar orientation changes).
* ``"strong"``: ``light`` plus a random resized crop (60-100 % of the area, nearly square)
  and brightness/contrast jitter of 30 %. EL brightness varies from module to module anyway,
  so the jitter keeps defects visible; a crop, though, can cut away a crack at the edge of a
  cell and so make a "defective" label wrong (lesson 04 discusses it). Only the 8
  flips/rotations are certain to keep every label true.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torchvision.transforms import InterpolationMode, v2

from ..errors import UsageError

__all__ = ["AUGMENTATIONS", "Rot90", "RandomShift", "ToRGB", "augmentation", "preprocess", "d4_view", "d4_boxes", "D4"]

AUGMENTATIONS = ("none", "light", "strong")


class Rot90:
    """Rotate a ``[..., H, W]`` tensor by a random multiple of 90 degrees (exact, no resampling)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        k = int(torch.randint(4, ()).item())
        return torch.rot90(x, k, dims=(-2, -1)) if k else x

    def __repr__(self) -> str:
        return "Rot90()"


class RandomShift:
    """Shift a ``[..., H, W]`` tensor by a random whole number of pixels (up to ``fraction`` of the side), filling with 0.

    The same as ``RandomAffine(translate=...)`` without resampling, and ~30x cheaper.
    """

    def __init__(self, fraction: float = 0.05):
        self.fraction = fraction

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        my, mx = int(h * self.fraction), int(w * self.fraction)
        if not (my or mx):
            return x
        dy, dx = (int(torch.randint(-m, m + 1, ()).item()) for m in (my, mx))
        out = torch.zeros_like(x)
        out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        return out

    def __repr__(self) -> str:
        return f"RandomShift({self.fraction})"


class ToRGB:
    """Repeat a single grayscale channel to the 3 channels an ImageNet model expects."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(3, *x.shape[1:]) if x.shape[-3] == 1 else x

    def __repr__(self) -> str:
        return "ToRGB()"


def _check_preset(preset: str) -> str:
    if preset not in AUGMENTATIONS:
        raise UsageError(
            f"Unknown augmentation preset {preset!r}. Use one of: {', '.join(AUGMENTATIONS)}."
        )
    return preset


def augmentation(preset: str, size: int) -> v2.Compose | None:
    """The augmentation pipeline of a preset, for square images of side ``size``.

    Args:
        preset: ``"none"``, ``"light"`` or ``"strong"`` (see the module docstring).
        size: side of the (already resized) images it will see.

    Returns:
        A ``v2.Compose`` mapping a uint8 ``[C, size, size]`` tensor to one of the same shape,
        or None for ``"none"``.
    """
    ops: list[Any] = []
    if _check_preset(preset) in ("light", "strong"):
        ops += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), Rot90(),
                RandomShift(0.05)]
    if preset == "strong":
        ops += [v2.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(0.9, 1.1), antialias=True),
                v2.ColorJitter(brightness=0.3, contrast=0.3)]
    return v2.Compose(ops) if ops else None


def preprocess(config: Mapping[str, Any], image_size: int | None = None) -> v2.Compose:
    """Resize (when needed), make 3 channels, scale to [0, 1] and normalise with the model's mean/std.

    Args:
        config: the model's preprocessing config (:func:`ftlab.preprocessing`).
        image_size: side length to use instead of the model's own input size.

    Returns:
        A ``v2.Compose`` from a uint8 ``[C, H, W]`` tensor to a float ``[3, S, S]`` tensor.
    """
    size = int(image_size or config["input_size"][-1])
    interp = InterpolationMode(config.get("interpolation", "bilinear"))
    return v2.Compose([
        v2.Resize((size, size), interpolation=interp, antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        ToRGB(),
        v2.Normalize(mean=list(config["mean"]), std=list(config["std"])),
    ])


D4 = ("identity", "hflip", "vflip", "rot180", "rot90", "rot270", "transpose", "antitranspose")
"""The 8 flips and quarter turns of a square image (the dihedral group D4; the first is the identity).

The views that ``ft.extract(views=...)`` caches, for images and for photos with boxes alike:
``views=2`` is the identity and the horizontal flip, ``views=8`` all of them."""


def _d4_image(x: torch.Tensor, name: str) -> torch.Tensor:
    if name in ("rot90", "rot270"):
        return torch.rot90(x, 1 if name == "rot90" else -1, dims=(-2, -1))
    if name in ("transpose", "antitranspose"):
        x = x.transpose(-2, -1)
        return x.flip(-2, -1) if name == "antitranspose" else x
    dims = {"identity": (), "hflip": (-1,), "vflip": (-2,), "rot180": (-2, -1)}[name]
    return x.flip(dims) if dims else x


def d4_boxes(boxes: torch.Tensor, view: int | str, size) -> torch.Tensor:
    """``[K, 4]`` xyxy pixel boxes of an image of ``size`` (h, w) moved as :func:`d4_view` moves the image."""
    b = torch.as_tensor(boxes).as_subclass(torch.Tensor).float().reshape(-1, 4)
    return _d4_boxes(b, _d4_name(view), *size)


def _d4_name(view) -> str:
    name = D4[view] if isinstance(view, int) and not isinstance(view, bool) and 0 <= view < 8 else view
    if name not in D4:
        raise UsageError(f"Unknown view {view!r}: the views are {', '.join(D4)} (or their indices 0-7).")
    return name


def _d4_boxes(b: torch.Tensor, name: str, h: float, w: float) -> torch.Tensor:
    x1, y1, x2, y2 = b.unbind(-1)
    moved = {"identity": (x1, y1, x2, y2), "hflip": (w - x2, y1, w - x1, y2), "vflip": (x1, h - y2, x2, h - y1),
             "rot180": (w - x2, h - y2, w - x1, h - y1), "rot90": (y1, w - x2, y2, w - x1),
             "rot270": (h - y2, x1, h - y1, x2), "transpose": (y1, x1, y2, x2),
             "antitranspose": (h - y2, w - x2, h - y1, w - x1)}[name]
    return torch.stack(moved, -1)


def d4_view(x: torch.Tensor, view: int | str, boxes: torch.Tensor | None = None):
    """One of the 8 symmetries :data:`D4` of a square image batch ``[..., H, W]`` (by name or index), exact.

    Args:
        x: images ``[..., H, W]`` with ``H == W``.
        view: a name of :data:`D4` or its index.
        boxes: optional ``[K, 4]`` xyxy pixel boxes of one image, moved along.

    Returns:
        The image(s) in that view, or ``(image, boxes)`` when boxes are given.
    """
    name = _d4_name(view)
    if x.shape[-1] != x.shape[-2]:
        raise UsageError(f"Flips and 90-degree rotations are symmetries of square images only, got {tuple(x.shape[-2:])}.")
    out = _d4_image(x, name)
    if boxes is None:
        return out
    return out, d4_boxes(boxes, name, x.shape[-2:])
