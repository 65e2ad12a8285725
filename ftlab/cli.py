"""The ``ftlab`` command: run the lessons headless through papermill, sweep parameters, show the data.

``ftlab lessons`` executes ``notebooks/NN_*.ipynb`` in order into a fresh run directory
(default ``runs/<timestamp>/``; never into ``notebooks/``), then prints a summary of each
lesson's recorded metrics and wall time (also ``summary.md`` / ``summary.csv`` there).
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import FtlabError
from .report import format_table, summary_rows, write_summary

__all__ = ["main", "notebooks_dir", "lesson_paths", "lesson_parameters", "run_lessons", "QUICK"]

# --quick: tiny settings for a smoke run, applied to the lessons that have these parameters
QUICK = {"SUBSET": 10, "EVAL_SUBSET": 10, "EPOCHS": 1, "HEAD_EPOCHS": 1, "IMAGE_SIZE": 48}


def notebooks_dir() -> Path:
    """The lessons folder of the source checkout ftlab runs from."""
    path = Path(__file__).resolve().parent.parent / "notebooks"
    if not path.is_dir():
        raise FtlabError(f"No lessons folder at {path}: run ftlab from a clone of the ftlab repository "
                         "(pip install -e .).")
    return path


def lesson_paths(only: list[str] | None = None) -> list[Path]:
    """The lesson notebooks in order, optionally only those whose name starts with one of ``only``."""
    paths = sorted(p for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    if only:
        picked = [p for p in paths if any(p.name.startswith(o) or p.stem == o for o in only)]
        if not picked:
            raise FtlabError(f"No lesson matches {only}; lessons: {', '.join(p.stem for p in paths)}.")
        return picked
    return paths


def lesson_parameters(path: Path) -> dict[str, Any]:
    """The ``parameters`` cell of a lesson, ``{name: default}`` (via papermill)."""
    import papermill as pm

    return {name: info["default"] for name, info in pm.inspect_notebook(str(path)).items()}


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run_lessons(out: Path, lessons: list[Path], params: dict[str, Any], quick: bool = False,
                overwrite: bool = False) -> int:
    """Execute lessons into ``out``; print progress and the summary. Returns a process exit code."""
    import papermill as pm

    nb_dir = notebooks_dir().resolve()
    out = out.resolve()
    if out == nb_dir or nb_dir in out.parents:
        raise FtlabError(f"--out {out} is inside notebooks/: ftlab never writes executed copies over the lessons. "
                         "Pick another folder (default runs/<timestamp>/).")
    accepted = {p: lesson_parameters(p) for p in lessons}
    valid = sorted({name for names in accepted.values() for name in names})
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise FtlabError(f"Unknown parameter(s) {', '.join(unknown)}. Valid parameters: {', '.join(valid)}.")
    existing = [out / p.name for p in lessons if (out / p.name).exists()]
    if existing and not overwrite:
        raise FtlabError(f"{existing[0]} exists; ftlab will not overwrite an executed lesson. "
                         "Use another --out or pass --overwrite.")
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    status: dict[str, str] = {}
    code = 0
    for i, path in enumerate(lessons, 1):
        names = accepted[path]
        run_params = {k: v for k, v in {**(QUICK if quick else {}), **params}.items() if k in names}
        if "OUT_DIR" in names:
            run_params["OUT_DIR"] = str(out)
        shown = ", ".join(f"{k}={v!r}" for k, v in run_params.items() if k != "OUT_DIR")
        print(f"[{i}/{len(lessons)}] {path.stem} {shown}".rstrip(), flush=True)
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(path), str(out / path.name), parameters=run_params, kernel_name="python3",
                                cwd=str(out), progress_bar=False, log_output=False)
            status[path.stem] = "ok"
        except pm.PapermillExecutionError as err:
            status[path.stem] = "failed"
            print(f"      FAILED in cell {err.exec_count}: {err.ename}: {err.evalue}\n"
                  f"      the partly executed copy is {out / path.name}", file=sys.stderr)
            code = 1
        seconds[path.stem] = time.perf_counter() - t0
        print(f"      {status[path.stem]} in {seconds[path.stem]:.1f} s", flush=True)
        if code:
            break
    rows = summary_rows(out, seconds, status)
    md, csv_path = write_summary(out, rows)
    print("\n" + format_table(rows))
    print(f"\nexecuted notebooks, {md.name} and {csv_path.name} are in {out}")
    return code


def _lessons(args) -> int:
    params = {name: _value(value) for name, value in (args.parameter or [])}
    out = Path(args.out) if args.out else Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    return run_lessons(out, lesson_paths(args.only), params, quick=args.quick, overwrite=args.overwrite)


def _data(args) -> int:
    from .data import dataset

    print(dataset(args.name, **({"classes": args.classes} if args.name == "elpv" else {})))
    return 0


def _sweep(args) -> int:
    from .sweep import load_config, run_sweep

    if args.config.endswith((".yaml", ".yml")):
        cfg = load_config(args.config)
    else:
        cfg = {"notebook": args.config, "grid": {}, "fixed": {}}
    for name, values in args.grid or []:
        cfg.setdefault("grid", {})[name] = [_value(v) for v in values.split(",")]
    for name, value in args.parameter or []:
        cfg.setdefault("fixed", {})[name] = _value(value)
    out = args.out or cfg.get("out") or str(Path("runs") / ("sweep-" + datetime.now().strftime("%Y%m%d-%H%M%S")))
    rows = run_sweep(cfg["notebook"], cfg.get("grid") or {}, out, cfg.get("fixed"))
    return 0 if rows and all(r["status"] == "ok" for r in rows) else 1


def _full(args) -> int:
    import json

    from .cache import atomic_write
    from .fullrun import format_full, full_run

    out = Path(args.out) if args.out else Path("runs") / ("full-" + datetime.now().strftime("%Y%m%d-%H%M%S"))
    target = out / "full.json"
    if target.exists() and not args.overwrite:
        raise FtlabError(f"{target} exists: pass another --out, or --overwrite to replace it.")
    kwargs = {k: getattr(args, k) for k in ("seeds", "image_size", "cut", "epochs", "two_class", "subset")
              if getattr(args, k) is not None}
    result = full_run(**kwargs, progress=False)
    atomic_write(target, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    print("\n" + format_full(result))
    print(f"\nresults: {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ftlab`` console script."""
    parser = argparse.ArgumentParser(prog="ftlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("lessons", help="run the lesson notebooks headless and print a summary")
    p.add_argument("--out", help="run directory (default runs/<timestamp>/)")
    p.add_argument("--only", nargs="+", metavar="LESSON", help="lesson numbers or names, e.g. 02 03")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a lesson parameter, e.g. -p EPOCHS 5 -p IMAGE_SIZE 224")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run: " +
                   ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    p.add_argument("--overwrite", action="store_true", help="replace executed copies already in --out")
    p.set_defaults(run=_lessons)
    w = sub.add_parser("sweep", help="run a notebook over a parameter grid (resumable), gather results.csv")
    w.add_argument("config", help="a sweep CONFIG.yaml, or a notebook path used with -g")
    w.add_argument("-g", "--grid", nargs=2, action="append", metavar=("NAME", "V1,V2,..."),
                   help="a grid dimension, e.g. -g SEED 0,1,2")
    w.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="a parameter fixed for every run")
    w.add_argument("--out", help="sweep folder (default from the config, else runs/sweep-<timestamp>/)")
    w.set_defaults(run=_sweep)
    f = sub.add_parser("full", help="the full-quality ELPV run (224 px, all data, 3 seeds, 2 and 4 classes)")
    f.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2")
    f.add_argument("--image-size", type=int, help="default 224")
    f.add_argument("--cut", help="first trained layer group, default blocks.5")
    f.add_argument("--epochs", type=int, help="default 12")
    f.add_argument("--subset", type=_value, help="training cells (fraction or per class) for a quick check")
    f.add_argument("--two-class", choices=["derived", "trained"], help="2-class answer from the 4-class model "
                   "(derived, default) or also train 2-class models (trained)")
    f.add_argument("--out", help="output folder (default runs/full-<timestamp>/)")
    f.add_argument("--overwrite", action="store_true", help="replace full.json already in --out")
    f.set_defaults(run=_full)
    d = sub.add_parser("data", help="print the splits and class counts of a data set")
    d.add_argument("name", nargs="?", default="elpv", help="'elpv' or an image folder")
    d.add_argument("--classes", type=int, default=2, help="ELPV: 2 or 4")
    d.set_defaults(run=_data)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except FtlabError as err:
        print(f"ftlab: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ftlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
