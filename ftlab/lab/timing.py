"""Costs measured side by side: what a lesson may compare about speed on a shared machine.

Two runs timed minutes apart on a shared machine see different loads, and even CPU seconds grow when
more threads than cores compete. Timing the things compared *alternately*, in one loop, exposes them
to the same load, so their ratio holds even when the absolute times do not.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
from torch import nn

from ..batches import batch_step, prepare
from ..errors import UsageError
from ..freezing import train_mode

__all__ = ["step_seconds"]


def step_seconds(models: dict[str, nn.Module], batch, repeats: int = 5, device: str | torch.device = "auto",
                 step: Callable = batch_step) -> dict[str, float]:
    """Seconds of one training step (forward and backward on ``batch``) of each model: medians, timed alternately.

    After one warm-up step each, the models take turns ``repeats`` times, so a change in the machine's
    load touches them all alike: compare the results as ratios. The models are left as they were:
    gradients cleared, train/eval mode and buffers (BatchNorm's statistics) restored, the random state
    untouched (dropout draws from a forked generator); no optimizer steps, so no weight changes.

    Raises:
        UsageError: no models, ``repeats`` below 1, or a model with nothing trainable.
    """
    if not models or repeats < 1:
        raise UsageError(f"step_seconds needs at least one model and repeats >= 1, got {len(models)} and {repeats}.")
    for name, model in models.items():
        if not any(p.requires_grad for p in model.parameters()):
            raise UsageError(f"{name!r} has nothing trainable: there is no training step to time. Unfreeze a group first.")
    devices = {name: prepare(model, device) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    modes = {name: {m: m.training for m in model.modules()} for name, model in models.items()}
    buffers = {name: [(b, b.detach().clone()) for b in model.buffers()] for name, model in models.items()}   # BatchNorm's
    with torch.random.fork_rng(devices=[]):
        try:
            for r in range(repeats + 1):                     # round 0 warms up
                for name, model in models.items():
                    train_mode(model)
                    start = time.perf_counter()
                    step(model, batch, None, devices[name]).loss.backward()
                    if devices[name].type == "cuda":
                        torch.cuda.synchronize()
                    if r:
                        times[name].append(time.perf_counter() - start)
                    model.zero_grad(set_to_none=True)
        finally:
            for name, model in models.items():
                model.zero_grad(set_to_none=True)
                for m, training in modes[name].items():
                    m.training = training
                with torch.no_grad():
                    for b, saved in buffers[name]:
                        b.copy_(saved)
    return {name: statistics.median(t) for name, t in times.items()}
