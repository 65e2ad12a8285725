"""One fine-tuning experiment as a function: a strategy, a data budget, an augmentation, a seed → metrics.

Used by ``notebooks/experiment.ipynb`` (what ``ftlab sweep`` runs over a grid) and by lesson 05.
Strategies, from least to most trained:

* ``linear_probe``: logistic regression on cached pooled features of the frozen pretrained model;
* ``head``: a new linear head trained on cached features (end to end when augmenting);
* ``last1`` / ``last3``: the last 1 / 3 layer groups before the head, plus the head, trained on
  cut-point cached activations (end to end when augmenting);
* ``full``: every layer trained end to end, discriminative learning rates;
* ``scratch``: the same architecture from random weights, every layer trained.
"""
from __future__ import annotations

import time
from typing import Any

from .data import Splits
from .errors import FtlabError
from .features import extract_features, fit_cached, linear_probe
from .freeze import freeze_to, trainable_count
from .loaders import loaders as make_loaders
from .models import preprocessing, pretrained
from .train import evaluate, fit, seed_everything

__all__ = ["STRATEGIES", "run_experiment"]

# strategy -> (freeze_to argument, pretrained weights)
STRATEGIES: dict[str, tuple[int | None, str | None]] = {
    "linear_probe": (None, "imagenet"), "head": (-1, "imagenet"), "last1": (-2, "imagenet"),
    "last3": (-4, "imagenet"), "full": (0, "imagenet"), "scratch": (0, None)}


def run_experiment(splits: Splits, strategy: str = "head", image_size: int = 96, subset: int | float | None = None,
                   augment: str = "none", epochs: int = 5, lr: float = 3e-3, lr_mult: float = 10.0,
                   weight_decay: float = 0.01, batch_size: int = 32, seed: int = 0, model_name: str = "efficientnet_lite0",
                   device: str = "auto") -> dict[str, Any]:
    """Train one strategy and score it on the fixed test split.

    Args:
        splits: the data (``ftlab.elpv(classes=...)``).
        strategy: one of :data:`STRATEGIES`.
        image_size: input side length.
        subset: training-set size (fraction or images per class); None = all.
        augment: augmentation preset (forces end-to-end training for the cached strategies).
        epochs: training epochs.
        lr: head learning rate; earlier groups get down to ``lr / lr_mult``.
        seed: seed of subset, shuffling and initialisation.

    Returns:
        ``{"strategy", "test_acc", "val_acc", "trainable", "seconds", "train_images", ...}``.
    """
    if strategy not in STRATEGIES:
        raise FtlabError(f"Unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}.")
    cut, weights = STRATEGIES[strategy]
    seed_everything(seed)           # the new head's initialisation depends on the seed, not on earlier runs
    model = pretrained(model_name, num_classes=len(splits.classes), weights=weights)
    loaders = make_loaders(splits, preprocessing(model), image_size=image_size, batch_size=batch_size,
                           subset=subset, augment=augment if strategy != "linear_probe" else "none", seed=seed)
    start = time.perf_counter()
    row: dict[str, Any] = {"strategy": strategy, "image_size": image_size, "augment": augment, "seed": seed,
                           "train_images": len(loaders.train.dataset), "epochs": epochs}
    if strategy == "linear_probe":
        train = extract_features(model, loaders.train, device=device)
        acc = linear_probe(train, extract_features(model, loaders.test, device=device), seed=seed)
        row.update(test_acc=acc, val_acc=linear_probe(train, extract_features(model, loaders.val, device=device),
                                                        seed=seed), trainable=train.x.shape[1] * len(splits.classes))
    else:
        freeze_to(model, cut)
        kwargs = dict(lr=lr, lr_mult=lr_mult, weight_decay=weight_decay, seed=seed,
                      device=device, progress=False)
        if cut in (-1, -2, -4) and augment == "none":
            history = fit_cached(model, loaders, epochs, **kwargs)
        else:
            history = fit(model, loaders, epochs, **kwargs)
        row.update(test_acc=evaluate(model, loaders.test, device=device)["acc"], val_acc=history.best["val_acc"],
                   trainable=trainable_count(model), best_epoch=history.best_epoch)
    row["seconds"] = time.perf_counter() - start
    return row
