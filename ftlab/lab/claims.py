"""A lesson's evidence: the metrics it records and the claims its prose makes, checked against them.

Introduced in lesson 01. A lesson may only claim what its own run shows, so every sentence that
a number supports is written down as a :func:`claim` with the condition that makes it true
(with a margin where noise matters) and the numbers behind it::

    c = ft.lab.claim("pretrained features beat random ones by 5 points",
                 probe["pretrained"] > probe["random init"] + 0.05,
                 pretrained=probe["pretrained"], random=probe["random init"])

A claim shows in the notebook as holding or not; a claim that does not hold is information (a
rerun with other parameters may well break one), never an error. :func:`record` stores the
claims next to the metrics in ``<out_dir>/metrics/<lesson>.json``, and ``ftlab lessons`` lists
how many hold per lesson and names the ones that do not.
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

__all__ = ["STRICT_ENV", "Claim", "ClaimNotHeld",
           "Choice", "choose", "claim", "claims_table", "check_claims", "record", "read_metrics"]

STRICT_ENV = "FTLAB_STRICT_CLAIMS"   # "1": a claim that does not hold is an error (the tests' runs at the defaults)


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return value if isinstance(value, (int, str, bool, type(None))) else str(value)


@dataclass
class Claim:
    """A sentence of a lesson, whether it holds in this run, and the numbers it rests on."""

    claim: str
    holds: bool
    evidence: dict[str, Any] = field(default_factory=dict)

    def _line(self) -> str:
        numbers = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in self.evidence.items())
        return f"{'holds' if self.holds else 'DOES NOT HOLD in this run'}: {self.claim}" + (f" ({numbers})" if numbers else "")

    def __repr__(self) -> str:
        return ("✓ " if self.holds else "✗ ") + self._line()

    def _repr_html_(self) -> str:
        colour = "#009e73" if self.holds else "#d55e00"
        return f'<span style="color:{colour}">{"✓" if self.holds else "✗"}</span> {self._line()}'


def claim(text: str, holds, **evidence: Any) -> Claim:
    """A claim a lesson makes, with the condition that makes it true and the numbers behind it.

    Args:
        text: the claim as the prose says it.
        holds: the condition, evaluated on this run's numbers (a bool, numpy or torch bool).
        **evidence: the numbers it rests on (shown with it and stored in the metrics).

    Returns:
        A :class:`Claim`; Jupyter shows it as holding (✓) or not (✗).
    """
    if not isinstance(text, str) or not text.strip():
        raise UsageError("A claim needs its sentence as text, e.g. ft.lab.claim('pretrained beats random', a > b).")
    return Claim(text.strip(), bool(holds), {k: _plain(v) for k, v in evidence.items()})


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
    """The claims of a lesson as a table: each claim, whether it holds, its evidence."""
    rows = [["✓" if c.holds else "✗", c.claim, ", ".join(f"{k}={v}" for k, v in c.evidence.items())] for c in claims]
    held = sum(c.holds for c in claims)
    return Table(["", "claim", "evidence"], rows, title=f"{held} of {len(claims)} claims hold in this run")


class ClaimNotHeld(FtlabError):
    """A lesson's claim did not hold although the run asked for claims to be checked strictly."""


def check_claims(claims: Sequence[Claim]) -> Table:
    """Show a lesson's claims (:func:`claims_table`); with ``FTLAB_STRICT_CLAIMS=1`` one that fails is an error.

    The test suite sets ``FTLAB_STRICT_CLAIMS=1`` when it runs the lessons at their classroom
    defaults, where every claim must hold; anywhere else a claim that does not hold is shown, not raised.

    Raises:
        ClaimNotHeld: under ``FTLAB_STRICT_CLAIMS=1``, naming the claims that do not hold.
    """
    failing = [c for c in claims if not c.holds]
    if failing and os.environ.get(STRICT_ENV) == "1":
        raise ClaimNotHeld("Claims that do not hold at these settings: " + "; ".join(repr(c) for c in failing))
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
        clean["claims"] = [asdict(c) for c in claims]
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
