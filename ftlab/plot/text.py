"""Figures of text models: token attributions as coloured words, sentence-similarity matrices.

Introduced in lesson 06.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..errors import UsageError
from .style import PALETTE, styled

__all__ = ["token_attributions", "similarity"]


def _word_spans(tokens: Sequence[str], scores: np.ndarray) -> list[tuple[str, float]]:
    """WordPiece tokens joined back into words (``##`` pieces), each scored by its pieces' sum."""
    words: list[tuple[str, float]] = []
    for tok, s in zip(tokens, scores):
        if tok.startswith("##") and words:
            words[-1] = (words[-1][0] + tok[2:], words[-1][1] + float(s))
        else:
            words.append((tok, float(s)))
    return words


@styled
def token_attributions(attributions, classes: Sequence[str] | None = None, width: float = 10.0, ax=None):
    """Each text as words on coloured boxes: blue pushed toward the predicted class, orange against.

    Args:
        attributions: one or several :class:`ftlab.text.Attribution` (``ft.text.token_attributions``).
        classes: class names for the titles.
        width: figure width in inches.
        ax: draw into this axes (one row per text).

    Returns:
        The Figure.
    """
    items = [attributions] if hasattr(attributions, "tokens") else list(attributions)
    if not items:
        raise UsageError("Pass at least one attribution (ft.text.token_attributions(model, tokenizer, text)).")
    fig, axis = (plt.subplots(figsize=(width, 0.95 * len(items) + 0.3)) if ax is None else (ax.figure, ax))
    axis.set_axis_off()
    axis.set_title("blue: pushed toward the predicted class · orange: against · darker: stronger", fontsize=9,
                   loc="left", color="#555555")
    axis.set_xlim(0, 1)
    axis.set_ylim(len(items), 0)
    renderer = fig.canvas.get_renderer()
    for row, a in enumerate(items):
        words = [(w, s) for w, s in _word_spans(a.tokens, a.scores.numpy()) if w not in ("[CLS]", "[SEP]", "[PAD]")]
        top = max((abs(s) for _, s in words), default=1.0) or 1.0
        name = classes[a.predicted] if classes else str(a.predicted)
        axis.text(0, row + 0.12, f"predicted {name} ({a.prob:.0%}), {a.method.replace('_', ' ')}", fontsize=8,
                  color="#555555", va="top")
        x, y = 0.0, row + 0.5
        for w, s in words:
            colour = PALETTE[0] if s > 0 else PALETTE[1]
            t = axis.text(x, y, w, fontsize=10, va="center",
                          bbox=dict(boxstyle="round,pad=0.15", lw=0, fc=colour, alpha=0.1 + 0.8 * abs(s) / top))
            bb = t.get_window_extent(renderer).transformed(axis.transData.inverted())
            x += bb.width + 0.008
            if x > 0.93:
                x, y = 0.0, y + 0.3
    return fig


@styled
def similarity(matrix: torch.Tensor | np.ndarray, labels: Sequence[str], title: str | None = None, ax=None):
    """A cosine-similarity matrix as a heat map with the values written in (``ft.text.similarities``)."""
    m = np.asarray(matrix, dtype=float)
    if m.shape != (len(labels), len(labels)):
        raise UsageError(f"A {m.shape} matrix needs {m.shape[0]} labels, got {len(labels)}.")
    fig, axis = (plt.subplots(figsize=(1.1 * len(labels) + 3, 0.6 * len(labels) + 1.2), layout="constrained")
                 if ax is None else (ax.figure, ax))
    im = axis.imshow(m, cmap="Blues", vmin=min(0.0, m.min()), vmax=1)
    axis.set_xticks(range(len(labels)), [str(i + 1) for i in range(len(labels))])
    axis.set_yticks(range(len(labels)), [f"{i + 1}  {t[:45]}" for i, t in enumerate(labels)])
    axis.grid(False)
    for i in range(len(labels)):
        for j in range(len(labels)):
            axis.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                      color="white" if m[i, j] > 0.6 else "black")
    fig.colorbar(im, ax=axis, shrink=0.8, label="cosine similarity")
    if title:
        axis.set_title(title)
    return fig
