"""Feature extraction and caching: run the frozen part once, train the rest on stored activations.

Introduced in lessons 01-02. ``extract_features`` runs the frozen bottom of a model once over
a loader and caches the result on disk under a key of (weights of that part, data set,
split, transform, image size, cut point), so a second call is a load. The cut is either the
pooled features before the classifier (``cut="head"``: train a head or a linear probe) or the
boundary between frozen and trainable layer groups (``cut="auto"``): then ``fit_head`` trains
the top groups on the cached activations (cut-point caching).

Cached activations cannot see random augmentation: every epoch sees the same un-augmented
images. ftlab says so with a warning instead of silently dropping it (fastai's old
``precompute=True`` trap). What *can* be cached are exact symmetries: ``views=8`` stores the
activations of the 8 flips and 90-degree rotations of each (square) image. ``fit_head`` then
shows each image in a random one of its views every epoch (augmentation at cached speed), and
scoring averages the predictions over all views (test-time augmentation).
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .cache import atomic_save, cache_dir, stable_hash
from .errors import FtlabError
from .freeze import layer_groups, train_mode
from .history import History
from .train import _to, evaluate, fit, predict, prepare

__all__ = ["Features", "Top", "ViewAverage", "d4_view", "extract_features", "fit_head", "fit_cached",
           "evaluate_cached", "predict_cached", "resolve_cut", "linear_probe"]

_PREPROCESS_OPS = ("Resize", "ToDtype", "ToRGB", "Normalize", "Identity")


class Features(NamedTuple):
    """Cached activations ``x`` with targets ``y``, taken at layer group ``cut`` (index), and their cache key.

    ``x`` is ``[N, ...]``, or ``[N, views, ...]`` when extracted with ``views=8``.
    """

    x: torch.Tensor
    y: torch.Tensor
    cut: int
    key: str
    views: int = 1

    def with_targets(self, y: torch.Tensor) -> "Features":
        """The same activations with other targets (e.g. the 2-class labels of the 4-class cells)."""
        if len(y) != len(self.y):
            raise FtlabError(f"{len(y)} targets for {len(self.y)} cached images: they must be the same cells.")
        return self._replace(y=torch.as_tensor(y).long())


def d4_view(x: torch.Tensor, k: int) -> torch.Tensor:
    """View ``k`` (0-7) of the 8 symmetries of a square image batch: ``k % 4`` quarter turns, flipped if ``k >= 4``."""
    if x.shape[-1] != x.shape[-2]:
        raise FtlabError(f"Flips and 90-degree rotations are symmetries of square images only, got {tuple(x.shape[-2:])}.")
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


class ViewAverage(nn.Module):
    """Wraps a classifier: a ``[B, C, H, W]`` batch passes through; a ``[B, V, ...]`` batch of views gets
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
    """Cached ``[N, V, ...]`` activations; item ``i`` is image ``i`` in a random view (seeded)."""

    def __init__(self, feats: Features, seed: int):
        self.x, self.y = feats.x, feats.y
        self.g = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        v = int(torch.randint(self.x.shape[1], (1,), generator=self.g))
        return self.x[i, v], self.y[i]


def resolve_cut(model: nn.Module, cut: int | str | None) -> int:
    """Group index of a cut: ``"head"``/None = before the head, ``"auto"`` = first trainable group."""
    groups = layer_groups(model)
    if cut in (None, "head"):
        return len(groups) - 1
    if cut == "auto":
        first = next((i for i, g in enumerate(groups) if any(p.requires_grad for p in g.parameters())), None)
        if first is None:
            raise FtlabError("Nothing is trainable, so there is no cut point: unfreeze something first.")
        return first
    if isinstance(cut, str):
        names = [g.name for g in groups]
        if cut not in names:
            raise FtlabError(f"No layer group {cut!r}; valid cuts: 'head', 'auto', {', '.join(names)}.")
        return names.index(cut)
    if not 0 < int(cut) < len(groups):
        raise FtlabError(f"Cut {cut} is out of range 1..{len(groups) - 1} for {len(groups)} layer groups.")
    return int(cut)


def _body(model: nn.Module, x: torch.Tensor, start: int, stop: int, groups=None) -> torch.Tensor:
    for g in (groups or layer_groups(model))[start:stop]:
        for m in g.modules:
            x = m(x)
    return x


def _pooled(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "forward_head"):
        return model.forward_head(x, pre_logits=True)
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


def _bottom(model: nn.Module, x: torch.Tensor, cut: int) -> torch.Tensor:
    n = len(layer_groups(model))
    if cut == n - 1:
        feats = model.forward_features(x) if hasattr(model, "forward_features") else _body(model, x, 0, n - 1)
        return _pooled(model, feats)
    return _body(model, x, 0, cut)


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
            x = _pooled(self.model, _body(self.model, x, self.cut, self.n - 1, self._groups))
        x = F.dropout(x, float(getattr(self.model, "drop_rate", 0.0)), self.training)
        for m in self._groups[-1].modules:
            x = m(x)
        return x


def _plain(loader) -> DataLoader:
    ds = loader.dataset
    t = getattr(ds, "transform", None)
    if t is not None and hasattr(t, "transforms"):
        aug = [type(op).__name__ for op in t.transforms if type(op).__name__ not in _PREPROCESS_OPS]
        if aug:
            warnings.warn(f"Cached features cannot be augmented: ftlab extracts them from un-augmented images "
                          f"(dropping {', '.join(aug)}). Every epoch will see the same images; train end-to-end "
                          "with ftlab.fit to use augmentation.", UserWarning, stacklevel=3)
            from torchvision.transforms import v2

            ds = ds.with_transform(v2.Compose([op for op in t.transforms if type(op).__name__ in _PREPROCESS_OPS]))
    return DataLoader(ds, batch_size=16, shuffle=False)   # small batches are fastest on CPU


@torch.no_grad()
def extract_features(model: nn.Module, loader, cut: int | str | None = "head", cache: bool = True,
                     device: str | torch.device = "auto", views: int = 1) -> Features:
    """Run the part of ``model`` below ``cut`` once over ``loader`` (in order, eval mode) and cache it.

    Args:
        model: the model (only the groups below ``cut`` are run).
        loader: a DataLoader over an ftlab data set (shuffling and augmentation are ignored).
        cut: ``"head"`` (pooled features before the classifier), ``"auto"`` (the first
            trainable layer group), a group name or index.
        cache: read from / write to ``<ftlab cache>/features/``.
        device: where to compute.
        views: 1, or 8 for the flips and 90-degree rotations of each image (``x`` is then
            ``[N, 8, ...]``: 8 times the extraction work, done once).

    Returns:
        :class:`Features` (targets are always the data set's own; the cache key is the pixels').
    """
    if views not in (1, 8):
        raise FtlabError(f"views must be 1 or 8 (the flips and quarter turns of a square image), not {views!r}.")
    index = resolve_cut(model, cut)
    plain = _plain(loader)
    ds = plain.dataset
    bottom = [v for g in layer_groups(model)[:index] for m in g.modules for v in m.state_dict().values()]
    sample = ds[0][0] if len(ds) else torch.empty(0)
    images = getattr(ds, "images", None)     # an ftlab ImageSet; any other data set: every (transformed) image
    pixels = [images] if images is not None else [torch.as_tensor(ds[i][0]) for i in range(len(ds))]
    key = stable_hash(type(model).__name__, getattr(model, "ftlab_name", None), index, views, len(ds),
                      repr(getattr(ds, "transform", None)), list(sample.shape), *bottom, *pixels)  # keyed by the pixels
    targets = getattr(ds, "targets", None)
    path = cache_dir("features") / f"cut{index}-x{views}-{key}.pt"
    if cache and path.is_file():
        stored = torch.load(path, weights_only=True)
        y = torch.as_tensor(targets).long() if targets is not None else stored["y"]
        return Features(stored["x"], y, index, key, views)
    was_training = model.training
    dev = prepare(model, device)
    model.eval()
    xs, ys, checked = [], [], False
    for x, y in plain:
        x = _to(x, dev)
        feats = _bottom(model, x, index)
        if not checked:             # the split must reproduce the model exactly, or caching would lie
            checked = True
            if not torch.allclose(Top(model, index).eval()(feats), model(x), atol=1e-4, rtol=1e-3):
                raise FtlabError(f"Cutting {type(model).__name__} at group {index} does not reproduce its output; "
                                 "use cut='head' or train end-to-end with ftlab.fit.")
        if views > 1:
            feats = torch.stack([feats] + [_bottom(model, _to(d4_view(x, k), dev), index)
                                           for k in range(1, views)], 1)
        xs.append(feats.float().cpu().contiguous())
        ys.append(torch.as_tensor(y))
    if was_training:
        train_mode(model)           # back to training, with frozen BatchNorm kept in eval mode
    feats = Features(torch.cat(xs), torch.cat(ys).long(), index, key, views)
    if cache:
        atomic_save({"x": feats.x, "y": feats.y, "cut": index, "views": views}, path)
    return feats


def fit_head(model: nn.Module, train: Features, val: Features | None, epochs: int, lr: float = 1e-3,
             batch_size: int = 64, seed: int = 0, **fit_kwargs) -> History:
    """Train the groups of ``model`` above the cut of cached features (the head, or the top groups).

    The parameters are the model's own: afterwards ``model`` itself is the trained model.
    With ``views=8`` features, every epoch shows each training image in a random one of its
    views, and validation averages over all views of each image.

    Returns:
        The same kind of :class:`History` as :func:`ftlab.fit`.
    """
    if val is not None and val.cut != train.cut:
        raise FtlabError(f"Train features are cut at group {train.cut}, val features at {val.cut}: extract both the same way.")
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


def predict_cached(model: nn.Module, feats: Features, device: str | torch.device = "auto"):
    """:func:`ftlab.predict` of ``model`` on cached features (probabilities averaged over the views, if any)."""
    return predict(ViewAverage(Top(model, feats.cut), _feature_dims(feats)), _cached_loader(feats), device=device)


def fit_cached(model: nn.Module, loaders, epochs: int, lr: float = 1e-3, cut: int | str = "auto",
               **fit_kwargs) -> History:
    """Extract (or load) features at ``cut`` for train and val, then :func:`fit_head` on them."""
    index = resolve_cut(model, cut)
    train = extract_features(model, loaders.train, index, device=fit_kwargs.get("device", "auto"))
    val = extract_features(model, loaders.val, index, device=fit_kwargs.get("device", "auto"))
    return fit_head(model, train, val, epochs, lr=lr, batch_size=loaders.train.batch_size, **fit_kwargs)



def linear_probe(train: Features, test: Features, C: float = 1.0, seed: int = 0) -> float:
    """Accuracy of a logistic-regression classifier trained on frozen features (a linear probe).

    Features are standardised first; the classifier is scikit-learn's ``LogisticRegression``.

    Args:
        train: features to fit on (``extract_features(..., cut="head")``).
        test: features to score on.
        C: inverse regularisation strength.
        seed: random state of the solver.

    Returns:
        Test accuracy in [0, 1].
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if train.x.ndim != 2:
        raise FtlabError("A linear probe needs pooled features: extract them with cut='head'.")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))
    clf.fit(train.x.numpy(), train.y.numpy())
    return float(clf.score(test.x.numpy(), test.y.numpy()))
