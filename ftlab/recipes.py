"""Recipes composed from the primitives: the two-stage fine-tune and the learning-rate range test.

Introduced in lesson 03 (``fine_tune``) and lesson 02 (``lr_find``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import nn

from .freeze import freeze_to
from .history import History
from .train import Callback, _snapshot, fit

__all__ = ["fine_tune", "lr_find", "LRFinderResult"]


def fine_tune(model: nn.Module, loaders, head_epochs: int = 1, epochs: int = 3, unfreeze: int = 3,
              lr: float = 1e-3, lr_mult: float = 10.0, bn: str = "frozen", **fit_kwargs) -> History:
    """The seed recipe: freeze the backbone, train the head, unfreeze the last groups, train on.

    Stage 1 trains only the head at ``lr``; stage 2 trains the last ``unfreeze`` layer groups
    (the head included) with discriminative rates from ``lr / 2 / lr_mult`` up to ``lr / 2``
    (half the head's first rate: the head is already trained). ``unfreeze=0`` unfreezes all.

    Args:
        model: a model with a fresh head (``ftlab.pretrained(num_classes=...)``).
        loaders: ``ftlab.loaders(...)``.
        head_epochs: epochs of stage 1 (0 skips it).
        epochs: epochs of stage 2.
        unfreeze: how many layer groups from the top train in stage 2 (0 = everything).
        lr: the head's learning rate in stage 1.
        lr_mult: ratio between the head's and the earliest unfrozen group's rate in stage 2.
        bn: BatchNorm policy for frozen groups (``"frozen"`` or ``"train"``).
        **fit_kwargs: passed to :func:`ftlab.fit` (weight_decay, early_stopping, seed, ...).

    Returns:
        Both stages as one :class:`History` (the unfreezing epoch is marked).
    """
    history = History()
    if head_epochs:
        freeze_to(model, -1, bn=bn)
        history = fit(model, loaders, head_epochs, lr=lr, **fit_kwargs)
    freeze_to(model, -unfreeze if unfreeze else 0, bn=bn)
    return history + fit(model, loaders, epochs, lr=lr / 2, lr_mult=lr_mult, **fit_kwargs)


@dataclass
class LRFinderResult:
    """The learning-rate range test: ``lrs`` and smoothed ``losses`` per step, and a ``suggestion``."""

    lrs: list[float]
    losses: list[float]
    suggestion: float

    def __repr__(self) -> str:
        return f"LRFinderResult({len(self.lrs)} steps, suggestion={self.suggestion:.2e})"


class _Exponential(Callback):
    def __init__(self, start: float, end: float, steps: int):
        self.start, self.factor, self.steps = start, (end / start) ** (1 / max(1, steps - 1)), steps
        self.lrs, self.losses, self._avg = [], [], None

    def _set(self, state, lr):
        for g in state.optimizer.param_groups:
            g["lr"] = lr

    def on_epoch_start(self, state):
        if state.optimizer is not None and not self.lrs:
            self._set(state, self.start)

    def on_batch_end(self, state):
        lr = state.optimizer.param_groups[-1]["lr"]
        self._avg = 0.9 * (self._avg or 0.0) + 0.1 * state.loss      # bias-corrected below
        smoothed = self._avg / (1 - 0.9 ** (len(self.lrs) + 1))
        self.lrs.append(lr)
        self.losses.append(smoothed)
        if len(self.lrs) >= self.steps or smoothed > 4 * min(self.losses) or not math.isfinite(smoothed):
            state.stop = True       # fit leaves the epoch at once
        self._set(state, lr * self.factor)


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
    saved = _snapshot(model)
    train_dl = loaders.train if hasattr(loaders, "train") else loaders[0]
    epochs = max(1, math.ceil(steps / max(1, len(train_dl))))
    finder = _Exponential(start_lr, end_lr, steps)
    fit(model, (train_dl, None), epochs, lr=start_lr, scheduler=None, restore_best=False,
        callbacks=[finder], **{"progress": False, **fit_kwargs})
    model.load_state_dict(saved)
    lrs, losses = np.array(finder.lrs), np.array(finder.losses)
    if len(lrs) < 3:
        return LRFinderResult(lrs.tolist(), losses.tolist(), float(lrs[0]) if len(lrs) else start_lr)
    upto = int(np.argmin(losses)) + 1
    grads = np.gradient(losses[:upto], np.log10(lrs[:upto])) if upto >= 3 else np.gradient(losses, np.log10(lrs))
    return LRFinderResult(lrs.tolist(), losses.tolist(), float(lrs[int(np.argmin(grads))]))

