"""The protocol every full run follows: choose on a named split, then one run per seed, then read the test split once.

The four full runs (:mod:`ftlab.lab.full_images`, :mod:`ftlab.lab.full_text`,
:mod:`ftlab.lab.full_detection`, :mod:`ftlab.lab.full_llm`) differ in their data, model and candidates — their
settings are data (``FULL``, ``TEXT_FULL``, ``DETECTION_FULL``, ``LLM_FULL`` and their ``CANDIDATES``) — and share
these steps:

1. :func:`settings`: the documented configuration with the caller's overrides (unknown keys refused);
2. :func:`choose_candidate_epoch`: the best (candidate, epoch count) on the selection split, recorded
   as an :class:`ftlab.lab.Choice` (never the test split);
3. :func:`per_seed`: the chosen configuration trained once per seed and scored on the test split
   once per seed, then summarised over the seeds (:func:`summarise`).
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable, Sequence

from ..errors import UsageError
from ..summary import spread
from .claims import choose

__all__ = ["settings", "say_from", "choose_candidate_epoch", "per_seed", "summarise"]


def settings(defaults: dict[str, Any], overrides: dict[str, Any], seeds: Sequence[int]) -> dict[str, Any]:
    """``defaults`` with ``overrides`` and ``seeds``; an override that is not a setting is an error."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise UsageError(f"Unknown full-run settings {sorted(unknown)}: use {', '.join(defaults)}.")
    if not seeds:
        raise UsageError("A full run needs at least one seed.")
    return {**defaults, **overrides, "seeds": list(seeds)}


def say_from(progress: bool | Callable[[str], None] | None) -> Callable[[str], None]:
    """Progress lines: a function that takes them, ``True`` (print) or ``False`` / None (quiet)."""
    return progress if callable(progress) else (print if progress else (lambda _: None))


def choose_candidate_epoch(rows: Sequence[dict[str, Any]], per_epoch: str, on: str) -> tuple[dict[str, Any], int, dict]:
    """The candidate and the number of epochs with the best score on the selection split.

    Args:
        rows: one row per candidate, each with a list of per-epoch scores under ``per_epoch``
            (higher is better), measured on the split ``on``.
        per_epoch: the key of those lists (``"val_acc_per_epoch"``, ``"val_map_50_per_epoch"``).
        on: the split the scores come from (``"val"``, or ``"holdout"`` — part of the training data).

    Returns:
        ``(row, epochs, choice)``: the winning row, its epoch count (1-based) and the recorded choice.
        Ties go to the earlier candidate and the fewer epochs.
    """
    scores = {f"{i}@{e + 1}": s for i, r in enumerate(rows) for e, s in enumerate(r[per_epoch])}
    choice = choose("candidate and epochs", scores, on="val" if on in ("val", "holdout") else on)
    index, epochs = (int(x) for x in choice.best.split("@"))
    return rows[index], epochs, {**asdict(choice), "on": on}


def per_seed(seeds: Sequence[int], run_one: Callable[[int], dict[str, Any]], say: Callable[[str], None],
             line: Callable[[dict[str, Any]], str]) -> list[dict[str, Any]]:
    """``run_one(seed)`` for every seed (each trains once and reads the test split once), with a progress line each."""
    runs = []
    for seed in seeds:
        row = {"seed": seed, **run_one(seed)}
        say(f"seed {seed}: {line(row)}")
        runs.append(row)
    return runs


def summarise(runs: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean, std, min, max and n over the seeds of each metric (``Spread.summary()``)."""
    return {m: spread([r[m] for r in runs]).summary() for m in metrics}
