"""Callbacks for :func:`ftlab.fit`: hooks into the loop, gradual unfreezing, the learning-rate range test.

A callback overrides any of the hooks; each gets the run's :class:`FitState`. Setting
``state.stop = True`` ends training after the current batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .freezing import train_top
from .groups import layer_groups

__all__ = ["FitState", "Callback", "GradualUnfreeze", "LRRangeTest"]


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
