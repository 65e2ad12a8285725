"""Graded exercises: student copies, the checks' feedback, and grading a blank and a filled copy (issue 26)."""
import json
import re
from pathlib import Path

import nbformat
import pytest
import torch
from tiny import Tiny
from torch import nn

import ftlab as ft
from ftlab.errors import UsageError
from ftlab.lab import cli, grading, lessons

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _teacher(path):
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_lesson_has_two_graded_exercises_and_its_student_copy_has_no_solution(path):
    teacher = _teacher(path)
    before = nbformat.writes(teacher)
    copy = grading.student_copy(teacher, path.name)
    assert nbformat.writes(teacher) == before, "the teacher's notebook must not change"
    checks = [c for c in copy.cells if c.metadata.get("ftlab", {}).get("kind") == "checks"]
    solutions = [c for c in copy.cells if c.metadata.get("ftlab", {}).get("kind") == "solution"]
    ids = [grading.exercise_ids(c.source)[0] for c in checks]
    assert len(ids) >= 2 and len(set(ids)) == len(ids) and all(i.startswith(path.stem[:2] + ".") for i in ids)
    assert len(solutions) >= 2
    text = nbformat.writes(copy)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "<summary>Solution"):
        assert marker not in text, marker
    assert all("raise NotImplementedError()" in c.source for c in solutions)
    assert all(c.metadata["nbgrader"]["solution"] and not c.metadata["nbgrader"]["grade"] for c in solutions)
    assert all(c.metadata["nbgrader"]["locked"] and c.metadata["nbgrader"]["grade"] for c in checks)
    assert copy.metadata["ftlab"] == {"student_copy": True, "source": path.name}
    assert all(not c.get("outputs") for c in copy.cells if c.cell_type == "code")
    # every exercise keeps visible checks, and the teacher's copy holds at least one more hidden one
    for cell in checks:
        assert ".check(" in cell.source
    hidden = sum(s.source.count(".check(") for s in teacher.cells if grading.exercise_ids(s.source)) - \
        sum(c.source.count(".check(") for c in checks)
    assert hidden >= len(ids)


def test_grading_puts_the_teachers_checks_back_and_undoes_a_students_edit():
    path = NOTEBOOKS[1]
    teacher = _teacher(path)
    copy = grading.student_copy(teacher, path.name)
    checks = [c for c in copy.cells if c.metadata.get("ftlab", {}).get("kind") == "checks"]
    checks[0].source = 'with ft.lab.exercise("02.1", "mine") as ex:\n    ex.check("all good", lambda: True)'
    copy.cells.remove(checks[1])                      # a deleted check cell comes back at the end
    graded = grading.graded_notebook(copy, teacher)
    sources = [c.source for c in graded.cells]
    originals = [c.source for c in teacher.cells if grading.exercise_ids(c.source)]
    assert originals[0] in sources and sources[-1] == originals[1]
    assert "all good" not in "".join(sources) and "BEGIN HIDDEN TESTS" in sources[-1]


def test_student_copies_are_never_written_over_work_or_into_the_lessons(tmp_path):
    paths = lessons.lesson_paths(["02"])
    (tmp_path / paths[0].name).write_text("a student's work")
    with pytest.raises(UsageError, match="will not overwrite"):
        grading.write_student_copies(paths, tmp_path)
    assert (tmp_path / paths[0].name).read_text() == "a student's work"
    with pytest.raises(UsageError, match="teacher's lesson"):
        grading.write_student_copies(paths, paths[0].parent, overwrite=True)
    assert grading.write_student_copies(paths, tmp_path, overwrite=True)[0].read_text().startswith("{")
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1")])
    with pytest.raises(UsageError, match="never closes"):
        grading.student_copy(bad, "bad.ipynb")
    with pytest.raises(UsageError, match="no exercise cell"):
        grading.student_copy(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), "plain.ipynb")


def test_a_solution_region_keeps_its_indentation_and_the_given_lines():
    cell = nbformat.v4.new_code_cell("given = 1\nif True:\n    ### BEGIN SOLUTION\n    x = 2\n    ### END SOLUTION\ny = 3")
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_markdown_cell(
        "Try it.\n<details><summary>Solution</summary>x = 2</details>\n<details><summary>Hint</summary>h</details>")])
    copy = grading.student_copy(nb, "x.ipynb")
    assert copy.cells[0].source == ("given = 1\nif True:\n    # YOUR CODE HERE\n    raise NotImplementedError()\ny = 3")
    assert "x = 2" not in copy.cells[1].source and "<summary>Hint</summary>h" in copy.cells[1].source


def test_checks_give_feedback_that_names_what_is_wrong(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ft.lab.STRICT_ENV, raising=False)
    model = Tiny()
    ft.freeze_to(model, -1)
    with ft.lab.exercise("t.1", "a test exercise", out_dir=tmp_path) as ex:
        ex.check("a name the student never defined", lambda: undefined_name)  # noqa: F821
        ex.check("only the head trains", lambda: grading.trains_only(model, "body"), hint="ft.freeze_to")
        ex.check("a claim that holds", lambda: ft.lab.claim("x", ft.lab.estimate([1.0] * 50), above=0.5))
        ex.check("a claim that is undecided", lambda: ft.lab.claim("x", ft.lab.estimate([0.0, 1.0] * 5), above=0.5))
        ex.check("a crash in the student's code", lambda: 1 / 0)
    printed = capsys.readouterr().out
    assert "Exercise t.1 · a test exercise: 1 of 5 checks pass" in printed
    record = json.loads((tmp_path / "grades" / "t.1.json").read_text())
    feedback = [c["feedback"] for c in record["checks"]]
    assert "`undefined_name` is not defined" in feedback[0]
    assert "body." in feedback[1] and "should train" in feedback[1] and "head." in feedback[1]
    assert feedback[1].endswith("ft.freeze_to") and feedback[2] == ""
    assert feedback[3].startswith("undecided, not holds") and "ZeroDivisionError" in feedback[4]
    with pytest.raises(UsageError, match="takes a function"):
        ex.check("not a function", True)
    with pytest.raises(UsageError, match="names a file"):
        ft.lab.exercise("../x", "bad id")
    monkeypatch.setenv(ft.lab.STRICT_ENV, "1")        # the tests' runs of the teacher's solutions: a failure is an error
    with pytest.raises(grading.ExerciseFailed, match="t.2"):
        with ft.lab.exercise("t.2", "strict") as ex:
            ex.check("false", lambda: False)


def test_the_check_helpers_on_a_model():
    model = Tiny()
    ft.freeze_to(model, "body")
    assert grading.trains_only(model, "body", "head")
    with pytest.raises(AssertionError, match="should be frozen"):
        grading.trains_only(model, "head")
    with pytest.raises(AssertionError, match="no parameters under"):
        grading.trains_only(model, "nothing")
    opt = torch.optim.AdamW(ft.param_groups(model, lr=1e-2, lr_mult=10))
    assert grading.optimizer_sees(opt, model)
    assert grading.rate_of(opt, model, "head") == pytest.approx(1e-2)
    assert grading.rate_of(opt, model, "body") == pytest.approx(1e-3)
    with pytest.raises(AssertionError, match="does not see"):
        grading.optimizer_sees(torch.optim.SGD(model.head.parameters(), lr=0.1), model)
    ft.unfreeze(model)
    with pytest.raises(AssertionError, match="does not see stem"):
        grading.optimizer_sees(opt, model)
    with pytest.raises(AssertionError, match="another model"):
        grading.optimizer_sees(torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), model)
    ft.freeze_to(model, "body")
    start = grading.snapshot(model)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert grading.unchanged(model, start, "stem") and grading.changed(model, start, "body", "head")
    with pytest.raises(AssertionError, match="changed although"):
        grading.unchanged(model, start)
    with pytest.raises(AssertionError, match="nothing under stem changed"):
        grading.changed(model, start, "stem")


def test_grade_refuses_what_is_not_a_lesson_copy(tmp_path, capsys):
    (tmp_path / "notes.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    assert cli.main(["grade", str(tmp_path / "notes.ipynb"), "--out", str(tmp_path / "g")]) == 2
    assert "is not a copy of a lesson" in capsys.readouterr().err
    (tmp_path / "broken.ipynb").write_text("{")
    assert cli.main(["grade", str(tmp_path / "broken.ipynb")]) == 2
    assert "not a notebook nbformat can read" in capsys.readouterr().err
    assert cli.main(["grade", str(tmp_path / "missing.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err
    student = grading.write_student_copies(lessons.lesson_paths(["02"]), tmp_path / "copies")[0]
    renamed = tmp_path / "ann" / "my lesson (1).ipynb"       # a renamed copy is still known by its metadata
    renamed.parent.mkdir()
    renamed.write_text(student.read_text())
    assert grading.source_of(renamed, lessons.lesson_paths()).name == "02_head_only.ipynb"
    with pytest.raises(UsageError, match="has no parameter EPOCH"):
        grading.grade(renamed, lessons.lesson_paths(["02"])[0], tmp_path / "g", {"EPOCH": 1})


def _fill(student_nb, teacher_nb):
    """What a student who wrote the teacher's solutions hands in."""
    solutions = [c.source for c in teacher_nb.cells if c.cell_type == "code" and grading.BEGIN in c.source]
    mine = [c for c in student_nb.cells if c.metadata.get("ftlab", {}).get("kind") == "solution"]
    for cell, source in zip(mine, solutions, strict=True):
        cell.source = re.sub(r"^\s*### (BEGIN|END) SOLUTION\n?", "", source, flags=re.M)
    return student_nb


@pytest.mark.slow
@pytest.mark.integration
def test_a_filled_student_copy_gets_every_check_through_ftlab_grade(tmp_path, capsys, monkeypatch):
    """`ftlab student`, a student who writes the solutions, `ftlab grade` at the defaults (one epoch): full marks."""
    monkeypatch.delenv(ft.lab.STRICT_ENV, raising=False)
    assert cli.main(["student", "--only", "02", "--out", str(tmp_path / "student")]) == 0
    path = lessons.lesson_paths(["02"])[0]
    handed_in = tmp_path / "submitted" / "bo" / path.name
    handed_in.parent.mkdir(parents=True)
    handed_in.write_text(nbformat.writes(_fill(nbformat.read(tmp_path / "student" / path.name, as_version=4),
                                               _teacher(path))))
    assert cli.main(["grade", str(handed_in), "--out", str(tmp_path / "grades"), "-p", "EPOCHS", "1"]) == 0
    result = json.loads((tmp_path / "grades" / "bo" / "02_head_only.json").read_text())
    assert result["errors"] == [] and result["possible"] >= 6
    assert result["points"] == result["possible"], (tmp_path / "grades" / "bo" / "02_head_only.md").read_text()
    book = (tmp_path / "grades" / "grades.csv").read_text().splitlines()
    assert book[1].startswith(f"bo,02_head_only,{result['possible']},{result['possible']},")
    n = result["possible"]
    assert f"{n} of {n} checks pass" in (tmp_path / "grades" / "bo" / "02_head_only.md").read_text()
