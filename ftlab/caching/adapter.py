"""How one modality's batches run through a model cut at a layer group: the caching engine's adapters.

The engine (:mod:`ftlab.caching.engine`) knows nothing of images, text or boxes. It asks an
adapter, found by the model (:func:`adapter_for`), for the few things that differ:

* ``batches``: the data in a fixed order, without random augmentation, as the model takes it;
* ``below`` / ``unbatch``: the activations at the cut (the input of the first group that
  trains), one entry per example;
* ``above``: the part of the model from the cut up, as a module that ``ft.fit`` trains on
  collated cached items (``collate``); ``check``: the two parts reproduce the whole model;
* ``view``: an exact symmetry of an input batch (and of its targets, for boxes);
* ``advance``: activations moved up to a later cut (optional).

:class:`GroupsInARow` is the generic adapter for a model whose layer groups run one after the
other on one tensor; the modality packages register their own (``ft.vision``, ``ft.text``,
``ft.detection``), and a causal language model plugs in the same way.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.dataloader import default_collate

from ..errors import UsageError
from ..groups import head_input, layer_groups

__all__ = ["CacheAdapter", "GroupsInARow", "Top", "register_cache_adapter", "adapter_for", "adapter_named",
           "run_groups", "without_augmentation"]


def run_groups(x, groups, start: int, stop: int):
    """``x`` through the modules of layer groups ``start`` to ``stop - 1``, one after the other."""
    for g in groups[start:stop]:
        for m in g.modules:
            x = m(x)
    return x


def without_augmentation(data, stacklevel: int = 5):
    """The data set behind ``data`` (a loader or a data set), its random augmentation stage dropped with a warning."""
    ds = data.dataset if isinstance(data, DataLoader) else data
    if getattr(ds, "augment", None) is not None and hasattr(ds, "without_augmentation"):
        ops = ", ".join(type(op).__name__ for op in getattr(ds.augment, "transforms", [ds.augment]))
        warnings.warn(f"Cached activations cannot be augmented: ftlab extracts them without the augmentation stage "
                      f"({ops}). Every epoch will see the same inputs; cache exact symmetries with views=..., or "
                      "train end-to-end with ftlab.fit to use augmentation.", UserWarning, stacklevel=stacklevel)
        ds = ds.without_augmentation()
    return ds


class Top(nn.Module):
    """The layer groups of ``model`` from ``cut`` to its output, as a module (the parameters are the model's own).

    ``pre_head`` runs on the head's input when the cut is the head itself (the dropout a model
    applies before its classifier).
    """

    def __init__(self, model: nn.Module, cut: int, pre_head: Callable | None = None):
        super().__init__()
        self.model, self.cut, self.pre_head = model, cut, pre_head
        self._groups = layer_groups(model)      # looked up once, not on every batch
        self.n = len(self._groups)

    def ftlab_layer_groups(self):
        """The wrapped model's layer groups (so discriminative learning rates work on cached training)."""
        return self._groups

    def forward(self, x):
        if self.cut < self.n - 1:
            x = head_input(self.model, run_groups(x, self._groups, self.cut, self.n - 1))
        elif self.pre_head is not None:
            x = self.pre_head(x, self.training)
        return run_groups(x, self._groups, self.n - 1, self.n)


class CacheAdapter:
    """The modality-specific part of caching; subclass it and :func:`register_cache_adapter` an instance.

    Attributes:
        kind: the name stored with the cached activations.
        average_views: scoring with several cached views averages the predictions over the views
            (True: classification) or scores each view as an example of its own (False: boxes move).
        extract_batch_size: batch size of the one pass over the data.
    """

    kind = "abstract"
    average_views = True
    extract_batch_size = 16

    def accepts(self, model: nn.Module) -> bool:
        raise NotImplementedError

    def batches(self, model: nn.Module, data) -> Iterator[tuple[list[int], Any, Any]]:
        """``(indices, inputs, targets)`` batches covering ``data`` once, in any order, without augmentation."""
        raise NotImplementedError

    def content(self, data) -> list:
        """What the cache key hashes of the data (the inputs, not the labels)."""
        ds = data.dataset if isinstance(data, DataLoader) else data
        own = getattr(ds, "cache_key", None)
        return [own()] if callable(own) else [torch.as_tensor(ds[i][0]) for i in range(len(ds))]

    def targets(self, data):
        """The data's own targets as a tensor (returned with cached activations), or None."""
        ds = data.dataset if isinstance(data, DataLoader) else data
        t = getattr(ds, "targets", None)
        return None if t is None else torch.as_tensor(t).long()

    def view(self, inputs, targets, view):
        """An input batch (and its targets) in one view; views are this adapter's names or callables."""
        if callable(view):
            return view(inputs), targets
        raise UsageError(f"{type(self).__name__} knows no named views ({view!r}): pass functions of an input batch.")

    def view_names(self, views) -> list:
        """``views`` as a list (an int means the first n of the adapter's named views)."""
        if views is None:
            return []
        if isinstance(views, int) and not isinstance(views, bool):
            raise UsageError(f"{type(self).__name__} has no named views to take {views} of: pass a list of views.")
        return list(views)

    def below(self, model: nn.Module, inputs, cut: int):
        """The activations at ``cut`` for a batch (nothing above the cut is run)."""
        raise NotImplementedError

    def unbatch(self, state, inputs) -> list:
        """Per-example activations of a batch (default: split along the first dimension)."""
        if isinstance(state, tuple):
            return list(zip(*(s.unbind(0) for s in state)))
        return list(state.unbind(0))

    def ragged(self, cut: int, groups) -> bool:
        """True when examples have activations of different lengths at this cut (tokens)."""
        return False

    def above(self, model: nn.Module, cut: int) -> nn.Module:
        """The part of the model from ``cut`` up, as a module that takes :meth:`collate`'d cached items."""
        raise NotImplementedError

    def collate(self, items: Sequence, cut: int):
        """A batch for ``ft.fit`` from ``(activations, target)`` items."""
        return default_collate(list(items))

    def check(self, model: nn.Module, cut: int, inputs, state) -> bool:
        """Whether the part above the cut, run on ``state``, gives what ``model`` gives on ``inputs``."""
        raise NotImplementedError

    def advance(self, model: nn.Module, x, start: int, stop: int):
        """Activations at ``start`` moved up to ``stop`` (for :func:`ftlab.features_at`)."""
        raise UsageError(f"{type(self).__name__} cannot move cached activations to a later cut: extract there instead.")

    def batch_sampler(self, feats, batch_size: int, generator: torch.Generator):
        """Training batches over cached items, or None for plain shuffled batches."""
        return None


class GroupsInARow(CacheAdapter):
    """A model whose layer groups run one after the other on one tensor (``(x, y)`` batches); the generic adapter."""

    kind = "tensor"

    def accepts(self, model: nn.Module) -> bool:
        return True

    def pre_head(self, model: nn.Module) -> Callable | None:
        """What runs on cached head inputs before the head (nothing here)."""
        return None

    def batches(self, model, data):
        ds = without_augmentation(data)
        collate = data.collate_fn if isinstance(data, DataLoader) else None
        start = 0
        for x, y in DataLoader(ds, batch_size=self.extract_batch_size, shuffle=False, collate_fn=collate):
            yield list(range(start, start + len(y))), x, y
            start += len(y)

    def below(self, model, inputs, cut):
        groups = layer_groups(model)
        if cut == len(groups) - 1:
            return head_input(model, run_groups(inputs, groups, 0, cut))
        return run_groups(inputs, groups, 0, cut)

    def above(self, model, cut):
        return Top(model, cut, self.pre_head(model))

    def check(self, model, cut, inputs, state) -> bool:
        return torch.allclose(self.above(model, cut).eval()(state), model(inputs), atol=1e-4, rtol=1e-3)

    def advance(self, model, x, start, stop):
        groups = layer_groups(model)
        h = run_groups(x, groups, start, min(stop, len(groups) - 1))
        return head_input(model, h) if stop == len(groups) - 1 else h


_ADAPTERS: list[CacheAdapter] = []
_FALLBACKS: list[CacheAdapter] = []
_GENERIC = GroupsInARow()


def register_cache_adapter(adapter: CacheAdapter, fallback: bool = False) -> CacheAdapter:
    """Make the caching engine use ``adapter`` for the models it ``accepts`` (the latest registered wins).

    ``fallback=True``: try it only after every specific adapter (the images' adapter takes any
    other module).
    """
    (_FALLBACKS if fallback else _ADAPTERS).insert(0, adapter)
    return adapter


def adapter_for(model: nn.Module) -> CacheAdapter:
    """The adapter that runs ``model``'s batches (a registered one that accepts it, else :class:`GroupsInARow`)."""
    return next((a for a in _ADAPTERS + _FALLBACKS if a.accepts(model)), _GENERIC)


def adapter_named(kind: str) -> CacheAdapter:
    """The registered adapter of this kind (the one that made a :class:`~ftlab.Features`)."""
    found = next((a for a in _ADAPTERS + _FALLBACKS + [_GENERIC] if a.kind == kind), None)
    if found is None:
        raise UsageError(f"No caching adapter of kind {kind!r} is registered: import the package that made it.")
    return found
