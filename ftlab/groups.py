"""Layer groups: the named slices of a network from input to output, and the one rule that picks them.

A *layer group* is what freezing, discriminative learning rates, gradual unfreezing and
cut-point caching work on (stem, stages, final conv, head for a CNN; embeddings, layers,
classifier for a BERT encoder). Per-architecture facts live in one table,
:data:`ARCHITECTURES`, which a modality sub-package extends with :func:`register_architecture`
(``ftlab.vision`` registers timm and torchvision CNNs). A timm model that is not in the
table falls back to timm's own ``group_matcher``; anything else to its top-level children
that have parameters. The last group is always the head.

**Which groups** (one rule, used by every helper): an ``int`` is an index, negatives count
from the end (``-1`` is the head); a ``str`` is a group name or a glob pattern
(``"blocks.*"``); a list picks several. A wrong index or name gets one error that lists the groups.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Callable, Iterator, NamedTuple

from torch import nn

from .errors import UsageError

__all__ = ["Group", "ARCHITECTURES", "register_architecture", "architecture", "layer_groups", "group_names",
           "group_index", "resolve_groups", "head_module", "head_input"]

# "<top-level package of the model's class>.<class name>" -> facts:
#   groups: ordered (name, module paths) from input to output; "x.*" = one group per child of x
#   head:   module path of the classifier that a new task replaces
#   pool:   optional f(model, x) turning the last body group's output into the head's input
#   any other key (e.g. "gradcam") is for the sub-package that registered it
ARCHITECTURES: dict[str, dict[str, Any]] = {}


def register_architecture(key: str, groups: list[tuple[str, list[str] | None]], head: str,
                          pool: Callable | None = None, **facts: Any) -> None:
    """Add (or replace) an architecture's entry in the layer-group table.

    Args:
        key: ``"<package>.<ClassName>"``, e.g. ``"timm.EfficientNet"`` or ``"transformers.BertForSequenceClassification"``.
        groups: ordered ``(name, [module paths])``; ``("blocks.*", None)`` makes one group per child
            of ``blocks``, named ``blocks.0``, ...; ``("layer.*", ["bert.encoder.layer"])`` one per child
            of ``bert.encoder.layer``, named ``layer.0``, ...
        head: the path of the classifier module.
        pool: how the last body group's output becomes the head's input (cut-point caching);
            None when the head takes it as it is (timm models use their own ``forward_head``).
        **facts: further per-architecture facts for the sub-package (e.g. ``gradcam="conv_head"``).
    """
    ARCHITECTURES[key] = {"groups": list(groups), "head": head, "pool": pool, **facts}


def architecture(model: nn.Module) -> dict[str, Any] | None:
    """The table entry of a model's class, or None for an architecture the table does not know."""
    lib = type(model).__module__.split(".")[0]
    return ARCHITECTURES.get(f"{lib}.{type(model).__name__}")


class Group(NamedTuple):
    """One layer group: a name and the modules it is made of."""

    name: str
    modules: tuple[nn.Module, ...]

    def parameters(self) -> Iterator[nn.Parameter]:
        for m in self.modules:
            yield from m.parameters()


def _has(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
        return True
    except AttributeError:
        return False


def _from_table(model: nn.Module, arch: dict[str, Any]) -> list[Group]:
    groups = []
    for name, paths in arch["groups"]:
        if name.endswith(".*"):           # one group per child: of `name` itself, or of paths[0] named `name`
            parent = paths[0] if paths else name[:-2]
            groups += [Group(f"{name[:-2]}.{c}", (m,)) for c, m in model.get_submodule(parent).named_children()]
        else:
            mods = tuple(model.get_submodule(p) for p in paths if _has(model, p))
            if mods:
                groups.append(Group(name, mods))
    return groups


def _from_timm(model: nn.Module) -> list[Group] | None:
    """Groups from timm's ``group_matcher`` (coarse), for timm models missing from the table."""
    if not callable(getattr(model, "group_matcher", None)) or not type(model).__module__.startswith("timm."):
        return None
    from timm.models import group_modules

    named = dict(model.named_modules())
    by_id = group_modules(model, model.group_matcher(coarse=True))
    groups = []
    for _, names in sorted(by_id.items()):
        mods = tuple(named[n] for n in names if n in named)
        if mods:
            groups.append(Group(_common_name(names), mods))
    return groups or None


def _common_name(names: list[str]) -> str:
    """``layer1`` for ``layer1.0.conv1 ... layer1.1.bn2``; ``conv1+bn1`` when nothing is shared."""
    parts = [n.split(".") for n in names]
    common = []
    for level in zip(*parts):
        if len(set(level)) > 1:
            break
        common.append(level[0])
    return ".".join(common) if common else "+".join(names[:3]) + ("+..." if len(names) > 3 else "")


def layer_groups(model: nn.Module) -> list[Group]:
    """The ordered, named layer groups of a model, from input to output; the last one is the head.

    Example:
        >>> [g.name for g in ftlab.layer_groups(ftlab.pretrained())]
        ['stem', 'blocks.0', ..., 'blocks.6', 'final_conv', 'head']
    """
    own = getattr(model, "ftlab_layer_groups", None)
    if callable(own):          # wrappers (ftlab.features.Top) report the groups of the model they wrap
        return own()
    arch = architecture(model)
    if arch is not None:
        groups = _from_table(model, arch)
    else:
        groups = _from_timm(model) or [Group(n, (m,)) for n, m in model.named_children()
                                       if any(True for _ in m.parameters())]
    covered = {id(p) for g in groups for p in g.parameters()}
    rest = [n for n, p in model.named_parameters() if id(p) not in covered]
    if rest:
        raise UsageError(f"The layer groups of {type(model).__name__} miss {len(rest)} parameter tensors "
                         f"({', '.join(rest[:3])} ...): register the architecture with "
                         "ftlab.register_architecture(...) so every parameter belongs to a group.")
    if not groups:
        raise UsageError(f"{type(model).__name__} has no parameters to group.")
    return groups


def group_names(model: nn.Module) -> list[str]:
    """The names of the layer groups, in order."""
    return [g.name for g in layer_groups(model)]


def _listing(names: list[str]) -> str:
    return f"{len(names)} layer groups (0..{len(names) - 1}): {', '.join(names)}"


def group_index(model: nn.Module, which: int | str, names: list[str] | None = None) -> int:
    """The index of one layer group given by index (negatives count from the end) or exact name.

    Raises:
        UsageError: out-of-range index or unknown name; the message lists the groups.
    """
    names = names if names is not None else group_names(model)
    if isinstance(which, bool) or not isinstance(which, (int, str)):
        raise UsageError(f"A layer group is an index or a name, not {which!r}. {type(model).__name__} has "
                         f"{_listing(names)}.")
    if isinstance(which, int):
        if not -len(names) <= which < len(names):
            raise UsageError(f"Layer group index {which} is out of range: {type(model).__name__} has {_listing(names)}.")
        return which % len(names)
    if which not in names:
        raise UsageError(f"No layer group named {which!r}: {type(model).__name__} has {_listing(names)}.")
    return names.index(which)


def resolve_groups(model: nn.Module, which) -> list[int]:
    """Sorted indices of the layer groups picked by an index, a name, a glob pattern, or a list of them.

    Example:
        >>> ftlab.resolve_groups(model, ["final_conv", -1])     # [9, 10]
        >>> ftlab.resolve_groups(model, "blocks.*")              # [1, ..., 7]
    """
    names = group_names(model)
    items = [which] if isinstance(which, (int, str)) else list(which)
    picked: list[int] = []
    for item in items:
        if isinstance(item, str) and item not in names and any(c in item for c in "*?["):
            hits = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, item)]
            if not hits:
                raise UsageError(f"No layer group matches {item!r}: {type(model).__name__} has {_listing(names)}.")
            picked += hits
        else:
            picked.append(group_index(model, item, names))
    return sorted(set(picked))


def head_module(model: nn.Module) -> nn.Module:
    """The classifier module (from the table; else the last group's last ``nn.Linear``)."""
    arch = architecture(model)
    if arch is not None:
        return model.get_submodule(arch["head"])
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UsageError(f"{type(model).__name__} has no nn.Linear classifier ftlab can find.")
    return linears[-1]


def head_input(model: nn.Module, x):
    """Turn the output of the last body group into the head's input (pooling, for cut-point caching)."""
    if hasattr(model, "forward_head"):                       # timm: global pool (+ flatten) before the classifier
        return model.forward_head(x, pre_logits=True)
    pool = (architecture(model) or {}).get("pool")
    return pool(model, x) if pool is not None else x
