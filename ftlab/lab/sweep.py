"""Parameter sweeps: one notebook run through papermill for every point of a grid, resumable.

The figures of a sweep are written by :func:`save_sweep_figures` (``ftlab sweep`` does both).

``ftlab sweep CONFIG.yaml`` (or ``ftlab sweep NOTEBOOK -g NAME V1,V2 ...``). Every run executes in
a fresh kernel process into ``<out>/runs/<run id>/``; a run whose metrics and ``ok`` status exist is skipped on a
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
    executor:                  # optional; the command line's --executor, --workers ... win
      name: pool               # local (default), pool, slurm
      workers: 2

Executors (the results do not depend on which): ``local`` runs one grid point after the other in
this process; ``pool`` runs ``workers`` points at a time, each in its own process (papermill is
safe with one run per process), with ``workers x threads <= cores``; ``slurm`` submits one
submitit job array (``slurm_array_parallelism = workers``) where ``srun`` exists, and on a machine
without Slurm submitit runs the same jobs as local subprocesses. On a cluster the sweep folder,
the data cache (``FTLAB_CACHE``) and the Python environment must be on a shared file system.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path
from typing import Any, Sequence

from ..errors import UsageError
from ..files import atomic_write, atomic_write_text, stable_hash
from ..summary import aggregate
from .claims import read_metrics
from .lessons import check_parameters, cores, parameter_types, run_one

__all__ = ["EXECUTORS", "load_config", "grid_points", "run_id", "run_point", "run_sweep", "collect_results", "aggregate",
           "read_results",
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
    unknown = set(cfg) - {"notebook", "out", "grid", "fixed", "executor"}
    if unknown or "notebook" not in cfg or not isinstance(cfg.get("grid", {}), dict):
        raise UsageError(f"{path}: a sweep config has 'notebook', 'grid' (NAME: [values]), optional 'fixed', 'out' and "
                         f"'executor'{'; unknown keys: ' + ', '.join(sorted(unknown)) if unknown else ''}.")
    run = cfg.get("executor") or {}
    bad = set(run) - {"name", "workers", "threads", "partition", "timeout_min", "mem_gb", "folder"} \
        if isinstance(run, dict) else {"(not a mapping)"}
    if bad:
        raise UsageError(f"{path}: 'executor' takes name (local, pool, slurm), workers, threads, and for slurm "
                         f"partition, timeout_min, mem_gb, folder; not {', '.join(sorted(bad))}.")
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


EXECUTORS = ("local", "pool", "slurm")


def run_point(notebook: str | Path, params: dict[str, Any], folder: str | Path, threads: int | None = None) -> dict:
    """Run one grid point in this process: the notebook in a fresh kernel into ``folder``, with its status.

    The unit of work of every executor (a pool worker and a Slurm job call this same function).
    ``threads`` sets ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` for the kernel (torch reads them
    when it is imported). A notebook that fails is recorded as ``failed: <error>``; nothing is raised.
    """
    notebook, folder = Path(notebook), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "params.json", json.dumps(params))
    state, seconds, error = run_one(notebook, folder / notebook.name, {**params, "OUT_DIR": str(folder)}, folder, threads)
    result = {"status": "ok" if state == "ok" else f"failed: {error}"[:300], "seconds": seconds}
    atomic_write_text(folder / "status.json", json.dumps(result))
    return result


def finished(folder: Path) -> bool:
    """A grid point is done when its metrics and an ``ok`` status are both written (a run killed
    between the two, or one that failed, runs again)."""
    status = folder / "status.json"
    return bool(read_metrics(folder)) and status.is_file() and json.loads(status.read_text()).get("status") == "ok"


def plan_workers(executor: str, workers: int | None, threads: int | None, tasks: int) -> tuple[int, int | None]:
    """``(workers, threads per worker)``: a pool defaults to one worker per core (at most one per task),
    with ``workers x threads <= cores``; ``local`` runs one kernel with the threads it would have anyway;
    a Slurm job gets one CPU and thread unless ``threads`` says more."""
    if executor not in EXECUTORS:
        raise UsageError(f"Unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}.")
    for name, value in (("workers", workers), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UsageError(f"--{name} must be a whole number of at least 1, not {value!r}.")
    if executor == "local":
        return 1, threads
    n = workers or max(1, min(cores(), tasks))
    if executor == "pool" and threads is not None and n * threads > cores():
        raise UsageError(f"{n} workers x {threads} threads is more than the {cores()} cores here: lower --workers or "
                         f"--threads (workers x threads <= cores), or leave --threads out.")
    if executor == "pool":
        return n, threads or max(1, cores() // n)
    return n, threads or 1                      # slurm: one CPU per job unless asked (cpus_per_task = threads)


class Progress:
    """Counts of a sweep's tasks (done, running, failed), printed as each one ends."""

    def __init__(self, total: int, skipped: int, workers: int, log=print):
        self.total, self.done, self.failed, self.workers, self.log = total, skipped, 0, workers, log

    @property
    def running(self) -> int:
        return min(self.workers, self.total - self.done)

    def ended(self, params: dict[str, Any], result: dict[str, Any]) -> None:
        self.done += 1
        self.failed += result["status"] != "ok"
        shown = " ".join(f"{k}={v}" for k, v in params.items())
        self.log(f"[{self.done}/{self.total} done, {self.running} running, {self.failed} failed] {shown}: "
                 f"{result['status']} in {result['seconds']:.0f} s")


def _run_local(notebook: Path, tasks: list, workers: int, threads: int | None, options: dict, progress: Progress) -> None:
    for params, folder in tasks:
        progress.ended(params, run_point(notebook, params, folder, threads))


def _run_pool(notebook: Path, tasks: list, workers: int, threads: int | None, options: dict, progress: Progress) -> None:
    """One papermill run per worker process at a time (many kernels from one process race on ports:
    nteract/papermill #239, #511; one run per process is safe, #578)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_point, str(notebook), params, str(folder), threads): (params, folder)
                   for params, folder in tasks}
        for future in as_completed(futures):
            params, folder = futures[future]
            progress.ended(params, _result(future.result, folder))


def _result(get, folder: Path) -> dict[str, Any]:
    """A task's result, or its crash (a worker or a job that died) recorded as a failure."""
    try:
        return get()
    except Exception as err:                    # the process died: out of memory, killed, a timeout
        result = {"status": f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300],
                  "seconds": float("nan")}
        atomic_write_text(Path(folder) / "status.json", json.dumps(result))
        return result


def _run_slurm(notebook: Path, tasks: list, workers: int, threads: int | None, options: dict, progress: Progress) -> None:
    """A job array through submitit: Slurm where ``srun`` exists, local subprocesses otherwise."""
    import submitit

    folder = Path(options.get("folder") or Path(tasks[0][1]).parents[1] / "submitit")
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=options.get("cluster"))
    ex.update_parameters(name="ftlab-sweep", timeout_min=int(options.get("timeout_min") or 60),
                         mem_gb=float(options.get("mem_gb") or 8), cpus_per_task=threads or 1,
                         slurm_array_parallelism=workers,
                         **({"slurm_partition": options["partition"]} if options.get("partition") else {}))
    progress.log(f"submitit: {ex.cluster} executor" + ("" if ex.cluster == "slurm" else
                                                       " (no Slurm here: the jobs run as local subprocesses)"))
    jobs = ex.map_array(run_point, [str(notebook)] * len(tasks), [p for p, _ in tasks], [str(f) for _, f in tasks],
                        [threads] * len(tasks))
    by_job = {job.job_id: task for job, task in zip(jobs, tasks)}
    for job in submitit.helpers.as_completed(jobs):
        params, task_folder = by_job[job.job_id]
        progress.ended(params, _result(job.result, task_folder))


RUNNERS = {"local": _run_local, "pool": _run_pool, "slurm": _run_slurm}


def _checked_points(notebook: Path, grid: dict[str, list], fixed: dict[str, Any] | None) -> list[dict[str, Any]]:
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
    return points


def run_sweep(notebook: str | Path, grid: dict[str, list], out: str | Path, fixed: dict[str, Any] | None = None,
              log=print, executor: str = "local", workers: int | None = None, threads: int | None = None,
              options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Execute ``notebook`` for every grid point, one run per process; skip finished runs; keep going after a crash.

    Args:
        executor: ``"local"`` (one run after the other, here), ``"pool"`` (a local process pool of
            ``workers``) or ``"slurm"`` (a submitit job array; submitit's local executor where there is
            no Slurm). The results do not depend on it.
        workers: runs at the same time (pool, slurm: the array's parallelism cap); default one per core.
        threads: torch threads of each run (default: cores // workers in a pool; all cores locally).
        options: for ``slurm``: ``partition``, ``timeout_min``, ``mem_gb``, ``folder`` (logs; on a shared
            file system), ``cluster`` (submitit's name, e.g. ``"local"``).

    Returns:
        The rows of ``results.csv`` (parameters, status, seconds and each run's metrics).
    """
    notebook, out = Path(notebook), Path(out)
    points = _checked_points(notebook, grid, fixed)
    tasks = [(p, out / "runs" / run_id(p)) for p in points if not finished(out / "runs" / run_id(p))]
    if len(tasks) < len(points):
        log(f"{len(points) - len(tasks)} of {len(points)} runs done before: skipped")
    n, per_run = plan_workers(executor, workers, threads, len(tasks))
    if tasks:
        log(f"{len(tasks)} runs, executor {executor}" + (f", {n} at a time" if executor != "local" else "")
            + (f", {per_run} thread(s) each" if per_run else ""))
        progress = Progress(len(points), len(points) - len(tasks), n, log)
        RUNNERS[executor](notebook, tasks, n, per_run, dict(options or {}), progress)
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
