"""The course site: the executed lessons of one ``ftlab lessons`` run as a static Jupyter Book, built offline.

``ftlab site --from runs/<run>`` (``make site``) takes the executed notebooks and ``summary.md`` of a
run folder, writes a Jupyter Book 1 project around them (``_config.yml`` with execution off: the site
shows what that run computed, figures and claim tables included; ``_toc.yml`` in lesson order; an
index page with the run's summary), builds it with ``jupyter-book build`` in a scratch folder and
moves the HTML into place (``site/`` by default) only when the build succeeded. The graded exercises are
shown without their solutions (``--solutions`` for a teacher's site). Nothing is downloaded:
Sphinx and the book theme ship their assets.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import UsageError
from ..files import atomic_write_text
from .grading import BEGIN, student_copy

__all__ = ["build_site", "newest_run"]

CONFIG = """title: ftlab — fine-tuning pretrained networks, lesson by lesson
author: the ftlab team
only_build_toc_files: true
execute:
  execute_notebooks: "off"
sphinx:
  config:
    html_show_sourcelink: false
    suppress_warnings: ["mystnb.unknown_mime_type"]
"""


def newest_run(runs: Path = Path("runs")) -> Path:
    """The newest folder under ``runs/`` that holds executed lessons (``NN_*.ipynb``) and a ``summary.md``."""
    found = sorted((p for p in runs.glob("*") if p.is_dir() and (p / "summary.md").is_file()
                    and any(p.glob("[0-9][0-9]_*.ipynb"))), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UsageError(f"No executed lessons under {runs}/: run `make lessons` (or ftlab lessons --out DIR) first, "
                         "then ftlab site --from that folder.")
    return found[-1]


def _index(run: Path, lessons: list[Path]) -> str:
    summary = (run / "summary.md").read_text().split("\n", 1)[1] if (run / "summary.md").is_file() else ""
    items = "\n".join(f"- [{p.stem.replace('_', ' ')}]({p.stem})" for p in lessons)
    return (f"# ftlab: the lessons, as run\n\nEvery page is a lesson executed by `ftlab lessons` in `{run.name}`: the "
            f"figures, numbers and claim tables are that run's (each claim with its verdict: holds, fails or "
            f"undecided). Open the notebooks themselves in JupyterLab to run them.\n\n{items}\n\n"
            f"## The run's summary\n{summary}\n")


def build_site(run: Path, out: Path, overwrite: bool = False, solutions: bool = False) -> Path:
    """Build the site of one run folder into ``out``; returns the path of its ``index.html``.

    The graded exercises appear as the students get them (no solution, no hidden check), unless ``solutions``."""
    import nbformat

    run, out = Path(run), Path(out)
    lessons = sorted(run.glob("[0-9][0-9]_*.ipynb"))
    if not lessons:
        raise UsageError(f"{run} holds no executed lessons (NN_*.ipynb): pass the --out folder of an ftlab lessons run.")
    if out.exists() and not overwrite and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not empty: pass --overwrite to replace that site, or another --out.")
    book = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    if book is None:
        raise UsageError("jupyter-book is not installed: make install (it is in ftlab's test extras), "
                         "or pip install 'jupyter-book>=1,<2'.")
    with tempfile.TemporaryDirectory(prefix="ftlab-site-") as tmp:
        src = Path(tmp) / "book"
        src.mkdir()
        for path in lessons:                          # the graded exercises without their solutions, unless asked
            nb = nbformat.read(path, as_version=4)
            has_exercises = any(c.cell_type == "code" and BEGIN in c.source for c in nb.cells)
            if has_exercises and not solutions:
                nb = student_copy(nb, path.name, keep_outputs=True)
            atomic_write_text(src / path.name, nbformat.writes(nb))
        atomic_write_text(src / "_config.yml", CONFIG)
        atomic_write_text(src / "_toc.yml", "format: jb-book\nroot: index\nchapters:\n"
                          + "".join(f"- file: {p.stem}\n" for p in lessons))
        atomic_write_text(src / "index.md", _index(run, lessons))
        done = subprocess.run([book, "build", str(src), "--builder", "html", "--path-output", tmp],
                              capture_output=True, text=True)
        html = Path(tmp) / "_build" / "html"
        if done.returncode != 0 or not (html / "index.html").is_file():
            raise UsageError(f"jupyter-book could not build the site:\n{(done.stdout + done.stderr)[-2000:]}")
        staged = out.with_name(out.name + ".new")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(html, staged)
        if out.exists():
            old = out.with_name(out.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            staged.rename(out)
            shutil.rmtree(old)
        else:
            staged.rename(out)
    return out / "index.html"
