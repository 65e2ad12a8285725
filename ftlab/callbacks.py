"""Callbacks for :func:`ftlab.fit`: hooks into the loop, gradual unfreezing, the learning-rate range test.

A callback overrides any of the hooks; each gets the run's :class:`FitState`. Setting
``state.stop = True`` ends training after the current batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import UsageError
from .freezing import train_top
from .groups import layer_groups

__all__ = ["FitState", "Callback", "GradualUnfreeze", "LRRangeTest", "L2SP"]


@dataclass
class FitState:
    """What a callback sees: the model, where the run is, its optimizer and schedule, the last loss."""

    model: nn.Module
    epochs: int
    history: Any
    epoch: int = 0
    batch: int = 0                 # batches trained so far, over all epochs
    loss: float | None = None      # loss of the last batch
    optimizer: Any = None
    schedule: Any = None
    stop: bool = False
    extra: dict = field(default_factory=dict)


class Callback:
    """Base class for fit callbacks; override any of the hooks."""

    def on_fit_start(self, state: FitState): ...
    def on_epoch_start(self, state: FitState): ...
    def on_batch_end(self, state: FitState): ...
    def on_epoch_end(self, state: FitState): ...
    def on_fit_end(self, state: FitState): ...


class GradualUnfreeze(Callback):
    """ULMFiT's gradual unfreezing: train the top ``start`` layer groups, one more every ``every`` epochs.

    The optimizer keeps its state and its schedule when groups are added (see
    :func:`ftlab.optim.add_unfrozen`); the new groups get their discriminative learning rate.

    Args:
        every: epochs between two unfreezing steps.
        start: how many groups from the top train in the first epoch (1 = the head).
        bn: BatchNorm policy of the frozen groups.
    """

    def __init__(self, every: int = 1, start: int = 1, bn: str = "frozen"):
        self.every, self.start, self.bn = every, start, bn

    def on_epoch_start(self, state: FitState):
        n = len(layer_groups(state.model))
        train_top(state.model, min(n, self.start + state.epoch // self.every), bn=self.bn)


class LRRangeTest(Callback):
    """The learning-rate range test (Smith 2017): raise the rate geometrically every batch, record the loss.

    Stops when ``steps`` batches are done or the smoothed loss exceeds 4x its minimum.
    """

    def __init__(self, start: float, end: float, steps: int):
        self.start, self.factor, self.steps = start, (end / start) ** (1 / max(1, steps - 1)), steps
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self._avg = 0.0

    @staticmethod
    def _set(state: FitState, lr: float) -> None:
        for g in state.optimizer.param_groups:
            g["lr"] = g["peak_lr"] = lr         # peak_lr: what the (constant) schedule re-applies

    def on_epoch_start(self, state: FitState):
        if state.optimizer is not None and not self.lrs:
            self._set(state, self.start)

    def on_batch_end(self, state: FitState):
        lr = state.optimizer.param_groups[-1]["lr"]
        self._avg = 0.9 * self._avg + 0.1 * state.loss
        smoothed = self._avg / (1 - 0.9 ** (len(self.lrs) + 1))          # bias-corrected running mean
        self.lrs.append(lr)
        self.losses.append(smoothed)
        if len(self.lrs) >= self.steps or smoothed > 4 * min(self.losses) or not math.isfinite(smoothed):
            state.stop = True
        self._set(state, lr * self.factor)


class L2SP(Callback):
    """Weight decay toward the pretrained weights θ₀ instead of toward zero (L2-SP, Li et al. 2018).

    After every optimizer step each pretrained weight moves a fraction ``lr × alpha`` of the way
    back to its pretrained value, ``θ ← θ − lr·alpha·(θ − θ₀)``, decoupled from the gradient like
    AdamW's weight decay (which does ``θ ← θ − lr·wd·θ``). The new head has no pretrained value,
    so its weights decay toward zero. As with ``fit``'s ``weight_decay``, only weights (tensors
    with two or more dimensions) are pulled, not biases or norm parameters. Pass
    ``weight_decay=0`` to :func:`ftlab.fit` with it, so that only this pull acts.

    Args:
        alpha: strength, on the same scale as ``weight_decay``.
    """

    def __init__(self, alpha: float):
        if not alpha >= 0:
            raise UsageError(f"L2SP strength alpha must be >= 0, got {alpha}.")
        self.alpha = float(alpha)
        self.reference: dict[int, torch.Tensor | None] = {}

    def on_fit_start(self, state: FitState):
        head = {id(p) for m in layer_groups(state.model)[-1].modules for p in m.parameters()}
        self.reference = {id(p): None if id(p) in head else p.detach().clone()
                          for p in state.model.parameters() if p.ndim > 1}

    @torch.no_grad()
    def on_batch_end(self, state: FitState):
        for group in state.optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None or id(p) not in self.reference:
                    continue
                ref = self.reference[id(p)]
                p.sub_(p if ref is None else p - ref, alpha=group["lr"] * self.alpha)
