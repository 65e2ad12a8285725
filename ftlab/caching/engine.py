"""One caching engine: run the frozen part once, train the part above the cut on stored activations.

Introduced in lessons 01-02, used for images, text and boxes alike. ``cut`` always names the
**first layer group that trains**: :func:`extract` runs the groups below it once over the data
(in eval mode, in a fixed order) and keeps their output; :func:`fit_cached` is :func:`ftlab.fit`
on the groups from the cut up, fed with those activations. With the frozen part a fixed
function (its dropout off, its BatchNorm statistics the pretrained ones: ftlab's policy for
frozen parts), the updates are the ones end-to-end training makes, several times faster.

``cut="head"`` caches the head's input (train a head or a linear probe); ``cut="auto"`` the
input of the first trainable group (what ``ft.freeze_to`` / ``ft.train_top`` left trainable).
The split is checked: the two parts together must reproduce the whole model, or ftlab refuses.

Cached activations cannot see random augmentation: every epoch sees the same inputs (fastai's
old ``precompute=True`` trap); a data set's augmentation stage is dropped with a warning. What
*can* be cached are exact symmetries: ``views=8`` stores the activations of each input in the 8
flips and quarter turns of a square image (``ft.vision.D4``; for boxes, the boxes move along).
Training then shows each input in one random view per epoch (``views="random"``) or in all of
them (``views="all"``); scoring averages a classifier's predictions over the views.

The modality-specific part (how a batch runs below the cut, what the part above takes) is a
small adapter (:mod:`ftlab.caching.adapter`) that each modality package registers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..batches import prepare, to_device
from ..errors import UsageError
from ..files import atomic_save, cache_file, stable_hash
from ..freezing import eval_mode
from ..groups import group_index, layer_groups
from ..history import History
from ..splits import class_share_draw
from ..train import fit
from .adapter import CacheAdapter, adapter_for, adapter_named

__all__ = ["Features", "ViewAverage", "extract", "features_at", "fit_cached", "resolve_cut", "cached_loader", "cache_key",
           "group_weights", "by_length"]


def _rows(x, index):
    return tuple(t[index] for t in x) if isinstance(x, tuple) else x[index]


def _each(x, fn):
    return tuple(fn(t) for t in x) if isinstance(x, tuple) else fn(x)


@dataclass(frozen=True, eq=False)
class Features:
    """Cached activations at layer group ``cut`` (an index: the first group that trains), with their targets.

    Attributes:
        x: ``[N, ...]`` activations, ``[N, views, ...]`` with several views, or a tuple of such
            tensors (a detector's two maps); ragged activations (tokens) are ``[total, ...]`` with
            ``lengths`` ``[N]``.
        y: ``[N]`` labels, or one target per example (a tuple per view when targets move with the view).
        cut: the index of the first layer group that trains on them.
        key: the cache key (the weights below the cut, the inputs, the cut and the views).
        views: how many views of each input are stored.
        kind: the adapter that made them (``"image"``, ``"text"``, ``"detection"`` ...).
        lengths: tokens per example when ``x`` is ragged, else None.
    """

    x: Any
    y: Any
    cut: int
    key: str
    views: int = 1
    kind: str = "tensor"
    lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)

    def _offsets(self) -> list[int]:
        return torch.cat([torch.zeros(1, dtype=torch.long), self.lengths.cumsum(0)]).tolist()

    def example(self, i: int, v: int | None = None):
        """The activations of example ``i``: in view ``v``, or all its views stacked when ``v`` is None."""
        if self.lengths is not None:
            off = self._offsets()
            return self.x[off[i]:off[i + 1]]
        if self.views == 1:
            return _rows(self.x, i)
        return _rows(self.x, i if v is None else (i, v))

    def target(self, i: int, v: int = 0):
        """The target of example ``i`` in view ``v``."""
        y = self.y[i]
        return y[v] if isinstance(y, tuple) else y

    def with_targets(self, y) -> "Features":
        """The same activations with other targets (e.g. the 2-class labels of the 4-class cells)."""
        if len(y) != len(self.y):
            raise UsageError(f"{len(y)} targets for {len(self.y)} cached inputs: they must be the same samples.")
        return replace(self, y=torch.as_tensor(y).long() if isinstance(self.y, torch.Tensor) else list(y))

    def subset(self, index) -> "Features":
        """The cached examples at ``index`` (a list or tensor of positions), in that order."""
        index = torch.as_tensor(index, dtype=torch.long)
        y = self.y[index] if isinstance(self.y, torch.Tensor) else [self.y[i] for i in index.tolist()]
        if self.lengths is None:
            return replace(self, x=_rows(self.x, index), y=y)
        off = self._offsets()
        x = torch.cat([self.x[off[i]:off[i + 1]] for i in index.tolist()]) if len(index) else self.x[:0]
        return replace(self, x=x, y=y, lengths=self.lengths[index])

    def sample(self, n: int, seed: int = 0) -> "Features":
        """``n`` cached examples drawn at random with ``seed``, every class in its share (stratified, nested).

        The class shares stay those of the cached examples (ELPV's test split is 69 % functional
        cells, so a training set should be too, or accuracy measures the mismatch of priors; a
        balanced pool gives balanced samples). Nested: for one seed, a smaller sample is the start of
        a larger one, so a curve over training-set sizes adds examples rather than drawing new ones
        at every size. Needs one class label per example.

        Raises:
            UsageError: ``n`` is not between the number of classes and the number of examples, or the
                targets are not one class label per example.
        """
        if not isinstance(self.y, torch.Tensor) or self.y.ndim != 1:
            raise UsageError("Features.sample draws by class: it needs one class label per example "
                             "(detection targets are boxes; use .subset with positions instead).")
        return self.subset(class_share_draw(self.y.numpy(), n, seed))

    def ftlab_scoring(self, model: nn.Module):
        """``(module, loader)`` with which ``ft.evaluate`` and ``ft.predict`` score ``model`` on these features."""
        return cached_loader(model, self)

    def __repr__(self) -> str:
        shapes = [tuple(t.shape) for t in (self.x if isinstance(self.x, tuple) else (self.x,))]
        return (f"Features({self.kind}, {len(self)} examples x {self.views} view(s), cut {self.cut}, "
                f"x {', '.join(map(str, shapes))})")


def resolve_cut(model: nn.Module, cut: int | str | None) -> int:
    """The index of the first group that trains: ``"head"``/None = the head, ``"auto"`` = the first trainable
    group, or a group name / index (as everywhere in ftlab; the first group cannot be a cut)."""
    groups = layer_groups(model)
    if cut in (None, "head"):
        return len(groups) - 1
    if cut == "auto":
        first = next((i for i, g in enumerate(groups) if any(p.requires_grad for p in g.parameters())), None)
        if first is None:
            raise UsageError("Nothing is trainable, so there is no cut point: unfreeze something first.")
        if first == 0:
            raise UsageError(f"Everything in this {type(model).__name__} trains, so cut='auto' caches nothing: freeze "
                             "the part to cache first (e.g. ft.freeze_to(model, 'head')) or name the cut.")
        return first
    try:
        index = group_index(model, cut, [g.name for g in groups])
    except UsageError as err:
        raise UsageError(f"{err} A cut is 'head', 'auto' or one of these groups.") from None
    if index == 0:
        raise UsageError(f"A cut before the first layer group ({groups[0].name}) caches nothing: "
                         "cut at a later group, 'head' or 'auto'.")
    return index


def _stack(states: list, ragged: bool):
    if ragged:
        return torch.cat(states), torch.tensor([len(s) for s in states])
    if isinstance(states[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*states)), None
    return torch.stack(states), None


def group_weights(model: nn.Module, start: int, stop: int) -> list[torch.Tensor]:
    """The weights and buffers of layer groups ``start`` to ``stop - 1``: what a cache key of activations computed by
    those groups must cover."""
    return [v for g in layer_groups(model)[start:stop] for m in g.modules for v in m.state_dict().values()]


def loader_batch_size(loader) -> int | None:
    """A DataLoader's batch size, also when it batches with a ``batch_sampler`` (None where neither says)."""
    return getattr(loader, "batch_size", None) or getattr(getattr(loader, "batch_sampler", None), "batch_size", None)


def cache_key(model: nn.Module, adapter: CacheAdapter, data, index: int, views: list) -> str:
    """The key of cached activations: the adapter, the model, the cut, the views, the weights below the cut and the inputs."""
    bottom = group_weights(model, 0, index)
    names = [getattr(v, "__name__", None) or repr(v) for v in views]
    return stable_hash(adapter.kind, type(model).__name__, getattr(model, "ftlab_name", None), index, names,
                       *bottom, *adapter.content(data))


def _run(model, adapter: CacheAdapter, data, index: int, views: list, dev):
    """Per-example activations (one list per view) and targets, in the data's order."""
    groups, n = layer_groups(model), 0
    per_view: list[dict] = [{} for _ in views or [None]]
    targets: dict[int, Any] = {}
    for ids, inputs, y in adapter.batches(model, data):
        inputs = to_device(inputs, dev)
        for k, v in enumerate(views or [None]):
            xin, yv = (inputs, y) if v is None else adapter.view(inputs, y, v)
            state = adapter.below(model, xin, index)
            if n == 0 and k == 0 and not adapter.check(model, index, xin, state):
                raise UsageError(f"Cutting {type(model).__name__} at group {groups[index].name} does not reproduce its "
                                 "output (its forward is not the groups in a row): cut at 'head', or train end-to-end "
                                 "with ftlab.fit.")
            for i, s in zip(ids, adapter.unbatch(state, xin)):
                per_view[k][i] = _cpu(s)
            for j, i in enumerate(ids):
                t = yv[j]
                targets.setdefault(i, []).append(t.clone() if isinstance(t, torch.Tensor) else t)
        n += len(ids)
    order = sorted(per_view[0])
    return [[pv[i] for i in order] for pv in per_view], [targets[i] for i in order]


def _cpu(s):
    return _each(s, lambda t: t.float().cpu())


def _combine(per_view: list[list], ragged: bool):
    if len(per_view) == 1:
        return _stack(per_view[0], ragged)
    if ragged:
        raise UsageError("Views of ragged activations (texts of different lengths) cannot be cached.")
    stacked = [_stack(pv, False)[0] for pv in per_view]            # V x [N, ...]
    if isinstance(stacked[0], tuple):
        return tuple(torch.stack(parts, 1) for parts in zip(*stacked)), None
    return torch.stack(stacked, 1), None


def _targets(adapter: CacheAdapter, data, targets: list, moving: bool):
    own = adapter.targets(data)
    if own is not None and not moving:
        return own
    if moving:
        return [tuple(t) for t in targets]
    first = [t[0] for t in targets]
    return torch.as_tensor(first).long() if first and isinstance(first[0], (int, torch.Tensor)) else first


@torch.no_grad()
def extract(model: nn.Module, data, cut: int | str | None = "auto", views=None, cache: bool = True,
            device: str | torch.device = "auto") -> Features:
    """Run the part of ``model`` below ``cut`` once over ``data`` (eval mode) and keep its output.

    Args:
        model: the model (only the groups below ``cut`` are run).
        data: a DataLoader or a data set (its shuffling and random augmentation are ignored).
        cut: the first group that trains: ``"auto"`` (the first trainable group), ``"head"``, a
            group name or index.
        views: exact symmetries to store too: an int (the first n of the modality's views, e.g.
            8 for ``ft.vision.D4``), or a list of view names or functions of an input batch; the
            first must be the identity.
        cache: read from / write to ``<ftlab cache>/features/``.
        device: where to compute.

    Returns:
        :class:`Features`, in the order of the data set.
    """
    adapter = adapter_for(model)
    index, names = resolve_cut(model, cut), adapter.view_names(views)
    key = cache_key(model, adapter, data, index, names)
    path = cache_file("features", f"{adapter.kind}-cut{index}-x{max(1, len(names))}-{key}.pt")
    if cache and path.is_file():
        s = torch.load(path, weights_only=True)
        own = adapter.targets(data)
        y = own if own is not None and not s.get("moving") else s["y"]
        return Features(s["x"], y, index, key, max(1, len(names)), adapter.kind, s.get("lengths"))
    dev = prepare(model, device)
    with eval_mode(model):
        per_view, targets = _run(model, adapter, data, index, names, dev)
    if not targets:
        raise UsageError("There is nothing to extract: the data is empty.")
    moving = len(names) > 1 and not isinstance(targets[0][0], (int, torch.Tensor))   # boxes move with the view
    x, lengths = _combine(per_view, adapter.ragged(index, layer_groups(model)))
    feats = Features(x, _targets(adapter, data, targets, moving), index, key, max(1, len(names)), adapter.kind, lengths)
    if cache:
        atomic_save({"x": feats.x, "y": feats.y, "lengths": lengths, "moving": moving}, path)
    return feats


@torch.no_grad()
def features_at(model: nn.Module, feats: Features, cut: int | str | None = "head", batch_size: int = 256,
                device: str | torch.device = "auto", cache: bool = False) -> Features:
    """Cached activations moved up to a later cut: run the groups between ``feats.cut`` and ``cut`` (eval mode).

    Extract once at the lowest cut you need, then get the later ones cheaply: e.g. the maps below
    ``blocks.6`` for partial fine-tuning and, from them, the pooled head input for a linear probe
    (lesson 08), or a text encoder's token states at ``layer.4`` and, from them, its sentence
    vectors (lesson 06). The groups in between are run with the model's current weights: freeze
    them first if the result should stay the frozen network's features. Views are kept.

    Args:
        cache: also keep the result in ``<ftlab cache>/features/`` (keyed by ``feats`` and the weights in
            between), for when moving up costs a while (a transformer's layers).

    Returns:
        :class:`Features` at ``cut``.
    """
    index, groups = resolve_cut(model, cut), layer_groups(model)
    if index < feats.cut:
        raise UsageError(f"These features are cut at group {groups[feats.cut].name}; {groups[index].name} lies below "
                         "it: extract at the lower cut instead.")
    if index == feats.cut:
        return feats
    key = stable_hash(feats.key, index, *group_weights(model, feats.cut, index))
    path = cache_file("features", f"{feats.kind}-cut{index}-x{feats.views}-{key}.pt")
    if cache and path.is_file():
        s = torch.load(path, weights_only=True)
        return replace(feats, x=s["x"], cut=index, key=key, lengths=s.get("lengths"))
    adapter = adapter_named(feats.kind)
    dev = prepare(model, device)
    with eval_mode(model):
        x, lengths = (_advance_ragged(model, adapter, feats, index, batch_size, dev) if feats.lengths is not None else
                      (_advance(model, adapter, feats, index, batch_size, dev), None))
    if cache:
        atomic_save({"x": x, "lengths": lengths}, path)
    return replace(feats, x=x, cut=index, key=key, lengths=lengths)


def _advance(model, adapter: CacheAdapter, feats: Features, index: int, batch_size: int, dev):
    flat = _each(feats.x, lambda t: t.flatten(0, 1)) if feats.views > 1 else feats.x
    n = len(flat[0] if isinstance(flat, tuple) else flat)
    out = [_cpu(adapter.advance(model, to_device(_rows(flat, slice(i, i + batch_size)), dev), feats.cut, index))
           for i in range(0, n, batch_size)]
    x = tuple(torch.cat(p) for p in zip(*out)) if isinstance(out[0], tuple) else torch.cat(out)
    if feats.views > 1:
        x = _each(x, lambda t: t.view(len(feats.y), feats.views, *t.shape[1:]))
    return x


def _advance_ragged(model, adapter: CacheAdapter, feats: Features, index: int, batch_size: int, dev):
    """Token states moved up, ``batch_size`` examples at a time (of similar length), back in the examples' order."""
    # batch_size counts rows of fixed-size activations; a text's row is many tokens, so a batch holds 1/8 as many texts
    loader = by_length(_Items(feats, "plain"), feats.lengths.tolist(), max(1, batch_size // 8),
                       lambda items: adapter.collate(items, feats.cut))
    rows: list = [None] * len(feats)
    for ids, batch in zip(loader.batch_sampler, loader):
        for i, r in zip(ids, adapter.advance(model, to_device(batch, dev), feats.cut, index)):
            rows[i] = _cpu(r)
    return _stack(rows, rows[0].ndim == 2)


class ViewAverage(nn.Module):
    """Wraps a classifier: a batch of single inputs passes through; a ``[B, V, ...]`` batch of views gets
    the log of the view-averaged probabilities (test-time augmentation). Cross-entropy works on both."""

    def __init__(self, inner: nn.Module, feature_dims: int):
        super().__init__()
        self.inner, self.feature_dims = inner, feature_dims

    def ftlab_layer_groups(self):
        return layer_groups(self.inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == self.feature_dims + 1:                  # single inputs (training on one view each) pass through
            return self.inner(x)
        b, v = x.shape[:2]
        out = self.inner(x.flatten(0, 1)).view(b, v, -1).float().log_softmax(-1)
        return torch.logsumexp(out, 1) - math.log(v)


class _Items(Dataset):
    """Cached examples as items ``(activations, target)``: one random view per epoch, every view, or all views stacked."""

    def __init__(self, feats: Features, mode: str, seed: int | None = None):
        self.f, self.mode = feats, mode if feats.views > 1 else "plain"
        self.g = torch.Generator().manual_seed(seed) if seed is not None else None

    def __len__(self) -> int:
        return len(self.f) * (self.f.views if self.mode == "all" else 1)

    def __getitem__(self, k: int):
        if self.mode == "all":
            i, v = divmod(k, self.f.views)
            return self.f.example(i, v), self.f.target(i, v)
        if self.mode == "random":
            v = int(torch.randint(self.f.views, (1,), generator=self.g))
            return self.f.example(k, v), self.f.target(k, v)
        return self.f.example(k), self.f.target(k)          # plain, or every view stacked


def _scored(model: nn.Module, feats: Features):
    adapter = adapter_named(feats.kind)
    top = adapter.above(model, feats.cut)
    stacked = feats.views > 1 and adapter.average_views
    return (ViewAverage(top, feats.x.ndim - 2) if stacked else top), adapter, ("stacked" if stacked else "all")


def cached_loader(model: nn.Module, feats: Features, batch_size: int = 128):
    """``(module, loader)``: the part of ``model`` above ``feats.cut`` and the cached examples, to score.

    Ragged activations (token states) come in batches of similar length, shortest first, so that
    little is padded; the loader's ``ftlab_order`` lists the examples in the order they come, and
    ``ft.predict`` puts its outputs back in the examples' own order. Otherwise they come in order.
    """
    top, adapter, mode = _scored(model, feats)
    bs = max(1, batch_size // feats.views) if mode == "stacked" else batch_size
    collate = lambda items: adapter.collate(items, feats.cut)         # noqa: E731
    if feats.lengths is None:
        return top, DataLoader(_Items(feats, mode), batch_size=bs, collate_fn=collate)
    return top, by_length(_Items(feats, mode), feats.lengths.tolist(), bs, collate)


def by_length(dataset, lengths, batch_size: int, collate) -> DataLoader:
    """A loader over ``dataset`` in batches of similar ``lengths``, shortest first (for scoring: little padding).
    Its ``ftlab_order`` is the order the examples come in: ``ft.predict`` restores the data set's order from it."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    loader = DataLoader(dataset, batch_sampler=[order[i:i + batch_size] for i in range(0, len(order), batch_size)],
                        collate_fn=collate)
    loader.ftlab_order = order
    return loader


def _pair(model: nn.Module, data, cut, device) -> tuple[Features, Features | None, int | None]:
    if isinstance(data, Features):
        return data, None, None
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Features):
        return data[0], data[1], None
    train = getattr(data, "train", None)
    if train is None and isinstance(data, (tuple, list)) and data:
        train = data[0]
    val = getattr(data, "val", None) if hasattr(data, "train") else (data[1] if len(data) > 1 else None)
    if not isinstance(train, DataLoader):
        raise UsageError("fit_cached takes cached features — ft.extract(model, data, cut) for train (and val), as "
                         "(train, val) or one Features — or loaders, which it extracts at `cut` first.")
    index = resolve_cut(model, cut)
    return (extract(model, train, index, device=device),
            None if val is None else extract(model, val, index, device=device),
            loader_batch_size(train))


def trainable_below(model: nn.Module, cut: int) -> list[str]:
    """The names of the layer groups below ``cut`` that have a trainable parameter (cached activations cannot be theirs
    once they trained)."""
    return [g.name for g in layer_groups(model)[:cut] if any(p.requires_grad for p in g.parameters())]


def _check_trainable(model: nn.Module, train: Features, val: Features | None) -> None:
    if val is not None and (val.cut, val.kind) != (train.cut, train.kind):
        raise UsageError(f"Train features are cut at group {train.cut}, val features at {val.cut}: extract both the "
                         "same way.")
    groups, below = layer_groups(model), trainable_below(model, train.cut)
    if below:
        raise UsageError(f"Groups {', '.join(below)} lie below the cut ({groups[train.cut].name}) but are trainable: "
                         "cached activations cannot train them. Freeze them (ft.freeze_to(model, "
                         f"'{groups[train.cut].name}')) or extract at a lower cut.")


def fit_cached(model: nn.Module, data, epochs: int, lr: float | tuple[float, float] = 1e-3, *, cut: int | str = "auto",
               views: str = "random", batch_size: int | None = None, seed: int | None = None, **fit_kwargs) -> History:
    """:func:`ftlab.fit` on the part of ``model`` from the cut up, fed with cached activations.

    The parameters are the model's own: afterwards ``model`` itself is the trained model, and
    ``ft.evaluate(model, test_features)`` or ``ft.evaluate(model, test_loader)`` scores it.

    Args:
        model: the model; the groups below the cut must be frozen (they cannot learn here).
        data: ``(train, val)`` :class:`Features` (val may be None), one :class:`Features`, or
            loaders, which are extracted at ``cut`` first (and cached on disk).
        epochs, lr: as for :func:`ftlab.fit`.
        cut: where to extract when ``data`` are loaders (``"auto"``: the first trainable group).
        views: with several cached views, each epoch shows every example in one ``"random"`` view,
            or in ``"all"`` its views (an epoch is then ``views`` times longer).
        batch_size: default the loaders' batch size, or 32.
        seed: seeds the run and the order of the batches, as in :func:`ftlab.fit`.
        **fit_kwargs: the options of :func:`ftlab.fit` (``lr_mult``, ``weight_decay``, ``scheduler`` ...).

    Returns:
        The same kind of :class:`History` as :func:`ftlab.fit`.
    """
    if views not in ("random", "all"):
        raise UsageError(f"views must be 'random' or 'all', not {views!r}.")
    train, val, loader_bs = _pair(model, data, cut, fit_kwargs.get("device", "auto"))
    _check_trainable(model, train, val)
    adapter = adapter_named(train.kind)
    bs = batch_size or loader_bs or 32
    g = torch.Generator().manual_seed(0 if seed is None else seed)
    items = _Items(train, views, None if seed is None else seed)
    collate = lambda batch: adapter.collate(batch, train.cut)        # noqa: E731
    sampler = adapter.batch_sampler(train, bs, g)
    tl = (DataLoader(items, batch_sampler=sampler, collate_fn=collate, generator=g) if sampler is not None else
          DataLoader(items, batch_size=bs, shuffle=True, generator=g, collate_fn=collate))
    top, _, _ = _scored(model, train)
    vl = None if val is None else cached_loader(model, val, 4 * bs)[1]
    history = fit(top, (tl, vl), epochs, lr=lr, seed=seed, **fit_kwargs)
    history.meta.update(cached_cut=train.cut, views=train.views)
    return history
