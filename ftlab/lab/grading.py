"""Graded exercises: the student writes the fine-tuning code, the lesson's own kind of evidence grades it.

A lesson's graded exercises are two cells each. The **exercise cell** holds the teacher's solution
between nbgrader's markers, which are plain comments, so the teacher's notebook runs as it is (nbval,
papermill, JupyterLab)::

    ### BEGIN SOLUTION
    ft.freeze(my_model)
    ### END SOLUTION

The **check cell** that follows grades it with :func:`exercise`. Each check is a statement about
the student's objects, made the way the lessons make theirs: a frozen tensor stayed bit-identical, a
learning rate is in the optimizer's groups, a head beats the majority class on validation by a
margin (an :func:`ftlab.lab.claim` with its interval: it passes when it *holds*). A check is a
callable, so a name the student has not defined yet is feedback, not a crash::

    with ft.lab.exercise("02.1", "Freeze the network, put a new head on it", out_dir=OUT_DIR) as ex:
        ex.check("every tensor below the head is frozen", lambda: ..., hint="ft.freeze(my_model) ...")
        ### BEGIN HIDDEN TESTS
        ex.check("...", lambda: ...)
        ### END HIDDEN TESTS

Why nbgrader's markers and not otter-grader's: they are comments inside ordinary code cells, so the
lessons need no assignment-format cells, stay the one source that nbval and papermill test, and an
nbgrader installation reads the same cells (:func:`student_copy` also writes nbgrader's cell metadata).
The grading itself is ftlab's: it reuses the lessons' claims and reads their recorded results.

:func:`student_copy` writes a student's copy: solutions replaced by ``raise NotImplementedError``,
hidden checks and ``<details><summary>Solution</summary>`` blocks removed, outputs cleared.
:func:`grade` puts the teacher's check cells back into a submission (hidden checks included; a
student's edits to a check cell do not count), runs it to the end in a fresh kernel (a failing cell
does not stop it) and reads what every check recorded: ``ftlab student`` and ``ftlab grade``.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import FtlabError, UsageError
from ..files import atomic_write_text
from .claims import STRICT_ENV, Claim

__all__ = ["Check", "Exercise", "ExerciseFailed", "exercise", "student_copy", "write_student_copies", "grade",
           "Grade", "exercise_ids", "source_of", "graded_notebook", "write_gradebook", "trains_only",
           "optimizer_sees", "rate_of", "snapshot", "unchanged", "changed"]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_EXERCISE = re.compile(r"""ft\.lab\.exercise\(\s*["']([^"']+)["']""")
_CHECK = re.compile(r"""\.check\(\s*["']([^"']+)["']""")
_DETAILS = re.compile(r"<details>\s*<summary>\s*Solution\s*</summary>.*?</details>", re.S | re.I)
GRADES = "grades"               # <out_dir>/grades/<exercise id>.json


class ExerciseFailed(FtlabError):
    """A check of a graded exercise failed in a strict run (the tests' run of the teacher's solutions)."""


@dataclass
class Check:
    """One checked statement of an exercise: did it pass, and what the student should know."""

    what: str
    passed: bool
    feedback: str = ""


@dataclass
class Exercise:
    """A graded exercise: its checks, one point each. Use it through :func:`exercise`."""

    id: str
    title: str
    out_dir: str | None = None
    checks: list[Check] = field(default_factory=list)

    def check(self, what: str, test: Callable[[], Any], hint: str = "") -> bool:
        """Check one statement; ``test()`` returns a truth value or an :func:`ftlab.lab.claim` (passes when it holds).

        An exception inside ``test`` fails the check with its message: a ``NameError`` says which
        name the exercise cell should define.
        """
        if not callable(test):
            raise UsageError(f"Exercise {self.id}: check {what!r} takes a function (lambda: ...), so that a name the "
                             "student has not defined yet is feedback rather than an error in the check cell.")
        try:
            result = test()
            if isinstance(result, Claim):
                passed = result.verdict == "holds"
                shown = result.evidence.get("estimate") or ", ".join(
                    f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.evidence.items())
                feedback = "" if passed else f"{result.verdict}, not holds: {shown}"
            else:
                passed, feedback = bool(result), ""
        except AssertionError as err:                # the check helpers' messages say what is wrong
            passed, feedback = False, str(err)
        except NameError as err:
            name = re.search(r"'([^']+)'", str(err))
            passed = False
            feedback = (f"`{name.group(1) if name else err}` is not defined: the exercise cell above must define it "
                        "(does it still raise NotImplementedError?)")
        except Exception as err:                      # noqa: BLE001 - any failure of the student's code is feedback
            passed, feedback = False, f"{type(err).__name__}: {err}"
        if not passed and hint:
            feedback = f"{feedback}; {hint}" if feedback else hint
        self.checks.append(Check(what, passed, feedback))
        return passed

    @property
    def points(self) -> int:
        return sum(c.passed for c in self.checks)

    def report(self) -> str:
        lines = [f"Exercise {self.id} · {self.title}: {self.points} of {len(self.checks)} checks pass"]
        lines += [f"  {'✓' if c.passed else '✗'} {c.what}" + (f"\n      {c.feedback}" if c.feedback else "")
                  for c in self.checks]
        return "\n".join(lines)

    def __enter__(self) -> "Exercise":
        return self

    def __exit__(self, kind, value, tb) -> bool:
        if kind is not None:                          # an error in the check cell itself: the teacher's bug
            return False
        print(self.report())
        if self.out_dir:
            atomic_write_text(Path(self.out_dir) / GRADES / f"{self.id}.json",
                              json.dumps({"id": self.id, "title": self.title,
                                          "checks": [asdict(c) for c in self.checks]}, indent=2))
        failed = [c.what for c in self.checks if not c.passed]
        if failed and os.environ.get(STRICT_ENV) == "1":
            raise ExerciseFailed(f"Exercise {self.id}: the teacher's solution fails {failed}.")
        return False


def exercise(id: str, title: str, out_dir: str | Path | None = None) -> Exercise:
    """A graded exercise, used as ``with ft.lab.exercise(id, title, out_dir=OUT_DIR) as ex: ex.check(...)``.

    On leaving the ``with`` block it prints what passed and what did not (with feedback), and with
    ``out_dir`` writes ``<out_dir>/grades/<id>.json`` for :func:`grade`. In the tests' strict runs
    (``FTLAB_STRICT_CLAIMS=1``) a failing check is an error: the teacher's solution must pass.
    """
    if not re.fullmatch(r"[0-9A-Za-z_.-]+", str(id)):
        raise UsageError(f"Exercise id {id!r}: use letters, digits, '.', '_' or '-' (it names a file), e.g. '02.1'.")
    return Exercise(str(id), title, str(out_dir) if out_dir else None)


# -- student copies -----------------------------------------------------------------------------------------------

def _cut(source: str, begin: str, end: str, filler: Callable[[str], str] | None) -> str:
    """Replace every ``begin``..``end`` region (marker lines included) by ``filler(indent)`` (or nothing)."""
    out, inside, indent = [], False, ""
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == begin and not inside:
            inside, indent = True, line[: len(line) - len(line.lstrip())]
        elif stripped == end and inside:
            inside = False
            if filler:
                out.append(filler(indent))
        elif not inside:
            out.append(line)
    if inside:
        raise UsageError(f"A cell opens {begin!r} and never closes it with {end!r}: {source[:80]!r}...")
    return "\n".join(out)


def exercise_ids(source: str) -> list[str]:
    """The exercise ids a cell's source grades (its ``ft.lab.exercise("...")`` calls)."""
    return _EXERCISE.findall(source)


def _kind(cell) -> str | None:
    if cell.cell_type == "code" and BEGIN in cell.source:
        return "solution"
    if cell.cell_type == "code" and exercise_ids(cell.source):
        return "checks"
    return None


def student_copy(nb, source_name: str, keep_outputs: bool = False):
    """A student's copy of a teacher's notebook (a new ``nbformat`` notebook; ``nb`` is not changed).

    ``keep_outputs=True`` keeps the outputs of every cell but the exercises' (the course site shows an executed
    lesson without its solutions)."""
    nb = copy.deepcopy(nb)
    solutions = 0
    for cell in nb.cells:
        kind = _kind(cell)
        if kind == "solution":
            solutions += 1
            cell.source = _cut(cell.source, BEGIN, END,
                               lambda indent: f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError()")
            grade_id = f"solution-{solutions}"
        elif kind == "checks":
            if len(exercise_ids(cell.source)) != 1:
                raise UsageError(f"{source_name}: a check cell grades one exercise; this one calls ft.lab.exercise "
                                 f"{len(exercise_ids(cell.source))} times: {cell.source[:80]!r}...")
            cell.source = _cut(cell.source, BEGIN_HIDDEN, END_HIDDEN, None)
            grade_id = "checks-" + "-".join(exercise_ids(cell.source))
        elif cell.cell_type == "markdown":
            cell.source = _cut(_DETAILS.sub("", cell.source), BEGIN, END, lambda indent: f"{indent}YOUR ANSWER HERE")
        if kind:
            cell.metadata["ftlab"] = {"grade_id": grade_id, "kind": kind}
            cell.metadata["nbgrader"] = {"grade_id": grade_id, "solution": kind == "solution", "grade": kind == "checks",
                                         "locked": kind == "checks", "schema_version": 3,
                                         **({"points": 0} if kind == "checks" else {})}
        if cell.cell_type == "code" and (kind or not keep_outputs):
            cell.outputs, cell.execution_count = [], None
    if not solutions:
        raise UsageError(f"{source_name} has no exercise cell ({BEGIN!r} ... {END!r}): nothing to hand out.")
    nb.metadata["ftlab"] = {"student_copy": True, "source": source_name}
    return nb


def write_student_copies(lessons: list[Path], out: Path, overwrite: bool = False) -> list[Path]:
    """Write a student copy of each lesson into ``out``; never over a copy already there unless ``overwrite``."""
    import nbformat

    out = Path(out)
    targets = [out / p.name for p in lessons]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise UsageError(f"{existing[0]} exists (perhaps a student's work): ftlab will not overwrite it. "
                         "Use another --out or pass --overwrite.")
    for path, target in zip(lessons, targets):
        if path.resolve() == target.resolve():
            raise UsageError(f"--out would replace the teacher's lesson {path}: pick another folder.")
        copy_ = student_copy(nbformat.read(path, as_version=4), path.name)
        atomic_write_text(target, nbformat.writes(copy_))
    return targets


# -- grading ------------------------------------------------------------------------------------------------------

@dataclass
class Grade:
    """One graded submission: per exercise its checks, and the total."""

    student: str
    lesson: str
    exercises: list[dict[str, Any]]
    errors: list[str]

    @property
    def points(self) -> int:
        return sum(c["passed"] for e in self.exercises for c in e["checks"])

    @property
    def possible(self) -> int:
        return sum(len(e["checks"]) for e in self.exercises)

    def markdown(self) -> str:
        lines = [f"# {self.lesson} · {self.student}: {self.points} of {self.possible} checks pass", ""]
        for e in self.exercises:
            lines.append(f"## Exercise {e['id']} · {e['title']}")
            lines += [f"- {'✓' if c['passed'] else '✗'} {c['what']}" + (f" — {c['feedback']}" if c["feedback"] else "")
                      for c in e["checks"]]
            lines.append("")
        if self.errors:
            lines += ["## Cells that raised an error", *[f"- {e}" for e in self.errors]]
        return "\n".join(lines) + "\n"


def _teacher_checks(source_nb) -> dict[str, Any]:
    cells = {}
    for cell in source_nb.cells:
        if _kind(cell) == "checks":
            cells["checks-" + "-".join(exercise_ids(cell.source))] = cell
    return cells


def graded_notebook(submission, source_nb):
    """The submission with every check cell replaced by the teacher's (hidden checks back, edits undone)."""
    import nbformat

    teacher = _teacher_checks(source_nb)
    nb = copy.deepcopy(submission)
    seen = set()
    for cell in nb.cells:
        grade_id = cell.metadata.get("ftlab", {}).get("grade_id", "")
        if grade_id in teacher:
            cell.source, cell.outputs = teacher[grade_id].source, []
            seen.add(grade_id)
    for grade_id, cell in teacher.items():         # a deleted check cell comes back at the end
        if grade_id not in seen:
            nb.cells.append(nbformat.v4.new_code_cell(cell.source, metadata={"ftlab": {"grade_id": grade_id,
                                                                                      "kind": "checks"}}))
    return nb


def source_of(submission: Path, lessons: list[Path]) -> Path:
    """The teacher's lesson a submission is a copy of: from the copy's metadata, else its file name."""
    import nbformat

    try:
        meta = nbformat.read(submission, as_version=4).metadata.get("ftlab", {})
    except Exception as err:                          # noqa: BLE001 - nbformat raises several kinds
        raise UsageError(f"{submission} is not a notebook nbformat can read ({type(err).__name__}: {err}).") from err
    name = meta.get("source") or Path(submission).name
    for path in lessons:
        if path.name == name:
            return path
    raise UsageError(f"{submission} is not a copy of a lesson (it names {name!r}; lessons: "
                     f"{', '.join(p.name for p in lessons)}). Grade the student copies ftlab student wrote.")


def _run(graded, source: Path, out: Path, params: dict[str, Any], quick: bool) -> tuple[dict[str, Any], list[str]]:
    """Run a graded notebook to its end into ``out``; the checks' records and the errors of its cells."""
    import nbformat
    import papermill as pm

    from .lessons import QUICK, check_parameters, parameter_types

    run = out / "run"                                 # OUT_DIR of the graded run: grades/ and the lesson's metrics/
    names = parameter_types(source)
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise UsageError(f"{source.stem} has no parameter {', '.join(unknown)}. Its parameters: {', '.join(names)}.")
    params = {**({k: v for k, v in QUICK.items() if k in names} if quick else {}), **params}
    check_parameters(source, params, names)
    for old in (run / GRADES).glob("*.json"):         # never read an earlier grading's record as this one's
        old.unlink()
    run.mkdir(parents=True, exist_ok=True)
    nb_in = run / f"{source.stem}.submitted.ipynb"
    atomic_write_text(nb_in, nbformat.writes(graded))
    strict = os.environ.pop(STRICT_ENV, None)         # a student's run: checks report, they do not stop the kernel
    try:
        pm.execute_notebook(str(nb_in), str(out / source.name), parameters={**params, "OUT_DIR": str(run)},
                            kernel_name="python3", cwd=str(run), progress_bar=False, log_output=False,
                            extra_arguments=["--IPKernelApp.log_level=CRITICAL"], allow_errors=True)
    except pm.PapermillExecutionError:
        pass                                          # the errors are in the executed copy; read below
    finally:
        if strict is not None:
            os.environ[STRICT_ENV] = strict
    recorded = {p.stem: json.loads(p.read_text()) for p in (run / GRADES).glob("*.json")}
    executed = nbformat.read(out / source.name, as_version=4)
    errors = [f"cell {c.execution_count}: {o.ename}: {o.evalue}".rstrip(": ")
              + (" (an exercise cell you have not written yet)" if o.ename == "NotImplementedError" else "")
              for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    return recorded, errors


def grade(submission: Path, source: Path, out: Path, params: dict[str, Any], student: str | None = None,
          quick: bool = False) -> Grade:
    """Grade one student's notebook against the teacher's lesson ``source``; writes the report into ``out``.

    The submission, with the teacher's check cells put back, runs to its end in a fresh kernel with
    ``params`` (a failing cell does not stop it; ``quick``: the tiny settings of ``ftlab lessons --quick`` the
    lesson has, under ``params``), with ``OUT_DIR`` = ``out/run``. ``out`` receives
    ``<lesson>.ipynb`` (the graded run), ``<lesson>.md`` (the feedback) and ``<lesson>.json``; an
    exercise whose check cell never finished scores 0 on each of its checks.
    """
    import nbformat

    submission, source, out = Path(submission), Path(source), Path(out)
    source_nb = nbformat.read(source, as_version=4)
    expected = {exercise_ids(cell.source)[0]: _CHECK.findall(cell.source) for cell in source_nb.cells
                if _kind(cell) == "checks"}
    graded = graded_notebook(nbformat.read(submission, as_version=4), source_nb)
    recorded, errors = _run(graded, source, out, params, quick)
    exercises = []
    for ex_id, whats in expected.items():
        if ex_id in recorded:
            exercises.append(recorded[ex_id])
        else:                                         # its check cell never finished: every check fails
            exercises.append({"id": ex_id, "title": "", "checks": [
                {"what": what, "passed": False, "feedback": "not run: its check cell did not finish (see the errors)"}
                for what in whats]})
    result = Grade(student or submission.parent.name, source.stem, exercises, errors)
    atomic_write_text(out / f"{source.stem}.md", result.markdown())
    atomic_write_text(out / f"{source.stem}.json", json.dumps({**asdict(result), "points": result.points,
                                                               "possible": result.possible}, indent=2))
    return result


def write_gradebook(grades: list[Grade], path: Path) -> Path:
    """``grades.csv``: one row per student and lesson, with the points and the checks that failed."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["student", "lesson", "points", "possible", "failed"])
    for g in grades:
        failed = [f"{e['id']}: {c['what']}" for e in g.exercises for c in e["checks"] if not c["passed"]]
        w.writerow([g.student, g.lesson, g.points, g.possible, "; ".join(failed)])
    atomic_write_text(path, buf.getvalue())
    return path


# -- what checks assert (each raises AssertionError with a message a student can act on) ---------------------------

def _names(names, most: int = 3) -> str:
    names = sorted(names)
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _under(model, names: tuple[str, ...]) -> dict[str, Any]:
    """The named parameters under ``names``: layer groups (``"blocks.6"``, ``"head"``; see ft.group_names) or
    parameter-name prefixes (``"classifier"``)."""
    from ..groups import layer_groups

    groups = {g.name: g for g in layer_groups(model)}
    picked = {}
    by_id = {id(p): n for n, p in model.named_parameters()}
    for name in names:
        if name in groups:
            picked.update({by_id[id(p)]: p for p in groups[name].parameters() if id(p) in by_id})
        else:
            picked.update({n: p for n, p in model.named_parameters() if n == name or n.startswith(name + ".")})
    return picked


def trains_only(model, *names: str) -> bool:
    """Exactly the parameters under ``names`` (layer groups such as ``"blocks.6"``, ``"head"``, or parameter
    prefixes such as ``"classifier"``) have ``requires_grad``; every other one is frozen."""
    want = set(_under(model, names))
    have = {n for n, p in model.named_parameters() if p.requires_grad}
    if not want:
        raise AssertionError(f"the model has no parameters under {', '.join(names)}: check the names "
                             "(ft.group_names(model) lists its layer groups)")
    wrong = ([f"{_names(have - want)} should be frozen (requires_grad=False) but train"] if have - want else []) + \
        ([f"{_names(want - have)} should train (requires_grad=True) but are frozen"] if want - have else [])
    if wrong:
        raise AssertionError("; ".join(wrong))
    return True


def optimizer_sees(optimizer, model) -> bool:
    """The optimizer holds every trainable parameter of ``model`` and no frozen one."""
    import torch

    if not isinstance(optimizer, torch.optim.Optimizer):
        raise AssertionError(f"expected a torch.optim optimizer, got {type(optimizer).__name__}")
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    if not held & {id(p) for p in named.values()}:
        raise AssertionError("the optimizer holds none of this model's parameters (built for another model?)")
    missing = {n for n, p in named.items() if p.requires_grad and id(p) not in held}
    frozen = {n for n, p in named.items() if not p.requires_grad and id(p) in held}
    if missing:
        raise AssertionError(f"the optimizer does not see {_names(missing)}: they train but would never be updated "
                             "(build the optimizer after unfreezing, over the trainable parameters)")
    if frozen:
        raise AssertionError(f"the optimizer holds frozen tensors ({_names(frozen)}): pass only the trainable ones")
    return True


def rate_of(optimizer, model, name: str) -> float:
    """The learning rate the optimizer gives the parameters under ``name`` (a layer group or a parameter prefix)."""
    params = _under(model, (name,))
    if not params:
        raise AssertionError(f"the model has nothing under {name!r} (ft.group_names(model) lists its layer groups)")
    rates = set()
    for pname, param in params.items():
        lr = next((float(g["lr"]) for g in optimizer.param_groups if any(p is param for p in g["params"])), None)
        if lr is None:
            raise AssertionError(f"the optimizer does not hold {pname}")
        rates.add(lr)
    if len(rates) > 1:
        raise AssertionError(f"the tensors of {name} have several rates {sorted(rates)}: give a group one rate")
    return rates.pop()


def snapshot(model) -> dict[str, Any]:
    """A copy of every parameter of ``model``, to compare with :func:`unchanged` after training."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def unchanged(model, reference: dict, *names: str) -> bool:
    """The parameters under ``names`` (all, if none) equal those of ``reference`` (a :func:`snapshot`) bit for bit."""
    import torch

    params = _under(model, names) if names else dict(model.named_parameters())
    keys = [k for k in params if k in reference]
    if not keys:
        raise AssertionError(f"no parameter under {', '.join(names)} to compare")
    moved = [k for k in keys if not torch.equal(params[k].detach().cpu(), reference[k].cpu())]
    if moved:
        raise AssertionError(f"{_names(moved)} changed although they should have stayed as they were")
    return True


def changed(model, reference: dict, *names: str) -> bool:
    """Some parameter under each of ``names`` differs from ``reference``: that part was trained."""
    import torch

    for name in names:
        params = _under(model, (name,))
        if not params:
            raise AssertionError(f"the model has nothing under {name!r}")
        if all(k in reference and torch.equal(p.detach().cpu(), reference[k].cpu()) for k, p in params.items()):
            raise AssertionError(f"nothing under {name} changed: was it in the optimizer, and did a step run?")
    return True
