"""Recipes composed from the primitives: the two-stage fine-tune and the learning-rate range test.

Introduced in lesson 03 (``fine_tune``) and lesson 02 (``lr_find``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import nn

from .callbacks import LRRangeTest
from .freezing import train_top
from .history import History
from .train import fit

__all__ = ["fine_tune", "lr_find", "LRFinderResult"]


def fine_tune(model: nn.Module, loaders, head_epochs: int = 1, epochs: int = 3, top: int = 3,
              lr: float = 1e-3, lr_mult: float = 10.0, bn: str = "frozen", **fit_kwargs) -> History:
    """The five steps of fine-tuning in one call: freeze, train the new head, unfreeze the top, train on.

    Stage 1 trains only the head at ``lr``; stage 2 trains the top ``top`` layer groups (the
    head is one of them, as in :func:`ftlab.train_top`) with discriminative rates from
    ``lr / 2 / lr_mult`` up to ``lr / 2`` (half the head's first rate: the head is already trained).

    Args:
        model: a model with a fresh head (``ftlab.pretrained(num_classes=...)``).
        loaders: ``ftlab.loaders(...)``.
        head_epochs: epochs of stage 1 (0 skips it).
        epochs: epochs of stage 2.
        top: how many layer groups from the top train in stage 2 (``len(ftlab.layer_groups(model))`` = all).
        lr: the head's learning rate in stage 1.
        lr_mult: ratio between the head's and the earliest unfrozen group's rate in stage 2.
        bn: BatchNorm policy for frozen groups (``"frozen"`` or ``"train"``).
        **fit_kwargs: passed to :func:`ftlab.fit` (weight_decay, early_stopping, seed, ...).

    Returns:
        Both stages as one :class:`History` (the unfreezing epoch is marked).
    """
    history = History()
    if head_epochs:
        train_top(model, 1, bn=bn)
        history = fit(model, loaders, head_epochs, lr=lr, **fit_kwargs)
    train_top(model, top, bn=bn)
    return history + fit(model, loaders, epochs, lr=lr / 2, lr_mult=lr_mult, **fit_kwargs)


@dataclass
class LRFinderResult:
    """The learning-rate range test: ``lrs`` and smoothed ``losses`` per step, and a ``suggestion``."""

    lrs: list[float]
    losses: list[float]
    suggestion: float

    def __repr__(self) -> str:
        return f"LRFinderResult({len(self.lrs)} steps, suggestion={self.suggestion:.2e})"


def lr_find(model: nn.Module, loaders, start_lr: float = 1e-6, end_lr: float = 1.0, steps: int = 100,
            **fit_kwargs) -> LRFinderResult:
    """The learning-rate range test (Smith 2017): raise the rate every batch, record the loss.

    The model's weights (and BatchNorm statistics) are restored afterwards. The suggestion is
    the rate of the steepest descent of the smoothed loss, a common default.

    Args:
        model: the model as you will train it (frozen parts stay frozen).
        loaders: ``ftlab.loaders(...)`` or a ``(train, val)`` pair.
        start_lr / end_lr: the range, spread geometrically over ``steps`` batches.
        steps: number of batches at most (stops early when the loss blows up).

    Returns:
        :class:`LRFinderResult`; plot it with ``ftlab.plot.lr_find``.
    """
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    train_dl = loaders.train if hasattr(loaders, "train") else loaders[0]
    epochs = max(1, math.ceil(steps / max(1, len(train_dl))))
    finder = LRRangeTest(start_lr, end_lr, steps)
    fit(model, (train_dl, None), epochs, lr=start_lr, scheduler=None, restore_best=False,
        callbacks=[finder], **{"progress": False, **fit_kwargs})
    model.load_state_dict(saved)
    lrs, losses = np.array(finder.lrs), np.array(finder.losses)
    if len(lrs) < 3:
        return LRFinderResult(lrs.tolist(), losses.tolist(), float(lrs[0]) if len(lrs) else start_lr)
    upto = int(np.argmin(losses)) + 1
    grads = np.gradient(losses[:upto], np.log10(lrs[:upto])) if upto >= 3 else np.gradient(losses, np.log10(lrs))
    return LRFinderResult(lrs.tolist(), losses.tolist(), float(lrs[int(np.argmin(grads))]))
