"""Cut-point caching for the detector: run the frozen part once, train the part above it many times.

When everything below a cut is frozen, its feature maps are the same every epoch, so
:func:`extract_maps` computes them once per tile and per *view* (the flips and turns of a photo
taken from above, the boxes moved along: the same augmentation every epoch, computed once), and
:func:`fit_cached` trains the part above the cut on them with :func:`ftlab.fit`. Two cuts:
``"neck"`` (the head's inputs: head-only training, an epoch in about a second) and ``"backbone"``
(the neck's inputs: neck and head train). It is the detection form of lesson 02's cut-point
caching, and it learns what end-to-end training learns on the same views (a frozen part, its
BatchNorm included, is a fixed function; a test checks the losses match).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from ..errors import UsageError
from ..freezing import eval_mode, freeze_to, train_top
from ..history import History
from ..train import fit
from .data import collate
from .models import YOLOv3Tiny
from .yolo import yolo_loss

__all__ = ["VIEWS", "CUTS", "view", "CachedMaps", "TopOnMaps", "extract_maps", "neck_maps", "fit_cached"]

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


CUTS = ("neck", "backbone")
"""Where the cached maps are taken: after the ``neck`` (train the head) or after the ``backbone`` (train neck + head)."""


class CachedMaps(Dataset):
    """Cached feature maps per tile and view: ``ds[i]`` is ``((stride-32 map, stride-16 map), target)``.

    Attributes:
        cut: ``"neck"`` (the head's inputs) or ``"backbone"`` (the neck's inputs); ``views``: the views cached.
    """

    def __init__(self, m5: torch.Tensor, m4: torch.Tensor, targets: list[dict], views: tuple[str, ...], size, cut: str):
        self.m5, self.m4, self.targets, self.views, self.size, self.cut = m5, m4, targets, views, tuple(size), cut

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return (self.m5[i], self.m4[i]), self.targets[i]

    def __repr__(self) -> str:
        return (f"CachedMaps(cut={self.cut!r}, {len(self)} = tiles x {len(self.views)} views, maps "
                f"{tuple(self.m5.shape[1:])} and {tuple(self.m4.shape[1:])})")


@torch.no_grad()
def extract_maps(model: YOLOv3Tiny, data, cut: str = "neck", views: int | tuple[str, ...] = 1,
                 batch_size: int = 8) -> CachedMaps:
    """The feature maps at a cut for every tile of a :class:`~ftlab.detection.DetectionSet`, in each view.

    Args:
        model: the detector (run in eval mode up to the cut; nothing is trained).
        data: tiles with targets (the data set's own transform is not applied: the views replace it).
        cut: ``"neck"``: the neck's outputs (the head trains on them); ``"backbone"``: the
            backbone's outputs (neck and head train on them).
        views: how many of :data:`VIEWS` (1, 2, 4 or 8), or their names.
    """
    if cut not in CUTS:
        raise UsageError(f"cut must be one of {CUTS}, not {cut!r}.")
    if isinstance(views, int) and views not in (1, 2, 4, 8):
        raise UsageError(f"views must be 1, 2, 4 or 8 (or a tuple of names from {VIEWS}), got {views!r}.")
    names = VIEWS[:views] if isinstance(views, int) else tuple(views)
    dev = next(model.parameters()).device
    m5s, m4s, targets = [], [], []
    items = [(data.images[i], data.target(i)) for i in range(len(data))]
    with eval_mode(model):
        for name in names:
            for start in range(0, len(items), batch_size):
                chunk = [view(x, t["boxes"], name) + (t["labels"],) for x, t in items[start: start + batch_size]]
                c4, c5 = model.backbone(torch.stack([c[0] for c in chunk]).to(dev))
                m5, m4 = model.neck(c4, c5) if cut == "neck" else (c5, c4)
                m5s.append(m5.cpu())
                m4s.append(m4.cpu())
                targets += [{"boxes": c[1].as_subclass(torch.Tensor).clone(), "labels": c[2]} for c in chunk]
    size = items[0][0].shape[-2:] if items else (416, 416)
    return CachedMaps(torch.cat(m5s), torch.cat(m4s), targets, names, size, cut)


@torch.no_grad()
def neck_maps(model: YOLOv3Tiny, maps: CachedMaps, batch_size: int = 16) -> CachedMaps:
    """The neck's outputs computed from cached backbone maps (the head's inputs, without a second backbone pass)."""
    if maps.cut != "backbone":
        raise UsageError(f"neck_maps needs maps cut at 'backbone', these are cut at {maps.cut!r}.")
    dev = next(model.parameters()).device
    m5s, m4s = [], []
    with eval_mode(model):
        for i in range(0, len(maps), batch_size):
            m5, m4 = model.neck(maps.m4[i: i + batch_size].to(dev), maps.m5[i: i + batch_size].to(dev))
            m5s.append(m5.cpu())
            m4s.append(m4.cpu())
    return CachedMaps(torch.cat(m5s), torch.cat(m4s), maps.targets, maps.views, maps.size, "neck")


class TopOnMaps(nn.Module):
    """The part of a detector above a cut (shared with it, not copied) as a model of cached maps, with the YOLO loss."""

    def __init__(self, model: YOLOv3Tiny, cut: str = "neck", size=(416, 416)):
        super().__init__()
        self.neck = model.neck if cut == "backbone" else None
        self.head, self.num_classes, self.size, self.cut = model.head, model.num_classes, tuple(size), cut
        self.anchor_t = model.anchor_t
        self.register_buffer("anchors", model.anchors.clone(), persistent=False)

    def forward(self, maps, targets: list[dict] | None = None):
        if targets is None:
            raise UsageError("TopOnMaps gives losses only: score the detector itself with ft.detection.evaluate.")
        m5 = torch.stack([m[0] for m in maps])
        m4 = torch.stack([m[1] for m in maps])
        if self.neck is not None:
            m5, m4 = self.neck(m4, m5)
        return yolo_loss(self.head(m5, m4), targets, self.anchors, self.num_classes, self.size, anchor_t=self.anchor_t)


def fit_cached(model: YOLOv3Tiny, train: CachedMaps, val: CachedMaps | None, epochs: int, lr: float = 1e-3,
               batch_size: int = 8, seed: int = 0, **fit_kw: Any) -> History:
    """Train the part of the detector above the maps' cut with :func:`ftlab.fit` (everything below is frozen first).

    ``cut="neck"`` maps train the head; ``cut="backbone"`` maps train the neck and the head. The
    model itself is updated (its head and neck are shared), so ``ft.detection.evaluate(model, ...)``
    scores it afterwards. ``fit_kw`` goes to :func:`ftlab.fit` (``lr_mult``, ``weight_decay``, ...).
    """
    if not isinstance(train, CachedMaps):
        raise UsageError("fit_cached trains on cached maps: pass ft.detection.extract_maps(model, tiles, cut, views).")
    if val is not None and val.cut != train.cut:
        raise UsageError(f"The training maps are cut at {train.cut!r}, the validation maps at {val.cut!r}: use one cut.")
    if train.cut == "neck":
        train_top(model, 1)
    else:
        freeze_to(model, "neck")
    g = torch.Generator().manual_seed(seed)
    loaders = (DataLoader(train, batch_size=batch_size, shuffle=True, generator=g, collate_fn=collate),
               None if val is None else DataLoader(val, batch_size=batch_size, collate_fn=collate))
    return fit(TopOnMaps(model, train.cut, train.size), loaders, epochs, lr=lr, seed=seed, **fit_kw)
