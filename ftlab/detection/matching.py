"""Average precision from per-image matches, so that a set of images can be resampled cheaply.

COCO matches predicted to true boxes **within each image** (a prediction, in order of score, takes
the best-overlapping true box still free, when the IoU reaches the threshold), then pools the
matched predictions of all images into one precision-recall curve. So the matches of an image do
not depend on the other images: :func:`image_matches` computes them once per image, and
:func:`average_precision` turns any multiset of images' matches (e.g. a bootstrap resample of the
test tiles, :func:`ftlab.lab.paired_metric`) into the AP of that set, the COCO way (101-point
interpolated precision, at most 100 detections per image). On the full set it equals the
``map_50`` of :func:`ftlab.detection.evaluate` (torchmetrics), which a test checks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

__all__ = ["ImageMatches", "image_matches", "average_precision"]

RECALLS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class ImageMatches:
    """One image's predictions in order of score: their scores, which are hits, and the image's true boxes."""

    scores: np.ndarray
    hits: np.ndarray
    n_true: int


def image_matches(predictions: list[dict], targets: list[dict], iou: float = 0.5, max_dets: int = 100) -> list[ImageMatches]:
    """COCO's greedy matching of predicted to true boxes, per image (one class: every box is the object).

    Args:
        predictions: one dict per image with ``boxes`` (xyxy) and ``scores`` (:func:`ftlab.detection.detect`).
        targets: one dict per image with ``boxes``.
        iou: the IoU a prediction needs with a free true box to be a hit.
        max_dets: predictions kept per image, the highest-scoring first (COCO: 100).
    """
    out = []
    for p, t in zip(predictions, targets, strict=True):
        scores = torch.as_tensor(p["scores"], dtype=torch.float32)
        order = np.argsort(-scores.numpy(), kind="mergesort")[:max_dets]
        boxes, truth = torch.as_tensor(p["boxes"], dtype=torch.float32)[order], torch.as_tensor(t["boxes"], dtype=torch.float32)
        hits = np.zeros(len(order), dtype=bool)
        if len(order) and len(truth):
            overlap, free = box_iou(boxes, truth).numpy(), np.ones(len(truth), dtype=bool)
            for i in range(len(order)):
                best, j = min(iou, 1 - 1e-10), -1
                for g in np.flatnonzero(free):
                    if overlap[i, g] >= best:
                        best, j = overlap[i, g], g
                if j >= 0:
                    hits[i], free[j] = True, False
        out.append(ImageMatches(scores.numpy()[order], hits, len(truth)))
    return out


def average_precision(matches: list[ImageMatches]) -> float:
    """The AP of a set of images (repeats allowed) from their matches: COCO's 101-point interpolation.

    Returns ``nan`` when the images hold no true box (the AP is undefined).
    """
    n_true = sum(m.n_true for m in matches)
    if n_true == 0:
        return float("nan")
    scores = np.concatenate([m.scores for m in matches]) if matches else np.zeros(0)
    if scores.size == 0:
        return 0.0
    hits = np.concatenate([m.hits for m in matches])[np.argsort(-scores, kind="mergesort")]
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    recall, precision = tp / n_true, tp / np.maximum(tp + fp, np.finfo(float).eps)
    precision = np.maximum.accumulate(precision[::-1])[::-1]            # the envelope: best precision at this recall or more
    at = np.searchsorted(recall, RECALLS, side="left")
    return float(np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0).mean())
