"""The YOLO output layer: decoding the two output maps into boxes, and the YOLOv3 loss.

Each output map has, per cell and per anchor (a box shape in pixels), 4 box numbers,
an objectness and one score per class. Decoding follows Darknet; the loss is YOLOv3's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from ..errors import UsageError

__all__ = ["ANCHORS", "MASKS", "STRIDES", "grid", "decode", "assign", "yolo_loss"]

ANCHORS = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))   # pixels at 416
MASKS = {"p5": (3, 4, 5), "p4": (0, 1, 2)}                                  # which anchors each output uses
STRIDES = {"p5": 32, "p4": 16}


def grid(out: torch.Tensor, num_classes: int) -> torch.Tensor:
    b, _, h, w = out.shape
    return out.reshape(b, 3, 5 + num_classes, h, w).permute(0, 1, 3, 4, 2)          # [B, A, H, W, 5 + C]


def decode(out, anchors, stride, num_classes):
    """Darknet's decoding: centre = (sigmoid(t) + cell) * stride, size = anchor * exp(t)."""
    p = grid(out, num_classes).float()
    b, a, h, w, _ = p.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=p.device), torch.arange(w, device=p.device), indexing="ij")
    cx = (p[..., 0].sigmoid() + xs) * stride
    cy = (p[..., 1].sigmoid() + ys) * stride
    bw = p[..., 2].clamp(max=10).exp() * anchors[:, 0].view(1, a, 1, 1)
    bh = p[..., 3].clamp(max=10).exp() * anchors[:, 1].view(1, a, 1, 1)
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1).reshape(b, -1, 4)
    return boxes, p[..., 4].sigmoid().reshape(b, -1), p[..., 5:].sigmoid().reshape(b, -1, num_classes)


def _anchor_match(wh: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """For each box size, the anchor whose shape overlaps it most (IoU of boxes with a common centre)."""
    inter = torch.min(wh[:, None], anchors[None]).prod(-1)
    return (inter / (wh.prod(-1)[:, None] + anchors.prod(-1)[None] - inter)).argmax(1)


def assign(wh: torch.Tensor, anchors: torch.Tensor, anchor_t: float | None = None) -> torch.Tensor:
    """Which anchors are responsible for each true box: ``[boxes, anchors]`` booleans.

    Always the anchor whose shape fits best (Darknet's YOLOv3); with ``anchor_t``, also every
    anchor whose width and height are within a factor ``anchor_t`` of the box's (YOLOv5's rule):
    more predictions learn each box.
    """
    chosen = F.one_hot(_anchor_match(wh, anchors), len(anchors)).bool()
    if anchor_t is not None:
        r = wh[:, None] / anchors[None]
        chosen |= torch.max(r, 1 / r).max(-1).values < anchor_t
    return chosen


def yolo_loss(out: dict[str, torch.Tensor], targets: list[dict], anchors: torch.Tensor, num_classes: int,
              size, ignore: float = 0.5, anchor_t: float | None = None) -> dict[str, torch.Tensor]:
    """The YOLOv3 loss, summed over boxes and cells and averaged over images.

    Each true box is the job of the cell that holds its centre, with the anchors :func:`assign`
    picks (by default the one whose shape fits best). Each of those predictions learns the box (centre offsets with binary
    cross-entropy, log sizes with squared error, weighted ``2 - w h / image area`` so small boxes
    count more), objectness 1 and the class. Every other prediction learns objectness 0, except
    those whose box already overlaps a true box by more than ``ignore`` IoU (Darknet's rule).
    """
    dev = anchors.device
    n_img = next(iter(out.values())).shape[0]
    if len(targets) != n_img:
        raise UsageError(f"{n_img} images but {len(targets)} target dicts: give one target dict per image.")
    gt = [(torch.as_tensor(t["boxes"], dtype=torch.float32, device=dev).reshape(-1, 4),
           torch.as_tensor(t["labels"], dtype=torch.long, device=dev).reshape(-1)) for t in targets]
    for _, labels in gt:
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise UsageError(f"target labels must be 0 ... {num_classes - 1} for this {num_classes}-class detector, "
                             f"got {labels.unique().tolist()}.")
    area = float(size[0] * size[1])
    zero = torch.zeros((), device=dev)
    loss = {"box": zero, "obj": zero, "cls": zero}
    for key in ("p5", "p4"):
        mask, stride = list(MASKS[key]), STRIDES[key]
        p = grid(out[key], num_classes).float()
        _, a, gh, gw, _ = p.shape
        boxes_pred = decode(out[key].detach(), anchors[mask], stride, num_classes)[0]
        obj_target = torch.zeros(p.shape[:4], device=dev)
        noobj = torch.ones(p.shape[:4], dtype=torch.bool, device=dev)
        for i, (boxes, labels) in enumerate(gt):
            if not len(boxes):
                continue
            iou = box_iou(boxes_pred[i], boxes).max(1).values.reshape(a, gh, gw)
            noobj[i] &= iou <= ignore
            wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0)
            centre = (boxes[:, :2] + boxes[:, 2:]) / 2
            j, k = assign(wh, anchors, anchor_t)[:, mask].nonzero(as_tuple=True)     # (true box, anchor here)
            if not len(j):
                continue
            g = centre[j] / stride
            gx, gy = g[:, 0].long().clamp(0, gw - 1), g[:, 1].long().clamp(0, gh - 1)
            cell = p[i, k, gy, gx]
            obj_target[i, k, gy, gx] = 1.0
            noobj[i, k, gy, gx] = False
            weight = 2.0 - wh[j].prod(-1) / area
            t_xy = (g - torch.stack([gx, gy], 1)).clamp(0, 1)
            t_wh = torch.log(wh[j] / anchors[mask][k])
            bce_xy = F.binary_cross_entropy_with_logits(cell[:, :2], t_xy, reduction="none").sum(1)
            loss["box"] = loss["box"] + (weight * (bce_xy + (cell[:, 2:4] - t_wh).pow(2).sum(1))).sum()
            onehot = F.one_hot(labels[j], num_classes).float()
            loss["cls"] = loss["cls"] + F.binary_cross_entropy_with_logits(cell[:, 5:], onehot, reduction="sum")
        counted = noobj | (obj_target > 0)
        loss["obj"] = loss["obj"] + F.binary_cross_entropy_with_logits(p[..., 4][counted], obj_target[counted],
                                                                         reduction="sum")
    return {k: v / n_img for k, v in loss.items()}


