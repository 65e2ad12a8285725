"""The ``ftlab`` command (argparse only): the lessons headless, sweeps, the full runs, student copies and grading.

``ftlab lessons`` executes ``notebooks/NN_*.ipynb`` in order into a fresh run directory
(default ``runs/<timestamp>/``; never into ``notebooks/``), then prints a summary of each
lesson's recorded metrics and wall time (also ``summary.md`` / ``summary.csv`` there).
``ftlab student`` writes student copies and ``ftlab grade`` grades them (:mod:`ftlab.lab.grading`);
``ftlab site`` builds the course site from a run's executed lessons (:mod:`ftlab.lab.site`).
The work is done by :mod:`ftlab.lab.lessons`, :mod:`ftlab.lab.sweep`, :mod:`ftlab.lab.full_images`.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from ..errors import FtlabError, UsageError
from .lessons import QUICK, lesson_paths, parse_value, run_lessons

__all__ = ["main"]


def _lessons(args) -> int:
    params = {name: parse_value(value) for name, value in (args.parameter or [])}
    out = Path(args.out) if args.out else Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    return run_lessons(out, lesson_paths(args.only), params, quick=args.quick, overwrite=args.overwrite,
                       jobs=args.jobs)


def _student(args) -> int:
    from .grading import write_student_copies

    paths = write_student_copies(lesson_paths(args.only), Path(args.out), overwrite=args.overwrite)
    print(f"{len(paths)} student copies (solutions removed, hidden checks removed) in {args.out}: "
          + ", ".join(p.name for p in paths))
    return 0


def _grade(args) -> int:
    from .grading import grade, source_of, write_gradebook

    params = {n: parse_value(v) for n, v in (args.parameter or [])}
    grades = []
    for sub in map(Path, args.submissions):
        if not sub.is_file():
            raise UsageError(f"{sub}: no such notebook. Pass the students' notebooks, e.g. submitted/*/02_head_only.ipynb.")
        student = sub.parent.name if args.name is None else args.name
        source = source_of(sub, lesson_paths())
        print(f"grading {student} · {sub.stem} ...", flush=True)
        g = grade(sub, source, Path(args.out) / student, params, student=student, quick=args.quick)
        print(f"      {g.points} of {g.possible} checks pass" + (f"; {len(g.errors)} cells raised" if g.errors else ""))
        grades.append(g)
    book = write_gradebook(grades, Path(args.out) / "grades.csv")
    print(f"feedback per student in {args.out}/<student>/<lesson>.md; the gradebook is {book}")
    return 0


def _site(args) -> int:
    from .site import build_site, newest_run

    run = Path(args.source) if args.source else newest_run()
    index = build_site(run, Path(args.out), overwrite=args.overwrite, solutions=args.solutions)
    print(f"the site of {run} is in {args.out}/: open {index}")
    return 0


def _add_teaching(sub) -> None:
    s = sub.add_parser("student", help="write student copies of the lessons: solutions and hidden checks removed")
    s.add_argument("--out", default="student", help="folder for the copies (default student/)")
    s.add_argument("--only", nargs="+", metavar="LESSON", help="lesson numbers or names, e.g. 02 03")
    s.add_argument("--overwrite", action="store_true", help="replace copies already in --out (students' work!)")
    s.set_defaults(run=_student)
    g = sub.add_parser("grade", help="grade students' notebooks: run each to its end with the teacher's checks")
    g.add_argument("submissions", nargs="+", help="students' notebooks, e.g. submitted/*/02_head_only.ipynb "
                   "(the folder names the student)")
    g.add_argument("--out", default="grades", help="feedback and grades.csv (default grades/)")
    g.add_argument("--name", help="the student's name (default: the notebook's folder)")
    g.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a lesson parameter for the graded run")
    g.add_argument("--quick", action="store_true", help="grade at the tiny settings of ftlab lessons --quick")
    g.set_defaults(run=_grade)
    t = sub.add_parser("site", help="build the course site (Jupyter Book) from the executed lessons of a run")
    t.add_argument("--from", dest="source", help="a run folder of ftlab lessons (default: the newest under runs/)")
    t.add_argument("--out", default="site", help="where the HTML goes (default site/)")
    t.add_argument("--overwrite", action="store_true", help="replace a site already in --out")
    t.add_argument("--solutions", action="store_true", help="show the graded exercises' solutions (a teacher's site)")
    t.set_defaults(run=_site)


def _data(args) -> int:
    from ..vision import dataset

    print(dataset(args.name, **({"classes": args.classes} if args.name == "elpv" else {})))
    return 0


def _sweep(args) -> int:
    from .sweep import load_config, run_sweep, save_sweep_figures

    if args.config.endswith((".yaml", ".yml")):
        cfg = load_config(args.config)
    else:
        cfg = {"notebook": args.config, "grid": {}, "fixed": {}}
    for name, values in args.grid or []:
        cfg.setdefault("grid", {})[name] = [parse_value(v) for v in values.split(",")]
    for name, value in args.parameter or []:
        cfg.setdefault("fixed", {})[name] = parse_value(value)
    run = dict(cfg.get("executor") or {})      # the YAML's executor section; the command line wins
    for key in ("executor", "workers", "threads", "partition", "timeout_min", "mem_gb"):
        if getattr(args, key) is not None:
            run["name" if key == "executor" else key] = getattr(args, key)
    out = args.out or cfg.get("out") or str(Path("runs") / ("sweep-" + datetime.now().strftime("%Y%m%d-%H%M%S")))
    rows = run_sweep(cfg["notebook"], cfg.get("grid") or {}, out, cfg.get("fixed"), executor=run.pop("name", "local"),
                     workers=run.pop("workers", None), threads=run.pop("threads", None), options=run)
    figures = save_sweep_figures(rows, out)
    if figures:
        print(f"figures: {', '.join(str(f) for f in figures)}")
    return 0 if rows and all(r["status"] == "ok" for r in rows) else 1


def _full_text(args, target: Path) -> int:
    from .full_images import save_full
    from .full_text import format_text_full, text_full_run

    wrong = [f"--{k.replace('_', '-')}" for k in ("image_size", "cut", "two_class", "select_on")
             if getattr(args, k) is not None]
    if wrong:
        raise UsageError(f"{', '.join(wrong)} belong to the image or detection run; the text run takes --seeds, --epochs, "
                         "--subset and --select.")
    kwargs = {k: getattr(args, k) for k in ("seeds", "epochs", "subset") if getattr(args, k) is not None}
    result = text_full_run(**kwargs, select=args.select, progress=True)
    save_full(result, target, overwrite=args.overwrite)
    print("\n" + format_text_full(result))
    print(f"\nresults: {target}")
    return 0


def _full_detection(args, target: Path) -> int:
    from .full_detection import detection_full_run, format_detection_full
    from .full_images import save_full

    wrong = [f"--{k.replace('_', '-')}" for k in ("image_size", "cut", "two_class", "subset") if getattr(args, k) is not None]
    if wrong:
        raise UsageError(f"{', '.join(wrong)} belong to the image or text run; the detection run takes --seeds, "
                         "--epochs, --select and --select-on.")
    if args.select_on and not args.select:
        raise UsageError("--select-on says where --select chooses: pass --select too.")
    kwargs = {k: getattr(args, k) for k in ("seeds", "epochs") if getattr(args, k) is not None}
    result = detection_full_run(**kwargs, select=args.select, select_on=args.select_on or "val", progress=True)
    save_full(result, target, overwrite=args.overwrite)
    print("\n" + format_detection_full(result))
    print(f"\nresults: {target}")
    return 0


def _full_llm(args, target: Path) -> int:
    from .full_images import save_full
    from .full_llm import format_llm_full, llm_full_run

    wrong = [f"--{k.replace('_', '-')}" for k in ("image_size", "two_class", "select_on") if getattr(args, k) is not None]
    if wrong:
        raise UsageError(f"{', '.join(wrong)} belong to the image or detection run; the decoder run takes --seeds, "
                         "--epochs, --cut, --subset (training snippets per class) and --select.")
    kwargs = {k: getattr(args, k) for k in ("seeds", "epochs", "cut") if getattr(args, k) is not None}
    if args.subset is not None:
        if not isinstance(args.subset, int) or args.subset < 1:
            raise UsageError(f"--subset for the decoder run is a number of training snippets per class, not {args.subset!r}.")
        kwargs.update(train_per_class=args.subset, pool_per_class=max(args.subset, 500))
    result = llm_full_run(**kwargs, select=args.select, progress=True)
    save_full(result, target, overwrite=args.overwrite)
    print("\n" + format_llm_full(result))
    print(f"\nresults: {target}")
    return 0


FULL_RESULTS = {"images": "full.json", "text": "text_full.json", "detection": "detection_full.json",
                "llm": "llm_full.json"}


def _full(args) -> int:
    from .full_images import format_full, full_run, save_full

    default = "full-" if args.task == "images" else f"full-{args.task}-"
    out = Path(args.out) if args.out else Path("runs") / (default + datetime.now().strftime("%Y%m%d-%H%M%S"))
    target = out / FULL_RESULTS[args.task]
    if target.exists() and not args.overwrite:           # before the run, not after 25 minutes of it
        raise UsageError(f"{target} exists: pass another --out, or --overwrite to replace it.")
    if args.task == "text":
        return _full_text(args, target)
    if args.task == "detection":
        return _full_detection(args, target)
    if args.task == "llm":
        return _full_llm(args, target)
    if args.select_on:
        raise UsageError("--select-on is for the detection run (--task detection); the image run selects on val.")
    kwargs = {k: getattr(args, k) for k in ("seeds", "image_size", "cut", "epochs", "two_class", "subset")
              if getattr(args, k) is not None}
    if args.select and {"image_size", "cut"} & set(kwargs):
        raise UsageError("--select chooses the input size and the cut on val: drop --image-size and --cut.")
    result = full_run(**kwargs, select=args.select, progress=False)
    save_full(result, target, overwrite=args.overwrite)
    print("\n" + format_full(result))
    print(f"\nresults: {target}")
    return 0


def _add_full(sub) -> None:
    """The ``ftlab full`` command and its options."""
    f = sub.add_parser("full", help="a full-quality run: ELPV images (default; 224 px, all data, 3 seeds, 2 and 4 "
                       "classes), Rotten Tomatoes text (--task text), NEON tree crowns (--task detection) or the "
                       "decoder asked fresh or rotten (--task llm)")
    f.add_argument("--task", choices=["images", "text", "detection", "llm"], default="images",
                   help="ELPV images (default), text, detection, or llm (SmolLM2, lesson 09 at full size)")
    f.add_argument("--select", action="store_true", help="first choose the configuration "
                   "(backbone, input size, cut, learning rate, ...) on the validation split")
    f.add_argument("--select-on", choices=["val", "holdout"], help="detection: choose on the validation plots "
                   "(default) or on a held-out row of the training photo's tiles")
    f.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2")
    f.add_argument("--image-size", type=int, help="default 224")
    f.add_argument("--cut", help="first trained layer group, default blocks.5 (images), layers.26 (llm)")
    f.add_argument("--epochs", type=int, help="default 12 (images), 2 (text), 20 (detection), 3 (llm)")
    f.add_argument("--subset", type=parse_value, help="training cells (fraction or per class) for a quick check")
    f.add_argument("--two-class", choices=["derived", "trained"], help="2-class answer from the 4-class model "
                   "(derived, default) or also train 2-class models (trained)")
    f.add_argument("--out", help="output folder (default runs/full-<timestamp>/)")
    f.add_argument("--overwrite", action="store_true", help="replace full.json already in --out")
    f.set_defaults(run=_full)


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
    p.add_argument("--jobs", type=int, default=1,
                   help="lessons at the same time, each with cores // jobs torch threads (default 1; make lessons: 2)")
    p.set_defaults(run=_lessons)
    w = sub.add_parser("sweep", help="run a notebook over a parameter grid (resumable), gather results.csv")
    w.add_argument("config", help="a sweep CONFIG.yaml, or a notebook path used with -g")
    w.add_argument("-g", "--grid", nargs=2, action="append", metavar=("NAME", "V1,V2,..."),
                   help="a grid dimension, e.g. -g SEED 0,1,2")
    w.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="a parameter fixed for every run")
    w.add_argument("--out", help="sweep folder (default from the config, else runs/sweep-<timestamp>/)")
    w.add_argument("--executor", choices=["local", "pool", "slurm"],
                   help="local: one run after the other (default); pool: a local process pool; slurm: a submitit "
                        "job array (submitit's local executor where there is no Slurm)")
    w.add_argument("--workers", type=int, help="runs at the same time (pool, slurm); default one per core")
    w.add_argument("--threads", type=int, help="torch threads per run (pool default: cores // workers; slurm: 1)")
    w.add_argument("--partition", help="slurm: the partition")
    w.add_argument("--timeout-min", type=int, help="slurm: the time limit of each run in minutes (default 60)")
    w.add_argument("--mem-gb", type=float, help="slurm: memory per run in GB (default 8)")
    w.set_defaults(run=_sweep)
    _add_full(sub)
    _add_teaching(sub)
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
