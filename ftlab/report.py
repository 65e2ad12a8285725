"""Lesson metrics: each lesson records its key numbers as JSON; the runner gathers them into a summary.

Introduced in lesson 01 (``ftlab.record``); used by ``ftlab lessons`` and ``ftlab sweep``.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from .cache import atomic_write

__all__ = ["record", "read_metrics", "summary_rows", "write_summary", "format_table"]


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
        path = Path(out_dir) / "metrics" / f"{lesson}.json"
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(clean, indent=2)))
    return clean


def read_metrics(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """All recorded metrics of a run directory, ``{lesson: {name: value}}``."""
    folder = Path(out_dir) / "metrics"
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def summary_rows(out_dir: str | Path, seconds: dict[str, float], status: dict[str, str]) -> list[dict[str, Any]]:
    """One row per lesson: lesson, status, seconds and its metrics as ``name=value`` text."""
    metrics = read_metrics(out_dir)
    rows = []
    for lesson in seconds:
        m = metrics.get(lesson, {})
        text = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items())
        rows.append({"lesson": lesson, "status": status.get(lesson, "?"), "seconds": round(seconds[lesson], 1),
                     "metrics": text})
    return rows


def format_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """Rows of dicts as an aligned text table (or a Markdown table)."""
    if not rows:
        return "(nothing)"
    cols = list(rows[0])
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(out)


def write_summary(out_dir: str | Path, rows: list[dict[str, Any]], title: str = "ftlab lessons") -> tuple[Path, Path]:
    """Write ``summary.md`` and ``summary.csv`` into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    md = f"# {title}\n\n{format_table(rows, markdown=True)}\n"
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    a = atomic_write(out_dir / "summary.md", lambda tmp: Path(tmp).write_text(md))
    b = atomic_write(out_dir / "summary.csv", lambda tmp: Path(tmp).write_text(buf.getvalue()))
    return a, b
