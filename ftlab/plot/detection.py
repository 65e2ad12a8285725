"""Figures of detectors: boxes on images (true and predicted, coloured by score), precision-recall curves,
what an IoU of 0.8, 0.5 or 0.2 looks like.

Introduced in lesson 07.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import patches

from ..errors import UsageError
from .style import PALETTE, axes_row, styled, tiles

__all__ = ["boxes", "pr_curves", "iou_examples"]


def _rgb(image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        a = image.detach().cpu().float()
        a = a.permute(1, 2, 0).numpy() if a.ndim == 3 and a.shape[0] == 3 else a.numpy()
        return a.clip(0, 1) if a.max() <= 1.0 + 1e-6 else (a / 255.0).clip(0, 1)
    a = np.asarray(image)
    return a / 255.0 if a.dtype == np.uint8 else a


def _draw(a, image, truth, pred, conf: float, cmap, title: str) -> None:
    a.imshow(_rgb(image))
    a.set_title(title, fontsize=9)
    if truth is not None:
        for b in np.asarray(torch.as_tensor(truth["boxes"]).reshape(-1, 4)):
            a.add_patch(patches.Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, lw=1.2, ec="white", ls="--"))
    if pred is not None:
        scores = torch.as_tensor(pred["scores"]).numpy()
        names = pred.get("names")
        for i, (b, s) in enumerate(zip(np.asarray(torch.as_tensor(pred["boxes"]).reshape(-1, 4)), scores)):
            if s < conf:
                continue
            a.add_patch(patches.Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, lw=1.5, ec=cmap(float(s))))
            if names is not None:
                a.text(b[0], b[1] - 2, f"{names[i]} {s:.2f}", fontsize=7, color="black",
                       bbox=dict(fc=cmap(float(s)), ec="none", pad=0.5, alpha=0.85))


@styled
def boxes(images: Sequence, predictions: Sequence[Mapping] | None = None, targets: Sequence[Mapping] | None = None,
          conf: float = 0.25, titles: Sequence[str] | None = None, cols: int | None = None, side: float = 3.2, ax=None):
    """Images with true boxes (white, dashed) and predicted boxes coloured by score (with names when given).

    Args:
        images: images ([3, H, W] tensors in [0, 1], or H x W x 3 arrays).
        predictions: one dict per image with ``boxes`` and ``scores`` (``names`` optional), e.g. from
            ``ft.detection.predict_boxes`` or ``ft.detection.detect``.
        targets: one dict per image with the true ``boxes``.
        conf: predictions below this score are not drawn.
        titles: one title per image (default: counts of true and predicted boxes).
    """
    n = len(images)
    for what, seq in (("predictions", predictions), ("targets", targets), ("titles", titles)):
        if seq is not None and len(seq) != n:
            raise UsageError(f"{n} images but {len(seq)} {what}: give one per image.")
    fig, axs = tiles(n, ax=ax, cols=cols, side=side)
    cmap = plt.get_cmap("plasma")
    for i, a in enumerate(axs):
        pred = predictions[i] if predictions is not None else None
        truth = targets[i] if targets is not None else None
        if titles is not None:
            title = titles[i]
        else:
            parts = []
            if truth is not None:
                parts.append(f"{len(truth['boxes'])} true boxes")
            if pred is not None:
                parts.append(f"{int((torch.as_tensor(pred['scores']) >= conf).sum())} predicted (score >= {conf:g})")
            title = ", ".join(parts)
        _draw(a, images[i], truth, pred, conf, cmap, title)
    if predictions is not None:
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
        fig.colorbar(sm, ax=axs, shrink=0.6, label="score of a predicted box")
    return fig


@styled
def pr_curves(results: Mapping[str, Mapping] | Sequence[Mapping], labels: Sequence[str] | None = None, ax=None):
    """Precision against recall at IoU 0.5, one line per result of ``ft.detection.evaluate``; AP@0.5 in the legend."""
    if isinstance(results, Mapping) and "pr" in results:
        results = [results]
    if isinstance(results, Mapping):
        labels, results = list(results), list(results.values())
    labels = list(labels) if labels is not None else [f"model {i + 1}" for i in range(len(results))]
    fig, (axis,) = axes_row(ax, 1, (5.2, 3.8))
    for i, (label, r) in enumerate(zip(labels, results)):
        axis.plot(r["pr"]["recall"], r["pr"]["precision"], color=PALETTE[i % len(PALETTE)], lw=2,
                  label=f"{label} (AP@0.5 {r['map_50']:.2f})")
    axis.set(xlabel="recall (share of true boxes found)", ylabel="precision (share of boxes that are right)",
             xlim=(0, 1), ylim=(0, 1.02), title="Precision-recall at IoU 0.5")
    axis.legend(loc="upper right")
    return fig


@styled
def iou_examples(shifts: Sequence[float] = (0.1, 1 / 3, 2 / 3), ax=None):
    """A true box (dashed) and a predicted box of the same size shifted sideways by a share of its width,
    one panel per shift, each titled with its IoU (intersection over union) and whether it counts at 0.5."""
    from torchvision.ops import box_iou

    fig, axs = axes_row(ax, len(shifts), (3.0 * len(shifts), 2.9))
    truth = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    for a, shift in zip(axs, shifts):
        pred = truth + torch.tensor([shift, 0.15 * shift, shift, 0.15 * shift])
        iou = float(box_iou(pred, truth))
        (x0, y0, x1, y1), (p0, q0, p1, q1) = truth[0].tolist(), pred[0].tolist()
        a.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.5, ec="black", ls="--", label="true"))
        a.add_patch(patches.Rectangle((p0, q0), p1 - p0, q1 - q0, fill=True, alpha=0.25, lw=1.5, ec=PALETTE[0],
                                      fc=PALETTE[0], label="predicted"))
        ix0, ix1, iy0, iy1 = max(x0, p0), min(x1, p1), max(y0, q0), min(y1, q1)
        a.add_patch(patches.Rectangle((ix0, iy0), max(0, ix1 - ix0), max(0, iy1 - iy0), hatch="//", fill=False, lw=0))
        a.set(xlim=(-0.2, 1.9), ylim=(-0.2, 1.4), aspect="equal", xticks=[], yticks=[],
              title=f"IoU {iou:.2f}: {'a hit' if iou >= 0.5 else 'a miss'} at 0.5")
    axs[0].legend(loc="upper right", fontsize=8)
    return fig
