"""Head-only training on cached features: run the frozen backbone and neck once, train the head many times.

The detector's head is two 1 x 1 convolutions on the neck's two feature maps. When everything
below it is frozen, those maps are the same every epoch, so :func:`extract_neck` computes them
once per tile (and per *view*: the flips and turns of a photo taken from above, with the boxes
moved along), and :func:`fit_head` trains the head on them with :func:`ftlab.fit`, epochs taking
well under a second. It is the detection form of lesson 02's cut-point caching; the head learns
what it would learn end to end on the same views (a frozen BatchNorm is a fixed function).
the float16 rounding of the stored maps.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from ..errors import UsageError
from ..freezing import eval_mode, train_top
from ..history import History
from ..train import fit
from .data import collate
from .models import YOLOv3Tiny, yolo_loss

__all__ = ["VIEWS", "NeckFeatures", "HeadOnFeatures", "extract_neck", "fit_head"]

VIEWS = ("identity", "hflip", "vflip", "rot180", "rot90", "rot270", "transpose", "antitranspose")
"""The eight symmetries of a square photo taken from above (the dihedral group D4)."""


def view(image: torch.Tensor, boxes: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One of :data:`VIEWS` applied to an image and its boxes together (torchvision's box-aware functionals)."""
    img = tv_tensors.Image(image)
    bb = boxes if isinstance(boxes, tv_tensors.BoundingBoxes) else tv_tensors.BoundingBoxes(
        boxes, format="XYXY", canvas_size=tuple(image.shape[-2:]))
    steps = {"identity": [], "hflip": [TF.horizontal_flip], "vflip": [TF.vertical_flip],
             "rot180": [TF.horizontal_flip, TF.vertical_flip], "rot90": [lambda t: TF.rotate(t, 90)],
             "rot270": [lambda t: TF.rotate(t, -90)], "transpose": [lambda t: TF.rotate(t, 90), TF.vertical_flip],
             "antitranspose": [lambda t: TF.rotate(t, 90), TF.horizontal_flip]}
    if name not in steps:
        raise UsageError(f"Unknown view {name!r}; the views are {', '.join(VIEWS)}.")
    for f in steps[name]:
        img, bb = f(img), f(bb)
    return img.as_subclass(torch.Tensor), bb


class NeckFeatures(Dataset):
    """Cached neck maps per tile and view: ``ds[i]`` is ``((f5, f4), target)``."""

    def __init__(self, f5: torch.Tensor, f4: torch.Tensor, targets: list[dict], views: tuple[str, ...], size):
        self.f5, self.f4, self.targets, self.views, self.size = f5, f4, targets, views, tuple(size)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return (self.f5[i], self.f4[i]), self.targets[i]

    def __repr__(self) -> str:
        return f"NeckFeatures({len(self)} = tiles x {len(self.views)} views, maps {tuple(self.f5.shape[1:])} and " \
               f"{tuple(self.f4.shape[1:])})"


@torch.no_grad()
def extract_neck(model: YOLOv3Tiny, data, views: int | tuple[str, ...] = 1, batch_size: int = 8) -> NeckFeatures:
    """The neck's two feature maps for every tile of a :class:`~ftlab.detection.DetectionSet`, in each view.

    Args:
        model: the detector (its backbone and neck are run in eval mode; nothing is trained).
        data: tiles with targets (the data set's own transform is not applied: views replace it).
        views: how many of :data:`VIEWS` (1, 2, 4 or 8), or their names.
    """
    names = VIEWS[:views] if isinstance(views, int) else tuple(views)
    if isinstance(views, int) and views not in (1, 2, 4, 8):
        raise UsageError(f"views must be 1, 2, 4 or 8 (or a tuple of names from {VIEWS}), got {views!r}.")
    dev = next(model.parameters()).device
    f5s, f4s, targets = [], [], []
    items = [(data.images[i], data.target(i)) for i in range(len(data))]
    with eval_mode(model):
        for name in names:
            for start in range(0, len(items), batch_size):
                chunk = [view(x, t["boxes"], name) + (t["labels"],) for x, t in items[start: start + batch_size]]
                x = torch.stack([c[0] for c in chunk]).to(dev)
                f5, f4 = model.neck(*model.backbone(x))
                f5s.append(f5.cpu())
                f4s.append(f4.cpu())
                targets += [{"boxes": c[1].as_subclass(torch.Tensor).clone(), "labels": c[2]} for c in chunk]
    size = items[0][0].shape[-2:] if items else (416, 416)
    return NeckFeatures(torch.cat(f5s), torch.cat(f4s), targets, names, size)


class HeadOnFeatures(nn.Module):
    """The detector's head (shared, not copied) as a model of cached neck maps, with the YOLO loss."""

    def __init__(self, model: YOLOv3Tiny, size=(416, 416)):
        super().__init__()
        self.head, self.num_classes, self.size = model.head, model.num_classes, tuple(size)
        self.register_buffer("anchors", model.anchors.clone(), persistent=False)

    def forward(self, feats, targets: list[dict] | None = None):
        if targets is None:
            raise UsageError("HeadOnFeatures gives losses only: score a detector with ft.detection.evaluate.")
        f5 = torch.stack([f[0] for f in feats])
        f4 = torch.stack([f[1] for f in feats])
        return yolo_loss(self.head(f5, f4), targets, self.anchors, self.num_classes, self.size)


def fit_head(model: YOLOv3Tiny, train: NeckFeatures, val: NeckFeatures | None, epochs: int, lr: float = 1e-3,
             batch_size: int = 8, seed: int = 0, **fit_kw: Any) -> History:
    """Train only the detector's head on cached neck maps with :func:`ftlab.fit` (the rest is frozen first)."""
    if not isinstance(train, NeckFeatures):
        raise UsageError("fit_head trains on cached maps: pass ft.detection.extract_neck(model, tiles, views).")
    train_top(model, 1)
    g = torch.Generator().manual_seed(seed)
    loaders = (DataLoader(train, batch_size=batch_size, shuffle=True, generator=g, collate_fn=collate),
               None if val is None else DataLoader(val, batch_size=batch_size, collate_fn=collate))
    return fit(HeadOnFeatures(model, train.size), loaders, epochs, lr=lr, seed=seed, **fit_kw)
