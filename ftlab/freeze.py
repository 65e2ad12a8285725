"""Layer groups, freezing, the BatchNorm policy, the trainable summary and discriminative param groups.

Introduced in lessons 02-03. A *layer group* is a named slice of the network from input to
output (stem, stages, final conv, head), read from the per-architecture table
:data:`ftlab.models.ARCHITECTURES` (top-level children for anything else).

**BatchNorm policy.** ``bn="frozen"`` (default): BatchNorm layers inside frozen groups have
their affine parameters frozen and are kept in eval mode, so their running statistics stay
the pretrained ones. ``bn="train"`` (fastai's ``train_bn``): BatchNorm affine parameters stay
trainable and statistics keep updating even in frozen groups. The rule that puts it into
effect is one line: *a BatchNorm layer whose parameters are frozen runs in eval mode*.
``model.train()`` undoes it, so it is re-applied by :func:`train_mode`, which ``fit`` calls
each epoch; call it yourself in a hand-written loop instead of ``model.train()``.
``track_running_stats`` is never touched.

The trainable summary and discriminative param groups live in the sibling :mod:`ftlab.params`.
"""
from __future__ import annotations

import fnmatch
from typing import Iterable, NamedTuple, Sequence

from torch import nn

from .errors import FtlabError
from .models import architecture

__all__ = ["Group", "layer_groups", "select_groups", "freeze", "unfreeze", "freeze_to",
           "train_mode", "apply_bn_policy", "is_norm", "trainable_count", "BN_POLICIES"]

BN_POLICIES = ("frozen", "train")
_BN = nn.modules.batchnorm._BatchNorm
_NORMS = (_BN, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


class Group(NamedTuple):
    """One layer group: a name and the modules it is made of."""

    name: str
    modules: tuple[nn.Module, ...]

    def parameters(self):
        for m in self.modules:
            yield from m.parameters()


def is_norm(module: nn.Module) -> bool:
    """Whether a module is a normalisation layer (BatchNorm, LayerNorm, GroupNorm, InstanceNorm)."""
    return isinstance(module, _NORMS)


def layer_groups(model: nn.Module) -> list[Group]:
    """The ordered, named layer groups of a model, from input to output.

    Known architectures (timm EfficientNet/MobileNetV3/ResNet, torchvision ResNet,
    MobileNetV2/V3, EfficientNet) come from one table; any other model falls back to its
    top-level children that have parameters. The last group is the head.

    Example:
        >>> [g.name for g in ftlab.layer_groups(ftlab.pretrained())]
        ['stem', 'blocks.0', ..., 'blocks.6', 'final_conv', 'head']
    """
    own = getattr(model, "ftlab_layer_groups", None)
    if callable(own):          # wrappers (ftlab.features.Top) report the groups of the model they wrap
        return own()
    arch = architecture(model)
    if arch is None:
        groups = [Group(n, (m,)) for n, m in model.named_children() if any(True for _ in m.parameters())]
    else:
        groups = []
        for name, paths in arch["groups"]:
            if name.endswith(".*"):
                parent = name[:-2]
                groups += [Group(f"{parent}.{c}", (m,)) for c, m in model.get_submodule(parent).named_children()]
            else:
                mods = tuple(model.get_submodule(p) for p in paths if _has(model, p))
                if mods:
                    groups.append(Group(name, mods))
    covered = {id(p) for g in groups for p in g.parameters()}
    rest = [p for p in model.parameters() if id(p) not in covered]
    if rest:
        raise FtlabError(f"The layer groups of {type(model).__name__} miss {len(rest)} parameter tensors; "
                         "the architecture table in ftlab/models.py needs updating.")
    if not groups:
        raise FtlabError(f"{type(model).__name__} has no parameters to group.")
    return groups


def _has(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
        return True
    except AttributeError:
        return False


def select_groups(model: nn.Module, which) -> list[int]:
    """Indices of layer groups picked by index, name or glob pattern (``"blocks.*"``), or a list of them.

    Raises:
        FtlabError: an unknown name or out-of-range index; the message lists the valid ones.
    """
    groups = layer_groups(model)
    names = [g.name for g in groups]
    items = [which] if isinstance(which, (int, str)) else list(which)
    picked: list[int] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            if not -len(groups) <= item < len(groups):
                raise FtlabError(f"Layer group index {item} is out of range: {type(model).__name__} has "
                                 f"{len(groups)} groups (0..{len(groups) - 1}): {', '.join(names)}.")
            picked.append(item % len(groups))
        else:
            hits = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, str(item))]
            if not hits:
                raise FtlabError(f"No layer group matches {item!r}. Valid groups: {', '.join(names)}.")
            picked += hits
    return sorted(set(picked))


def _modules(target) -> list[nn.Module]:
    if isinstance(target, nn.Module):
        return [target]
    mods = list(target)
    if not all(isinstance(m, nn.Module) for m in mods):
        raise FtlabError("Pass a module or an iterable of modules (e.g. model.blocks[:3]).")
    return mods


def _check_bn(bn: str) -> None:
    if bn not in BN_POLICIES:
        raise FtlabError(f"Unknown BatchNorm policy {bn!r}: use 'frozen' (keep pretrained statistics) or 'train'.")


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
        groups: indices, names or glob patterns of layer groups (see :func:`select_groups`).

    Example:
        >>> ftlab.unfreeze(model, ["final_conv", "head"])
        >>> ftlab.unfreeze(model, "blocks.*")
    """
    if groups is None:
        mods = _modules(target)
    else:
        if not isinstance(target, nn.Module):
            raise FtlabError("unfreeze(model, groups) needs the whole model to find its layer groups.")
        all_groups = layer_groups(target)
        mods = [m for i in select_groups(target, groups) for m in all_groups[i].modules]
    for m in mods:
        m.requires_grad_(True)
        apply_bn_policy(m)


def freeze_to(model: nn.Module, n: int | str, bn: str = "frozen") -> None:
    """Freeze the layer groups before ``n`` and make the groups from ``n`` on trainable (fastai's meaning).

    Negative ``n`` counts from the end: ``freeze_to(model, -1)`` trains only the head,
    ``freeze_to(model, -3)`` the last three groups, ``freeze_to(model, 0)`` everything.
    ``n`` can also be a group name: ``freeze_to(model, "blocks.5")``.

    Example:
        >>> ftlab.freeze_to(model, -2)
        >>> ftlab.trainable_summary(model)
    """
    groups = layer_groups(model)
    if isinstance(n, str):
        names = [g.name for g in groups]
        if n not in names:
            raise FtlabError(f"freeze_to(model, {n!r}): no such layer group; the groups are {', '.join(names)}.")
        n = names.index(n)
    if not -len(groups) <= n <= len(groups):
        raise FtlabError(f"freeze_to(model, {n}): the model has {len(groups)} layer groups "
                         f"({', '.join(g.name for g in groups)}); use -{len(groups)}..{len(groups)}.")
    cut = n % len(groups) if n < 0 else n
    for i, g in enumerate(groups):
        if i < cut:
            freeze(g.modules, bn=bn)
        else:
            unfreeze(g.modules)


def apply_bn_policy(model: nn.Module) -> nn.Module:
    """Put BatchNorm layers whose parameters are frozen into eval mode (the others are left alone)."""
    for m in model.modules():
        if isinstance(m, _BN):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()
    return model


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()`` followed by the BatchNorm policy: use it instead of ``model.train()`` in your own loop."""
    return apply_bn_policy(model.train())


def trainable_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

