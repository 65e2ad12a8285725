"""Feature and cut-point caching: run the frozen part once, train the rest on stored activations.

Introduced in lessons 01-02. Works on any model with layer groups (:mod:`ftlab.groups`):
``extract_features`` runs the groups below a *cut* once over a loader and caches the result on
disk, keyed by the weights of that part, the inputs, the data set's transform and the cut, so a
second call is a load. The cut is the head's input (``cut="head"``: train a head or a linear
probe) or the boundary between frozen and trainable groups (``cut="auto"``): then ``fit_head``
trains the top groups on the stored activations (cut-point caching). The split is checked: the
bottom and top together must reproduce the whole model's output, or ftlab refuses to cache.

Cached activations cannot see random augmentation: every epoch sees the same inputs. A data
set that keeps augmentation as a separate stage (``ds.augment`` and ``ds.without_augmentation()``,
as ftlab's image sets do) is extracted without it, with a warning (fastai's old
``precompute=True`` trap). What *can* be cached are exact symmetries: ``views=[f0, f1, ...]``
stores the activations of every view ``f(batch)`` of each input (``ftlab.vision.D4_VIEWS``:
the 8 flips and quarter turns of a square image). ``fit_head`` then shows each input in a
random one of its views every epoch, and scoring averages the predictions over all views.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Mapping, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .batches import prepare, to_device
from .errors import UsageError
from .files import atomic_save, cache_dir, stable_hash
from .freezing import eval_mode
from .groups import group_index, group_names, head_input, layer_groups, resolve_groups
from .history import History
from .train import Predictions, evaluate, fit, predict

__all__ = ["Features", "Top", "ViewAverage", "extract_features", "features_at", "fit_head", "fit_cached",
           "evaluate_cached", "predict_cached", "resolve_cut", "linear_probe", "pooled_features"]


class Features(NamedTuple):
    """Cached activations ``x`` with targets ``y``, taken at layer group ``cut`` (index), and their cache key.

    ``x`` is ``[N, ...]``, or ``[N, views, ...]`` when extracted with several views.
    """

    x: torch.Tensor
    y: torch.Tensor
    cut: int
    key: str
    views: int = 1

    def with_targets(self, y: torch.Tensor) -> "Features":
        """The same activations with other targets (e.g. the 2-class labels of the 4-class cells)."""
        if len(y) != len(self.y):
            raise UsageError(f"{len(y)} targets for {len(self.y)} cached inputs: they must be the same samples.")
        return self._replace(y=torch.as_tensor(y).long())


class ViewAverage(nn.Module):
    """Wraps a classifier: a batch of single inputs passes through; a ``[B, V, ...]`` batch of views gets
    the log of the view-averaged probabilities (test-time augmentation). Cross-entropy works on both."""

    def __init__(self, inner: nn.Module, feature_dims: int):
        super().__init__()
        self.inner, self.feature_dims = inner, feature_dims

    def ftlab_layer_groups(self):
        return layer_groups(self.inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == self.feature_dims + 1:
            return self.inner(x)
        b, v = x.shape[:2]
        out = self.inner(x.flatten(0, 1)).view(b, v, -1).float().log_softmax(-1)
        return torch.logsumexp(out, 1) - math.log(v)


class _RandomView(torch.utils.data.Dataset):
    """Cached ``[N, V, ...]`` activations; item ``i`` is input ``i`` in a random view (seeded)."""

    def __init__(self, feats: Features, seed: int):
        self.x, self.y = feats.x, feats.y
        self.g = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        v = int(torch.randint(self.x.shape[1], (1,), generator=self.g))
        return self.x[i, v], self.y[i]


def resolve_cut(model: nn.Module, cut: int | str | None) -> int:
    """Group index of a cut: ``"head"``/None = before the head, ``"auto"`` = the first trainable group,
    or a group name / index (as everywhere in ftlab; the first group cannot be a cut)."""
    groups = layer_groups(model)
    if cut in (None, "head"):
        return len(groups) - 1
    if cut == "auto":
        first = next((i for i, g in enumerate(groups) if any(p.requires_grad for p in g.parameters())), None)
        if first is None:
            raise UsageError("Nothing is trainable, so there is no cut point: unfreeze something first.")
        return first
    try:
        index = group_index(model, cut, [g.name for g in groups])
    except UsageError as err:
        raise UsageError(f"{err} A cut is 'head', 'auto' or one of these groups.") from None
    if index == 0:
        raise UsageError(f"A cut before the first layer group ({groups[0].name}) caches nothing: "
                         "cut at a later group, 'head' or 'auto'.")
    return index


def _body(x: torch.Tensor, groups, start: int, stop: int) -> torch.Tensor:
    for g in groups[start:stop]:
        for m in g.modules:
            x = m(x)
    return x


def _bottom(model: nn.Module, x: torch.Tensor, cut: int, groups) -> torch.Tensor:
    if cut == len(groups) - 1:                              # the head's input: pooled features
        feats = model.forward_features(x) if hasattr(model, "forward_features") else _body(x, groups, 0, cut)
        return head_input(model, feats)
    return _body(x, groups, 0, cut)


class Top(nn.Module):
    """The layer groups from ``cut`` to the output of ``model``, as a module (parameters are shared)."""

    def __init__(self, model: nn.Module, cut: int):
        super().__init__()
        self.model, self.cut = model, cut
        self._groups = layer_groups(model)      # looked up once, not on every batch
        self.n = len(self._groups)

    def ftlab_layer_groups(self):
        """The wrapped model's layer groups (so discriminative learning rates work on cached training)."""
        return self._groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cut < self.n - 1:
            x = head_input(self.model, _body(x, self._groups, self.cut, self.n - 1))
        else:                 # pooled features: the dropout a model applies before its classifier (timm's drop_rate)
            x = F.dropout(x, float(getattr(self.model, "drop_rate", 0.0)), self.training)
        return _body(x, self._groups, self.n - 1, self.n)


def _check_split(model: nn.Module, cut: int, top_input: torch.Tensor, x: torch.Tensor, what: str) -> None:
    """Refuse to cache when the groups below ``cut`` and :class:`Top` from ``cut`` do not reproduce ``model(x)``;
    ``what`` says which split failed (the start of the message)."""
    if not torch.allclose(Top(model, cut).eval()(top_input), model(x), atol=1e-4, rtol=1e-3):
        raise UsageError(f"{what} reproduce its output (its forward is not the groups in a row); use cut='head' "
                         "or train end-to-end with ftlab.fit.")


def _plain(loader) -> DataLoader:
    """The loader's data in order, without random augmentation (with a warning when there was some)."""
    ds = loader.dataset
    if getattr(ds, "augment", None) is not None and hasattr(ds, "without_augmentation"):
        ops = ", ".join(type(op).__name__ for op in getattr(ds.augment, "transforms", [ds.augment]))
        warnings.warn(f"Cached features cannot be augmented: ftlab extracts them without the augmentation stage "
                      f"({ops}). Every epoch will see the same inputs; train end-to-end with ftlab.fit "
                      "to use augmentation.", UserWarning, stacklevel=4)
        ds = ds.without_augmentation()
    return DataLoader(ds, batch_size=16, shuffle=False)   # small batches are fastest on CPU


def _view_name(view: Callable) -> str:
    return getattr(view, "__name__", None) or repr(view)


def _key(model: nn.Module, ds, index: int, views: Sequence[Callable], bottom) -> str:
    own = getattr(ds, "cache_key", None)         # a data set that knows its content (ftlab's ImageSet)
    content = [own()] if callable(own) else [torch.as_tensor(ds[i][0]) for i in range(len(ds))]
    return stable_hash(type(model).__name__, getattr(model, "ftlab_name", None), index,
                       [_view_name(v) for v in views], len(ds), *bottom, *content)


@torch.no_grad()
def extract_features(model: nn.Module, loader, cut: int | str | None = "head", cache: bool = True,
                     device: str | torch.device = "auto", views: Sequence[Callable] | None = None) -> Features:
    """Run the part of ``model`` below ``cut`` once over ``loader`` (in order, eval mode) and cache it.

    Args:
        model: the model (only the groups below ``cut`` are run).
        loader: a DataLoader (shuffling and a separate augmentation stage are ignored).
        cut: ``"head"`` (the head's input), ``"auto"`` (the first trainable layer group),
            a group name or index.
        cache: read from / write to ``<ftlab cache>/features/``.
        device: where to compute.
        views: functions of an input batch whose activations are stored too; the first must be
            the identity (its activations are the plain ones), e.g. ``ftlab.vision.D4_VIEWS``.
            ``x`` is then ``[N, len(views), ...]``.

    Returns:
        :class:`Features` (targets are the data set's own; the cache key does not depend on them).
    """
    views = list(views or [])
    index = resolve_cut(model, cut)
    plain = _plain(loader)
    ds, groups = plain.dataset, layer_groups(model)
    bottom = [v for g in groups[:index] for m in g.modules for v in m.state_dict().values()]
    key = _key(model, ds, index, views, bottom)
    targets = getattr(ds, "targets", None)
    path = cache_dir("features") / f"cut{index}-x{max(1, len(views))}-{key}.pt"
    if cache and path.is_file():
        stored = torch.load(path, weights_only=True)
        y = torch.as_tensor(targets).long() if targets is not None else stored["y"]
        return Features(stored["x"], y, index, key, max(1, len(views)))
    dev = prepare(model, device)
    xs, ys = [], []
    with eval_mode(model):
        for x, y in plain:
            x = to_device(x, dev)
            feats = _bottom(model, x, index, groups)
            if not xs:
                _check_split(model, index, feats, x, f"Cutting {type(model).__name__} at group {groups[index].name} does not")
            if views:
                feats = torch.stack([feats] + [_bottom(model, to_device(v(x), dev), index, groups) for v in views[1:]], 1)
            xs.append(feats.float().cpu().contiguous())
            ys.append(torch.as_tensor(y))
    feats = Features(torch.cat(xs), torch.cat(ys).long(), index, key, max(1, len(views)))
    if cache:
        atomic_save({"x": feats.x, "y": feats.y, "cut": index, "views": feats.views}, path)
    return feats


@torch.no_grad()
def features_at(model: nn.Module, feats: Features, cut: int | str | None = "head", batch_size: int = 256,
                device: str | torch.device = "auto") -> Features:
    """Cached activations moved up to a later cut: run the groups between ``feats.cut`` and ``cut`` (eval mode).

    Extract once at the lowest cut you need, then get the later ones cheaply: e.g. the maps below
    ``blocks.6`` for partial fine-tuning and, from them, the pooled head input for a linear probe
    (lesson 08). The groups in between are run with the model's current weights: freeze them first
    if the result should stay the frozen network's features. Views are kept.

    Returns:
        :class:`Features` at ``cut`` (not cached on disk: this is the cheap part).
    """
    index, groups = resolve_cut(model, cut), layer_groups(model)
    if index < feats.cut:
        raise UsageError(f"These features are cut at group {groups[feats.cut].name}; {groups[index].name} lies below "
                         "it: extract at the lower cut instead.")
    if index == feats.cut:
        return feats
    dev = prepare(model, device)
    flat = feats.x.flatten(0, 1) if feats.views > 1 else feats.x
    out = []
    with eval_mode(model):
        for i in range(0, len(flat), batch_size):
            h = _body(to_device(flat[i:i + batch_size], dev), groups, feats.cut, min(index, len(groups) - 1))
            out.append((head_input(model, h) if index == len(groups) - 1 else h).float().cpu())
    x = torch.cat(out)
    if feats.views > 1:
        x = x.view(len(feats.x), feats.views, *x.shape[1:])
    between = [v for g in groups[feats.cut:index] for m in g.modules for v in m.state_dict().values()]
    return Features(x, feats.y, index, stable_hash(feats.key, index, *between), feats.views)


def fit_head(model: nn.Module, train: Features, val: Features | None, epochs: int, lr: float = 1e-3,
             batch_size: int = 64, seed: int = 0, **fit_kwargs) -> History:
    """Train the groups of ``model`` above the cut of cached features (the head, or the top groups).

    The parameters are the model's own: afterwards ``model`` itself is the trained model.
    With several views, every epoch shows each training input in a random one of its views,
    and validation averages over all views of each input.

    Returns:
        The same kind of :class:`History` as :func:`ftlab.fit`.
    """
    if val is not None and val.cut != train.cut:
        raise UsageError(f"Train features are cut at group {train.cut}, val features at {val.cut}: "
                         "extract both the same way.")
    top = ViewAverage(Top(model, train.cut), _feature_dims(train))
    ds = _RandomView(train, seed) if train.views > 1 else TensorDataset(train.x, train.y)
    tl = DataLoader(ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    vl = DataLoader(TensorDataset(val.x, val.y), batch_size=max(1, 4 * batch_size // val.views)) if val is not None else None
    history = fit(top, (tl, vl), epochs, lr=lr, seed=seed, **fit_kwargs)
    history.meta.update(cached_cut=train.cut, views=train.views)
    return history


def _feature_dims(feats: Features) -> int:
    return feats.x.ndim - 1 - (feats.views > 1)


def _cached_loader(feats: Features) -> DataLoader:
    return DataLoader(TensorDataset(feats.x, feats.y), batch_size=max(1, 256 // feats.views))


def evaluate_cached(model: nn.Module, feats: Features, device: str | torch.device = "auto") -> dict[str, float]:
    """:func:`ftlab.evaluate` of ``model`` on cached features (averaged over the views, if any)."""
    return evaluate(ViewAverage(Top(model, feats.cut), _feature_dims(feats)), _cached_loader(feats), device=device)


def predict_cached(model: nn.Module, feats: Features, device: str | torch.device = "auto") -> Predictions:
    """:func:`ftlab.predict` of ``model`` on cached features (probabilities averaged over the views, if any)."""
    return predict(ViewAverage(Top(model, feats.cut), _feature_dims(feats)), _cached_loader(feats), device=device)


def fit_cached(model: nn.Module, loaders, epochs: int, lr: float = 1e-3, cut: int | str = "auto",
               **fit_kwargs) -> History:
    """Extract (or load) features at ``cut`` for train and val, then :func:`fit_head` on them."""
    index = resolve_cut(model, cut)
    train = extract_features(model, loaders.train, index, device=fit_kwargs.get("device", "auto"))
    val = extract_features(model, loaders.val, index, device=fit_kwargs.get("device", "auto"))
    return fit_head(model, train, val, epochs, lr=lr, batch_size=loaders.train.batch_size, **fit_kwargs)


def linear_probe(train: Features, test: Features | Mapping[str, Features], C: float = 1.0,
                 seed: int = 0) -> float | dict[str, float]:
    """Accuracy of a logistic-regression classifier trained on frozen features (a linear probe).

    Features are standardised first; the classifier is scikit-learn's ``LogisticRegression``. Its
    linear algebra runs on one BLAS thread: beside PyTorch's threads, several are many times slower
    on a small CPU (lesson 01's 18 probes: 31 s against under 2 s).

    Args:
        train: features to fit on (``extract_features(..., cut="head")``).
        test: features to score on, or ``{name: features}`` to score one fitted probe on several
            sets (e.g. validation and test).
        C: inverse regularisation strength.
        seed: random state of the solver.

    Returns:
        Accuracy in [0, 1], or ``{name: accuracy}`` when ``test`` is a mapping.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    sets = dict(test) if isinstance(test, Mapping) else {"test": test}
    if train.x.ndim != 2 or any(f.x.ndim != 2 for f in sets.values()):
        raise UsageError("A linear probe needs pooled features: extract them with cut='head'.")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))
    with threadpool_limits(1, user_api="blas"):
        clf.fit(train.x.numpy(), train.y.numpy())
        scores = {name: float(clf.score(f.x.numpy(), f.y.numpy())) for name, f in sets.items()}
    return scores if isinstance(test, Mapping) else scores["test"]


@torch.no_grad()
def pooled_features(model: nn.Module, loader, groups=None, cache: bool = True,
                    device: str | torch.device = "auto") -> dict[str, Features]:
    """The output of each picked layer group, averaged over space (global average pooling), in one pass.

    A linear probe per layer group needs one vector per image at every depth. The maps themselves
    (``[N, C, H, W]``, what ``extract_features(model, loader, cut=...)`` stores) are large at the early
    groups, so here each batch's maps are pooled to ``[N, C]`` as they are computed and only those
    are kept, for all picked groups from one run of the model (cached on disk like ``extract_features``).

    Args:
        model: a CNN whose groups before the head output ``[B, C, H, W]`` maps, run in a row.
        loader: a DataLoader (shuffling and a separate augmentation stage are ignored).
        groups: the groups whose output to pool (one rule: name, index, glob or list; the head cannot
            be picked); default every group before the head.
        cache: read from / write to ``<ftlab cache>/features/``.
        device: where to compute.

    Returns:
        ``{group name: Features}`` in the order of the groups; ``x`` is ``[N, C]`` and ``cut`` is the
        index of the next group (``extract_features`` at that cut gives the same maps, unpooled).
    """
    names = group_names(model)
    picked = resolve_groups(model, groups if groups is not None else list(range(len(names) - 1)))
    if picked[-1] == len(names) - 1:
        raise UsageError(f"The head ({names[-1]}) outputs the predictions, not maps to pool: "
                         f"pick groups before it ({', '.join(names[:-1])}).")
    plain, layers = _plain(loader), layer_groups(model)
    last = picked[-1] + 1
    bottom = [v for g in layers[:last] for m in g.modules for v in m.state_dict().values()]
    key = _key(model, plain.dataset, ["pooled", *picked], [], bottom)
    path = cache_dir("features") / f"pooled-{key}.pt"
    targets = getattr(plain.dataset, "targets", None)
    if cache and path.is_file():
        stored = torch.load(path, weights_only=True)
        y = torch.as_tensor(targets).long() if targets is not None else stored["y"]
        return {names[i]: Features(stored["x"][names[i]], y, i + 1, key) for i in picked}
    dev = prepare(model, device)
    xs: dict[int, list[torch.Tensor]] = {i: [] for i in picked}
    ys = []
    with eval_mode(model):
        for x, y in plain:
            x = h = to_device(x, dev)
            for i in range(last):
                h = _body(h, layers, i, i + 1)
                if i in xs:
                    if h.ndim != 4:
                        raise UsageError(f"Group {names[i]} outputs {tuple(h.shape)}, not [B, C, H, W] maps to pool: "
                                         "pick earlier groups, or use extract_features.")
                    xs[i].append(h.float().mean((2, 3)).cpu())
            if not ys:                          # Top at the head takes pooled input
                _check_split(model, last, head_input(model, h) if last == len(names) - 1 else h, x,
                             f"The groups of {type(model).__name__} up to {names[last - 1]} run in a row do not")
            ys.append(torch.as_tensor(y))
    y = torch.cat(ys).long()
    pooled = {names[i]: torch.cat(xs[i]) for i in picked}
    if cache:
        atomic_save({"x": pooled, "y": y}, path)
    return {names[i]: Features(pooled[names[i]], y, i + 1, key) for i in picked}
