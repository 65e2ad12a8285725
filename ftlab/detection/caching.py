"""Boxes in the caching engine: the adapter for YOLOv3-tiny on tiles with boxes.

The detector's layer groups are ``backbone.early``, ``backbone.middle``, ``backbone.late``,
``neck`` and ``head``; as everywhere, a cut names the first group that trains. What is stored
at each cut is what the groups from there take: the early maps, the stride-16 map ``c4``, the
two backbone maps ``(c4, c5)`` (``cut="neck"``: neck and head train) or the neck's two outputs
(``cut="head"``: head-only training, an epoch in about a second). Views are the 8 symmetries of
a photo taken from above (:data:`ftlab.vision.D4`), the boxes moved along, and each view is an
example of its own when scoring (a box's loss is not averaged over views). The part above the
cut gives the YOLO loss, so ``ft.evaluate(model, maps)`` is a loss; mAP is
``ft.detection.evaluate(model, tiles)`` on the detector itself.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..caching.adapter import CacheAdapter, register_cache_adapter
from ..errors import UsageError
from ..groups import layer_groups
from ..vision.transforms import d4_boxes, d4_view
from .models import YOLOv3Tiny
from .yolo import yolo_loss

__all__ = ["DetectionAdapter", "DetectorTop"]

_STAGES = ("backbone.early", "backbone.middle", "backbone.late", "neck", "head")


def _up(model: YOLOv3Tiny, state, start: int, stop: int):
    """The detector's state at group ``start`` moved up to group ``stop`` (1 early maps, 2 c4, 3 (c4, c5),
    4 the neck's (p5, p4), 5 the head's output maps)."""
    for stage in range(start, stop):
        if stage == 0:
            state = model.backbone.early(state)
        elif stage == 1:
            state = model.backbone.middle(state)
        elif stage == 2:
            state = (state, model.backbone.late(state))
        elif stage == 3:
            state = model.neck(*state)
        else:
            state = model.head(*state)
    return state


class DetectorTop(nn.Module):
    """The groups of a detector from ``cut`` up (shared with it, not copied), as a model of cached maps with the YOLO loss."""

    def __init__(self, model: YOLOv3Tiny, cut: int):
        super().__init__()
        self.model, self.cut = model, cut
        self._groups = layer_groups(model)

    def ftlab_layer_groups(self):
        return self._groups

    def raw(self, state) -> dict[str, torch.Tensor]:
        """The head's output maps from a batch of states at the cut."""
        return _up(self.model, state, self.cut, len(_STAGES))

    def forward(self, maps, targets: list[dict] | None = None):
        if targets is None:
            raise UsageError("The cached part of a detector gives losses only: score the detector itself with "
                             "ft.detection.evaluate(model, tiles).")
        first = maps[0]
        state = tuple(torch.stack(p) for p in zip(*maps)) if isinstance(first, tuple) else torch.stack(list(maps))
        out = self.raw(state)
        size = tuple(32 * s for s in out["p5"].shape[-2:])
        m = self.model
        return yolo_loss(out, targets, m.anchors, m.num_classes, size, anchor_t=m.anchor_t)


class DetectionAdapter(CacheAdapter):
    """:class:`~ftlab.detection.YOLOv3Tiny` on a :class:`~ftlab.detection.DetectionSet` (or its loader)."""

    kind = "detection"
    average_views = False
    extract_batch_size = 8

    def accepts(self, model: nn.Module) -> bool:
        return isinstance(model, YOLOv3Tiny)

    def _tiles(self, data):
        ds = data.dataset if isinstance(data, DataLoader) else data
        if not hasattr(ds, "images") or not hasattr(ds, "target"):
            raise UsageError(f"Detection caching takes tiles with boxes (ft.detection.tree_crowns(...).train), "
                             f"not {type(ds).__name__}.")
        return ds

    def batches(self, model, data):
        ds = self._tiles(data)                           # the data set's own transform is not applied: views replace it
        for start in range(0, len(ds), self.extract_batch_size):
            ids = list(range(start, min(len(ds), start + self.extract_batch_size)))
            targets = [ds.target(i) for i in ids]
            targets = [{"boxes": t["boxes"].as_subclass(torch.Tensor).clone(), "labels": t["labels"]} for t in targets]
            yield ids, torch.stack([ds.images[i].as_subclass(torch.Tensor) for i in ids]), targets

    def content(self, data) -> list:
        ds = self._tiles(data)
        return [[torch.as_tensor(im) for im in ds.images], [torch.as_tensor(b) for b in ds.boxes],
                [torch.as_tensor(lb) for lb in ds.labels]]

    def targets(self, data):
        return None                                      # boxes move with the views: kept with the maps

    def view_names(self, views) -> list:
        from ..vision.transforms import D4

        if isinstance(views, int) and not isinstance(views, bool):
            if views not in (1, 2, 4, 8):
                raise UsageError(f"views must be 1, 2, 4 or 8 (the first n of {', '.join(D4)}), or names, got {views!r}.")
            return list(D4[:views]) if views > 1 else []
        return super().view_names(views)

    def view(self, inputs, targets, view):
        size = tuple(inputs.shape[-2:])
        return d4_view(inputs, view), [{"boxes": d4_boxes(t["boxes"], view, size), "labels": t["labels"]}
                                       for t in targets]

    def below(self, model, inputs, cut):
        return _up(model, inputs, 0, cut)

    def above(self, model, cut):
        return DetectorTop(model, cut)

    def collate(self, items, cut):
        states, targets = zip(*items)
        return list(states), list(targets)

    def check(self, model, cut, inputs, state) -> bool:
        top, full = DetectorTop(model, cut).raw(state), model.raw(inputs)
        return all(torch.allclose(top[k], full[k], atol=1e-4, rtol=1e-3) for k in full)

    def advance(self, model, x, start, stop):
        return _up(model, x, start, stop)


register_cache_adapter(DetectionAdapter())
