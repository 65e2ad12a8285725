"""Batches and devices: seeding, where to compute, moving a batch there, and how a batch becomes a loss.

**Batches.** One hook, :func:`batch_step`, turns a batch into a loss (and logits and
targets where there are some) for :func:`ftlab.fit`, :func:`ftlab.evaluate` and
:func:`ftlab.predict`. It understands three forms:

* ``(inputs, targets)`` tuples: ``loss = criterion(model(inputs), targets)`` (cross-entropy by default);
* dicts in the Hugging Face convention: ``out = model(**batch)``; the loss is ``out.loss``
  (or ``criterion(out.logits, batch["labels"])`` when a criterion is given);
* detection batches ``(list_of_images, list_of_target_dicts)`` as torchvision's detection
  models take them: in training mode the model returns a dict of losses, which are summed.
"""
from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from .errors import UsageError

__all__ = ["seed_everything", "resolve_device", "prepare", "to_device", "StepOutput", "batch_step"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA). On CPU the same seed gives the same History."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else Apple MPS, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"``
    only when this machine has it (a :class:`~ftlab.errors.UsageError` that says what it has, otherwise)."""
    if str(device) != "auto":
        return _available(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _available(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise UsageError(f"DEVICE={str(device)!r} is not a device: use 'auto' (the best this machine has), 'cpu', "
                         "'cuda', 'cuda:<index>' or 'mps'.") from err
    has = "CUDA GPU(s): " + str(torch.cuda.device_count()) if torch.cuda.is_available() else "no CUDA GPU"
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise UsageError(f"DEVICE={str(device)!r}, but this machine has {has} (or this torch build has no CUDA): "
                         "use DEVICE='auto' to take what is there, or 'cpu'.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError(f"DEVICE={str(device)!r}, but Apple's MPS is not available here: use DEVICE='auto' or 'cpu'.")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"DEVICE={str(device)!r}: ftlab runs on 'cpu', 'cuda' or 'mps' (or 'auto').")
    return dev


def prepare(model: nn.Module, device: str | torch.device = "auto") -> torch.device:
    """Move a model to the resolved device (4-D weights channels-last: faster convolutions on CPU)."""
    dev = resolve_device(device)
    model.to(dev, memory_format=torch.channels_last)
    return dev


def to_device(batch, dev: torch.device):
    """A batch (tensor, tuple, list or dict of them, nested) moved to ``dev``; 4-D tensors go channels-last."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(dev, non_blocking=True)
        return batch.contiguous(memory_format=torch.channels_last) if batch.ndim == 4 else batch
    if isinstance(batch, Mapping):
        return {k: to_device(v, dev) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, dev) for v in batch)
    return batch


class StepOutput(NamedTuple):
    """What :func:`batch_step` gives: the loss (None when the model gives none), the batch size,
    and logits and targets for accuracy and predictions (None for detection)."""

    loss: torch.Tensor | None
    n: int
    logits: torch.Tensor | None = None
    targets: torch.Tensor | None = None


_cross_entropy = nn.CrossEntropyLoss()


def batch_step(model: nn.Module, batch, criterion: Callable | None, device: torch.device) -> StepOutput:
    """Turn one batch into a loss: ``(x, y)`` tuples, Hugging Face dicts, or detection ``(images, targets)``."""
    batch = to_device(batch, device)
    if isinstance(batch, Mapping):                                       # Hugging Face: model(**batch)
        out = model(**batch)
        labels = batch.get("labels")
        loss = criterion(out.logits, labels) if criterion is not None else getattr(out, "loss", None)
        return StepOutput(loss, len(out.logits), out.logits, labels)
    inputs, targets = batch
    if isinstance(inputs, (list, tuple)):                                # detection: lists of images and targets
        out = model(list(inputs), list(targets))
        loss = sum(out.values()) if isinstance(out, Mapping) else None   # eval mode gives detections, not losses
        return StepOutput(loss, len(inputs))
    logits = model(inputs)
    return StepOutput((criterion or _cross_entropy)(logits, targets), len(targets), logits, targets)

