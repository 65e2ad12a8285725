"""Choosing a pretrained model by measurement (lesson 08): the candidates' facts, their speed, training-set sizes.

A fine-tuning guide answers "which pretrained model?" with advice: how similar the source task
and data are to yours, and how big the model is against your data. Lesson 08 measures what can
be measured on one CPU: accuracy against model size, input resolution and training-set size,
and images per second. The helpers here are the small parts the lesson needs besides the
core's caching (:func:`ftlab.extract`, :func:`ftlab.features_at`) and probes.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Sequence

import torch
from torch import nn

from ..batches import prepare
from ..errors import UsageError
from ..freezing import eval_mode
from .models import OFFLINE_MODELS, preprocessing, pretrained
from .weights import lite_source_file

__all__ = ["PUBLISHED_IMAGENET_TOP1", "gflops", "images_per_second", "model_facts"]

# ImageNet-1k top-1 accuracy as published with the TensorFlow EfficientNet-Lite release
# (tensorflow/tpu, models/official/efficientnet/lite/README.md): quoted, not measured here.
PUBLISHED_IMAGENET_TOP1 = {"efficientnet_lite0": 0.751, "efficientnet_lite1": 0.767, "efficientnet_lite2": 0.776}


@torch.no_grad()
def images_per_second(model: nn.Module, image_size: int, batch_size: int = 16, repeats: int = 5,
                      device: str | torch.device = "auto") -> float:
    """Prediction speed of ``model`` at ``image_size``: the median over ``repeats`` timed batches (after one warm-up).

    Random inputs: the speed of a CNN does not depend on the pixel values. This is the whole
    model, in eval mode, one thread setting as the process has; compare models measured
    side by side in one run, on a quiet machine.
    """
    if repeats < 1 or batch_size < 1:
        raise UsageError(f"repeats and batch_size must be at least 1, got {repeats} and {batch_size}.")
    dev = prepare(model, device)
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev)
    times = []
    with eval_mode(model):
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


@torch.no_grad()
def gflops(model: nn.Module, image_size: int) -> float:
    """Billions of floating-point operations for one image at ``image_size`` (a multiply-add counts 2).

    Counted by PyTorch's ``FlopCounterMode`` on one forward pass: exact and machine-independent,
    unlike a speed, so it is what a lesson may compare in a checked claim.
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    with eval_mode(model), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, image_size, image_size, device=device))
    return counter.get_total_flops() / 1e9


def model_facts(names: Sequence[str], image_size: int | None = None, repeats: int = 5,
                device: str | torch.device = "auto") -> list[dict[str, Any]]:
    """One row per model: parameters, native input size, published ImageNet top-1, weights file size, images/s.

    Args:
        names: ftlab model names (``"efficientnet_lite0"`` ...).
        image_size: also measure images/s at this size (the lesson's), besides the native size.
        repeats: timed batches per measurement (the median is reported).

    Returns:
        ``[{"model", "params", "native_size", "imagenet_top1" (published, or None), "weights_mb",
        "gflops_native", "images_per_s_native", "gflops" and "images_per_s" (at ``image_size``)}]``.
    """
    rows = []
    for name in names:
        model = pretrained(name)
        native = preprocessing(model)["input_size"][-1]
        arch = OFFLINE_MODELS.get(name)
        row = {"model": name, "params": sum(p.numel() for p in model.parameters()), "native_size": native,
               "imagenet_top1": PUBLISHED_IMAGENET_TOP1.get(name),
               "weights_mb": lite_source_file(arch).stat().st_size / 2**20 if arch else None,
               "gflops_native": gflops(model, native),
               "images_per_s_native": images_per_second(model, native, repeats=repeats, device=device)}
        if image_size is not None:
            row["gflops"] = gflops(model, image_size)
            row["images_per_s"] = images_per_second(model, image_size, repeats=repeats, device=device)
        rows.append(row)
    return rows
