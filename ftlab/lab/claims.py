"""A lesson's evidence: the metrics it records and the claims its prose makes, checked against them.

Introduced in lesson 01. A lesson may only claim what its own run shows, so every sentence that
a number supports is written down as a :func:`claim` with the condition that makes it true
(with a margin where noise matters) and the numbers behind it::

    c = ft.lab.claim("pretrained features beat random ones by 5 points",
                 probe["pretrained"] > probe["random init"] + 0.05,
                 pretrained=probe["pretrained"], random=probe["random init"])

A claim about a difference that has noise takes an estimate with its interval
(:func:`ftlab.lab.paired`) and a bound, and gets one of three verdicts: *holds*, *fails* or
*undecided*::

    c = ft.lab.claim("top 2 beats the head alone", ft.lab.paired(top2, head), above=0.0)

Each claim declares the verdict its prose relies on (``expect="holds"`` by default;
``expect="undecided"`` where the prose says "within the noise here"). A verdict other than the
declared one is information (a rerun with other parameters may well change one), never an error —
except in the test suite's strict runs at the classroom defaults. :func:`record` stores the claims
next to the metrics in ``<out_dir>/metrics/<lesson>.json``, and ``ftlab lessons`` counts the
verdicts per lesson and names the claims whose verdict is not the declared one.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import FtlabError, UsageError
from ..files import atomic_write_text
from ..tables import Table

__all__ = ["STRICT_ENV", "VERDICTS", "BORDERLINE", "declared", "Claim", "ClaimNotHeld", "verdict_counts",
           "Choice", "choose", "claim", "claims_table", "check_claims", "record", "read_metrics"]

STRICT_ENV = "FTLAB_STRICT_CLAIMS"   # "1": a verdict other than the declared one is an error (the tests' runs at the defaults)


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return value if isinstance(value, (int, str, bool, type(None))) else str(value)


VERDICTS = ("holds", "fails", "undecided")
BORDERLINE = ("holds", "undecided")
"""``expect=`` for a claim at the edge of the noise: holding or undecided are both as the prose says."""
MARK = {"holds": "✓", "fails": "✗", "undecided": "?"}
COLOUR = {"holds": "#009e73", "fails": "#d55e00", "undecided": "#e69f00"}


@dataclass
class Claim:
    """A sentence of a lesson, its verdict in this run, the verdict its prose declares, and the numbers behind it."""

    claim: str
    verdict: str
    expect: str = "holds"
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return self.verdict == "holds"

    @property
    def as_declared(self) -> bool:
        """True when the run's verdict is the one the prose relies on (one of them, for a borderline claim)."""
        return declared(self.verdict, self.expect)

    def _line(self) -> str:
        numbers = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in self.evidence.items())
        note = "" if self.as_declared else f" — the lesson says {self.expect.upper()}"
        return f"{self.verdict}{note}: {self.claim}" + (f" ({numbers})" if numbers else "")

    def __repr__(self) -> str:
        return f"{MARK[self.verdict]} " + self._line()

    def _repr_html_(self) -> str:
        return f'<span style="color:{COLOUR[self.verdict]}">{MARK[self.verdict]}</span> {self._line()}'


def claim(text: str, holds: Any, *, above: float | None = None, below: float | None = None,
          within: float | None = None, expect: str = "holds", **evidence: Any) -> Claim:
    """A claim a lesson makes, its verdict on this run's numbers, and the numbers behind it.

    Two kinds of claim:

    * **a fact of this run** (a count, a shape, an exact equality): ``holds`` is the condition, a bool
      (numpy or torch bool too); ``None`` means the run cannot tell (e.g. an arm is missing), which is
      *undecided*.
    * **a difference or a score that has noise**: ``holds`` is an :class:`~ftlab.lab.evidence.Estimate`
      (:func:`ftlab.lab.paired`, :func:`ftlab.lab.estimate`) with one bound (``None`` for the estimate: the
      run has none, undecided). ``above=m``: holds when the whole interval lies above ``m``, fails when
      it lies at or below ``m``, undecided when it straddles ``m``; ``below=m`` the mirror image;
      ``within=m`` an equivalence claim ("no difference larger than ``m``"), by two one-sided tests.

    Args:
        text: the claim as the prose says it.
        holds: the condition or the estimate.
        above, below, within: the bound read against an estimate (one of them, only with an estimate).
        expect: the verdict the lesson's prose relies on: ``"holds"`` (default), ``"undecided"`` where
            the prose says "within the noise here", or ``"fails"``; or :data:`BORDERLINE`
            (``("holds", "undecided")``) for a claim at the edge of the noise, where the prose says that
            the interval barely clears its bound and another draw, or another machine's arithmetic,
            may not. Under ``FTLAB_STRICT_CLAIMS=1`` a run whose verdict is not declared is an error
            (:func:`check_claims`).
        **evidence: more numbers it rests on (shown with it and stored in the metrics).

    Returns:
        A :class:`Claim`; Jupyter shows it as ✓ holds, ✗ fails or ? undecided.
    """
    from .evidence import Estimate, describe, verdict

    if not isinstance(text, str) or not text.strip():
        raise UsageError("A claim needs its sentence as text, e.g. ft.lab.claim('pretrained beats random', a > b).")
    if not isinstance(expect, str):
        expect = "|".join(expect) if isinstance(expect, (tuple, list)) else expect
    if not isinstance(expect, str) or not expect or not all(e in VERDICTS for e in expect.split("|")):
        raise UsageError(f"expect= is the verdict the prose relies on, one of {VERDICTS} (or several, e.g. "
                         f"ft.lab.BORDERLINE); got {expect!r}.")
    bounds = {"above": above, "below": below, "within": within}
    if isinstance(holds, Estimate):
        found = verdict(holds, above, below, within)
        evidence = {**describe(holds, above, below, within), **evidence}
    elif holds is None:                                  # the run cannot tell (an arm is missing): undecided
        found = "undecided"
    elif any(v is not None for v in bounds.values()):
        raise UsageError("above=, below= and within= bound an estimate with its interval (ft.lab.paired(...) or "
                         "ft.lab.estimate(...)); for a plain condition pass a bool and no bound.")
    else:
        found = "holds" if bool(holds) else "fails"
    return Claim(text.strip(), found, expect, {k: _plain(v) for k, v in evidence.items()})


SPLITS_TO_CHOOSE_ON = ("train", "val")


@dataclass
class Choice:
    """A choice among candidates, the split whose scores made it, and those scores (recorded with the lesson)."""

    what: str
    best: Any
    on: str
    scores: dict[str, float]

    def __repr__(self) -> str:
        return f"{self.what}: {self.best} (chosen on {self.on}, {self.scores[str(self.best)]:.4g})"


def choose(what: str, scores: dict, on: str, higher: bool = True) -> Choice:
    """The candidate with the best score, chosen on a named split that is never the test split.

    Args:
        what: what is chosen (``"layer group"``, ``"strategy"`` ...), for the record.
        scores: ``{candidate: score}`` on the split ``on`` (a number, or an object with ``.mean``).
        on: ``"val"`` (a choice that a test score reports on) or ``"train"`` (e.g. the training
            loss of a learning-rate range test).
        higher: True when a higher score is better (accuracy), False for losses.

    Raises:
        UsageError: ``on`` is the test split (or unknown), or there are no candidates.
    """
    if on not in SPLITS_TO_CHOOSE_ON:
        raise UsageError(f"A choice is made on {' or '.join(SPLITS_TO_CHOOSE_ON)}, not on {on!r}: the test split is "
                         "read once, for the chosen candidate.")
    values = {c: float(getattr(v, "mean", v)) for c, v in scores.items()}
    values = {c: v for c, v in values.items() if math.isfinite(v)}
    if not values:
        raise UsageError(f"No candidates with a score to choose the {what} from.")
    best = (max if higher else min)(values, key=values.get)
    return Choice(what, best, on, {str(c): v for c, v in values.items()})


def claims_table(claims: Sequence[Claim]) -> Table:
    """The claims of a lesson as a table: each claim, its verdict (a borderline claim marked so), its evidence."""
    def shown(c: Claim) -> str:
        if not c.as_declared:
            return f"{c.verdict} (lesson: {c.expect})"
        return c.verdict + (" (borderline: the lesson declares " + " or ".join(c.expect.split("|")) + ")"
                            if "|" in c.expect else "")

    rows = [[MARK[c.verdict], shown(c), c.claim, ", ".join(f"{k}={v}" for k, v in c.evidence.items())] for c in claims]
    return Table(["", "verdict", "claim", "evidence"], rows, title=verdict_counts(claims) + " in this run")


def declared(verdict: str, expect: str) -> bool:
    """Whether a verdict is the declared one: ``expect`` is a verdict, or several joined by ``|`` (a borderline claim)."""
    return verdict in expect.split("|")


def verdict_counts(claims: Sequence[Claim | dict]) -> str:
    """``"9 hold, 1 undecided, 0 fail (all as the lesson says)"`` or ``"... (1 not as the lesson says)"``."""
    verdicts = [c.verdict if isinstance(c, Claim) else c.get("verdict", "holds" if c.get("holds") else "fails")
                for c in claims]
    expects = [c.expect if isinstance(c, Claim) else c.get("expect", "holds") for c in claims]
    off = sum(not declared(v, e) for v, e in zip(verdicts, expects))
    counts = f"{verdicts.count('holds')} hold, {verdicts.count('undecided')} undecided, {verdicts.count('fails')} fail"
    return counts + (f" ({off} not as the lesson says)" if off else " (all as the lesson says)")


class ClaimNotHeld(FtlabError):
    """A lesson's claim got another verdict than its prose declares, in a run that checks claims strictly."""


def check_claims(claims: Sequence[Claim]) -> Table:
    """Show a lesson's claims (:func:`claims_table`); under ``FTLAB_STRICT_CLAIMS=1`` an undeclared verdict is an error.

    The test suite sets ``FTLAB_STRICT_CLAIMS=1`` when it runs the lessons at their classroom
    defaults, where every claim must get the verdict its prose relies on (``expect``); anywhere else
    a different verdict is shown, not raised.

    Raises:
        ClaimNotHeld: under ``FTLAB_STRICT_CLAIMS=1``, naming the claims whose verdict is not the declared one.
    """
    off = [c for c in claims if not c.as_declared]
    if off and os.environ.get(STRICT_ENV) == "1":
        raise ClaimNotHeld("Claims whose verdict is not the one the lesson declares at these settings: "
                           + "; ".join(repr(c) for c in off))
    return claims_table(claims)


def record(lesson: str, out_dir: str | Path | None = None, claims: Sequence[Claim] = (), choices: Sequence[Choice] = (),
           **metrics: Any) -> dict[str, Any]:
    """Record a lesson's key metrics and claims; with ``out_dir`` also write ``<out_dir>/metrics/<lesson>.json``.

    Args:
        lesson: lesson id, e.g. ``"02_head_only"``.
        out_dir: the run's output directory (the lessons' ``OUT_DIR`` parameter); None = only return.
        claims: the lesson's :func:`claim` results, stored under ``"claims"``.
        choices: the lesson's :func:`choose` results (what, best, split, scores), under ``"choices"``.
        **metrics: numbers (or short strings) to record.

    Returns:
        The metrics (and claims) as plain JSON-able values.
    """
    clean = {k: _plain(v) for k, v in metrics.items()}
    if claims:
        if not all(isinstance(c, Claim) for c in claims):
            raise UsageError("claims= takes the results of ft.lab.claim(...).")
        clean["claims"] = [{**asdict(c), "holds": c.holds} for c in claims]
    if choices:
        if not all(isinstance(c, Choice) for c in choices):
            raise UsageError("choices= takes the results of ft.lab.choose(...).")
        clean["choices"] = [{**asdict(c), "best": _plain(c.best), "scores": {k: _plain(v) for k, v in c.scores.items()}}
                            for c in choices]
    if out_dir:
        atomic_write_text(Path(out_dir) / "metrics" / f"{lesson}.json", json.dumps(clean, indent=2))
    return clean


def read_metrics(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """All recorded metrics of a run directory, ``{lesson: {name: value}}`` (claims under ``"claims"``)."""
    folder = Path(out_dir) / "metrics"
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}
