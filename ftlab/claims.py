"""A lesson's recorded metrics: each lesson records its key numbers as JSON for the summary.

Introduced in lesson 01 (``ftlab.record``); gathered by ``ftlab lessons`` and ``ftlab sweep``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .files import atomic_write_text

__all__ = ["record", "read_metrics"]


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return value if isinstance(value, (int, str, bool, type(None))) else str(value)


def record(lesson: str, out_dir: str | Path | None = None, **metrics: Any) -> dict[str, Any]:
    """Record a lesson's key metrics; with ``out_dir`` also write ``<out_dir>/metrics/<lesson>.json``.

    Args:
        lesson: lesson id, e.g. ``"02_head_only"``.
        out_dir: the run's output directory (the lessons' ``OUT_DIR`` parameter); None = only return.
        **metrics: numbers (or short strings) to record.

    Returns:
        The metrics as plain JSON-able values.
    """
    clean = {k: _plain(v) for k, v in metrics.items()}
    if out_dir:
        atomic_write_text(Path(out_dir) / "metrics" / f"{lesson}.json", json.dumps(clean, indent=2))
    return clean


def read_metrics(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """All recorded metrics of a run directory, ``{lesson: {name: value}}``."""
    folder = Path(out_dir) / "metrics"
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}
