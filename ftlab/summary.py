"""Summaries over seeds: a metric's mean, spread and count (:func:`spread`), and rows grouped by a key (:func:`aggregate`).

Noisy comparisons are made on several seeds and shown with their spread: ``print(ft.lab.spread(accs))``
gives ``81.2 % ± 0.8 (n=3)``. The full runs store ``Spread.summary()`` in their result files, and
the sweep figures draw :func:`aggregate` rows. This is description, not a test: whether a difference
is larger than its noise is the lab's business (:mod:`ftlab.lab.claims`).
"""
from __future__ import annotations

import statistics
from typing import Any, NamedTuple, Sequence

from .errors import UsageError

__all__ = ["Spread", "spread", "aggregate"]


class Spread(NamedTuple):
    """Mean, sample standard deviation and count of a metric over seeds (see :func:`spread`)."""

    mean: float
    std: float | None
    n: int
    low: float
    high: float

    def __str__(self) -> str:
        return self.format()

    def summary(self) -> dict[str, float]:
        """JSON-ready ``{"mean", "std", "min", "max", "n"}`` (std 0.0 for one value): the full runs' result files."""
        return {"mean": self.mean, "std": self.std or 0.0, "min": self.low, "max": self.high, "n": self.n}

    def format(self, percent: bool = True) -> str:
        """``"81.2 % ± 0.8 (n=3)"``; one run shows no spread: ``"81.2 % (one seed)"``."""
        if percent:
            text = f"{self.mean:.1%}".replace("%", " %")
            return text + (f" ± {self.std:.1%}".replace("%", "") + f" (n={self.n})" if self.n > 1 else " (one seed)")
        return f"{self.mean:.3g}" + (f" ± {self.std:.2g} (n={self.n})" if self.n > 1 else " (one seed)")


def spread(values: Sequence[float]) -> Spread:
    """Mean ± standard deviation of one metric over several seeds; with one value the std is None.

    Args:
        values: one value per seed.

    Returns:
        :class:`Spread` (``mean``, ``std``, ``n``, ``low``, ``high``); ``str()`` formats it as a percentage.
    """
    vals = [float(v) for v in values]
    if not vals:
        raise UsageError("spread() needs at least one value (one per seed).")
    return Spread(statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals), min(vals), max(vals))


def aggregate(rows: Sequence[dict[str, Any]], by: tuple[str, ...] = ("strategy", "subset"),
              value: str = "test_acc") -> list[dict[str, Any]]:
    """Mean, standard deviation and count of ``value`` over the rows that share ``by`` (e.g. over seeds).

    Args:
        rows: dicts, e.g. the rows of a sweep's ``results.csv`` (rows whose ``status`` is not ``"ok"``
            and rows without ``value`` are left out).
        by: the keys that make a group.
        value: the metric summarised.

    Returns:
        One dict per group: the ``by`` keys, ``mean``, ``std`` (0.0 for one row), ``n``, and the mean
        ``trainable`` and ``seconds`` where the rows have them.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("status", "ok") == "ok" and r.get(value) not in (None, ""):
            groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    out = []
    for key, runs in groups.items():
        vals = [float(r[value]) for r in runs]
        extra = {k: statistics.mean(float(r[k]) for r in runs) for k in ("trainable", "seconds")
                 if runs[0].get(k) not in (None, "")}
        out.append({**dict(zip(by, key)), "mean": statistics.mean(vals),
                    "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals), **extra})
    return out
