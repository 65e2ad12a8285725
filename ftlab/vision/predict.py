"""Using an image classifier: predictions for raw images, the ImageNet top-k of a photo, and the score on a split.

The images' forms of the verbs every modality has: :func:`predict_images` (raw images in, class
probabilities and names out, with the model's own preprocessing), :func:`predict_imagenet` (the
ImageNet classes a pretrained model sees in a photo, lesson 01) and :func:`evaluate` (loss,
accuracy and count on a loader, a data set or cached features).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..batches import prepare
from ..errors import UsageError
from ..freezing import eval_mode
from ..train import evaluate as evaluate_loader
from ..train import named_predictions
from .models import imagenet_classes, preprocessing
from .transforms import preprocess

__all__ = ["METRIC", "predict_images", "predict_imagenet", "evaluate"]

METRIC = "acc"
"""The primary metric of :func:`evaluate` (accuracy)."""


def _to_chw_uint8(img) -> torch.Tensor:
    if isinstance(img, torch.Tensor):
        t = img
    else:
        t = torch.from_numpy(np.asarray(img).copy())
        t = t.permute(2, 0, 1) if t.ndim == 3 else t.unsqueeze(0)
    if t.ndim != 3 or t.dtype != torch.uint8:
        raise UsageError(f"Expected uint8 images (HxWxC arrays, PIL images or CxHxW tensors), got {tuple(t.shape)} {t.dtype}.")
    return t[:3] if t.shape[0] >= 3 else t.expand(3, -1, -1)


@torch.no_grad()
def predict_imagenet(model: nn.Module, images: Sequence, k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k ImageNet classes with probabilities for photos (lesson 01).

    Images are resized and centre-cropped the way the model was evaluated on ImageNet
    (its own size, crop fraction, interpolation, mean and std).

    Args:
        model: a model with the 1,000-way ImageNet classifier (``num_classes=None``).
        images: uint8 HxWxC arrays, PIL images or CxHxW tensors.
        k: how many classes per image.

    Returns:
        Per image, a list of ``(class name, probability)``, most probable first.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    cfg = preprocessing(model)
    size = cfg["input_size"][-1]
    interp = InterpolationMode(cfg["interpolation"])
    batch = []
    for img in images:
        t = TF.resize(_to_chw_uint8(img), int(size / cfg["crop_pct"]), interpolation=interp, antialias=True)
        t = TF.center_crop(t, [size, size]).float() / 255
        batch.append(TF.normalize(t, list(cfg["mean"]), list(cfg["std"])))
    with eval_mode(model):
        probs = model(torch.stack(batch)).softmax(-1)
    if probs.shape[-1] != 1000:
        raise UsageError("predict_imagenet needs the 1,000-way ImageNet head: build the model with num_classes=None.")
    names = imagenet_classes()
    top = probs.topk(k, dim=-1)
    return [[(names[i], float(p)) for p, i in zip(ps, ix)] for ps, ix in zip(top.values, top.indices.tolist())]

@torch.no_grad()
def predict_images(model: nn.Module, images: Sequence, classes: Sequence[str] | None = None, image_size: int | None = None,
                   batch_size: int = 32, device: str | torch.device = "auto") -> dict:
    """Predictions for raw images: class probabilities, predicted labels and their names.

    Each image gets the preprocessing of ``ft.vision.loaders`` (resize to a square, 3 channels,
    the model's mean and std), so a model fine-tuned on loaders sees what it trained on.

    Args:
        model: an image classifier.
        images: uint8 HxWxC arrays, PIL images or CxHxW uint8 tensors (one image: wrap it in a list).
        classes: class names, index = label (default: ImageNet's names for a 1,000-way head, else
            ``"0"``, ``"1"``, ...).
        image_size: the side the model was trained at (``loaders(image_size=...)``); default its own input size.
        batch_size, device: how the model runs.

    Returns:
        ``{"probs": [N, C] tensor, "labels": [N] tensor, "names": list of str}``.
    """
    if not isinstance(images, (list, tuple)) or not images:
        raise UsageError("predict_images takes a non-empty list of images (one image: wrap it in a list).")
    transform = preprocess(preprocessing(model), image_size)
    dev = prepare(model, device)
    probs = []
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            batch = torch.stack([transform(_to_chw_uint8(im)) for im in images[i:i + batch_size]]).to(dev)
            probs.append(model(batch).float().softmax(-1).cpu())
    probs = torch.cat(probs)
    return named_predictions(probs, imagenet_classes() if classes is None and probs.shape[1] == 1000 else classes)


def evaluate(model: nn.Module, data, batch_size: int = 64, device: str | torch.device = "auto") -> dict[str, float]:
    """Loss, accuracy (the primary metric, :data:`METRIC`) and count of ``model`` on a split.

    Args:
        model: an image classifier.
        data: a loader, a data set of ``(image, label)`` (``loaders.test.dataset``) or cached features.
        batch_size, device: how the model runs (a loader keeps its own batch size).

    Returns:
        ``{"loss", "acc", "n"}``.
    """
    if isinstance(data, Dataset):
        data = DataLoader(data, batch_size=batch_size)
    return evaluate_loader(model, data, device=device)
