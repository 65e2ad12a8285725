"""Shared helpers for the benchmark scripts: arguments, timing, medians and the one JSON line.

Every ``bench_*.py`` prints exactly one JSON object on stdout; everything else (progress,
warnings, stray prints) goes to stderr. :func:`main` arranges that: it runs the benchmark
with ``sys.stdout`` redirected to stderr and prints the returned dict at the end.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import torch

THREADS = 2     # the classroom laptop / CI box: 2 cores


def parser(description: str, image_size: int | list[int]) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes (``--quick``, ``--image-size``, ...)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smaller and faster: a smoke run, not a measurement")
    if isinstance(image_size, list):
        p.add_argument("--image-size", type=int, nargs="+", default=image_size, help="image side(s) in pixels")
    else:
        p.add_argument("--image-size", type=int, default=image_size, help="image side in pixels")
    p.add_argument("--threads", type=int, default=THREADS, help="torch.set_num_threads")
    return p


def setup(threads: int, seed: int = 0) -> None:
    """Fix the thread count and the seed before anything is built."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


def log(*args: Any) -> None:
    """Progress message on stderr (stdout is reserved for the JSON result)."""
    print(*args, file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn()`` once; return (wall seconds, its result)."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median(xs) -> float:
    return float(statistics.median(xs))


def rnd(x: float, digits: int = 4) -> float:
    return float(round(x, digits))


def environment() -> dict[str, Any]:
    """The facts every result carries about where it ran."""
    return {"torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "cpu_count": os.cpu_count()}


def main(run: Callable[[argparse.Namespace], dict[str, Any]], args: argparse.Namespace) -> None:
    """Run a benchmark with stdout sent to stderr, then print its result as one JSON object."""
    setup(args.threads)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        result = run(args)
    result = {**result, "quick": bool(args.quick), **environment(),
              "wall_seconds": rnd(time.perf_counter() - t0, 1)}
    print(json.dumps(result), flush=True)
