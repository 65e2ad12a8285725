"""Freezing: what trains, the BatchNorm policy, eval mode done right, and the trainable summary.

Introduced in lessons 02-03. Everything works on the layer groups of :mod:`ftlab.groups`.

**How much trains: one vocabulary.** ``train_top(model, k)`` makes the *top k layer groups*
trainable, the head counted as one of them, and freezes the rest: ``k=1`` is head-only
training, ``k=len(layer_groups(model))`` is full fine-tuning. ``fine_tune(top=k)``, the
strategies ``"top2"``/``"top4"`` of :mod:`ftlab.lab.strategies` and the FreezeExplorer slider all
count the same way. ``freeze_to(model, n)`` is fastai's spelling of the same cut: the groups
before ``n`` (an index, negative from the end, or a group name) freeze, the rest train, so
``freeze_to(model, -k)`` equals ``train_top(model, k)``.

**BatchNorm policy.** ``bn="frozen"`` (default): BatchNorm layers inside frozen groups have
their affine parameters frozen and are kept in eval mode, so their running statistics stay
the pretrained ones. ``bn="train"`` (fastai's ``train_bn``): BatchNorm affine parameters stay
trainable and statistics keep updating even in frozen groups. The rule is one line: *a
BatchNorm layer whose parameters are frozen runs in eval mode*. ``model.train()`` undoes it,
so it is re-applied by :func:`train_mode`, which ``fit`` calls each epoch; call it yourself
in a hand-written loop instead of ``model.train()``. ``track_running_stats`` is never touched.

**Dropout in a frozen part** is off too: a module that holds a Dropout layer and whose
parameters are all frozen runs in eval mode (a frozen BERT layer's attention and output). A frozen part
is then a fixed function, the same in training as when its activations are cached (cut-point
caching gives the same losses as training end-to-end). Dropout next to trainable parameters
(a head's own dropout, LoRA's) keeps training.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable, Iterator

from torch import nn

from .errors import UsageError
from .groups import group_index, layer_groups, resolve_groups
from .tables import Table

__all__ = ["BN_POLICIES", "freeze", "unfreeze", "freeze_to", "train_top", "train_mode", "eval_mode",
           "apply_bn_policy", "is_norm", "is_frozen_bn", "trainable_count", "TrainableSummary", "trainable_summary"]

BN_POLICIES = ("frozen", "train")
_BN = nn.modules.batchnorm._BatchNorm
_NORMS = (_BN, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def is_norm(module: nn.Module) -> bool:
    """Whether a module is a normalisation layer (BatchNorm, LayerNorm, GroupNorm, InstanceNorm)."""
    return isinstance(module, _NORMS)


def is_frozen_bn(module: nn.Module) -> bool | None:
    """For a BatchNorm layer: whether its parameters are frozen (None for any other module)."""
    if not isinstance(module, _BN):
        return None
    params = list(module.parameters(recurse=False))
    return bool(params) and not any(p.requires_grad for p in params)


def _modules(target) -> list[nn.Module]:
    if isinstance(target, nn.Module):
        return [target]
    mods = list(target)
    if not all(isinstance(m, nn.Module) for m in mods):
        raise UsageError("Pass a module or an iterable of modules (e.g. model.blocks[:3]).")
    return mods


def _check_bn(bn: str) -> None:
    if bn not in BN_POLICIES:
        raise UsageError(f"Unknown BatchNorm policy {bn!r}: use 'frozen' (keep pretrained statistics) or 'train'.")


def freeze(target: nn.Module | Iterable[nn.Module], bn: str = "frozen") -> None:
    """Stop gradients for every parameter of a module (or modules).

    Args:
        target: a module or an iterable of modules.
        bn: ``"frozen"`` also freezes BatchNorm layers (eval mode, pretrained statistics);
            ``"train"`` leaves their affine parameters trainable and statistics updating.

    Example:
        >>> ftlab.freeze(model)                       # everything
        >>> ftlab.freeze([model.conv_stem, model.bn1])
    """
    _check_bn(bn)
    for module in _modules(target):
        for m in module.modules():
            keep = bn == "train" and isinstance(m, _BN)
            for p in m.parameters(recurse=False):
                p.requires_grad_(keep)
        apply_bn_policy(module)


def unfreeze(target: nn.Module | Iterable[nn.Module], groups=None) -> None:
    """Make parameters trainable again: all of them, or only the given layer groups of a model.

    Args:
        target: a model (with ``groups``) or a module / iterable of modules (without).
        groups: indices, names or glob patterns of layer groups (see :func:`ftlab.resolve_groups`).

    Example:
        >>> ftlab.unfreeze(model, ["final_conv", "head"])
        >>> ftlab.unfreeze(model, "blocks.*")
    """
    if groups is None:
        mods = _modules(target)
    else:
        if not isinstance(target, nn.Module):
            raise UsageError("unfreeze(model, groups) needs the whole model to find its layer groups.")
        all_groups = layer_groups(target)
        mods = [m for i in resolve_groups(target, groups) for m in all_groups[i].modules]
    for m in mods:
        m.requires_grad_(True)
        apply_bn_policy(m)


def freeze_to(model: nn.Module, n: int | str, bn: str = "frozen") -> None:
    """Freeze the layer groups before ``n``, train the groups from ``n`` on (fastai's meaning).

    ``n`` is a group index (negatives count from the end: ``-1`` trains only the head, ``-3``
    the top three groups; ``0`` trains everything, ``len(groups)`` freezes everything) or a
    group name (``"blocks.5"``: that group and everything above it train).

    Example:
        >>> ftlab.freeze_to(model, -2)
        >>> ftlab.trainable_summary(model)
    """
    groups = layer_groups(model)
    cut = len(groups) if n == len(groups) and not isinstance(n, bool) else group_index(model, n)
    for i, g in enumerate(groups):
        if i < cut:
            freeze(g.modules, bn=bn)
        else:
            unfreeze(g.modules)


def train_top(model: nn.Module, k: int, bn: str = "frozen") -> None:
    """Make exactly the top ``k`` layer groups trainable (the head is one of them) and freeze the rest.

    ``k=0`` freezes everything, ``k=1`` trains the head only, ``k=len(layer_groups(model))`` everything.

    Example:
        >>> ftlab.train_top(model, 3)       # blocks.6, final_conv and the head train
    """
    n = len(layer_groups(model))
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise UsageError(f"train_top(model, {k!r}): k is how many layer groups from the top train, "
                         f"0..{n} for this {type(model).__name__} (1 = the head only, {n} = everything).")
    freeze_to(model, n - k, bn=bn)


def _all_frozen(module: nn.Module) -> bool:
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)


def apply_bn_policy(model: nn.Module) -> nn.Module:
    """Put BatchNorm layers whose parameters are frozen, and frozen modules that hold a Dropout layer
    (every parameter of the module frozen), into eval mode; the others are left alone."""
    for m in model.modules():
        if is_frozen_bn(m):
            m.eval()
        if m.training and any(isinstance(c, nn.modules.dropout._DropoutNd) for c in m.children()) and _all_frozen(m):
            m.eval()          # the module itself too: attention reads its own .training for its dropout
    return model


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()`` followed by the BatchNorm policy: use it instead of ``model.train()`` in your own loop."""
    return apply_bn_policy(model.train())


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block in eval mode, then give every module back the mode it had (the BatchNorm policy included).

    Example:
        >>> with ftlab.eval_mode(model), torch.no_grad():
        ...     logits = model(x)
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def trainable_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


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

    def table(self) -> Table:
        body = [[i, r["group"], f"{r['params']:,}", f"{r['trainable']:,}", r["bn"]] for i, r in enumerate(self.rows)]
        body.append(["", "total", f"{self.total:,}", f"{self.trainable:,} ({self.percent:.1f}%)", ""])
        styles = ["opacity:0.55" if r["trainable"] == 0 else "font-weight:bold" for r in self.rows]
        return Table(["#", "group", "params", "trainable", "BatchNorm"], body, row_styles=styles)

    def __str__(self) -> str:
        return self.table().text()

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table().html()


def _bn_mode(modules) -> str:
    modes = {("frozen" if is_frozen_bn(m) else "train") for mod in modules for m in mod.modules()
             if isinstance(m, _BN)}
    return "-" if not modes else modes.pop() if len(modes) == 1 else "mixed"


def trainable_summary(model: nn.Module) -> TrainableSummary:
    """Per layer group: parameter count, trainable count and BatchNorm mode (``frozen``/``train``/``-``).

    Example:
        >>> ftlab.train_top(model, 1); print(ftlab.trainable_summary(model))
    """
    rows = []
    for g in layer_groups(model):
        params = list(g.parameters())
        rows.append({"group": g.name, "params": sum(p.numel() for p in params),
                     "trainable": sum(p.numel() for p in params if p.requires_grad), "bn": _bn_mode(g.modules)})
    return TrainableSummary(rows)
