"""Figures of what the layer groups compute: the feature maps of one image, and a linear probe by depth.

Introduced in lesson 01. :func:`feature_maps` runs one image through the groups of one or several
models (e.g. the same architecture with pretrained and with random weights) and shows a few
channels of the maps after the groups you pick. :func:`probe_by_depth` draws the accuracy of a
linear probe on the (pooled) output of each group, one line per model.
"""
from __future__ import annotations

import math
from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from ..freezing import eval_mode
from ..groups import layer_groups, resolve_groups
from .style import PALETTE, axes_row, styled

__all__ = ["group_maps", "feature_maps", "probe_by_depth"]


@torch.no_grad()
def group_maps(model: nn.Module, image: torch.Tensor, groups) -> dict[str, torch.Tensor]:
    """The activation maps of one image after the picked layer groups.

    Args:
        model: a CNN whose groups, run in a row, compute its features.
        image: one preprocessed image ``[C, H, W]`` (e.g. ``loaders.test.dataset[0][0]``).
        groups: the groups (one rule: name, index, glob or list); each must output ``[1, C, h, w]``.

    Returns:
        ``{group name: [C, h, w] float tensor}`` in the order of the groups (on the CPU).
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        raise UsageError(f"feature maps need one preprocessed image [C, H, W], got "
                         f"{tuple(getattr(image, 'shape', ())) or type(image).__name__}: "
                         "take one from a data set, e.g. loaders.test.dataset[0][0].")
    picked, layers = resolve_groups(model, groups), layer_groups(model)
    if picked[-1] == len(layers) - 1:
        raise UsageError(f"The head ({layers[-1].name}) outputs class scores, not maps: pick groups before it.")
    dev = next(model.parameters()).device
    x, maps = image.unsqueeze(0).float().to(dev), {}
    with eval_mode(model):
        for i, g in enumerate(layers[:picked[-1] + 1]):
            for m in g.modules:
                x = m(x)
            if i in picked:
                if x.ndim != 4:
                    raise UsageError(f"Group {g.name} outputs {tuple(x.shape)}, not [1, C, h, w] maps: "
                                     "pick groups before the pooling and the head.")
                maps[g.name] = x[0].float().cpu()
    return maps


def _busiest(m: torch.Tensor, k: int) -> list[int]:
    """The ``k`` channels whose map varies most over space (for a ``[C, h, w]`` map)."""
    spread = m.flatten(1).std(1) if m[0].numel() > 1 else m.flatten(1).abs()[:, 0]
    return spread.argsort(descending=True)[:k].tolist()


def _show(a, m: torch.Tensor, title: str) -> None:
    lo, hi = float(m.min()), float(m.max())
    a.imshow(m.numpy(), cmap="magma", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
    a.set_title(title, fontsize=8)
    a.set_axis_off()


@styled
def feature_maps(models: nn.Module | Mapping[str, nn.Module], image: torch.Tensor, groups, channels: int = 4,
                 mean=None, std=None, ax=None):
    """A few channels of the maps of one image after some layer groups, for one or several models side by side.

    Per group and model it shows the ``channels`` channels whose map varies most over space on this
    image; each map is scaled to its own range (bright = high), and pixels are drawn as blocks, so a
    4 x 4 map looks like 4 x 4. The random model's channel 3 has nothing to do with the pretrained one's.

    Args:
        models: a model, or ``{name: model}`` (e.g. ``{"pretrained": a, "random init": b}``, same architecture).
        image: one preprocessed image ``[C, H, W]``.
        groups: the groups whose output to show (one rule: name, index, glob or list), e.g. early, middle, late.
        channels: channels per group and model.
        mean / std: the normalisation to undo when showing the input (default: stretch to its range).
        ax: a sequence of ``len(groups) * len(models) * channels`` axes (row by row), or None for a
            new figure that also shows the input.

    Returns:
        The ``Figure``; ``fig.maps`` holds ``{model name: {group: [C, h, w] maps}}``.
    """
    models = dict(models) if isinstance(models, Mapping) else {"model": models}
    if not models or channels < 1:
        raise UsageError("feature_maps needs at least one model and channels >= 1.")
    maps = {name: group_maps(m, image, groups) for name, m in models.items()}
    names = list(next(iter(maps.values())))
    per_row = len(models) * channels
    if ax is None:
        fig = plt.figure(figsize=(1.3 * per_row + 2.2, 1.55 * len(names) + 0.4), layout="constrained")
        left, right = fig.subfigures(1, 2, width_ratios=[2.0, 1.3 * per_row])
        a = left.subplots()
        x = image.float()
        if mean is not None:
            x = x * torch.as_tensor(std).view(-1, 1, 1) + torch.as_tensor(mean).view(-1, 1, 1)
        a.imshow(x[0].numpy(), cmap="gray")
        a.set_title(f"input {x.shape[-2]} x {x.shape[-1]}", fontsize=9)
        a.set_axis_off()
        rows = right.subfigures(len(names), 1)
        axs = []
        for row, g in zip(np.ravel(rows), names):
            c, h, w = maps[next(iter(maps))][g].shape
            row.suptitle(f"after {g}: maps of {h} x {w}", fontsize=10)
            axs += list(row.subplots(1, per_row, squeeze=False).flat)
    else:
        axs = list(np.ravel(ax))
        if len(axs) != len(names) * per_row:
            raise UsageError(f"feature_maps needs {len(names) * per_row} axes "
                             f"({len(names)} groups x {len(models)} models x {channels} channels), got {len(axs)}.")
        fig = axs[0].figure
    it = iter(axs)
    for g in names:
        for name, by_group in maps.items():
            m = by_group[g]
            for ch in _busiest(m, channels):
                title = f"{name}\nch {ch} of {len(m)}" if ax is None else f"{name}, {g}\nch {ch} of {len(m)}"
                _show(next(it), m[ch], title)
    fig.maps = maps
    return fig


@styled
def probe_by_depth(accuracy: Mapping[str, Mapping[str, float]], majority: float | None = None,
                   n_test: int | None = None, ax=None):
    """Linear-probe accuracy on the output of each layer group, one line per model.

    Args:
        accuracy: ``{model name: {group name: accuracy}}``, groups in order from input to output.
        majority: the accuracy of always answering the most frequent class (a dashed line).
        n_test: the number of test samples; error bars then show one binomial standard error,
            ``sqrt(p (1 - p) / n)``: the noise of a test set that size (not that of other random weights).
        ax: axes to draw into.

    Returns:
        The ``Figure``.
    """
    if not accuracy or not all(accuracy.values()):
        raise UsageError("probe_by_depth needs {model name: {group name: accuracy}} with at least one group.")
    values = [v for acc in accuracy.values() for v in acc.values()] + ([majority] if majority is not None else [])
    if not all(0 <= v <= 1 for v in values):
        raise UsageError(f"Accuracies are fractions in [0, 1]; got {min(values)} .. {max(values)}.")
    fig, (a,) = axes_row(ax, 1, (8, 4))
    order = list(dict.fromkeys(g for acc in accuracy.values() for g in acc))
    for colour, (name, acc) in zip(PALETTE, accuracy.items()):
        xs = [order.index(g) for g in acc]
        p = np.array(list(acc.values()))
        err = np.sqrt(p * (1 - p) / n_test) if n_test else None
        a.errorbar(xs, p, yerr=err, marker="o", capsize=3, color=colour, label=name)
    if majority is not None:
        a.axhline(majority, color="grey", ls="--", lw=1, label="majority class")
    low = math.floor((min(values) - 0.03) * 20) / 20
    a.set_ylim(max(0.0, low), 1.0)
    a.set_xticks(range(len(order)), order, rotation=30, ha="right")
    a.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    note = f"\n(bars: ±1 standard error of a test set of {n_test})" if n_test else ""
    a.set(xlabel="output of layer group (input → output)", ylabel="test accuracy",
          title=f"Linear probe on each layer group's pooled output{note}")
    a.legend(loc="upper center", ncol=len(accuracy) + (majority is not None))
    return fig
