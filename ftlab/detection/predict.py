"""Using a detector: boxes for photos of any size, and mean average precision on a labelled set.

:func:`predict_boxes` letterboxes each photo the way Darknet does (aspect ratio kept, grey
padding to 416 x 416), runs the detector and maps the boxes back to the photo's pixels.
:func:`evaluate` scores a detector with ``torchmetrics``' COCO mean average precision
(mAP@0.5 and mAP@0.5:0.95, the COCO definition: 101-point interpolated precision, averaged
over IoU thresholds 0.50, 0.55, ..., 0.95) and keeps the precision-recall curve at IoU 0.5.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..batches import resolve_device
from ..errors import UsageError
from ..freezing import eval_mode
from .data import as_photo

__all__ = ["METRIC", "letterbox", "predict_boxes", "detect", "evaluate", "box_precision_recall"]

METRIC = "map_50"
"""The primary metric of :func:`evaluate` (mAP at IoU 0.5)."""


def letterbox(image: torch.Tensor, size: int = 416, fill: float = 0.5) -> tuple[torch.Tensor, float, tuple[int, int]]:
    """Darknet's letterbox: scale to fit ``size`` x ``size`` keeping the aspect ratio, pad with grey.

    Returns:
        ``(canvas, scale, (left, top))``: a box ``b`` on the canvas is ``(b - offset) / scale`` on the photo.
    """
    _, h, w = image.shape
    scale = min(size / w, size / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
    canvas = torch.full((3, size, size), fill)
    left, top = (size - nw) // 2, (size - nh) // 2
    canvas[:, top: top + nh, left: left + nw] = resized
    return canvas, scale, (left, top)


@torch.no_grad()
def predict_boxes(model, images, conf: float = 0.25, size: int = 416, batch_size: int = 8,
                  device: str = "auto") -> list[dict[str, Any]]:
    """Detections for photos of any size: one dict per photo with ``boxes`` (xyxy, photo pixels),
    ``scores``, ``labels`` and ``names``.

    Args:
        model: a detector from :func:`ftlab.detection.pretrained`.
        images: one photo or a list (numpy H x W x 3, PIL, or [3, H, W] tensors; 8-bit, or float in [0, 1]:
            16-bit photos are refused rather than guessed at, see :func:`~ftlab.detection.as_photo`).
        conf: lowest score shown (Darknet's demo uses 0.25; mAP uses everything above ``model.conf``).
        size: the letterbox size (416, what the weights were trained at; any multiple of 32 runs).
        batch_size, device: how the detector runs.
    """
    if not callable(getattr(model, "decode", None)) or not hasattr(model, "num_classes"):
        raise UsageError(f"predict_boxes needs a detector (ft.detection.pretrained()), not a {type(model).__name__}; "
                         "for an image classifier use ft.predict or ft.predict_imagenet.")
    single = not isinstance(images, (list, tuple))
    if not single and not images:
        raise UsageError("predict_boxes got an empty list of photos.")
    photos = [as_photo(im, "the photo" if single else f"photo {i}") for i, im in enumerate([images] if single else images)]
    if isinstance(size, bool) or not isinstance(size, int) or size < 32 or size % 32:
        raise UsageError(f"size must be a multiple of 32 for YOLOv3-tiny (416: what it was trained at), got {size!r}.")
    if not 0 <= conf <= 1:
        raise UsageError(f"conf is a lowest score in [0, 1] (Darknet's demo uses 0.25), got {conf!r}.")
    dev = resolve_device(device)
    model.to(dev)
    boxed = [letterbox(p, size) for p in photos]
    with eval_mode(model):
        raw = [d for i in range(0, len(boxed), batch_size)
               for d in model(torch.stack([b[0] for b in boxed[i:i + batch_size]]).to(dev))]
    names = getattr(model, "class_names", None)
    out = []
    for det, (_, scale, (left, top)), photo in zip(raw, boxed, photos):
        keep = det["scores"] >= conf
        b = det["boxes"][keep].cpu().clone()
        b[:, [0, 2]] = ((b[:, [0, 2]] - left) / scale).clamp(0, photo.shape[2])
        b[:, [1, 3]] = ((b[:, [1, 3]] - top) / scale).clamp(0, photo.shape[1])
        labels = det["labels"][keep].cpu()
        out.append({"boxes": b, "scores": det["scores"][keep].cpu(), "labels": labels,
                    "names": [names[i] if names else str(i) for i in labels.tolist()]})
    return out


def _batches(data, batch_size: int) -> Iterable:
    if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not hasattr(data, "batch_sampler"):
        for i in range(0, len(data), batch_size):
            items = [data[j] for j in range(i, min(len(data), i + batch_size))]
            yield [x for x, _ in items], [t for _, t in items]
    else:
        yield from data


def _cached_batches(model, feats, batch_size: int, dev) -> Iterable:
    """``(raw head maps, targets, input size)`` per batch of cached maps (``ft.extract(detector, tiles, cut)``):
    the part of the detector above the cut runs, in each tile's first view (the tile as it is)."""
    from ..batches import to_device
    from ..caching.engine import trainable_below
    from ..groups import layer_groups
    from .caching import DetectorTop

    if getattr(feats, "kind", None) != "detection":
        raise UsageError(f"These cached activations are {getattr(feats, 'kind', None)!r}, not a detector's maps: "
                         "score a detector on tiles, or on ft.extract(detector, tiles, cut=...).")
    groups, below = layer_groups(model), trainable_below(model, feats.cut)
    if below:
        raise UsageError(f"Groups {', '.join(below)} lie below the maps' cut ({groups[feats.cut].name}) but are "
                         "trainable: if they were trained, these maps are not theirs. Score the detector on the tiles "
                         f"(ft.detection.evaluate(model, tiles)), or freeze them (ft.freeze_to(model, "
                         f"'{groups[feats.cut].name}')) if they are the frozen ones that made the maps.")
    top = DetectorTop(model, feats.cut)
    for i in range(0, len(feats), batch_size):
        ids = range(i, min(len(feats), i + batch_size))
        parts = [feats.example(j, 0) if feats.views > 1 else feats.example(j) for j in ids]
        state = tuple(torch.stack(p) for p in zip(*parts)) if isinstance(parts[0], tuple) else torch.stack(parts)
        raw = top.raw(to_device(state, dev))
        yield raw, [feats.target(j, 0) for j in ids], tuple(32 * s for s in raw["p5"].shape[-2:])


@torch.no_grad()
def _run(model, data, batch_size: int, device: str) -> tuple[list[dict], list[dict], float]:
    """Detections and targets per image, and the summed YOLO loss of the batches (weighted by images)."""
    from ..caching.engine import Features
    from .yolo import yolo_loss

    dev = resolve_device(device)
    model.to(dev)
    preds, targets, loss = [], [], 0.0

    def raw_batches():
        if isinstance(data, Features):
            yield from _cached_batches(model, data, batch_size, dev)
            return
        for images, tg in _batches(data, batch_size):
            x = torch.stack([torch.as_tensor(im).as_subclass(torch.Tensor) for im in images]).to(dev)
            yield model.raw(x), tg, tuple(x.shape[-2:])

    with eval_mode(model):
        for raw, tg, size in raw_batches():
            preds += [{k: v.cpu() for k, v in d.items()} for d in model.decode(raw, size)]
            tg = [{"boxes": torch.as_tensor(t["boxes"]).as_subclass(torch.Tensor).float().reshape(-1, 4),
                   "labels": torch.as_tensor(t["labels"]).long()} for t in tg]
            parts = yolo_loss(raw, [{k: v.to(dev) for k, v in t.items()} for t in tg], model.anchors,
                              model.num_classes, size, anchor_t=model.anchor_t)
            loss += float(sum(parts.values())) * len(tg)
            targets += [{k: v.cpu() for k, v in t.items()} for t in tg]
    return preds, targets, loss


def detect(model, data, batch_size: int = 8, device: str = "auto") -> tuple[list[dict], list[dict]]:
    """Run a detector over a labelled data set (or a loader of ``(images, targets)``).

    Returns:
        ``(predictions, targets)``: one dict per image each, on the CPU.
    """
    preds, targets, _ = _run(model, data, batch_size, device)
    return preds, targets


def evaluate(model=None, data=None, *, batch_size: int = 8, device: str = "auto",
             predictions: tuple[list[dict], list[dict]] | None = None) -> dict[str, Any]:
    """The YOLO loss and mean average precision of a detector on a labelled set (torchmetrics, COCO definition).

    Args:
        model, data: the detector and a data set / loader of ``(image, target)``;
        batch_size, device: how the detector runs.
        predictions: or the ``(predictions, targets)`` of :func:`detect`, to score them without rerunning
            (the loss is then nan).

    Returns:
        ``{"loss", "map_50", "n", ...}``: the loss per image, mAP@0.5 (the primary metric, see
        :data:`METRIC`) and the number of images, with the extras ``map`` (mAP@0.5:0.95), ``map_75``,
        ``mar_100``, ``n_boxes`` and ``pr`` (the precision-recall curve at IoU 0.5, 101 recall points).
    """
    from torchmetrics.detection import MeanAveragePrecision

    if predictions is None:
        if model is None or data is None:
            raise UsageError("evaluate needs a model and data, or predictions=(predictions, targets) from detect().")
        preds, targets, loss = _run(model, data, batch_size, device)
    else:
        (preds, targets), loss = predictions, math.nan
    if not preds:
        raise UsageError("evaluate got no images to score.")
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", extended_summary=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                # "no predictions" and similar notes of an untrained head
        metric.update([{k: p[k] for k in ("boxes", "scores", "labels")} for p in preds], targets)
        res = metric.compute()
    precision = res["precision"]                       # [iou thresholds, 101 recall points, classes, areas, max dets]
    curve = precision[0, :, :, 0, -1]
    curve = torch.where(curve < 0, torch.nan, curve).nanmean(-1)        # mean over classes, area "all", 100 dets
    return {"loss": loss / len(preds), "map_50": float(res["map_50"]), "n": len(preds), "map": float(res["map"]),
            "map_75": float(res["map_75"]), "mar_100": float(res["mar_100"]),
            "n_boxes": int(sum(len(t["boxes"]) for t in targets)),
            "pr": {"recall": np.linspace(0, 1, 101).tolist(), "precision": torch.nan_to_num(curve, nan=0.0).tolist()}}


def box_precision_recall(predictions: list[dict], targets: list[dict], iou: float = 0.4, conf: float = 0.1) -> dict[str, float]:
    """DeepForest's box precision and recall: one-to-one matching of predicted and true boxes by IoU.

    Per image, the boxes scoring at least ``conf`` are matched to the true boxes one to one so that
    the summed IoU is largest (Hungarian matching); a pair is a hit when its IoU exceeds ``iou``
    (DeepForest uses 0.4). Recall = hits / true boxes, precision = hits / predicted boxes.
    A fixed-threshold summary next to mAP, for comparing with DeepForest's published figures.
    """
    from scipy.optimize import linear_sum_assignment
    from torchvision.ops import box_iou

    hits = n_pred = n_true = 0
    for p, t in zip(predictions, targets):
        pb = torch.as_tensor(p["boxes"]).reshape(-1, 4)[torch.as_tensor(p["scores"]) >= conf].float()
        tb = torch.as_tensor(t["boxes"]).reshape(-1, 4).float()
        n_pred, n_true = n_pred + len(pb), n_true + len(tb)
        if len(pb) and len(tb):
            m = box_iou(tb, pb).numpy()
            rows, cols = linear_sum_assignment(m, maximize=True)
            hits += int((m[rows, cols] > iou).sum())
    return {"precision": hits / n_pred if n_pred else 0.0, "recall": hits / n_true if n_true else 0.0,
            "hits": hits, "predicted": n_pred, "true": n_true, "iou": iou, "conf": conf}
