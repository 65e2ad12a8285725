"""Optimizers over what trains: param groups with discriminative learning rates, schedules, unfreezing.

Introduced in lesson 03. :func:`param_groups` returns a plain ``list[dict]`` with real ``lr``
and ``weight_decay`` values (no decay on biases and norm parameters, nanoGPT's rule), usable by
any ``torch.optim`` optimizer. :class:`Schedule` sets every group's rate to its own peak rate
times one shared factor per step, so groups added later (unfreezing) follow the same curve.
:func:`add_unfrozen` is Lightning's ``unfreeze_and_add_param_group``: the optimizer keeps its
state (momentum, Adam moments) for the parameters that were training, new groups join with
their discriminative rate, and the schedule goes on where it was.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .errors import UsageError
from .freezing import is_norm
from .groups import layer_groups

__all__ = ["OPTIMIZERS", "SCHEDULES", "lr_series", "param_groups", "make_optimizer", "Schedule", "add_unfrozen"]

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = (None, "onecycle", "cosine")


def lr_series(lo: float, hi: float, n: int) -> list[float]:
    """``n`` learning rates spread geometrically from ``lo`` to ``hi`` (fastai's ``slice(lo, hi)``)."""
    if n == 1:
        return [hi]
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


def _rates(lr, lr_mult) -> tuple[float, float]:
    if isinstance(lr, slice):
        lr = (lr.start, lr.stop)
    if isinstance(lr, (tuple, list)):
        lo, hi = map(float, lr)
    else:
        hi = float(lr)
        lo = hi / lr_mult if lr_mult else hi
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        raise UsageError(f"Learning rates must be positive numbers, got {lo} .. {hi}.")
    return lo, hi


def param_groups(model: nn.Module, lr: float | tuple[float, float] | slice, lr_mult: float | None = None,
                 weight_decay: float = 0.0) -> list[dict]:
    """Optimizer param groups: discriminative learning rates per layer group, no decay on biases and norms.

    Only trainable parameters are included. The learning rates spread geometrically from the
    earliest trainable layer group (lowest) up to the head (highest).

    Args:
        model: the model (its frozen parameters are left out).
        lr: the head's learning rate, or ``(lo, hi)`` / ``slice(lo, hi)`` for the earliest
            trainable group and the head.
        lr_mult: with a single ``lr``, the earliest trainable group gets ``lr / lr_mult``.
            None (and a single lr) gives every group the same rate.
        weight_decay: for weights; biases and normalisation parameters always get 0.

    Returns:
        A plain ``list[dict]`` with ``params``, ``lr``, ``weight_decay`` and ``name``, ready for
        any ``torch.optim`` optimizer.

    Raises:
        UsageError: nothing is trainable, or a learning rate is not a positive number.

    Example:
        >>> opt = torch.optim.AdamW(ftlab.param_groups(model, lr=1e-3, lr_mult=100, weight_decay=0.01))
    """
    lo, hi = _rates(lr, lr_mult)
    norm_params = {id(p) for m in model.modules() if is_norm(m) for p in m.parameters(recurse=False)}
    trainable = [g for g in layer_groups(model) if any(p.requires_grad for p in g.parameters())]
    if not trainable:
        raise UsageError(f"Nothing in this {type(model).__name__} is trainable: every parameter is frozen. "
                         "Unfreeze something first, e.g. ftlab.train_top(model, 1) for the head.")
    out = []
    for g, rate in zip(trainable, lr_series(lo, hi, len(trainable))):
        decay, no_decay = [], []
        for mod in g.modules:
            for name, p in mod.named_parameters():
                if p.requires_grad:
                    skip = p.ndim <= 1 or name.endswith(".bias") or id(p) in norm_params
                    (no_decay if skip else decay).append(p)
        for params, wd, suffix in ((decay, weight_decay, ""), (no_decay, 0.0, "/no_decay")):
            if params:
                out.append({"params": params, "lr": rate, "weight_decay": wd, "name": g.name + suffix})
    return out


def make_optimizer(groups: list[dict], name: str = "adamw") -> torch.optim.Optimizer:
    """``"adamw"`` or ``"sgd"`` (momentum 0.9, Nesterov) over param groups; each group remembers its ``peak_lr``."""
    if name not in OPTIMIZERS:
        raise UsageError(f"Unknown optimizer {name!r}: use 'adamw' or 'sgd' (or build your own with ftlab.param_groups).")
    groups = [{**g, "peak_lr": g["lr"]} for g in groups]
    if name == "adamw":
        return torch.optim.AdamW(groups)
    return torch.optim.SGD(groups, momentum=0.9, nesterov=True)


class Schedule:
    """A learning-rate schedule over ``total_steps`` batches, stepped after every batch.

    Every param group's rate is its ``peak_lr`` times :meth:`factor` of the step, so a group
    added during training follows the same curve from where it is.

    * ``"onecycle"``: cosine warm-up from ``peak / 25`` to the peak over the first
      ``max(25 %, 2 steps)``, then cosine annealing to ``peak / 25e4`` (as PyTorch's
      ``OneCycleLR``; shorter than 4 steps it stays constant);
    * ``"cosine"``: cosine annealing from the peak to 0;
    * None: constant.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, kind: str | None, total_steps: int):
        if kind not in SCHEDULES:
            raise UsageError(f"Unknown scheduler {kind!r}: use 'onecycle', 'cosine' or None.")
        self.optimizer, self.total = optimizer, max(1, total_steps)
        self.kind = None if kind == "onecycle" and total_steps < 4 else kind
        self.step_count = 0
        self.warmup = max(0.25, 2 / self.total) * self.total - 1
        self.apply()

    @staticmethod
    def _cos(start: float, end: float, frac: float) -> float:
        return end + (start - end) / 2 * (1 + math.cos(math.pi * frac))

    def factor(self, t: int) -> float:
        """The multiplier of the peak rate at step ``t``."""
        if self.kind is None:
            return 1.0
        if self.kind == "cosine":
            return self._cos(1.0, 0.0, min(t, self.total) / self.total)
        if t <= self.warmup:
            return self._cos(1 / 25, 1.0, t / self.warmup)
        return self._cos(1.0, 1 / 25e4, min(1.0, (t - self.warmup) / (self.total - 1 - self.warmup)))

    def apply(self) -> None:
        """Set every group's rate for the current step (call it after adding groups to the optimizer).

        A group without a ``peak_lr`` takes its current rate as its peak, once.
        """
        f = self.factor(self.step_count)
        for g in self.optimizer.param_groups:
            g["lr"] = g.setdefault("peak_lr", g["lr"]) * f

    def step(self) -> None:
        self.step_count += 1
        self.apply()


def add_unfrozen(optimizer: torch.optim.Optimizer, model: nn.Module, lr, lr_mult: float | None = None,
                 weight_decay: float = 0.0) -> list[str]:
    """Bring an optimizer up to date with what trains now, keeping its state (Lightning's way).

    The discriminative rates are recomputed for the current trainable groups: groups the
    optimizer has get their new peak rate (their parameters keep their momentum and moments),
    newly trainable ones are added with ``optimizer.add_param_group``. Parameters that were
    frozen again stay in the optimizer without gradients, so they do not move.

    Returns:
        The names of the param groups that were added.
    """
    have = {g.get("name"): g for g in optimizer.param_groups}
    known = {id(p) for g in optimizer.param_groups for p in g["params"]}
    added = []
    for g in param_groups(model, lr, lr_mult=lr_mult, weight_decay=weight_decay):
        old = have.get(g["name"])
        if old is not None:
            old["peak_lr"] = g["lr"]
            old["params"] += [p for p in g["params"] if id(p) not in known]
        else:
            optimizer.add_param_group({**g, "peak_lr": g["lr"]})
            added.append(g["name"])
    return added
