"""Figures of experiment results: accuracy against training-set size per strategy, and the published baselines.

Sibling of :mod:`ftlab.plot` (introduced in lesson 05); ``ftlab.plot.scaling`` reaches it too.
"""
from __future__ import annotations

from typing import Any, Sequence

from .plot import _axes, _styled
from .sweep import aggregate

__all__ = ["scaling", "baselines"]


@_styled
def scaling(rows: Sequence[dict[str, Any]], value: str = "test_acc", ax=None):
    """Accuracy (mean ± std over seeds) against training images, one line per strategy.

    Args:
        rows: experiment results (``results.csv`` rows or ``run_experiment`` dicts) with
            ``strategy``, ``train_images`` and ``value``.
        value: the column to plot.
        ax: draw into this axes.

    Returns:
        The Figure.
    """
    fig, (a,) = _axes(ax, 1, (6.5, 4.2))
    agg = aggregate(list(rows), by=("strategy", "train_images"), value=value)
    for strategy in dict.fromkeys(r["strategy"] for r in agg):
        pts = sorted((r for r in agg if r["strategy"] == strategy), key=lambda r: float(r["train_images"]))
        x = [float(r["train_images"]) for r in pts]
        a.errorbar(x, [r["mean"] for r in pts], yerr=[r["std"] for r in pts], marker="o", capsize=3, label=strategy)
    a.set_xscale("log")
    a.set(xlabel="training images (log scale)", ylabel=value.replace("_", " "),
          title="Accuracy against training-set size")
    a.legend(title="strategy", loc="lower right")
    return fig


@_styled
def baselines(ours: dict[str, float], published: dict[str, float], ax=None):
    """Horizontal bars: our accuracies next to published ones (published bars hatched)."""
    fig, (a,) = _axes(ax, 1, (7, 0.45 * (len(ours) + len(published)) + 1.2))
    names = [*published, *ours]
    values = [*published.values(), *ours.values()]
    bars = a.barh(range(len(names)), values, color=["#bbbbbb"] * len(published) + ["#0072b2"] * len(ours))
    for b in bars[: len(published)]:
        b.set_hatch("//")
    for i, v in enumerate(values):
        a.text(v + 0.003, i, f"{v:.1%}", va="center", fontsize=9)
    a.set_yticks(range(len(names)), names)
    a.invert_yaxis()
    a.set_xlim(min(values) - 0.1, min(1.0, max(values) + 0.06))
    a.set(xlabel="test accuracy", title="ftlab runs (blue) and published ELPV results (grey, hatched)")
    return fig
