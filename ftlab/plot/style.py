"""The house style of ftlab's figures, and the axes helpers every figure uses.

Every figure function returns the ``Figure`` (Jupyter shows it as the cell's value), draws into
``ax`` (or a sequence of axes) when given one, and works headless (Agg). One style
(:data:`STYLE` with the colour-blind-safe Okabe-Ito :data:`PALETTE`) is applied by :func:`styled`.
"""
from __future__ import annotations

import functools
import math

import matplotlib.pyplot as plt
import numpy as np

from ..errors import UsageError

__all__ = ["PALETTE", "MARKERS", "STYLE", "WRONG", "FROZEN", "styled", "axes_row", "tiles"]

PALETTE = ("#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#f0e442", "#000000")
"""Okabe-Ito colours (blue, orange, green, vermillion, purple, sky, yellow, black): colour-blind safe."""
WRONG, FROZEN = "#d55e00", "#bbbbbb"
MARKERS = ("o", "s", "^", "D")
"""Markers that tell apart series once the palette repeats (tradeoff: a colour and a marker per label)."""
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
         "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.spines.top": False, "axes.spines.right": False,
         "axes.grid": True, "grid.alpha": 0.3, "axes.prop_cycle": plt.cycler(color=PALETTE),
         "figure.dpi": 100, "savefig.bbox": "tight"}


def styled(func):
    """Run a plotting function under :data:`STYLE` (fonts, colours, spines, grid).

    A figure the function created itself is released from pyplot, so Jupyter shows it exactly
    once: as the value of the cell (``display(fig)`` shows it elsewhere). A figure drawn into
    the caller's ``ax`` stays the caller's.
    """
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            fig = func(*args, **kwargs)
        if kwargs.get("ax") is None:
            plt.close(fig)
        return fig
    return wrapper


def axes_row(ax, n: int, size: tuple[float, float]):
    """``n`` axes in a row: new ones in a fresh figure, or the given ones (styled like new ones)."""
    if ax is None:
        fig, axs = plt.subplots(1, n, figsize=size, layout="constrained", squeeze=False)
        return fig, list(axs.flat)
    axs = list(np.ravel(ax))
    if len(axs) < n:
        raise UsageError(f"This figure needs {n} axes, got {len(axs)}: pass a sequence of {n} axes or none.")
    for a in axs[:n]:
        a.spines[["top", "right"]].set_visible(False)
        a.grid(True, alpha=STYLE["grid.alpha"])
    return axs[0].figure, axs[:n]


def tiles(n: int, ax=None, cols: int | None = None, side: float = 1.9):
    """``n`` image axes (no ticks): a new grid, the given axes, or one given axes split into a grid."""
    cols = cols or min(n, max(1, math.ceil(math.sqrt(n * 1.5))))
    rows = math.ceil(n / cols)
    if ax is None:
        fig, axs = plt.subplots(rows, cols, figsize=(cols * side, rows * (side + 0.35)),
                                layout="constrained", squeeze=False)
        axs = list(axs.flat)
    elif isinstance(ax, plt.Axes):
        fig, spec = ax.figure, ax.get_subplotspec().subgridspec(rows, cols)
        ax.remove()
        axs = [fig.add_subplot(spec[i]) for i in range(rows * cols)]
    else:
        axs = list(np.ravel(ax))
        fig = axs[0].figure
    for a in axs:
        a.set_axis_off()
    return fig, axs[:n]
