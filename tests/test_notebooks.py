"""The lessons as tests: committed clean, runnable by papermill with changed parameters, and the runner."""
import json
from pathlib import Path

import nbformat
import pytest

from ftlab import cli
from ftlab.errors import FtlabError

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# tiny settings per lesson, and one changed parameter for a second run
TINY = {
    "01_pretrained_features": ({"IMAGE_SIZE": 48, "SUBSET": 60}, {"CLASSES": 4}),
    "02_head_only": ({"IMAGE_SIZE": 48, "SUBSET": 60, "EPOCHS": 1}, {"LR": 1e-2}),
    "03_partial_unfreezing": ({"IMAGE_SIZE": 48, "SUBSET": 40, "EPOCHS": 1, "HEAD_EPOCHS": 1}, {"LR_MULT": 3}),
    "04_overfitting_controls": ({"IMAGE_SIZE": 48, "SUBSET": 0.05, "EPOCHS": 2}, {"AUGMENT": "strong"}),
}


def test_there_are_four_lessons_in_order():
    assert [p.stem for p in NOTEBOOKS] == list(TINY)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean_with_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs must be stripped"
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged parameters"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    params = cli.lesson_parameters(path)
    assert {"SEED", "DEVICE", "OUT_DIR", "IMAGE_SIZE"} <= set(params)
    assert params["OUT_DIR"] == "None"
    assert nb.cells[0].cell_type == "markdown" and "Learning goals" in nb.cells[0].source


def _metrics(out, lesson):
    return json.loads((out / "metrics" / f"{lesson}.json").read_text())


def _sane(lesson, m):
    for k, v in m.items():
        if "acc" in k or k.startswith("probe"):
            assert 0.0 <= v <= 1.0, (k, v)
    if lesson == "01_pretrained_features":
        assert m["probe_pretrained"] > m["majority"] and m["probe_pretrained"] > m["probe_random"]
    elif lesson == "02_head_only":
        assert m["cached_speedup"] > 1 and m["fit_test_acc"] >= 0.6
    elif lesson == "03_partial_unfreezing":
        assert {"acc_head_only", "acc_last_1", "acc_last_3", "acc_full"} <= set(m)
    elif lesson == "04_overfitting_controls":
        assert len([k for k in m if k.startswith("test_acc_")]) == 6


@pytest.mark.slow
@pytest.mark.parametrize("lesson", list(TINY))
@pytest.mark.parametrize("changed", [False, True], ids=["tiny", "changed"])
def test_lesson_runs_with_papermill(lesson, changed, tmp_path, capsys):
    tiny, change = TINY[lesson]
    params = {**tiny, **(change if changed else {})}
    code = cli.run_lessons(tmp_path, cli.lesson_paths([lesson]), params)
    assert code == 0, capsys.readouterr().err
    m = _metrics(tmp_path, lesson)
    _sane(lesson, m)
    if lesson == "01_pretrained_features":
        assert m["classes"] == (4 if changed else 2)
    executed = nbformat.read(tmp_path / f"{lesson}.ipynb", as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert (tmp_path / "summary.md").read_text().count(lesson) == 1
    assert lesson in (tmp_path / "summary.csv").read_text()


def test_runner_rejects_unknown_parameters(tmp_path):
    with pytest.raises(FtlabError, match="Unknown parameter.*EPOCH.*Valid parameters: .*EPOCHS"):
        cli.run_lessons(tmp_path, cli.lesson_paths(["02"]), {"EPOCH": 3})


def test_runner_never_writes_into_notebooks(tmp_path):
    with pytest.raises(FtlabError, match="inside notebooks"):
        cli.run_lessons(NOTEBOOKS[0].parent / "out", cli.lesson_paths(["02"]), {})
    (tmp_path / "02_head_only.ipynb").write_text("{}")
    with pytest.raises(FtlabError, match="will not overwrite"):
        cli.run_lessons(tmp_path, cli.lesson_paths(["02"]), {})
    assert (tmp_path / "02_head_only.ipynb").read_text() == "{}"


def test_cli_main_reports_errors_plainly(capsys):
    assert cli.main(["lessons", "--only", "99"]) == 2
    assert "No lesson matches" in capsys.readouterr().err
    assert cli.main(["data"]) == 0
    assert "1771" in capsys.readouterr().out
