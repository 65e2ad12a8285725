"""What one student's kernel needs, lesson by lesson: the measurements behind the README's sizing table.

Runs each lesson at its classroom defaults through ``ftlab lessons`` in its own process tree, twice:

* **cold**: with an empty cache (``FTLAB_CACHE`` pointed at a new folder): ELPV decoded, weights
  converted, every feature extracted — a student with no shared cache;
* **warm**: again with the cache the cold run filled — a student on a hub whose shared cache the
  teacher filled once (``ftlab lessons`` run by the teacher, then shared read-only).

For each run: wall seconds, CPU seconds (user + system of the whole tree: the runner and the lesson's
kernel) and the peak resident memory of the largest process in it (the kernel; ``wait4``'s
``ru_maxrss``). ``OMP_NUM_THREADS`` as set (unset: torch uses one thread per core).

Then JupyterHub's sizing rule (concurrent users x per-user peak + overhead, from
https://jupyterhub.readthedocs.io/en/stable/explanation/capacity-planning.html) for classes of 30
and 100 students all at the largest lesson at once, and the CPU time a class needs per lesson.

Not a ``bench_*.py`` (``make bench`` would take half an hour longer): run it as ``make sizing``
(``--only 02 03`` for some lessons, ``--out`` for the JSON; default ``docs/results/sizing.json``).
It prints one JSON object on stdout, like the benchmarks.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HUB_OVERHEAD_GB = 1.0      # the hub, the proxy and the single-user servers' own processes (~0.1 GB each at 30 users)


def run_lesson(lesson: str, cache: Path, out: Path) -> dict:
    """One ``ftlab lessons --only`` run in its own process tree; wall, CPU and peak memory of that tree."""
    env = {**os.environ, "FTLAB_CACHE": str(cache)}
    env.pop("FTLAB_STRICT_CLAIMS", None)
    cmd = [str(ROOT / ".venv" / "bin" / "ftlab"), "lessons", "--only", lesson, "--out", str(out), "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    output = proc.stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{lesson} failed:\n{output[-3000:]}")
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_gb": round(usage.ru_maxrss / 1024 ** 2, 2)}


def class_sizes(rows: dict, students=(30, 100)) -> dict:
    """JupyterHub's rule for memory; CPU-minutes per lesson for a whole class; cores to finish in a lesson's time."""
    peak = max(r["warm"]["peak_gb"] for r in rows.values())
    largest = max(rows, key=lambda k: rows[k]["warm"]["peak_gb"])
    out = {}
    for n in students:
        out[str(n)] = {
            "memory_gb_all_at_the_largest_lesson": round(n * peak + HUB_OVERHEAD_GB, 1),
            "largest_lesson": largest,
            "cpu_minutes_per_lesson_warm": {k: round(n * r["warm"]["cpu_s"] / 60, 1) for k, r in rows.items()},
            "cores_to_keep_each_lesson_at_its_2_core_wall_time": {
                k: round(n * r["warm"]["cpu_s"] / r["warm"]["wall_s"], 1) for k, r in rows.items()},
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", help="lesson numbers, e.g. 02 03 (default: every lesson)")
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "sizing.json"), help="where the JSON goes")
    p.add_argument("--runs", help="keep the executed lessons (cold/ and warm/) in this folder (default: a temporary one)")
    args = p.parse_args()
    lessons = args.only or sorted(n.name[:2] for n in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    rows = {}
    with tempfile.TemporaryDirectory(prefix="ftlab-sizing-") as tmp:
        cache, runs = Path(tmp) / "cache", Path(args.runs or tmp)
        for lesson in lessons:          # cold, then warm, lesson by lesson: each cold run starts from the others' cache
            print(f"{lesson} cold ...", file=sys.stderr, flush=True)
            cold = run_lesson(lesson, cache / lesson, runs / "cold")
            print(f"{lesson} warm ... (cold {cold})", file=sys.stderr, flush=True)
            warm = run_lesson(lesson, cache / lesson, runs / "warm")
            print(f"{lesson} done (warm {warm})", file=sys.stderr, flush=True)
            rows[lesson] = {"cold": cold, "warm": warm}
    result = {"lessons": rows, "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset (one per core)"),
              "cores": os.cpu_count(), "hub_overhead_gb": HUB_OVERHEAD_GB, "classes": class_sizes(rows),
              "date": time.strftime("%Y-%m-%d")}
    text = json.dumps(result, indent=2)
    tmp_out = Path(args.out).with_suffix(".tmp")
    tmp_out.write_text(text + "\n")
    tmp_out.replace(args.out)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
