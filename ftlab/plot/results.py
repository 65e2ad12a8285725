"""Figures of experiment results: accuracy against training-set size per strategy, and the published baselines.

Introduced in lesson 05; ``ftlab sweep`` draws them with :func:`save_sweep_figures`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..files import atomic_write
from ..sweep import aggregate
from .style import axes_row, styled

__all__ = ["scaling", "baselines", "augmentation_effect", "save_sweep_figures"]


@styled
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
    fig, (a,) = axes_row(ax, 1, (6.5, 4.2))
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


@styled
def baselines(ours: dict[str, float], published: dict[str, float], ax=None):
    """Horizontal bars: our accuracies next to published ones (published bars hatched)."""
    fig, (a,) = axes_row(ax, 1, (7, 0.45 * (len(ours) + len(published)) + 1.2))
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


@styled
def augmentation_effect(rows: Sequence[dict[str, Any]], value: str = "test_acc", ax=None):
    """Grouped bars: accuracy (mean ± std over seeds) per strategy and augmentation, at the largest
    training set that was run with more than one augmentation (else the largest)."""
    fig, (a,) = axes_row(ax, 1, (6.5, 4.2))
    every = aggregate(list(rows), by=("strategy", "augment", "train_images"), value=value)
    sizes = {float(r["train_images"]) for r in every}
    mixed = [n for n in sizes if len({r["augment"] for r in every if float(r["train_images"]) == n}) > 1]
    largest = max(mixed or sizes)
    agg = [r for r in every if float(r["train_images"]) == largest]
    strategies = list(dict.fromkeys(r["strategy"] for r in agg))
    augments = [x for x in ("none", "light", "strong") if any(r["augment"] == x for r in agg)]
    augments += sorted({r["augment"] for r in agg} - set(augments))
    width = 0.8 / max(1, len(augments))
    for j, aug in enumerate(augments):
        pts = {r["strategy"]: r for r in agg if r["augment"] == aug}
        xs = [i + (j - (len(augments) - 1) / 2) * width for i, st in enumerate(strategies) if st in pts]
        a.bar(xs, [pts[st]["mean"] for st in strategies if st in pts], width,
              yerr=[pts[st]["std"] for st in strategies if st in pts], capsize=3, label=aug)
    a.set_xticks(range(len(strategies)), strategies)
    lo = min((r["mean"] - r["std"] for r in agg), default=0.5)
    a.set_ylim(max(0.0, lo - 0.05), 1.0)
    a.set(ylabel=value.replace("_", " "), title=f"Augmentation, {int(largest):,} training images")
    a.legend(title="augment", loc="upper right", ncols=len(augments))
    return fig


def save_sweep_figures(rows: Sequence[dict[str, Any]], out: str | Path) -> list[Path]:
    """Write a sweep's figures next to its ``results.csv``: ``scaling.png`` (one per augmentation
    when there are several: ``scaling-<augment>.png``) and, with several augmentations, ``augmentation.png``."""
    ok = [r for r in rows if r.get("status", "ok") == "ok" and r.get("test_acc") not in (None, "")]
    if not ok:
        return []
    out, written = Path(out), []

    def save(fig, name):
        written.append(atomic_write(out / name, lambda tmp: fig.savefig(tmp, format="png", dpi=110)))

    augments = sorted({str(r.get("augment", "none")) for r in ok})
    for aug in augments:
        fig = scaling([r for r in ok if str(r.get("augment", "none")) == aug])
        if len(augments) > 1:
            fig.axes[0].set_title(f"Accuracy against training-set size, augment={aug}")
        save(fig, "scaling.png" if len(augments) == 1 else f"scaling-{aug}.png")
    if len(augments) > 1:
        save(augmentation_effect(ok), "augmentation.png")
    return written
