"""Images in the caching engine: the adapter for CNNs, and pooled features of every layer group.

:class:`ImageAdapter` is how ``ft.extract`` / ``ft.fit_cached`` run a batch of images: the
groups in a row (timm's ``forward_features`` and ``forward_head(pre_logits=True)`` for the
head's input), the model's dropout before its classifier (timm's ``drop_rate``) on cached head
inputs, and the 8 exact symmetries :data:`~ftlab.vision.D4` as views. It takes any model that
no other modality claims. :func:`pooled_features` pools the maps of every layer group at once,
for one linear probe per depth (lesson 01).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..batches import prepare, to_device
from ..caching.adapter import GroupsInARow, register_cache_adapter, run_groups, without_augmentation
from ..caching.engine import Features, cache_key
from ..errors import UsageError
from ..files import atomic_save, cache_file
from ..freezing import eval_mode
from ..groups import group_names, head_input, layer_groups, resolve_groups
from .transforms import D4, d4_view

__all__ = ["ImageAdapter", "pooled_features"]


class ImageAdapter(GroupsInARow):
    """CNNs on ``(images, labels)`` batches; views are the names of :data:`~ftlab.vision.D4` or functions."""

    kind = "image"

    def pre_head(self, model: nn.Module):
        rate = float(getattr(model, "drop_rate", 0.0) or 0.0)     # timm: dropout before the classifier
        return (lambda x, training: F.dropout(x, rate, training)) if rate else None

    def view_names(self, views) -> list:
        if isinstance(views, int) and not isinstance(views, bool):
            if not 1 <= views <= len(D4):
                raise UsageError(f"views must be 1 to {len(D4)} (the first n of {', '.join(D4)}), got {views}.")
            return list(D4[:views]) if views > 1 else []
        return super().view_names(views)

    def view(self, inputs, targets, view):
        return (view(inputs) if callable(view) else d4_view(inputs, view)), targets

    def below(self, model, inputs, cut):
        groups = layer_groups(model)
        if cut == len(groups) - 1 and hasattr(model, "forward_features"):      # timm: the same groups, faster
            return head_input(model, model.forward_features(inputs))
        return super().below(model, inputs, cut)


register_cache_adapter(ImageAdapter(), fallback=True)


def _pool_batch(model, x, layers, names, picked, last, xs) -> torch.Tensor:
    h = x
    for i in range(last):
        h = run_groups(h, layers, i, i + 1)
        if i in xs:
            if h.ndim != 4:
                raise UsageError(f"Group {names[i]} outputs {tuple(h.shape)}, not [B, C, H, W] maps to pool: "
                                 "pick earlier groups, or use ft.extract.")
            xs[i].append(h.float().mean((2, 3)).cpu())
    return h


@torch.no_grad()
def pooled_features(model: nn.Module, loader, groups=None, cache: bool = True,
                    device: str | torch.device = "auto") -> dict[str, Features]:
    """The output of each picked layer group, averaged over space (global average pooling), in one pass.

    A linear probe per layer group needs one vector per image at every depth. The maps themselves
    (``[N, C, H, W]``, what ``ft.extract(model, loader, cut=...)`` stores) are large at the early
    groups, so here each batch's maps are pooled to ``[N, C]`` as they are computed and only those
    are kept, for all picked groups from one run of the model (cached on disk like ``ft.extract``).

    Args:
        model: a CNN whose groups before the head output ``[B, C, H, W]`` maps, run in a row.
        loader: a DataLoader or data set (shuffling and a separate augmentation stage are ignored).
        groups: the groups whose output to pool (one rule: name, index, glob or list; the head cannot
            be picked); default every group before the head.
        cache: read from / write to ``<ftlab cache>/features/``.
        device: where to compute.

    Returns:
        ``{group name: Features}`` in the order of the groups; ``x`` is ``[N, C]`` and ``cut`` is the
        index of the next group (``ft.extract`` at that cut gives the same maps, unpooled).
    """
    names, adapter = group_names(model), ImageAdapter()
    picked = resolve_groups(model, groups if groups is not None else list(range(len(names) - 1)))
    if picked[-1] == len(names) - 1:
        raise UsageError(f"The head ({names[-1]}) outputs the predictions, not maps to pool: "
                         f"pick groups before it ({', '.join(names[:-1])}).")
    layers, last = layer_groups(model), picked[-1] + 1
    key = cache_key(model, adapter, loader, last, ["pooled", *picked])
    path = cache_file("features", f"pooled-{key}.pt")
    targets = adapter.targets(without_augmentation(loader))
    if cache and path.is_file():
        stored = torch.load(path, weights_only=True)
        y = targets if targets is not None else stored["y"]
        return {names[i]: Features(stored["x"][names[i]], y, i + 1, key, kind="image") for i in picked}
    dev = prepare(model, device)
    xs: dict[int, list[torch.Tensor]] = {i: [] for i in picked}
    ys = []
    with eval_mode(model):
        for _, x, y in adapter.batches(model, loader):
            x = to_device(x, dev)
            h = _pool_batch(model, x, layers, names, picked, last, xs)
            if not ys and not adapter.check(model, last, x, head_input(model, h) if last == len(names) - 1 else h):
                raise UsageError(f"The groups of {type(model).__name__} up to {names[last - 1]} run in a row do not "
                                 "reproduce its output: use ft.extract at cut='head'.")
            ys.append(torch.as_tensor(y))
    y = torch.cat(ys).long()
    pooled = {names[i]: torch.cat(xs[i]) for i in picked}
    if cache:
        atomic_save({"x": pooled, "y": y}, path)
    return {names[i]: Features(pooled[names[i]], y, i + 1, key, kind="image") for i in picked}
