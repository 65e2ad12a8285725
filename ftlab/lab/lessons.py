"""The lessons: discovery, their parameters, and the headless runner behind ``ftlab lessons``.

``run_lessons`` executes ``notebooks/NN_*.ipynb`` in order through papermill into a run
directory (never into ``notebooks/``, never over an executed copy), then prints a summary of
each lesson's recorded metrics and wall time and writes it as ``summary.md`` / ``summary.csv``.
"""
from __future__ import annotations

import ast
import csv
import io
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..files import atomic_write_text, repo_root
from ..tables import table_from_dicts
from .claims import declared, read_metrics, verdict_counts

__all__ = ["QUICK", "notebooks_dir", "lesson_paths", "notebook_parameters", "parameter_types", "check_parameters",
           "parse_value", "execute", "run_one", "run_lessons", "summary_rows", "write_summary"]

# --quick: tiny settings for a smoke run, applied to the lessons that have these parameters
QUICK = {"SUBSET": 10, "EVAL_SUBSET": 10, "TEST_SUBSET": 10, "EPOCHS": 1, "HEAD_EPOCHS": 1, "IMAGE_SIZE": 48}


def notebooks_dir() -> Path:
    """The lessons folder of the source checkout ftlab runs from."""
    root = repo_root()
    if root is None or not (root / "notebooks").is_dir():
        raise UsageError("No lessons folder: run ftlab from a clone of the ftlab repository (pip install -e .).")
    return root / "notebooks"


def lesson_paths(only: list[str] | None = None) -> list[Path]:
    """The lesson notebooks in order, optionally only those whose name starts with one of ``only``."""
    paths = sorted(p for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    if only:
        picked = [p for p in paths if any(p.name.startswith(o) or p.stem == o for o in only)]
        if not picked:
            raise UsageError(f"No lesson matches {only}; lessons: {', '.join(p.stem for p in paths)}.")
        return picked
    return paths


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """The ``parameters`` cell of a notebook, ``{name: default}`` (via papermill)."""
    import papermill as pm

    return {name: info["default"] for name, info in pm.inspect_notebook(str(path)).items()}


_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (float, int), "str": (str,), "bool": (bool,),
                                       "list": (list, tuple), "dict": (dict,), "None": (type(None),)}


def _literal(source: str) -> Any:
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return None


def parameter_types(path: str | Path) -> dict[str, tuple[str, tuple[type, ...] | None]]:
    """What each parameter of a notebook accepts: ``{name: (default source, allowed types or None)}``.

    The types come from a ``# type: float|int|None`` comment in the parameters cell when there is
    one (papermill's convention), otherwise from the default's own type: an ``int`` default takes
    whole numbers, a ``float`` default any number, a string, list or bool default the same kind.
    A ``None`` default (or a type ftlab does not know) accepts anything: None means any type.
    """
    import papermill as pm

    out = {}
    for name, info in pm.inspect_notebook(str(path)).items():
        declared = str(info.get("inferred_type_name") or "None")
        if declared != "None":
            parts = [_TYPES.get(t.strip()) for t in declared.split("|")]
            allowed = None if None in parts else tuple(t for ts in parts for t in ts)
        else:
            default = _literal(info["default"])
            allowed = None if default is None else _TYPES.get(type(default).__name__)
        out[name] = (info["default"], allowed)
    return out


def _type_words(allowed: tuple[type, ...]) -> str:
    names = {int: "a whole number", float: "a number", str: "a string (text)", bool: "True or False",
             list: "a list such as [0, 1]", tuple: "", dict: "a dict", type(None): "None"}
    words = list(dict.fromkeys(names[t] for t in allowed if names[t]))
    if "a number" in words and "a whole number" in words:
        words.remove("a whole number")
    return " or ".join(words)


def check_parameters(notebook: str | Path, params: dict[str, Any],
                     types: dict[str, tuple[str, tuple[type, ...] | None]] | None = None) -> dict[str, Any]:
    """Check parameter values against the types of a notebook's parameters cell, before any kernel starts.

    Returns:
        ``params`` (a string given for a string parameter stays as it is).

    Raises:
        UsageError: an unknown parameter, or a value of the wrong type; the message names the
            parameter, the type its parameters cell expects, and its default.
    """
    types = parameter_types(notebook) if types is None else types
    name = Path(notebook).stem
    unknown = sorted(set(params) - set(types))
    if unknown:
        raise UsageError(f"{name} has no parameter(s) {', '.join(unknown)}. Valid: {', '.join(sorted(types))}.")
    for key, value in params.items():
        default, allowed = types[key]
        if allowed is None:
            continue
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if not ok:
            raise UsageError(f"Parameter {key} of {name} must be {_type_words(allowed)} (its default is {default}), "
                             f"got {value!r} ({type(value).__name__}). Example: -p {key} {default}.")
    return params


def parse_value(text: str) -> Any:
    """A command-line value as Python: ``3`` -> 3, ``[0, 1]`` -> list, anything else stays a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def execute(notebook: Path, output: Path, params: dict[str, Any], cwd: Path) -> None:
    """Run a notebook through papermill in a fresh kernel, without the kernel's own log lines.

    The kernel's log says nothing a user needs here: "Kernel is running over TCP without
    encryption" (a warning of every headless kernel) and, on a busy machine, "KeyboardInterrupt
    caught in kernel" (jupyter_client interrupts the kernel before shutting it down). Errors of
    the notebook's code are in the executed notebook and stop the run either way.
    """
    import papermill as pm

    pm.execute_notebook(str(notebook), str(output), parameters=params, kernel_name="python3", cwd=str(cwd),
                        progress_bar=False, log_output=False,
                        extra_arguments=["--IPKernelApp.log_level=CRITICAL"])


def run_lessons(out: Path, lessons: list[Path], params: dict[str, Any], quick: bool = False,
                overwrite: bool = False, jobs: int = 1) -> int:
    """Execute lessons into ``out``; print progress and the summary. Returns a process exit code.

    ``jobs`` lessons run at the same time, each kernel with ``cores // jobs`` torch threads: one
    lesson leaves part of the second core idle (decoding, Python, small matrices), so two at a
    time finish sooner. With several jobs the longest lessons start first (:func:`start_order`); the summary is
    in lesson order either way, and after a failure no further lesson starts.
    """
    nb_dir = notebooks_dir().resolve()
    out = Path(out).resolve()
    if out == nb_dir or nb_dir in out.parents:
        raise UsageError(f"--out {out} is inside notebooks/: ftlab never writes executed copies over the lessons. "
                         "Pick another folder (default runs/<timestamp>/).")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"--jobs must be a whole number of at least 1 (lessons run at the same time), not {jobs!r}.")
    accepted = {p: parameter_types(p) for p in lessons}
    valid = sorted({name for names in accepted.values() for name in names})
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise UsageError(f"Unknown parameter(s) {', '.join(unknown)}. Valid parameters: {', '.join(valid)}.")
    for path, types in accepted.items():        # every value checked before the first kernel starts
        check_parameters(path, {k: v for k, v in {**(QUICK if quick else {}), **params}.items() if k in types}, types)
    existing = [out / p.name for p in lessons if (out / p.name).exists()]
    if existing and not overwrite:
        raise UsageError(f"{existing[0]} exists; ftlab will not overwrite an executed lesson. "
                         "Use another --out or pass --overwrite.")
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for i, path in enumerate(lessons, 1):
        names = accepted[path]
        run_params = {k: v for k, v in {**(QUICK if quick else {}), **params}.items() if k in names}
        if "OUT_DIR" in names:
            run_params["OUT_DIR"] = str(out)
        shown = ", ".join(f"{k}={v!r}" for k, v in run_params.items() if k != "OUT_DIR")
        runs.append((path, run_params, f"[{i}/{len(lessons)}] {path.stem} {shown}".rstrip()))
    jobs = max(1, min(jobs, len(runs)))
    ended = _run_in_order(runs, out) if jobs == 1 else _run_at_once(runs, out, jobs)
    status = {path.stem: ended[path.stem][0] for path, _, _ in runs if path.stem in ended}
    seconds = {path.stem: ended[path.stem][1] for path, _, _ in runs if path.stem in ended}
    rows = summary_rows(out, seconds, status)
    md, csv_path = write_summary(out, rows)
    print("\n" + table_from_dicts(rows).text())
    print(f"\nexecuted notebooks, {md.name} and {csv_path.name} are in {out}")
    return int(any(s != "ok" for s in status.values()))


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# seconds between two kernel starts: two kernels starting at once may pick the same free port
# (jupyter_client tests a port, then the kernel binds it) and print a ZMQError traceback
KERNEL_STAGGER = 5.0


def run_one(notebook: str | Path, output: str | Path, params: dict[str, Any], cwd: str | Path,
            threads: int | None = None) -> tuple[str, float, str]:
    """One notebook in a fresh kernel: ``(status, seconds, error)``; nothing is raised.

    The unit of work of ``ftlab lessons`` and of every sweep executor. ``status`` is ``ok`` or
    ``failed``; ``error`` is ``"<name>: <message>"`` of the notebook's error, or of the kernel's (one
    that died). ``threads`` sets ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` for the kernel (torch
    reads them when it is imported); this process's own settings are put back afterwards.
    """
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    if threads:
        os.environ.update({k: str(threads) for k in THREAD_VARIABLES})
    t0 = time.perf_counter()
    try:
        execute(Path(notebook), Path(output), params, Path(cwd))
        return "ok", time.perf_counter() - t0, ""
    except Exception as err:                   # PapermillExecutionError: the notebook's error; else the kernel's
        return "failed", time.perf_counter() - t0, f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', err)}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_in_order(runs, out: Path) -> dict[str, tuple[str, float, str]]:
    ended = {}
    for path, run_params, line in runs:
        print(line, flush=True)
        ended[path.stem] = run_one(path, out / path.name, run_params, out)
        _print_end(ended[path.stem], out / path.name)
        if ended[path.stem][0] != "ok":
            break
    return ended


def _print_end(result: tuple[str, float, str], output: Path) -> None:
    state, secs, error = result
    if error:
        print(f"      FAILED: {error}\n      the partly executed copy is {output}", file=sys.stderr)
    print(f"      {state} in {secs:.1f} s", flush=True)


def expected_seconds() -> dict[str, float]:
    """Each lesson's CPU seconds at its defaults with a cold cache, as ``make sizing`` last measured them
    (``docs/results/sizing.json``, keyed by the lesson's number); empty where the file is missing or unreadable."""
    import json

    try:
        lessons = json.loads((repo_root() / "docs" / "results" / "sizing.json").read_text())["lessons"]
        return {str(k): float(v["cold"]["cpu_s"]) for k, v in lessons.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def start_order(runs: list) -> list:
    """The runs, longest first (by :func:`expected_seconds`; a lesson it lacks counts as longer the later it
    comes): with two lanes, the longest lessons overlap and the short ones fill the end."""
    known = expected_seconds()
    order = sorted(range(len(runs)), key=lambda i: (-known.get(runs[i][0].stem[:2], math.inf), -i))
    return [runs[i] for i in order]


def _run_at_once(runs, out: Path, jobs: int) -> dict[str, tuple[str, float, str]]:
    """``jobs`` lessons at a time in worker processes, the longest first (:func:`start_order`); none starts after a
    failure."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, cores() // jobs)
    print(f"{len(runs)} lessons, {jobs} at a time, {threads} torch thread(s) each; the longest first "
          "(docs/results/sizing.json)", flush=True)
    queue, ended, running, last_start = start_order(runs), {}, {}, -KERNEL_STAGGER
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        while queue or running:
            while queue and len(running) < jobs and all(r[0] == "ok" for r in ended.values()):
                path, run_params, line = queue.pop(0)
                time.sleep(max(0.0, last_start + KERNEL_STAGGER - time.monotonic()))
                last_start = time.monotonic()
                print(f"{line}: started", flush=True)
                running[pool.submit(run_one, str(path), str(out / path.name), run_params, str(out), threads)] = (path, line)
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                path, line = running.pop(future)
                try:
                    ended[path.stem] = future.result()
                except Exception as err:              # the worker died (out of memory, killed)
                    ended[path.stem] = ("failed", 0.0, f"the lesson's process died: {type(err).__name__}: {err}")
                print(line, flush=True)
                _print_end(ended[path.stem], out / path.name)
    return ended


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # macOS, Windows
        return os.cpu_count() or 1


def summary_rows(out_dir: str | Path, seconds: dict[str, float], status: dict[str, str]) -> list[dict[str, Any]]:
    """One row per lesson: lesson, status, seconds, the claims' verdicts, the claims not as declared, the recorded
    choices (how many, on which split), metrics."""
    metrics = read_metrics(out_dir)
    rows = []
    for lesson in seconds:
        m = dict(metrics.get(lesson, {}))
        claims, choices = m.pop("claims", []), m.pop("choices", None) or []
        off = [f"{c['claim']} ({c.get('verdict')}, lesson: {c.get('expect', 'holds')})" for c in claims
               if not declared(c.get("verdict", "holds" if c.get("holds") else "fails"), c.get("expect", "holds"))]
        text = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items())
        rows.append({"lesson": lesson, "status": status.get(lesson, "?"), "seconds": round(seconds[lesson], 1),
                     "claims": verdict_counts(claims) if claims else "-",
                     "not as declared": "; ".join(off),
                     "choices": f"{len(choices)} on {'/'.join(sorted({c['on'] for c in choices}))}" if choices else "-",
                     "metrics": text})
    return rows


def write_summary(out_dir: str | Path, rows: list[dict[str, Any]], title: str = "ftlab lessons") -> tuple[Path, Path]:
    """Write ``summary.md`` and ``summary.csv`` into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    md = atomic_write_text(out_dir / "summary.md", f"# {title}\n\n{table_from_dicts(rows).markdown()}\n")
    return md, atomic_write_text(out_dir / "summary.csv", buf.getvalue())
