"""Strategies of fine-tuning, one vocabulary: how much of a pretrained model trains, and one run of each.

Used by lesson 05, the experiment notebook (what ``ftlab sweep`` runs over a grid) and the
TrainPanel widget. A strategy says how many layer groups train, counted from the top with the
head as one of them (as :func:`ftlab.train_top` counts):

* ``linear_probe``: nothing trains; logistic regression on the frozen model's pooled features;
* ``head``: the new head only (top 1);
* ``top2``, ``top4``, ... ``top<k>``: the top ``k`` layer groups (the head and ``k - 1`` below it);
* ``full``: every layer group, discriminative learning rates;
* ``scratch``: every layer group of the same architecture with random weights (the caller
  builds it so: ``STRATEGIES["scratch"]["pretrained"]`` is False).

With a frozen bottom and no augmentation the top is trained on cut-point cached activations
(:func:`ftlab.fit_cached`): the same result as end-to-end training, several times faster.
"""
from __future__ import annotations

import re
import time
from typing import Any, Iterable

from torch import nn

from ..caching import extract, fit_cached, linear_probe
from ..errors import UsageError
from ..freezing import train_top, trainable_count
from ..groups import layer_groups
from ..train import fit, predict

__all__ = ["STRATEGIES", "strategy_top", "run_strategy"]

STRATEGIES: dict[str, dict[str, Any]] = {
    "linear_probe": {"top": 0, "pretrained": True}, "head": {"top": 1, "pretrained": True},
    "full": {"top": None, "pretrained": True}, "scratch": {"top": None, "pretrained": False}}
# ``top<k>`` (top2, top4, ...) is a rule, not an entry: :func:`strategy_top` reads k from the name.


def strategy_top(model: nn.Module, strategy: str) -> int:
    """How many layer groups from the top a strategy trains on this model (0 = none: the linear probe)."""
    n = len(layer_groups(model))
    match = re.fullmatch(r"top(\d+)", strategy)
    if match:
        k = int(match.group(1))
        if not 1 <= k <= n:
            raise UsageError(f"Strategy {strategy!r}: this {type(model).__name__} has {n} layer groups, "
                             f"so use top1 .. top{n}.")
        return k
    if strategy not in STRATEGIES:
        raise UsageError(f"Unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)} "
                         "(or top<k> for the top k layer groups).")
    top = STRATEGIES[strategy]["top"]
    return n if top is None else top


def run_strategy(model: nn.Module, loaders, strategy: str = "head", epochs: int = 5, lr: float = 3e-3,
                 lr_mult: float = 10.0, weight_decay: float = 0.01, early_stopping: int | None = None,
                 callbacks: Iterable = (), seed: int = 0, device: str = "auto", progress: bool = False,
                 **fit_kwargs: Any) -> dict[str, Any]:
    """Train ``model`` with one strategy and score it on ``loaders.test``.

    Args:
        model: a fresh model with its new head (random weights for ``scratch``).
        loaders: ``ftlab.loaders(...)`` (train, val, test).
        strategy: a name of :data:`STRATEGIES` or ``top<k>``.
        epochs, lr, lr_mult, weight_decay, early_stopping, callbacks: see :func:`ftlab.fit`.
        seed: seed of shuffling and sampling.
        **fit_kwargs: more :func:`ftlab.fit` arguments (``scheduler``, ``restore_best``, ``monitor``, ...).

    Returns:
        ``{"strategy", "test_acc", "test_correct", "val_acc", "trainable", "seconds", "epochs_run", "best_epoch",
        "cached", "history"}``; ``test_correct`` holds each test example's score (1.0 right, 0.0 wrong, in
        the loader's order) for paired comparisons between strategies (:func:`ftlab.lab.paired`).
    """
    k = strategy_top(model, strategy)
    start = time.perf_counter()
    row: dict[str, Any] = {"strategy": strategy}
    if k == 0:
        train_top(model, 0)
        train = extract(model, loaders.train, cut="head", device=device)
        scored = linear_probe(train, {s: extract(model, getattr(loaders, s), cut="head", device=device)
                                      for s in ("val", "test")}, seed=seed, per_example=True)
        row.update(test_acc=float(scored["test"].mean()), test_correct=scored["test"], val_acc=float(scored["val"].mean()),
                   trainable=train.x.shape[1] * len(getattr(loaders, "classes", [0, 0])), cached=True, history=None)
    else:
        train_top(model, k)
        augmented = getattr(loaders.train.dataset, "augment", None) is not None
        cached = k < len(layer_groups(model)) and not augmented
        kwargs = dict(lr=lr, lr_mult=lr_mult, weight_decay=weight_decay, early_stopping=early_stopping,
                      callbacks=callbacks, seed=seed, device=device, progress=progress, **fit_kwargs)
        history = fit_cached(model, loaders, epochs, **kwargs) if cached else fit(model, loaders, epochs, **kwargs)
        test = extract(model, loaders.test, cut="auto", device=device) if cached else loaders.test   # the same weights
        p = predict(model, test, device=device)
        row.update(test_acc=float((p.preds == p.targets).float().mean()), test_correct=(p.preds == p.targets).float(),
                   val_acc=history.best["val_acc"] if history.best else None, trainable=trainable_count(model),
                   epochs_run=len(history), best_epoch=history.best_epoch, stopped=history.stopped or "",
                   cached=cached, history=history)
    row["seconds"] = time.perf_counter() - start
    return row
