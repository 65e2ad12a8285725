"""One image fine-tuning experiment as a function: data, strategy, data budget, augmentation, seed → metrics.

What ``notebooks/experiment.ipynb`` (and so ``ftlab sweep``) and lesson 05 run. The strategies
and their training are the core's (:mod:`ftlab.lab.strategies`); this adds the image parts: the
model (pretrained, or random weights for ``scratch``), the input size and the loaders.
"""
from __future__ import annotations

from typing import Any

from ..batches import seed_everything
from ..errors import UsageError
from ..vision.data import Splits
from ..vision.loading import loaders as make_loaders
from ..vision.models import preprocessing, pretrained
from .strategies import STRATEGIES, run_strategy, strategy_top

__all__ = ["run_experiment", "correct_from_text"]


def run_experiment(splits: Splits, strategy: str = "head", image_size: int = 96, subset: int | float | None = None,
                   augment: str = "none", epochs: int = 5, lr: float = 3e-3, lr_mult: float = 10.0,
                   weight_decay: float = 0.01, batch_size: int = 32, seed: int = 0,
                   model_name: str = "efficientnet_lite0", device: str = "auto") -> dict[str, Any]:
    """Train one strategy on an image data set and score it on the fixed test split.

    Args:
        splits: the data (``ftlab.elpv(classes=...)``).
        strategy: a name of :data:`ftlab.lab.strategies.STRATEGIES` or ``top<k>``.
        image_size: input side length.
        subset: training-set size (fraction or images per class); None = all.
        augment: augmentation preset (the cached strategies then train end to end).
        epochs: training epochs.
        lr: head learning rate; earlier groups get down to ``lr / lr_mult``.
        seed: seed of subset, shuffling and the new head's initialisation.

    Returns:
        ``{"strategy", "test_acc", "test_correct", "val_acc", "trainable", "seconds", "train_images", ...}`` (no
        history); ``test_correct`` is one character per test example, ``"1"`` right and ``"0"`` wrong (in
        the test split's order), so that a sweep's runs can be compared pairwise (:func:`ftlab.lab.paired`
        takes :func:`correct_from_text` of it).
    """
    weights = "imagenet" if STRATEGIES.get(strategy, {"pretrained": True})["pretrained"] else None
    seed_everything(seed)           # the new head's initialisation depends on the seed, not on earlier runs
    model = pretrained(model_name, num_classes=len(splits.classes), weights=weights)
    strategy_top(model, strategy)   # an unknown strategy fails before any data is prepared
    loaders = make_loaders(splits, preprocessing(model), image_size=image_size, batch_size=batch_size,
                           subset=subset, augment=augment if strategy != "linear_probe" else "none", seed=seed)
    row = run_strategy(model, loaders, strategy, epochs=epochs, lr=lr, lr_mult=lr_mult, weight_decay=weight_decay,
                       seed=seed, device=device)
    row.pop("history", None)
    row["test_correct"] = "".join("1" if v else "0" for v in row["test_correct"].tolist())
    return {**row, "image_size": image_size, "augment": augment, "seed": seed,
            "train_images": len(loaders.train.dataset), "epochs": epochs}


def correct_from_text(text: str):
    """The per-example scores of a recorded run (``"0110..."``, see :func:`run_experiment`) as a float array."""
    import numpy as np

    if not isinstance(text, str) or not text or set(text) - {"0", "1"}:
        raise UsageError("test_correct is a string of 0s and 1s, one per test example (runs made before it was "
                         "recorded have none: rerun the sweep).")
    return np.frombuffer(text.encode(), dtype=np.uint8) - ord("0")
