"""Parameter sweeps: one notebook run through papermill for every point of a grid, resumable.

The figures of a sweep are written by :func:`save_sweep_figures` (``ftlab sweep`` does both).

``ftlab sweep CONFIG.yaml`` (or ``ftlab sweep NOTEBOOK -g NAME V1,V2 ...``). Every run executes in
a fresh kernel process into ``<out>/runs/<run id>/``; a run whose metrics exist is skipped on a
re-run; a crashed run is reported and the others go on. The recorded metrics of all runs are
gathered into ``<out>/results.csv``.

Config file::

    notebook: notebooks/experiment.ipynb
    out: runs/sweep-elpv
    grid:                      # every combination
      STRATEGY: [linear_probe, head, last1, last3, full, scratch]
      SUBSET: [0.1, 0.25, 1.0]
      SEED: [0, 1, 2]
    fixed:                     # the same for every run
      IMAGE_SIZE: 96
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import time
from pathlib import Path
from typing import Any, Sequence

from ..errors import UsageError
from ..files import atomic_write, atomic_write_text, stable_hash
from ..summary import aggregate
from .claims import read_metrics
from .lessons import check_parameters, execute, parameter_types

__all__ = ["load_config", "grid_points", "run_id", "run_sweep", "collect_results", "aggregate", "read_results",
           "save_sweep_figures"]


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check a sweep config (YAML)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"No sweep config at {path}.")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"{path} is not valid YAML: {err}") from err
    unknown = set(cfg) - {"notebook", "out", "grid", "fixed"}
    if unknown or "notebook" not in cfg or not isinstance(cfg.get("grid", {}), dict):
        raise UsageError(f"{path}: a sweep config has 'notebook', 'grid' (NAME: [values]), optional 'fixed' and "
                         f"'out'{'; unknown keys: ' + ', '.join(sorted(unknown)) if unknown else ''}.")
    base = path.parent
    for key in ("notebook", "out"):         # relative paths are relative to the config file
        if key in cfg and not Path(cfg[key]).is_absolute():
            cfg[key] = str((base / cfg[key]).resolve())
    return cfg


def grid_points(grid: dict[str, list], fixed: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every combination of the grid's values, each merged with ``fixed``."""
    names = list(grid)
    values = [v if isinstance(v, list) else [v] for v in grid.values()]
    return [{**(fixed or {}), **dict(zip(names, combo))} for combo in itertools.product(*values)]


def run_id(params: dict[str, Any]) -> str:
    """A readable, stable folder name for one grid point."""
    slug = "_".join(f"{k.lower()}-{v}" for k, v in sorted(params.items()))
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in slug)[:80]
    return f"{slug}-{stable_hash(params, length=8)}"


def run_sweep(notebook: str | Path, grid: dict[str, list], out: str | Path, fixed: dict[str, Any] | None = None,
              log=print) -> list[dict[str, Any]]:
    """Execute ``notebook`` for every grid point; skip finished runs; keep going after a crash.

    Returns:
        The rows of ``results.csv`` (parameters, status, seconds and each run's metrics).
    """
    import papermill as pm

    notebook, out = Path(notebook), Path(out)
    if not notebook.is_file():
        raise UsageError(f"No notebook at {notebook}.")
    accepted = parameter_types(notebook)
    points = grid_points(grid, fixed)
    unknown = sorted({k for p in points for k in p} - set(accepted))
    if unknown:
        raise UsageError(f"{notebook.name} has no parameter(s) {', '.join(unknown)}. Valid: {', '.join(sorted(accepted))}.")
    if "OUT_DIR" not in accepted:
        raise UsageError(f"{notebook.name} has no OUT_DIR parameter, so its metrics cannot be collected.")
    for params in points:                       # every grid point checked before the first kernel starts
        check_parameters(notebook, params, accepted)
    for i, params in enumerate(points, 1):
        rid = run_id(params)
        folder = out / "runs" / rid
        shown = " ".join(f"{k}={v}" for k, v in params.items())
        if read_metrics(folder):
            log(f"[{i}/{len(points)}] {shown}: done before, skipped")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "params.json", json.dumps(params))
        t0 = time.perf_counter()
        try:
            execute(notebook, folder / notebook.name, {**params, "OUT_DIR": str(folder)}, folder)
            status = "ok"
        except pm.PapermillExecutionError as err:
            status = f"failed: {err.ename}: {err.evalue}"[:300]
        seconds = time.perf_counter() - t0
        atomic_write_text(folder / "status.json", json.dumps({"status": status, "seconds": seconds}))
        log(f"[{i}/{len(points)}] {shown}: {status} in {seconds:.0f} s")
    rows = collect_results(out)
    failed = [r for r in rows if r["status"] != "ok"]
    log(f"{len(rows) - len(failed)} runs ok, {len(failed)} failed; results in {out / 'results.csv'}")
    return rows


def collect_results(out: str | Path) -> list[dict[str, Any]]:
    """Gather every run of a sweep folder into ``results.csv`` (one row per run) and return the rows."""
    out = Path(out)
    rows = []
    for folder in sorted((out / "runs").glob("*")):
        if not (folder / "params.json").is_file():
            continue
        status = json.loads((folder / "status.json").read_text()) if (folder / "status.json").is_file() \
            else {"status": "not finished", "seconds": None}
        metrics = {k: v for m in read_metrics(folder).values() for k, v in m.items()}
        rows.append({"run": folder.name, **json.loads((folder / "params.json").read_text()),
                     "status": status["status"], "seconds": status["seconds"], **metrics})
    if rows:
        fields = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(out / "results.csv", buf.getvalue())
    return rows


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``results.csv``, numbers parsed back into numbers (``*_correct`` columns stay strings of 0s and 1s)."""
    def num(v: str):
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return v
    with open(path, newline="") as f:
        return [{k: v if k.endswith("_correct") else num(v) for k, v in r.items()} for r in csv.DictReader(f)]


def save_sweep_figures(rows: Sequence[dict[str, Any]], out: str | Path) -> list[Path]:
    """Write a sweep's figures next to its ``results.csv``: ``scaling.png`` (one per augmentation
    when there are several: ``scaling-<augment>.png``) and, with several augmentations, ``augmentation.png``."""
    from .. import plot

    ok = [r for r in rows if r.get("status", "ok") == "ok" and r.get("test_acc") not in (None, "")]
    if not ok:
        return []
    out, written = Path(out), []

    def save(fig, name):
        written.append(atomic_write(out / name, lambda tmp: fig.savefig(tmp, format="png", dpi=110)))

    augments = sorted({str(r.get("augment", "none")) for r in ok})
    for aug in augments:
        fig = plot.scaling([r for r in ok if str(r.get("augment", "none")) == aug])
        if len(augments) > 1:
            fig.axes[0].set_title(f"Accuracy against training-set size, augment={aug}")
        save(fig, "scaling.png" if len(augments) == 1 else f"scaling-{aug}.png")
    if len(augments) > 1:
        save(plot.augmentation_effect(ok), "augmentation.png")
    return written
