"""Differences with their uncertainty: a bootstrap over test examples, and over seeds where there are several.

Introduced in lesson 01. Two arms scored on the **same** test examples are a paired comparison:
what varies between them is the arm, not the examples. :func:`paired` takes each arm's
per-example scores (``1.0`` for a correct prediction, ``0.0`` for a wrong one, or
:class:`ftlab.Predictions`), one row per seed, and returns the mean difference with a 95 %
interval::

    d = ft.lab.paired(top2_predictions, head_predictions)      # lists of Predictions, one per seed
    print(d)             # +1.8 points [-0.4, +4.0] (95 %, 656 examples x 3 seeds)

**How the interval is made.** With one seed the interval is the paired bootstrap over test
examples (Efron & Tibshirani 1993, ch. 13; Koehn 2004 for its use on paired system outputs):
resample the examples with replacement, the same ones for both arms, and read the 2.5 and 97.5
percentiles of the mean difference. With several seeds (the arms' runs paired by seed: seed ``s``
of one arm shares its data draw and its head's start with seed ``s`` of the other) the examples
and the seeds are resampled *both*, independently: the two-way ("pigeonhole") bootstrap of a
crossed seeds x examples table (Owen 2007, *Annals of Applied Statistics* 1(2)), so the interval
holds both the test-sampling noise and the training noise (Bouthillier et al. 2021, *Accounting for
variance in machine learning benchmarks*). With 2 or 3 seeds the seed part of that interval is
rough; it is still wider, and more honest, than the examples alone.

:func:`estimate` gives one arm's mean (an accuracy) with the same interval — except for a share of
right / wrong answers from one run, where it uses the Wilson score interval (Wilson 1927; Brown, Cai
& DasGupta 2001): a percentile bootstrap of 64 right out of 64 would be the useless ``[100, 100]``,
Wilson's is ``[94.3, 100]``. An :class:`Estimate`
feeds :func:`ftlab.lab.claim` with ``above=``, ``below=`` or ``within=`` and gets one of three
verdicts (``holds``, ``fails``, ``undecided``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any

import numpy as np

from ..errors import UsageError

__all__ = ["Estimate", "paired", "paired_metric", "unpaired", "estimate", "per_example", "verdict", "majority_baseline"]

LEVEL = 0.95
RESAMPLES = 4000


@dataclass(frozen=True)
class Estimate:
    """A mean (one arm's score, or the paired difference of two) and its bootstrap interval.

    ``value`` is the mean over seeds and examples; ``low`` and ``high`` bound the ``level``
    percentile interval; ``n`` examples, ``seeds`` seeds; ``over`` says what was resampled;
    ``samples`` are the bootstrap replicates (for other levels: :meth:`interval`); ``counts`` is
    ``(right, n)`` where the interval is Wilson's for a proportion instead.
    """

    value: float
    low: float
    high: float
    level: float
    n: int
    seeds: int
    over: str
    what: str = ""
    samples: np.ndarray = field(default=None, repr=False, compare=False)
    counts: tuple[int, int] | None = None
    percent: bool = True             # a share shown in % / points; False: a plain number (an mAP), 3 decimals

    def interval(self, level: float) -> tuple[float, float]:
        """The interval at another ``level`` (e.g. 0.90 for two one-sided tests at 5 %)."""
        if self.counts is not None:
            return wilson(*self.counts, level)
        return _percentile(self.samples, level)

    def summary(self) -> dict[str, Any]:
        """Plain numbers for a claim's evidence and the metrics JSON."""
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n, "seeds": self.seeds}

    def format(self, points: bool | None = None) -> str:
        """``"+1.8 points [-0.4, +4.0] (95 %, 656 examples x 3 seeds)"``; ``points=False``: plain numbers, 3 decimals
        (an mAP); None: as the estimate was made (``percent``)."""
        points = self.percent if points is None else points
        k, digits = (100, 1) if points else (1, 3)
        sign = "+" if self.what == "difference" else ""
        unit = " points" if points and self.what == "difference" else (" %" if points else "")
        seeds = f" x {self.seeds} seeds" if self.seeds > 1 else ", one seed"
        level = f"{self.level:.0%}".replace("%", " %")
        f = f"{sign}.{digits}f"
        return (f"{k * self.value:{f}}{unit} [{k * self.low:{f}}, {k * self.high:{f}}] "
                f"({level}, {self.n:,} examples{seeds})")

    def __str__(self) -> str:
        return self.format()


def per_example(arm: Any) -> np.ndarray:
    """An arm's per-example scores as a ``[seeds, examples]`` float array.

    Takes ``ftlab.Predictions`` (scored as correct = 1, wrong = 0), a 1-D array-like (one seed),
    a 2-D one (seeds x examples), or a list of either (one per seed).
    """
    if hasattr(arm, "preds") and hasattr(arm, "targets"):
        arm = [arm]
    if isinstance(arm, (list, tuple)) and arm and hasattr(arm[0], "preds"):
        rows = []
        for p in arm:
            if p.targets is None:
                raise UsageError("These predictions have no targets to score: predict on a split with labels.")
            rows.append((p.preds == p.targets).float().numpy())
        arm = rows
    elif isinstance(arm, (list, tuple)) and arm and np.ndim(arm[0]) == 1:
        arm = [np.asarray(a, dtype=float) for a in arm]
        if len({len(a) for a in arm}) > 1:
            raise UsageError("Each seed of an arm must be scored on the same examples (rows of equal length).")
    x = np.asarray(arm.detach().cpu().numpy() if hasattr(arm, "detach") else arm, dtype=float)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise UsageError(f"Per-example scores are one row per seed, one column per test example; got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise UsageError("Per-example scores contain NaN or infinity: score every example.")
    return x


def wilson(right: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of the proportion ``right / n`` (Wilson 1927): never empty at 0 or 1."""
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p, z2 = right / n, z * z
    centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _two_way(d: np.ndarray, resamples: int, seed: int, what: str = "difference") -> tuple[np.ndarray, str]:
    """Bootstrap replicates of ``d.mean()`` resampling examples (columns) and, with several rows, seeds too."""
    k, n = d.shape
    rng = np.random.default_rng(seed)
    reps = np.empty(resamples)
    for lo in range(0, resamples, 500):                    # in chunks: 500 x n counts at a time
        b = min(500, resamples - lo)
        w_examples = rng.multinomial(n, np.full(n, 1 / n), size=b)            # [b, n] counts
        if k > 1:
            w_seeds = rng.multinomial(k, np.full(k, 1 / k), size=b)          # [b, k] counts
            reps[lo:lo + b] = ((w_seeds @ d) * w_examples).sum(1) / (k * n)
        else:
            reps[lo:lo + b] = w_examples @ d[0] / n
    one = "test examples (paired bootstrap)" if what == "difference" else "test examples (bootstrap)"
    return reps, "test examples and seeds (two-way bootstrap)" if k > 1 else one


def _check(level: float, resamples: int | None = None) -> None:
    if not 0.5 < level < 1:
        raise UsageError(f"level is the interval's coverage, between 0.5 and 1 (e.g. 0.95); got {level!r}.")
    if resamples is not None and resamples < 200:
        raise UsageError(f"resamples={resamples} is too few for a percentile interval: use 1000 or more.")


def _percentile(reps: np.ndarray, level: float) -> tuple[float, float]:
    """The ``level`` percentile interval of bootstrap replicates."""
    tail = (1 - level) / 2
    low, high = np.quantile(reps, [tail, 1 - tail])
    return float(low), float(high)


def _estimate(d: np.ndarray, what: str, level: float, resamples: int, seed: int) -> Estimate:
    _check(level, resamples)
    reps, over = _two_way(d, resamples, seed, what)
    low, high = _percentile(reps, level)
    return Estimate(float(d.mean()), float(low), float(high), level, d.shape[1], d.shape[0], over, what, reps)


def paired(a: Any, b: Any, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0,
           percent: bool = True) -> Estimate:
    """The mean paired difference ``a - b`` of two arms scored on the same test examples, with its interval.

    Args:
        a, b: each arm's per-example scores: ``ftlab.Predictions`` (correct = 1), an array of
            per-example scores, or one of either per seed (a list, or a ``[seeds, examples]`` array).
            Seed ``s`` of ``a`` is paired with seed ``s`` of ``b``; both see the same examples in the same order.
        level: the interval's coverage (0.95).
        resamples: bootstrap replicates.
        seed: the bootstrap's own random seed (the interval is reproducible).
        percent: show the difference in points (scores that are shares: right/wrong, F1); False: in the
            scores' own units, 3 decimals (a log-perplexity in nats, a loss).

    Returns:
        An :class:`Estimate` of the difference (in the units of the scores: 0.018 = 1.8 points).

    Raises:
        UsageError: the arms differ in seeds or examples, or a score is not finite.
    """
    xa, xb = per_example(a), per_example(b)
    if xa.shape != xb.shape:
        raise UsageError(f"A paired comparison needs both arms on the same seeds and test examples; got "
                         f"{xa.shape[0]} x {xa.shape[1]} and {xb.shape[0]} x {xb.shape[1]} (seeds x examples).")
    est = _estimate(xa - xb, "difference", level, resamples, seed)
    return est if percent else replace(est, percent=False)


def paired_metric(metric, a: list, b: list, level: float = LEVEL, resamples: int = 1000, seed: int = 0,
                  percent: bool = False) -> Estimate:
    """The paired difference ``metric(a) - metric(b)`` of a metric that is not a mean over examples (e.g. a
    detector's mAP over images), with the same two-way bootstrap as :func:`paired`.

    Each replicate draws the examples (and, with several seeds, the seeds) with replacement and
    recomputes the metric of both arms on the same draw: the mean over the drawn seeds of
    ``metric(a[s] at the drawn examples) - metric(b[s] at the drawn examples)``.

    Args:
        metric: a function of a list of per-example items (e.g. :func:`ftlab.detection.average_precision`
            of :func:`ftlab.detection.image_matches`) returning a float.
        a, b: one list of per-example items per seed (or one list: one seed); seed ``s`` of ``a`` is
            paired with seed ``s`` of ``b``, and every list holds the same examples in the same order.
        level, resamples, seed: as in :func:`paired` (fewer replicates by default: each recomputes the metric).
        percent: show the difference in points (a share such as an F1); False: a plain number such as an mAP.
    """
    a, b = ([a] if a and not isinstance(a[0], (list, tuple)) else list(a)), \
           ([b] if b and not isinstance(b[0], (list, tuple)) else list(b))
    if len(a) != len(b) or not a or len({len(x) for x in a + b}) != 1:
        raise UsageError("paired_metric needs both arms on the same seeds, each a list of the same examples.")
    _check(level, resamples)
    k, n = len(a), len(a[0])
    rng = np.random.default_rng(seed)

    def diff(seeds, idx):
        return float(np.mean([metric([a[s][i] for i in idx]) - metric([b[s][i] for i in idx]) for s in seeds]))

    reps = np.array([diff(rng.integers(0, k, k) if k > 1 else [0], rng.integers(0, n, n)) for _ in range(resamples)])
    reps = reps[np.isfinite(reps)]                     # a draw where the metric is undefined (no true box) is skipped
    low, high = _percentile(reps, level)
    over = "test examples and seeds (two-way bootstrap, metric recomputed)" if k > 1 else \
        "test examples (paired bootstrap, metric recomputed)"
    return Estimate(diff(range(k), range(n)), float(low), float(high), level, n, k, over, "difference", reps,
                    percent=percent)


def unpaired(a: Any, b: Any, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0) -> Estimate:
    """The difference of the mean scores of two *different* sets of examples, ``mean(a) - mean(b)``, with its interval.

    For two groups of test examples (e.g. the miss rate of unsure against sure defects), each
    resampled on its own (the bootstrap of a difference of two means, Efron & Tibshirani 1993,
    ch. 8). One seed each: ``a`` and ``b`` are 1-D per-example scores.
    """
    xa, xb = per_example(a), per_example(b)
    if xa.shape[0] != 1 or xb.shape[0] != 1:
        raise UsageError("unpaired compares two groups of examples of one run: pass 1-D per-example scores.")
    ea, eb = (_estimate(x, "mean", level, resamples, seed + i) for i, x in enumerate((xa, xb)))
    reps = ea.samples - eb.samples
    low, high = _percentile(reps, level)
    return Estimate(ea.value - eb.value, float(low), float(high), level, xa.shape[1] + xb.shape[1], 1,
                    f"two groups of examples ({xa.shape[1]} and {xb.shape[1]}), each resampled", "difference", reps)


def estimate(a: Any, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0) -> Estimate:
    """One arm's mean score (e.g. its accuracy) with its interval.

    Several seeds, or scores other than 0 / 1: the same bootstrap as :func:`paired`. One run of
    right (1) / wrong (0) answers: a proportion, with the Wilson score interval (:func:`wilson`).
    """
    x = per_example(a)
    if x.shape[0] > 1 or not np.isin(x, (0.0, 1.0)).all():
        return _estimate(x, "mean", level, resamples, seed)
    _check(level)
    right, n = int(x.sum()), x.shape[1]
    low, high = wilson(right, n, level)
    return Estimate(right / n, low, high, level, n, 1, "test examples (Wilson score interval of a proportion)", "mean",
                    counts=(right, n))


def majority_baseline(train_targets: Any, test_targets: Any):
    """What "always answer the majority class" gets right on each test example (1.0 / 0.0, a float tensor).

    The class is the most frequent one of the **training** labels: a baseline, like a model, must not
    be chosen on the test split. ``.mean()`` is its accuracy; pass it to :func:`paired` as an arm.
    """
    import torch

    train, test = torch.as_tensor(train_targets).long(), torch.as_tensor(test_targets).long()
    if train.numel() == 0 or test.numel() == 0:
        raise UsageError("majority_baseline needs the training labels and the test labels (neither may be empty).")
    return (test == int(train.bincount().argmax())).float()


def verdict(est: Estimate, above: float | None = None, below: float | None = None,
            within: float | None = None) -> str:
    """``"holds"``, ``"fails"`` or ``"undecided"`` for one bound on an :class:`Estimate`.

    * ``above=m``: holds when the whole interval lies above ``m``, fails when it lies at or below it.
    * ``below=m``: the mirror image.
    * ``within=m`` (equivalence, "no difference larger than m"): two one-sided tests at
      ``(1 - level) / 2`` each (Schuirmann 1987) — holds when the ``1 - 2 * (1 - level)`` interval
      (90 % for a 95 % level) lies inside ``(-m, m)``, fails when it lies wholly outside it.
    """
    given = [x for x in (above, below, within) if x is not None]
    if len(given) != 1:
        raise UsageError("A claim on an estimate takes exactly one of above=, below= or within= (a margin).")
    if within is not None:
        if within <= 0:
            raise UsageError(f"within= is an equivalence margin and must be positive; got {within!r}.")
        low, high = est.interval(1 - 2 * (1 - est.level))
        if -within < low and high < within:
            return "holds"
        return "fails" if low >= within or high <= -within else "undecided"
    if not all(math.isfinite(x) for x in given):
        raise UsageError("A claim's margin must be a finite number.")
    if above is not None:
        return "holds" if est.low > above else "fails" if est.high <= above else "undecided"
    return "holds" if est.high < below else "fails" if est.low >= below else "undecided"


def describe(est: Estimate, above: float | None = None, below: float | None = None, within: float | None = None,
             points: bool | None = None) -> dict[str, Any]:
    """A claim's evidence for an estimate: the numbers and the bound they were read against (for ``within=``,
    also the 90 % interval that the two one-sided tests read)."""
    bound = {"above": above, "below": below, "within": within}
    name, margin = next((k, v) for k, v in bound.items() if v is not None)
    out = {"estimate": est.format(points), name: margin, "over": est.over, **est.summary()}
    if within is not None:
        level = 1 - 2 * (1 - est.level)
        low, high = est.interval(level)
        k, f = (100, "+.1f") if (est.percent if points is None else points) else (1, "+.3f")
        out["equivalence_interval"] = f"[{k * low:{f}}, {k * high:{f}}] ({level:.0%} two one-sided tests)".replace("%", " %")
    return out

