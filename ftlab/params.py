"""What trains, shown per layer group, and optimizer param groups with discriminative learning rates.

Sibling of :mod:`ftlab.freeze` (introduced in lesson 03).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from .errors import FtlabError
from .freeze import _BN, is_norm, layer_groups

__all__ = ["TrainableSummary", "trainable_summary", "param_groups", "lr_series"]


@dataclass
class TrainableSummary:
    """Per layer group: parameters, trainable parameters and BatchNorm mode. Prints as text, shows as HTML."""

    rows: list[dict]

    @property
    def total(self) -> int:
        return sum(r["params"] for r in self.rows)

    @property
    def trainable(self) -> int:
        return sum(r["trainable"] for r in self.rows)

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / max(1, self.total)

    def _table(self) -> list[list[str]]:
        out = [["#", "group", "params", "trainable", "BatchNorm"]]
        for i, r in enumerate(self.rows):
            out.append([str(i), r["group"], f"{r['params']:,}", f"{r['trainable']:,}", r["bn"]])
        out.append(["", "total", f"{self.total:,}", f"{self.trainable:,} ({self.percent:.1f}%)", ""])
        return out

    def __str__(self) -> str:
        rows = self._table()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        just = [str.rjust, str.ljust, str.rjust, str.rjust, str.ljust]
        return "\n".join("  ".join(j(v, w) for j, v, w in zip(just, r, widths)).rstrip() for r in rows)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head, *body = self._table()
        th = "".join(f"<th>{h}</th>" for h in head)
        trs = []
        for r, row in zip(self.rows + [None], body):
            style = "" if r is None else (' style="opacity:0.55"' if r["trainable"] == 0 else ' style="font-weight:bold"')
            trs.append(f"<tr{style}>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>")
        return f"<table><tr>{th}</tr>{''.join(trs)}</table>"


def _bn_mode(modules) -> str:
    modes = set()
    for mod in modules:
        for m in mod.modules():
            if isinstance(m, _BN):
                params = list(m.parameters(recurse=False))
                modes.add("frozen" if params and not any(p.requires_grad for p in params) else "train")
    return "-" if not modes else modes.pop() if len(modes) == 1 else "mixed"


def trainable_summary(model: nn.Module) -> TrainableSummary:
    """Per layer group: parameter count, trainable count and BatchNorm mode (``frozen``/``train``/``-``).

    Example:
        >>> ftlab.freeze_to(model, -1); print(ftlab.trainable_summary(model))
    """
    rows = []
    for g in layer_groups(model):
        params = list(g.parameters())
        rows.append({"group": g.name, "params": sum(p.numel() for p in params),
                     "trainable": sum(p.numel() for p in params if p.requires_grad),
                     "bn": _bn_mode(g.modules)})
    return TrainableSummary(rows)


def lr_series(lo: float, hi: float, n: int) -> list[float]:
    """``n`` learning rates spread geometrically from ``lo`` to ``hi`` (fastai's ``slice(lo, hi)``)."""
    if n == 1:
        return [hi]
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


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

    Example:
        >>> opt = torch.optim.AdamW(ftlab.param_groups(model, lr=1e-3, lr_mult=100, weight_decay=0.01))
    """
    if isinstance(lr, slice):
        lr = (lr.start, lr.stop)
    if isinstance(lr, (tuple, list)):
        lo, hi = map(float, lr)
    else:
        hi = float(lr)
        lo = hi / lr_mult if lr_mult else hi
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        raise FtlabError(f"Learning rates must be positive numbers, got {lo} .. {hi}.")
    norm_params = {id(p) for m in model.modules() if is_norm(m) for p in m.parameters(recurse=False)}
    trainable = [g for g in layer_groups(model) if any(p.requires_grad for p in g.parameters())]
    if not trainable:
        raise FtlabError("Nothing is trainable: every parameter is frozen. Unfreeze something first, "
                         "e.g. ftlab.freeze_to(model, -1) for the head.")
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
