"""The lessons as tests: committed clean, runnable by papermill with changed parameters, and the runner."""
import json
from pathlib import Path

import nbformat
import pytest

import ftlab as ft
from ftlab.errors import FtlabError
from ftlab.lab import cli, grading, lessons

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# tiny settings per lesson (JupyterLab runs them in the browser test), and one changed parameter for the papermill run
TINY = {
    "01_pretrained_features": ({"IMAGE_SIZE": 64}, {"CLASSES": 4}),
    "02_head_only": ({"IMAGE_SIZE": 48, "SUBSET": 60, "EPOCHS": 1}, {"LR": 1e-2}),
    "03_partial_unfreezing": ({"IMAGE_SIZE": 48, "SUBSET": 40, "EPOCHS": 1, "HEAD_EPOCHS": 1}, {"LR_MULT": 3}),
    "04_overfitting_controls": ({"IMAGE_SIZE": 48, "SUBSET": 0.05, "EPOCHS": 2, "SEEDS": 1}, {"TOP": 2, "SEEDS": 2}),
    "05_experiments": ({"RESULTS": "live", "IMAGE_SIZE": 48, "SUBSETS": [20, 40], "STRATEGIES": ["linear_probe", "head"],
                        "EPOCHS": 1},
                       {"SEEDS": [0, 1]}),
    "06_text_sentiment": ({"SUBSET": 16, "EVAL_SUBSET": 8, "TEST_SUBSET": 8, "SEEDS": 1, "HEAD_EPOCHS": 2, "EPOCHS": 1,
                           "MAX_LENGTH": 24},
                          {"SEEDS": 2, "LORA_RANK": 2}),
    "07_detection": ({"VIEWS": 1, "EPOCHS": 1, "SEEDS": 1}, {"SEEDS": 2}),
    "08_choosing_a_model": ({"MODELS": ["efficientnet_lite0", "efficientnet_lite1"], "IMAGE_SIZES": [32, 48],
                             "TRAIN_SIZES": [20, 60], "SEEDS": [0, 1], "FT_STEPS": 4, "SPEED_REPEATS": 1,
                             "OWN_SIZES": {"efficientnet_lite0": 40, "efficientnet_lite1": 56}},
                            {"CLASSES": 4}),
    "09_instruction_tuning": ({"SUBSET": 8, "EVAL_SUBSET": 6, "TEST_SUBSET": 6, "SEEDS": 1, "EPOCHS": 1, "CUT": "layers.29",
                               "HEADLINES": 8, "SHOTS": 2},
                              {"SEEDS": 2, "LORA_RANK": 2}),
}
ALL_NOTEBOOKS = sorted(NOTEBOOKS[0].parent.glob("*.ipynb"))


def test_the_lessons_in_order():
    assert [p.stem for p in NOTEBOOKS] == list(TINY)


def test_lessons_in_parallel_start_longest_first_by_the_measured_sizes(monkeypatch, tmp_path):
    runs = [(p, {}, p.stem) for p in lessons.lesson_paths()]
    assert set(lessons.expected_seconds()) == {p.stem[:2] for p, _, _ in runs}   # make sizing measured every lesson
    given = {"01": 5.0, "02": 300.0, "03": 1.0, "05": 40.0}                  # 04 onwards unknown but 05: latest first
    with monkeypatch.context() as m:
        m.setattr(lessons, "expected_seconds", lambda: given)
        order = [p.stem[:2] for p, _, _ in lessons.start_order(runs)]
    unknown = [p.stem[:2] for p, _, _ in reversed(runs) if p.stem[:2] not in given]
    assert order == [*unknown, "02", "05", "01", "03"]
    monkeypatch.setattr(lessons, "repo_root", lambda: tmp_path)                # no sizing.json: the later lessons first
    assert lessons.expected_seconds() == {}
    assert [p for p, _, _ in lessons.start_order(runs)] == [p for p, _, _ in reversed(runs)]


def test_the_tiny_and_quick_settings_have_the_types_of_the_parameters_cells():
    for path in NOTEBOOKS:
        types = lessons.parameter_types(path)
        for settings in (*TINY[path.stem], {k: v for k, v in lessons.QUICK.items() if k in types}):
            lessons.check_parameters(path, settings, types)


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean_with_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs must be stripped"
    assert "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged parameters"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    params = lessons.notebook_parameters(path)
    assert {"DEVICE", "OUT_DIR"} <= set(params) and {"SEED", "SEEDS"} & set(params)
    assert {"IMAGE_SIZE", "IMAGE_SIZES", "MAX_LENGTH", "TILE"} & set(params)   # input size: pixels, tokens or a tile side
    assert params["OUT_DIR"] == "None"
    if path in NOTEBOOKS:
        assert nb.cells[0].cell_type == "markdown" and "Learning goals" in nb.cells[0].source


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_its_text_file_in_sync(path):
    """notebooks/py/<name>.py (py:percent, jupytext) holds the same cells: clean diffs; `make sync` mends a drift."""
    import jupytext

    text = path.parent / "py" / f"{path.stem}.py"
    assert text.is_file(), f"{text} is missing: run `make sync`"
    nb, paired = nbformat.read(path, as_version=4), jupytext.read(text)

    def cells(notebook):
        return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in notebook.cells]

    assert cells(paired) == cells(nb), f"{path.name} and {text.name} differ: edit one, then run `make sync`"
    assert (path.parent / "jupytext.toml").read_text().count('formats = "ipynb,py//py:percent"') == 1


def _metrics(out, lesson):
    return json.loads((out / "metrics" / f"{lesson}.json").read_text())


CLAIMED = tuple(TINY)      # every lesson records its claims


def _sane(lesson, m):
    if lesson in CLAIMED:                 # tiny runs check that claims are recorded, not that they hold
        assert len(m["claims"]) >= 3 and all(isinstance(c["holds"], bool) and c["claim"] for c in m["claims"])
        assert all(c["verdict"] in ft.lab.VERDICTS and set(c["expect"].split("|")) <= set(ft.lab.VERDICTS)
                   for c in m["claims"])
    assert all(c["on"] in ("train", "val") for c in m.get("choices", [])), "a choice recorded on the test split"
    for k, v in m.items():
        if "acc" in k or k.startswith("probe"):
            assert 0.0 <= v <= 1.0, (k, v)
    if lesson == "01_pretrained_features":
        assert m["probe_pretrained"] > m["majority"] and m["probe_pretrained"] > m["probe_random"]
    elif lesson == "02_head_only":
        assert m["fit_test_acc"] >= 0.6      # (its timings are reported, never asserted: benchmarks measure speed)
    elif lesson == "03_partial_unfreezing":
        assert {"acc_head", "acc_top_2", "acc_top_4", "acc_full"} <= set(m)
    elif lesson == "04_overfitting_controls":
        assert len([k for k in m if k.startswith("test_acc_")]) == 7 and m["seeds"] in (1, 2)
    elif lesson == "05_experiments":
        assert m["runs"] in (4, 8) and len([k for k in m if k.startswith("acc_")]) == 4
    elif lesson == "06_text_sentiment":
        assert {"head_test_acc", "head_more_test_acc", "top2_test_acc", "full_test_acc", "lora_test_acc"} <= set(m)
        assert m["lora_trainable"] < m["top2_trainable"] < m["full_trainable"] and m["train_snippets"] == 32
    elif lesson == "07_detection":
        assert m["train_tiles"] == 36 and m["views"] == 1
        for k in ("coco_map_50", "head_only_map_50", "neck_head_map_50", "neck_head_train_map_50"):
            assert 0.0 <= m[k] <= 1.0, (k, m[k])
    elif lesson == "08_choosing_a_model":
        probes = [k for k in m if k.startswith("probe_")]
        assert len(probes) == 2 * 3 * 2 and {"partial_lite0_60", "probe_lite1_48_imagenet_20"} <= set(m)
        assert all(v > 0 for k, v in m.items() if k.startswith("images_per_s_")) and m["classes"] in (2, 4)
    elif lesson == "09_instruction_tuning":
        assert {"zero_shot_test_acc", "few_shot_calibrated_test_acc", "top_layers_test_acc", "lora_test_acc"} <= set(m)
        assert m["lora_trainable"] < m["top_layers_trainable"] and m["train_snippets"] == 16 and m["test_snippets"] == 12


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("lesson", ["02_head_only", "06_text_sentiment"])
def test_a_blank_student_copy_runs_with_a_changed_parameter_and_fails_every_check(lesson, tmp_path, monkeypatch):
    """A lesson's blank student copy, graded (papermill, to the end) at its tiny settings with one parameter changed.

    The lesson itself runs and records sane metrics; every check of every exercise fails with feedback (a name
    the student has not defined, or what is frozen or unchanged that should not be); the only errors are the
    unwritten exercise cells (06's exercises start from given lines, so not every failure is a missing name). Every lesson
    also runs at its defaults (nbval: the teacher's solutions and checks too, strictly) and at its tiny
    settings with the same parameter changed in JupyterLab (tests/test_browser.py); every lesson's student
    copy is checked without running in tests/test_grading.py.
    """
    monkeypatch.delenv("FTLAB_STRICT_CLAIMS", raising=False)     # tiny settings: claims are recorded, may not hold
    tiny, change = TINY[lesson]
    source = lessons.lesson_paths([lesson])[0]
    copy = grading.write_student_copies([source], tmp_path / "student")[0]
    result = grading.grade(copy, source, tmp_path / "grades", {**tiny, **change}, student="blank")
    m = _metrics(tmp_path / "grades" / "run", lesson)
    _sane(lesson, m)
    if lesson == "01_pretrained_features":
        assert m["classes"] == 4
    checks = [c for e in result.exercises for c in e["checks"]]
    assert len(result.exercises) >= 2 and result.points == 0 and len(checks) == result.possible
    assert all(not c["passed"] and c["feedback"] for c in checks), [c for c in checks if c["passed"] or not c["feedback"]]
    assert any("is not defined" in c["feedback"] for c in checks)      # a name the student still has to write
    assert result.errors and all("NotImplementedError" in e for e in result.errors), result.errors
    assert "0 of" in (tmp_path / "grades" / f"{lesson}.md").read_text()


def test_runner_rejects_unknown_parameters(tmp_path):
    with pytest.raises(FtlabError, match="Unknown parameter.*EPOCH.*Valid parameters: .*EPOCHS"):
        lessons.run_lessons(tmp_path, lessons.lesson_paths(["02"]), {"EPOCH": 3})


def test_runner_never_writes_into_notebooks(tmp_path):
    with pytest.raises(FtlabError, match="inside notebooks"):
        lessons.run_lessons(NOTEBOOKS[0].parent / "out", lessons.lesson_paths(["02"]), {})
    (tmp_path / "02_head_only.ipynb").write_text("{}")
    with pytest.raises(FtlabError, match="will not overwrite"):
        lessons.run_lessons(tmp_path, lessons.lesson_paths(["02"]), {})
    assert (tmp_path / "02_head_only.ipynb").read_text() == "{}"


def test_cli_main_reports_errors_plainly(capsys):
    assert cli.main(["lessons", "--only", "99"]) == 2
    assert "No lesson matches" in capsys.readouterr().err
    assert cli.main(["data"]) == 0
    assert "1771" in capsys.readouterr().out


def test_sweep_config_and_grid(tmp_path):
    from ftlab.lab import sweep

    cfg = tmp_path / "s.yaml"
    cfg.write_text("notebook: ../nb.ipynb\ngrid:\n  SEED: [0, 1]\n  STRATEGY: [head, full]\nfixed:\n  EPOCHS: 2\n")
    loaded = sweep.load_config(cfg)
    assert loaded["notebook"].endswith("nb.ipynb")
    points = sweep.grid_points(loaded["grid"], loaded["fixed"])
    assert len(points) == 4 and all(p["EPOCHS"] == 2 for p in points)
    assert len({sweep.run_id(p) for p in points}) == 4
    (tmp_path / "bad.yaml").write_text("grid: [1, 2]\n")
    with pytest.raises(FtlabError, match="a sweep config has"):
        sweep.load_config(tmp_path / "bad.yaml")
    rows = [{"strategy": "head", "subset": 0.1, "test_acc": a, "status": "ok"} for a in (0.8, 0.9)]
    (agg,) = sweep.aggregate(rows)
    assert agg["mean"] == pytest.approx(0.85) and agg["n"] == 2 and agg["std"] == pytest.approx(0.0707, abs=1e-3)


def _ftlab_calls_without_device(path):
    """Calls to an ftlab function that takes ``device`` but is not given one (DEVICE would not reach it)."""
    import ast
    import inspect

    def resolve(node):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        obj = ft if isinstance(node, ast.Name) and node.id == "ft" else None
        for part in reversed(parts if obj is not None else []):
            obj = getattr(obj, part, None)
        return obj, "ft." + ".".join(reversed(parts))

    nb = nbformat.read(path, as_version=4)
    tree = ast.parse("\n".join(c.source for c in nb.cells if c.cell_type == "code"))
    missing = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        obj, name = resolve(node.func)
        if obj is None or obj is ft.batches.resolve_device or not callable(obj):
            continue
        try:
            takes_device = "device" in inspect.signature(obj).parameters
        except (TypeError, ValueError):
            continue
        if takes_device and not any(k.arg in ("device", None) for k in node.keywords):
            missing.append(f"{name} (line {node.lineno})")
    return missing


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.stem)
def test_every_ftlab_call_in_a_lesson_gets_the_lessons_device(path):
    """A school's GPU is used only if DEVICE reaches every model, loader and prediction (issue 26, item 7)."""
    assert _ftlab_calls_without_device(path) == []


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA GPU here (CI needs none)")
def test_a_lesson_runs_on_the_gpu(tmp_path, monkeypatch):
    """Where a GPU is: lesson 02 at its tiny settings with DEVICE='cuda' runs, and its device is CUDA."""
    monkeypatch.delenv("FTLAB_STRICT_CLAIMS", raising=False)
    assert lessons.run_lessons(tmp_path, lessons.lesson_paths(["02"]), {**TINY["02_head_only"][0], "DEVICE": "cuda"}) == 0
    executed = nbformat.read(tmp_path / "02_head_only.ipynb", as_version=4)
    shown = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "cuda" in shown
    _sane("02_head_only", _metrics(tmp_path, "02_head_only"))
