"""Figures of experiment results: accuracy against training-set size per strategy, and the published baselines.

Introduced in lesson 05; ``ftlab sweep`` draws them with :func:`ftlab.lab.save_sweep_figures`.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.ticker import NullFormatter, PercentFormatter

from ..errors import UsageError
from ..summary import aggregate
from ..summary import spread as mean_std
from .style import MARKERS, PALETTE, axes_row, styled

__all__ = ["spread", "intervals", "scaling", "tradeoff", "baselines", "augmentation_effect"]


@styled
def spread(results: Mapping[str, Sequence[float]], baseline: float | None = None, baseline_label: str = "majority class",
           xlabel: str = "test accuracy", title: str | None = None, percent: bool = True, ax=None):
    """One row per run setting: every seed as a dot, the mean as a bar with ± one standard deviation.

    The dots show the noise a single run would hide; the axis spans the dots and the baseline
    (e.g. always answering the majority class), so a difference is seen against both.

    Args:
        results: ``{name: [value per seed]}``, in the order to draw.
        baseline: a reference value drawn as a vertical line (None: none).
        baseline_label, xlabel, title: texts.
        percent: the values are fractions: label the axis in percent.
        ax: draw into this axes.

    Returns:
        The Figure.
    """
    if not results or any(len(v) == 0 for v in results.values()):
        raise UsageError("spread() needs {name: [one value per seed, ...]} with at least one value each.")
    fig, (a,) = axes_row(ax, 1, (6.5, 0.5 * len(results) + 1.3))
    names = list(results)
    rng = np.random.default_rng(0)                       # vertical jitter only, so equal values stay visible
    for i, name in enumerate(names):
        s = mean_std(results[name])
        vals = np.asarray(results[name], dtype=float)
        a.errorbar(s.mean, i, xerr=s.std or 0.0, fmt="|", markersize=16, capsize=4, color="black", zorder=3)
        a.scatter(vals, i + rng.uniform(-0.12, 0.12, len(vals)), s=22, alpha=0.75, zorder=2)
        a.text(1.01, i, s.format(percent), transform=a.get_yaxis_transform(), va="center", fontsize=9)
    if baseline is not None:
        a.axvline(baseline, color="#666666", ls="--", lw=1)
        value = f"{baseline:.1%}" if percent else f"{baseline:.3g}"
        a.text(baseline, len(names) - 0.45, f" {baseline_label} {value}", fontsize=8, color="#444444", va="bottom")
    a.set_yticks(range(len(names)), names)
    a.set_ylim(len(names) - 0.3, -0.7)
    ends = [mean_std(v) for v in results.values()]
    everything = ([v for vals in results.values() for v in vals] + [s.mean + (s.std or 0) for s in ends]
                  + [s.mean - (s.std or 0) for s in ends] + ([baseline] if baseline is not None else []))
    pad = 0.05 * (max(everything) - min(everything) or 1.0)
    a.set_xlim(min(everything) - pad, max(everything) + pad)
    if percent:
        a.xaxis.set_major_formatter(PercentFormatter(1.0))
    a.set(xlabel=xlabel, title=title or f"{xlabel.capitalize()} per seed (dots), mean ± std (bars)")
    return fig


@styled
def intervals(estimates: Mapping[str, Any], reference: float | None = 0.0, xlabel: str | None = None,
              title: str | None = None, ax=None):
    """One row per estimate: its value as a dot and its 95 % interval as a line, against a reference line.

    Read a paired difference against 0: an interval that crosses the line does not rank the two arms
    (*undecided*); one that stays on one side does. The figure of ``ft.lab.paired`` / ``ft.lab.estimate``.

    Args:
        estimates: ``{label: estimate}``; an estimate has ``value``, ``low`` and ``high`` (an
            :class:`ftlab.lab.Estimate`, or any object with those), ``percent`` (True: shown in % or points).
        reference: a vertical line (0 for differences, a baseline for accuracies; None: none).
        xlabel, title: texts (defaults: points of difference, or the estimates' own scale).
        ax: draw into this axes.

    Returns:
        The Figure.
    """
    if not estimates:
        raise UsageError("intervals() needs {label: estimate} with at least one estimate.")
    bad = [k for k, e in estimates.items() if not all(hasattr(e, f) for f in ("value", "low", "high"))]
    if bad:
        raise UsageError(f"intervals() takes estimates with value, low and high (ft.lab.paired / ft.lab.estimate); "
                         f"{bad[0]!r} is a {type(estimates[bad[0]]).__name__}.")
    es = list(estimates.values())
    k = 100.0 if all(getattr(e, "percent", False) for e in es) else 1.0
    differences = all(getattr(e, "what", "") == "difference" for e in es)
    fig, (a,) = axes_row(ax, 1, (7.5, 0.42 * len(es) + 1.4))
    for i, e in enumerate(es):
        clear = reference is not None and (e.low > reference or e.high < reference)
        colour = PALETTE[0] if clear else "#777777"
        a.plot([k * e.low, k * e.high], [i, i], color=colour, lw=2.2, solid_capstyle="butt")
        a.plot([k * e.value], [i], "o", color=colour, markersize=6)
    if reference is not None:
        a.axvline(k * reference, color="#444444", ls="--", lw=1)
    a.set_yticks(range(len(es)), list(estimates))
    a.set_ylim(len(es) - 0.4, -0.6)
    unit = ("points" if differences else "%") if k == 100.0 else ""
    a.set(xlabel=xlabel or (f"difference ({unit})" if differences else f"estimate ({unit})" if unit else "estimate"),
          title=title or "Estimates with their 95 % intervals (blue: the interval clears the dashed line)")
    return fig


@styled
def scaling(rows: Sequence[dict[str, Any]], value: str = "test_acc", ax=None, legend: str = "strategy",
            unit: str = "training images", baseline: float | None = None, baseline_label: str = "majority class"):
    """Accuracy (mean ± std over seeds, the bars) against training images, one line per strategy.

    Args:
        rows: experiment results (``results.csv`` rows or ``run_experiment`` dicts) with
            ``strategy``, ``train_images`` and ``value``.
        value: the column to plot.
        ax: draw into this axes.
        legend: the legend's title (what the lines are: strategies, or e.g. "model, input").
        unit: what the x-axis counts ("training images", "training cells" ...).
        baseline, baseline_label: a horizontal reference line (e.g. always answering the majority class).

    Returns:
        The Figure.
    """
    fig, (a,) = axes_row(ax, 1, (6.5, 4.2))
    agg = aggregate(list(rows), by=("strategy", "train_images"), value=value)
    for strategy in dict.fromkeys(r["strategy"] for r in agg):
        pts = sorted((r for r in agg if r["strategy"] == strategy), key=lambda r: float(r["train_images"]))
        x = [float(r["train_images"]) for r in pts]
        a.errorbar(x, [r["mean"] for r in pts], yerr=[r["std"] for r in pts], marker="o", capsize=3, label=strategy)
    if baseline is not None:
        a.axhline(baseline, color="grey", linestyle=":", label=baseline_label)
    a.set_xscale("log")
    sizes = sorted({float(r["train_images"]) for r in agg})
    a.set_xticks(sizes, [f"{x:,.0f}" for x in sizes])       # the sizes that were run, not powers of ten
    a.xaxis.set_minor_formatter(NullFormatter())
    a.set(xlabel=f"{unit} (log scale)", ylabel=value.replace("_", " "),
          title="Accuracy against training-set size (bars: ± 1 std over seeds)")
    a.legend(title=legend, loc="lower right")
    return fig


@styled
def tradeoff(points: Mapping[str, tuple[float, Sequence[float]]], xlabel: str = "images per second on this CPU",
             ylabel: str = "test accuracy", title: str | None = None, logx: bool = True, ax=None):
    """Accuracy against a cost, one labelled point per model or setting: mean ± std over seeds, every seed a dot.

    Read it as a trade-off: up is better, and (for a speed on the x-axis) right is cheaper. Points with
    the same cost are drawn a little apart (4 % on a log axis) so that none hides another.

    Args:
        points: ``{label: (x, [value per seed])}`` (x: images/s, parameters, seconds ...).
        xlabel, ylabel, title: texts.
        logx: log-scale x-axis (speeds and sizes span factors, not steps).
        ax: draw into this axes.

    Returns:
        The Figure.
    """
    if not points or any(len(v) == 0 for _, v in points.values()):
        raise UsageError("tradeoff() needs {label: (x, [one value per seed, ...])} with at least one value each.")
    fig, (a,) = axes_row(ax, 1, (8.5, 4.2))
    same_x: dict[float, int] = {}
    for i, (label, (x, values)) in enumerate(points.items()):
        k = same_x[x] = same_x.get(x, -1) + 1                # points that share a cost sit side by side, not on top
        x = x * 1.04 ** k if logx else x + 0.02 * k * abs(x or 1)
        s = mean_std(values)
        colour, marker = PALETTE[i % len(PALETTE)], MARKERS[i // len(PALETTE) % len(MARKERS)]   # every label its own
        a.scatter([x] * len(values), values, s=14, alpha=0.5, color=colour, marker=marker, zorder=2)
        a.errorbar(x, s.mean, yerr=s.std or 0.0, fmt=marker, capsize=4, color=colour, zorder=3, label=label)
    if logx:
        a.set_xscale("log")
    a.yaxis.set_major_formatter(PercentFormatter(1.0))
    title = (title or f"{ylabel.capitalize()} against {xlabel}") + "\n(bars: ± 1 std over seeds)"
    a.set(xlabel=xlabel, ylabel=ylabel, title=title)
    a.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))       # beside the points, not on them
    return fig


@styled
def baselines(ours: dict[str, float], published: dict[str, float], title: str | None = None, ax=None):
    """Horizontal bars from 0: our accuracies next to published ones (published bars grey and hatched).

    The axis starts at 0, so a difference of a point looks like one. Put one task per figure
    (e.g. 2 classes and 4 classes in two figures): accuracies of different tasks are not comparable.
    """
    fig, (a,) = axes_row(ax, 1, (7, 0.45 * (len(ours) + len(published)) + 1.2))
    names = [*published, *ours]
    values = [*published.values(), *ours.values()]
    bars = a.barh(range(len(names)), values, color=["#bbbbbb"] * len(published) + ["#0072b2"] * len(ours))
    for b in bars[: len(published)]:
        b.set_hatch("//")
    for i, v in enumerate(values):
        a.text(v + 0.01, i, f"{v:.1%}", va="center", fontsize=9)
    a.set_yticks(range(len(names)), names)
    a.invert_yaxis()
    a.set_xlim(0, 1.12)
    a.xaxis.set_major_formatter(PercentFormatter(1.0))
    a.set(xlabel="test accuracy", title=title or "ftlab runs (blue) and published ELPV results (grey, hatched)")
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
