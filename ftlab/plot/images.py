"""Figures of images: batches, augmentation draws, top losses and Grad-CAM heat maps.

Images are shown the way the model does *not* see them: de-normalised with the model's own
mean and std, read from the dataset's Normalize op (or passed as ``mean``/``std``).

Grad-CAM (Selvaraju et al. 2017) weights a convolutional layer's activation maps by the mean
gradient of a class score and keeps the positive part: where the evidence for that class is.
It is computed with hooks on the target layer only, so it works on a fully frozen model and
leaves every parameter's ``requires_grad`` and ``.grad`` alone.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from ..freezing import eval_mode
from ..groups import architecture
from ..train import predict
from ..vision.models import preprocessing
from ..vision.transforms import augmentation
from .style import WRONG, styled, tiles

__all__ = ["show_batch", "augmentations", "top_losses", "gradcam_maps", "gradcam"]


def _norm_stats(transform) -> tuple[Any, Any]:
    """The ``mean``/``std`` of the Normalize op in a (Compose) transform, else ``(None, None)``."""
    for t in getattr(transform, "transforms", [transform]):
        if hasattr(t, "mean") and hasattr(t, "std"):
            return t.mean, t.std
    return None, None


def _display(x: torch.Tensor, mean=None, std=None) -> np.ndarray:
    """A ``[C, H, W]`` image (uint8, or float normalised with mean/std) as an ``[H, W, C]`` array in [0, 1]."""
    uint8, x = x.dtype == torch.uint8, x.detach().float().cpu()
    if uint8:
        x = x / 255
    elif mean is not None:
        x = x * torch.as_tensor(std).view(-1, 1, 1) + torch.as_tensor(mean).view(-1, 1, 1)
    elif x.min() < 0 or x.max() > 1:        # normalised with unknown statistics: stretch to [0, 1]
        x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-8)
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def _imshow(a, img: np.ndarray, title: str = "", color: str = "black") -> None:
    a.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
    a.set_title(title, fontsize=9, color=color)


def _dataset(data):
    ds = getattr(data, "dataset", data)
    if not hasattr(ds, "__getitem__") or not len(ds):
        raise UsageError("Pass a DataLoader or a non-empty dataset (ftlab.ImageSet).")
    return ds


@styled
def show_batch(data, n: int = 16, preds=None, mean=None, std=None, ax=None):
    """The first ``n`` images of a dataset or loader, de-normalised, titled with their class.

    Args:
        data: a DataLoader or a dataset (``ftlab.ImageSet``); the images pass its transform.
        n: how many images.
        preds: predicted class indices for these images (or :func:`ftlab.predict`'s result);
            titles then say ``true / pred`` and wrong ones are red.
        mean / std: the normalisation to undo (default: the transform's Normalize op).
        ax: one axes (split into a grid) or a sequence of axes.

    Returns:
        The ``Figure``.
    """
    ds = _dataset(data)
    if mean is None:
        mean, std = _norm_stats(getattr(ds, "transform", None))
    classes = getattr(ds, "classes", None)
    name = (lambda i: classes[i]) if classes else str
    preds = getattr(preds, "preds", preds)
    n = min(n, len(ds))
    fig, axs = tiles(n, ax)
    for i, a in enumerate(axs):
        x, y = ds[i]
        p = None if preds is None else int(preds[i])
        title = name(int(y)) if p is None else f"{name(int(y))}\npred: {name(p)}"
        _imshow(a, _display(x, mean, std), title, WRONG if p is not None and p != int(y) else "black")
    return fig


@styled
def augmentations(dataset, index: int = 0, preset: str = "light", n: int = 8, size: int | None = None,
                  seed: int = 0, ax=None):
    """One image under ``n`` random draws of an augmentation preset; the first panel is the original.

    Args:
        dataset: an ``ftlab.ImageSet`` (or a loader of one); its raw uint8 images are used.
        index: which image.
        preset: ``"none"``, ``"light"`` or ``"strong"`` (see :mod:`ftlab.vision.transforms`).
        n: number of augmented draws.
        size: side to resize to first (default: the image's own side).
        seed: seed of the draws (the global RNG is left as it was).
        ax: one axes (split into a grid) or a sequence of ``n + 1`` axes.

    Returns:
        The ``Figure``.
    """
    from torchvision.transforms.v2 import functional as TF

    ds = _dataset(dataset)
    img = ds.images[index]
    size = size or img.shape[-1]
    img = TF.resize(img, [size, size], antialias=True) if tuple(img.shape[-2:]) != (size, size) else img
    aug = augmentation(preset, size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        draws = [aug(img) if aug is not None else img for _ in range(n)]
    fig, axs = tiles(n + 1, ax)
    label = ds.classes[int(ds.targets[index])] if hasattr(ds, "classes") else ""
    _imshow(axs[0], _display(img), f"original\n{label}".strip())
    for i, (a, x) in enumerate(zip(axs[1:], draws)):
        _imshow(a, _display(x), f"{preset} #{i + 1}")
    return fig


@styled
def top_losses(model: nn.Module, loader, k: int = 9, ax=None):
    """The ``k`` samples with the highest cross-entropy: true class, prediction and its probability.

    Args:
        model: the trained model.
        loader: an unshuffled DataLoader (val or test) over an ``ftlab.ImageSet``.
        k: how many samples.
        ax: one axes (split into a grid) or a sequence of axes.

    Returns:
        The ``Figure``.
    """
    if isinstance(getattr(loader, "sampler", None), torch.utils.data.RandomSampler):
        raise UsageError("top_losses needs an unshuffled loader (e.g. loaders.val or loaders.test).")
    ds = _dataset(loader)
    p = predict(model, loader)
    losses = F.cross_entropy(p.logits, p.targets, reduction="none")
    worst = losses.argsort(descending=True)[:k].tolist()
    mean, std = _norm_stats(getattr(ds, "transform", None))
    classes = getattr(ds, "classes", None) or [str(i) for i in range(p.probs.shape[1])]
    fig, axs = tiles(len(worst), ax, side=2.1)
    for a, i in zip(axs, worst):
        t, q = int(p.targets[i]), int(p.preds[i])
        title = f"true: {classes[t]}\npred: {classes[q]} ({p.probs[i, q]:.2f})\nloss {losses[i]:.2f}"
        _imshow(a, _display(ds[i][0], mean, std), title, WRONG if q != t else "black")
    return fig


def _target_layer(model: nn.Module, layer: str | nn.Module | None) -> nn.Module:
    """The Grad-CAM layer: given, else the architecture table's ``gradcam`` entry, else the last Conv2d."""
    if isinstance(layer, nn.Module):
        return layer
    arch = architecture(model)
    path = layer or (arch or {}).get("gradcam")
    if path:
        try:
            return model.get_submodule(path)
        except AttributeError:
            raise UsageError(f"{type(model).__name__} has no module {path!r}; pass target_layer as a module "
                             "or a path from model.named_modules().") from None
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise UsageError(f"{type(model).__name__} has no Conv2d layer: pass target_layer explicitly.")
    return convs[-1]


def gradcam_maps(model: nn.Module, images: torch.Tensor, target_layer: str | nn.Module | None = None,
                 targets=None) -> torch.Tensor:
    """Grad-CAM heat maps, one per image, upsampled (bilinear) to the image size and scaled to [0, 1].

    The model runs in eval mode; its train/eval modes (BatchNorm policy included),
    ``requires_grad`` flags and parameter gradients are as before afterwards. Gradients flow
    only from the class score back to the target layer's activation (made a leaf that
    requires grad), so a fully frozen model works.

    Args:
        model: a CNN classifier.
        images: a preprocessed float batch ``[N, 3, H, W]`` (as a loader yields it).
        target_layer: a module or its path (default: the architecture table's ``gradcam``
            entry, else the last ``Conv2d``); its output must be ``[N, C, h, w]``.
        targets: the class to explain per image (int, list or tensor); default the prediction.

    Returns:
        A float tensor ``[N, H, W]`` with values in [0, 1] (on the CPU). The map has only as many
        distinct values as the target layer has positions (e.g. 3x3 for a stride-32 layer on a
        96 px input); the upsampling only smooths them. :func:`gradcam` reports that grid.
    """
    return _gradcam(model, images, target_layer, targets)[0]


def _per_image(values, n: int, what: str) -> torch.Tensor | None:
    """``values`` (one class index, or one per image) as a long tensor of length ``n``; None stays None."""
    if values is None:
        return None
    t = torch.as_tensor(values).long().view(-1).cpu()
    if len(t) not in (1, n):
        raise UsageError(f"{what} needs one class index or one per image: got {len(t)} for {n} images.")
    return t.expand(n)


def _gradcam(model, images, target_layer, targets) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Maps ``[N, H, W]``, class probabilities ``[N, K]`` and the layer's ``(h, w)``, from one forward and backward pass."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise UsageError(f"Grad-CAM needs a batch of images [N, C, H, W], got {getattr(images, 'shape', type(images).__name__)}"
                         "; stack single images with torch.stack([...]) or use x[None].")
    targets = _per_image(targets, len(images), "targets")
    layer = _target_layer(model, target_layer)
    dev = next(model.parameters()).device
    seen: dict[str, torch.Tensor] = {}

    def hook(module, inputs, out):
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            raise UsageError(f"Grad-CAM needs a layer with [N, C, h, w] output; {type(module).__name__} gives "
                             f"{getattr(out, 'shape', type(out).__name__)}. Pick another target_layer.")
        seen["act"] = out.detach().requires_grad_(True)
        return seen["act"].clone()      # downstream in-place ops must not touch the leaf

    handle = layer.register_forward_hook(hook)
    try:
        with eval_mode(model), torch.enable_grad():
            logits = model(images.to(dev))
            if targets is not None and not 0 <= int(targets.min()) <= int(targets.max()) < logits.shape[1]:
                raise UsageError(f"targets must be class indices 0..{logits.shape[1] - 1}, got {targets.tolist()}.")
            cls = logits.argmax(1) if targets is None else targets.to(dev)
            score = logits.gather(1, cls.view(-1, 1)).sum()
            grad, = torch.autograd.grad(score, seen["act"])
    finally:
        handle.remove()
    act = seen["act"].detach()
    cam = F.relu((grad.mean((2, 3), keepdim=True) * act).sum(1, keepdim=True)).float()
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo, hi = cam.amin((1, 2), keepdim=True), cam.amax((1, 2), keepdim=True)
    maps = ((cam - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1).cpu()
    return maps, logits.detach().float().softmax(1).cpu(), tuple(act.shape[-2:])


@styled
def gradcam(model: nn.Module, images: torch.Tensor, target_layer: str | nn.Module | None = None,
            classes: Sequence[str] | None = None, targets=None, labels=None, mean=None, std=None, ax=None):
    """Grad-CAM heat maps over the images, titled with the prediction (and the true class, if given).

    Args:
        model: a CNN classifier.
        images: a preprocessed float batch ``[N, 3, H, W]``, e.g. ``next(iter(loaders.val))[0][:8]``.
        target_layer: see :func:`gradcam_maps`.
        classes: class names (default indices).
        targets: the class to explain (one index, or one per image); default the predicted class.
        labels: the true class per image; titles then say ``true / pred`` and wrong predictions are red.
        mean / std: normalisation to undo for display (default: the model's preprocessing config).
        ax: one axes (split into a grid) or a sequence of axes.

    Returns:
        The ``Figure``; ``fig.maps`` holds the ``[N, H, W]`` maps, ``fig.layer`` the target layer's
        name and ``fig.grid`` its ``(h, w)``: how many positions the maps really resolve. The
        colour bar (drawn when ``ax`` is None) names both.
    """
    maps, probs, grid = _gradcam(model, images, target_layer, targets)
    labels = _per_image(labels, len(images), "labels")
    if mean is None:
        try:
            cfg = preprocessing(model)
            mean, std = cfg["mean"], cfg["std"]
        except UsageError:
            pass
    explained = _per_image(targets, len(images), "targets")
    name = (lambda i: classes[i]) if classes else str
    same = explained is not None and bool((explained == explained[0]).all())
    fig, axs = tiles(len(images), ax, side=2.1)
    for i, a in enumerate(axs):
        q = int(probs[i].argmax())
        a.imshow(_display(images[i], mean, std), cmap="gray")
        im = a.imshow(maps[i].numpy(), cmap="inferno", alpha=0.65 * maps[i].numpy(), vmin=0, vmax=1)
        title = f"pred: {name(q)} ({probs[i, q]:.2f})"
        if labels is not None:
            title = f"true: {name(int(labels[i]))}\n{title}"
        if explained is not None and (not same or ax is not None):     # else the colour bar names it
            title += f"\nCAM for {name(int(explained[i]))}"
        title += "" if maps[i].max() > 0 else "\n(no positive evidence)"
        a.set_title(title, fontsize=9, color=WRONG if labels is not None and q != int(labels[i]) else "black")
    layer = _layer_name(model, _target_layer(model, target_layer))
    if ax is None:
        what = f"Grad-CAM for {name(int(explained[0]))}" if same else "Grad-CAM"
        fig.colorbar(im, ax=axs, shrink=0.7, label=f"{what} (relative)\n{layer}: {grid[0]}x{grid[1]} grid")
    fig.maps, fig.layer, fig.grid = maps, layer, grid
    return fig


def _layer_name(model: nn.Module, layer: nn.Module) -> str:
    """The module path of ``layer`` inside ``model`` (its class name when it is not a submodule)."""
    return next((n for n, m in model.named_modules() if m is layer and n), type(layer).__name__)
