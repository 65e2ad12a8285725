"""Figures of training: curves, confusion matrix, embeddings, the trainable map, comparisons, LR finder."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter
from sklearn import metrics
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits  # a scikit-learn dependency
from torch import nn

from ..errors import UsageError
from ..freezing import trainable_summary
from ..history import History
from ..train import predict
from .style import FROZEN, PALETTE, axes_row, styled

__all__ = ["history", "confusion_matrix", "classification_report", "embedding", "trainable", "compare", "lr_find"]

@styled
def history(h: History | Sequence[History], labels: Sequence[str] | None = None, ax=None):
    """Loss and accuracy per epoch: train solid, validation dashed, one colour per run.

    Dotted vertical lines sit just before each epoch whose trainable set changed (at
    ``epoch + 0.5`` on the 1-based axis), a star marks the epoch whose weights the model kept
    (a hollow circle the best epoch by validation loss when that is another one), and for a single run
    the shaded band between train and validation loss shows the generalisation gap.

    Args:
        h: a :class:`~ftlab.History` or a list of them (overlaid, with a legend).
        labels: one name per run (default ``run 1``, ``run 2`` ...).
        ax: two axes (loss, accuracy) to draw into; None makes a new figure.

    Returns:
        The matplotlib ``Figure``.
    """
    runs = [h] if isinstance(h, History) else list(h)
    labels = list(labels) if labels else [""] if len(runs) == 1 else [f"run {i + 1}" for i in range(len(runs))]
    fig, (al, aa) = axes_row(ax, 2, (10, 3.8))
    for i, (run, name) in enumerate(zip(runs, labels)):
        c, pre, x = PALETTE[i % len(PALETTE)], f"{name}: " if name else "", np.array(run["epoch"]) + 1
        for a, key in ((al, "loss"), (aa, "acc")):
            tr, va = (np.array(run[f"{s}_{key}"], dtype=float) for s in ("train", "val"))
            a.plot(x, tr, "-o", color=c, ms=3, label=pre + "train")
            if np.isfinite(va).any():
                a.plot(x, va, "--o", color=c, ms=3, label=pre + "validation")
                if len(runs) == 1 and key == "loss":
                    a.fill_between(x, tr, va, color=c, alpha=0.12, label="gap (train vs val)")
                kept, best = run.kept, run.best
                if kept is not None:
                    a.plot(kept["epoch"] + 1, kept[f"val_{key}"], "*", ms=13, color=c,
                           mec="black", mew=0.6, label="weights kept" if i == 0 else "_kept")
                if best is not None and best is not kept:
                    a.plot(best["epoch"] + 1, best[f"val_{key}"], "o", ms=10, mfc="none", color=c,
                           mew=1.2, label="best epoch (not kept)" if i == 0 else "_best")
            for e in run.unfreeze_epochs():
                a.axvline(e + 0.5, color=c, ls=":", lw=1.5, label="trainable set changed" if i == 0 else "_unfrozen")
    for a, what in ((al, "Loss"), (aa, "Accuracy")):
        a.set(title=f"{what} per epoch", xlabel="epoch", ylabel=what.lower())
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_xlim(0.5, max(len(r) for r in runs) + 0.5)
    aa.yaxis.set_major_formatter(PercentFormatter(1.0))
    handles = {lab: hd for hd, lab in zip(*al.get_legend_handles_labels())}
    if ax is None:      # below both panels, clear of the curves
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=min(len(handles), 5))
    else:
        al.legend(handles.values(), handles.keys(), loc="best")
    return fig


def classification_report(preds, targets, classes: Sequence[str] | None = None) -> str:
    """Precision, recall, F1 and support per class as text (scikit-learn's report).

    Args:
        preds: predicted class indices (or :func:`ftlab.predict`'s result, then ``targets`` may be None).
        targets: true class indices.
        classes: class names, index = class.

    Returns:
        The report as a string.
    """
    preds, targets, classes = _labels(preds, targets, classes)
    return metrics.classification_report(targets, preds, labels=range(len(classes)), target_names=classes,
                                         digits=3, zero_division=0)


def _labels(preds, targets, classes):
    if hasattr(preds, "preds") and hasattr(preds, "targets"):
        preds, targets = preds.preds, preds.targets
    if preds is None or targets is None:
        raise UsageError("Pass preds and targets (class indices), or a model and a loader.")
    preds, targets = np.asarray(preds).ravel(), np.asarray(targets).ravel()
    k = len(classes) if classes else int(max(preds.max(initial=0), targets.max(initial=0))) + 1
    return preds, targets, list(classes) if classes else [str(i) for i in range(k)]


@styled
def confusion_matrix(preds=None, targets=None, classes: Sequence[str] | None = None, model: nn.Module | None = None,
                     loader=None, normalize: bool = True, ax=None):
    """Confusion matrix with counts and row percentages; per-class recall in the row labels.

    Args:
        preds / targets: predicted and true class indices (or pass ``model`` and ``loader``).
        classes: class names (default: the loader's dataset ``classes``, else indices).
        model / loader: predict with :func:`ftlab.predict` instead of passing ``preds``.
        normalize: colour cells by row fraction (recall); False colours by count.
        ax: axes to draw into.

    Returns:
        The ``Figure``; ``fig.classification_report`` holds the text report.
    """
    if preds is None and model is not None and loader is not None:
        preds = predict(model, loader)
        classes = classes or getattr(loader.dataset, "classes", None)
    preds, targets, classes = _labels(preds, targets, classes)
    k = len(classes)
    cm = metrics.confusion_matrix(targets, preds, labels=range(k))
    frac = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, (a,) = axes_row(ax, 1, (1.1 * k + 2.6, 1.0 * k + 1.6))
    shown = frac if normalize else cm
    a.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(1, cm.max()))
    a.grid(False)
    a.spines[:].set_visible(False)
    for i, j in np.ndindex(k, k):
        dark = shown[i, j] > 0.55 * (1 if normalize else cm.max())
        a.text(j, i, f"{cm[i, j]}\n{frac[i, j]:.0%}", ha="center", va="center", color="white" if dark else "black")
    a.set_xticks(range(k), classes, rotation=30 if max(map(len, classes)) > 6 else 0, ha="right")
    a.set_yticks(range(k), [f"{c}\nrecall {r:.0%}" for c, r in zip(classes, frac.diagonal())])
    a.set(xlabel="predicted class", ylabel="true class",
          title=f"Confusion matrix (accuracy {np.trace(cm) / max(1, cm.sum()):.1%}, n={cm.sum()})")
    fig.classification_report = classification_report(preds, targets, classes)
    return fig


@styled
def embedding(features, labels=None, classes: Sequence[str] | None = None, method: str = "pca", ax=None,
              title: str | None = None):
    """Features projected to 2-D (PCA or t-SNE, seeded), one colour per class.

    Side by side (e.g. pretrained vs random-init features): ``fig, axs = plt.subplots(1, 2)``,
    then ``embedding(f1, y, ax=axs[0])`` and ``embedding(f2, y, ax=axs[1])``.

    Args:
        features: ``[N, D]`` (or ``[N, ...]``, flattened) tensor or array, or :class:`ftlab.Features`.
        labels: class index per sample (default: the Features' ``y``).
        classes: class names (default indices).
        method: ``"pca"`` or ``"tsne"``.
        ax: axes to draw into.
        title: the axes title (default says the method).

    Returns:
        The ``Figure``; ``fig.points`` holds the ``[N, 2]`` projection.
    """
    if labels is None and hasattr(features, "y"):
        features, labels = features.x, features.y
    x = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features, dtype=np.float32)
    x, y = x.reshape(len(x), -1), np.asarray(labels).ravel()
    if method not in ("pca", "tsne") or len(x) < 3 or len(y) != len(x):
        raise UsageError(f"embedding needs method 'pca' or 'tsne' (got {method!r}) and at least 3 samples "
                         f"with one label each (got {len(x)} samples, {len(y)} labels).")
    if method == "pca":
        points = PCA(n_components=2, random_state=0).fit_transform(x)
    else:
        # one OpenMP thread: after PyTorch ran, its spinning idle threads make a multi-threaded t-SNE
        # crawl (20-40 s instead of 0.2 s for 30 points on 2 cores)
        with threadpool_limits(1, user_api="openmp"):
            points = TSNE(2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=0).fit_transform(x)
    fig, (a,) = axes_row(ax, 1, (5.5, 4.5))
    for c in np.unique(y):
        a.scatter(*points[y == c].T, s=14, alpha=0.75, color=PALETTE[int(c) % len(PALETTE)],
                  label=classes[int(c)] if classes else str(c))
    axis = "PC" if method == "pca" else "t-SNE "
    a.set(xlabel=f"{axis}1", ylabel=f"{axis}2", title=title or f"Features in 2-D ({method.upper()})")
    a.legend(title="class", loc="best", markerscale=1.5)
    fig.points = points
    return fig


@styled
def trainable(model: nn.Module, ax=None):
    """One bar per layer group (parameter count, log scale) coloured frozen / partly / fully trainable.

    Args:
        model: any model ftlab can split into layer groups.
        ax: axes to draw into.

    Returns:
        The ``Figure``; the BatchNorm mode of each group is written next to its bar.
    """
    s = trainable_summary(model)
    n = len(s.rows)
    fig, (a,) = axes_row(ax, 1, (8, 0.32 * n + 1.6))
    colors = [FROZEN if r["trainable"] == 0 else PALETTE[0] if r["trainable"] == r["params"] else PALETTE[1]
              for r in s.rows]
    a.barh(range(n), [max(1, r["params"]) for r in s.rows], color=colors, height=0.7)
    for y, r in enumerate(s.rows):
        part = f" ({r['trainable']:,} trainable)" if 0 < r["trainable"] < r["params"] else ""
        a.text(max(1, r["params"]) * 1.15, y, f"{r['params']:,}{part}" + (f"   BN {r['bn']}" if r["bn"] != "-" else ""),
               va="center", fontsize=8)
    a.set_xscale("log")
    a.set_xlim(right=s.total * 40 if s.total else 10)
    a.set_yticks(range(n), [r["group"] for r in s.rows])
    a.invert_yaxis()
    a.grid(False, axis="y")
    a.set(xlabel="parameters (log scale)", ylabel="layer group (input at top)",
          title=f"Trainable: {s.trainable:,} of {s.total:,} parameters ({s.percent:.1f}%)")
    a.legend(handles=[Patch(color=c, label=t) for c, t in
                      ((FROZEN, "frozen"), (PALETTE[1], "partly trainable"), (PALETTE[0], "trainable"))],
             loc="upper right")
    return fig


@styled
def compare(results: Sequence[dict], ax=None):
    """Test accuracy against trainable parameters (log) and against training time, one point per run.

    Args:
        results: dicts with ``name``, ``test_acc`` (or ``acc``: test accuracy, 0-1), ``trainable``
            (parameter count) and ``seconds`` (the rows of :func:`ftlab.lab.strategies.run_strategy`).
        ax: two axes to draw into.

    Returns:
        The ``Figure``.
    """
    fig, axs = axes_row(ax, 2, (10, 3.8))
    for a, key, xlabel in ((axs[0], "trainable", "trainable parameters (log scale)"),
                           (axs[1], "seconds", "training time (s)")):
        for i, r in enumerate(results):
            acc = r["test_acc"] if "test_acc" in r else r["acc"]
            a.plot(r[key], acc, "o", ms=8, color=PALETTE[i % len(PALETTE)])
            a.annotate(r.get("name", r.get("strategy", "")), (r[key], acc), xytext=(6, 5), textcoords="offset points",
                       fontsize=9)
        a.set(xlabel=xlabel, ylabel="test accuracy")
        a.yaxis.set_major_formatter(PercentFormatter(1.0))
        a.margins(x=0.2, y=0.15)
    axs[0].set_xscale("log")
    axs[0].set_title("Accuracy vs trainable parameters")
    axs[1].set_title("Accuracy vs training time")
    return fig


@styled
def lr_find(result, ax=None, labels: Sequence[str] | None = None):
    """The learning-rate range test: smoothed loss against learning rate, the suggestion marked.

    Several results are overlaid, one colour each (e.g. the same model with the head alone
    trainable and after unfreezing more groups), each with its suggestion as a dashed line.

    Args:
        result: :class:`ftlab.recipes.LRFinderResult` (``lrs``, ``losses``, ``suggestion``), or a list of them.
        ax: axes to draw into.
        labels: one name per result (default: none for one result, ``run 1``, ``run 2`` ... for several).

    Returns:
        The ``Figure``.
    """
    results = [result] if hasattr(result, "lrs") else list(result)
    if not results or not all(hasattr(r, "lrs") and hasattr(r, "suggestion") for r in results):
        raise UsageError("plot.lr_find takes the result of ftlab.lr_find(...), or a list of them.")
    if labels is None:
        labels = [""] if len(results) == 1 else [f"run {i + 1}" for i in range(len(results))]
    if isinstance(labels, str) or len(labels) != len(results):
        raise UsageError(f"plot.lr_find got {len(results)} result(s) but labels={labels!r}: give one label per result.")
    fig, (a,) = axes_row(ax, 1, (6, 3.8))
    curves = [(np.asarray(r.lrs, dtype=float), np.asarray(r.losses, dtype=float)) for r in results]
    for i, (r, name, (lrs, losses)) in enumerate(zip(results, labels, curves)):
        line, mark = (PALETTE[0], PALETTE[3]) if len(results) == 1 else (PALETTE[i % len(PALETTE)],) * 2
        pre = f"{name}: " if name else ""
        a.plot(lrs, losses, color=line, label=pre + "smoothed loss")
        a.axvline(r.suggestion, color=mark, ls="--", label=f"{pre}suggestion {r.suggestion:.1e}")
    finite = [losses[np.isfinite(losses)] for _, losses in curves]
    if any(len(f) for f in finite):
        low = min(f.min() for f in finite if len(f))
        high = max(f.max() for f in finite if len(f))
        first = max(f[0] for f in finite if len(f))          # clip the blow-up: up to twice the fall from the start
        a.set_ylim(low - 0.05 * abs(low), min(high, first + 2 * (first - low) + 1e-3))
    a.set_xscale("log")
    a.set(xlabel="learning rate (log scale)", ylabel="loss", title="Learning-rate range test")
    a.legend(loc="upper left")
    return fig
