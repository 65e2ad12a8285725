"""`ftlab sweep` with each executor: the same grid gives the same results.csv (timings aside); a killed
sweep resumes without redoing finished points; a failing point is reported and the others finish."""
import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ftlab as ft
from ftlab.lab import sweep

NB = Path(__file__).resolve().parent.parent / "notebooks" / "experiment.ipynb"
GRID = {"STRATEGY": ["linear_probe", "head"], "SEED": [0]}     # two points: each one a kernel
FIXED = {"IMAGE_SIZE": 32, "SUBSET": 10, "EPOCHS": 1}


def table(folder: Path) -> list[dict]:
    """results.csv without what the wall clock decides (seconds), ordered by run."""
    rows = list(csv.DictReader(io.StringIO((folder / "results.csv").read_text())))
    return sorted(({k: v for k, v in r.items() if "seconds" not in k} for r in rows), key=lambda r: r["run"])


def kill_after_first_point(out: Path) -> None:
    """Start `ftlab sweep` (local executor) in its own process group and kill it once one point has finished."""
    cli = [sys.executable, "-m", "ftlab.lab.cli", "sweep", str(NB), "--out", str(out), "--threads", "1",
           *[a for k, v in GRID.items() for a in ("-g", k, ",".join(map(str, v)))],
           *[a for k, v in FIXED.items() for a in ("-p", k, str(v))]]
    proc = subprocess.Popen(cli, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not any(sweep.finished(f) for f in out.glob("runs/*")):
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended or hung before its first point"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
@pytest.mark.integration
def test_local_pool_and_submitit_give_the_same_results_and_a_killed_sweep_resumes(tmp_path):
    local = tmp_path / "local"
    kill_after_first_point(local)
    finished = {f.name for f in local.glob("runs/*") if sweep.finished(f)}
    assert len(finished) == 1
    lines = []
    rows = sweep.run_sweep(NB, GRID, local, FIXED, log=lines.append, threads=1)
    assert f"{len(finished)} of 2 runs done before: skipped" in lines[0]
    assert sum("done," in line for line in lines) == 2 - len(finished)           # only the unfinished points ran
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    assert {r["run"] for r in rows} >= finished

    pool_lines = []
    sweep.run_sweep(NB, GRID, tmp_path / "pool", FIXED, executor="pool", workers=2, threads=1, log=pool_lines.append)
    assert "2 runs, executor pool, 2 at a time, 1 thread(s) each" in pool_lines[0]
    assert pool_lines[-2].startswith("[2/2 done, 0 running, 0 failed]")
    slurm_lines = []
    sweep.run_sweep(NB, GRID, tmp_path / "slurm", FIXED, executor="slurm", workers=2, threads=1,
                    log=slurm_lines.append)
    assert any("submitit: local executor" in line for line in slurm_lines)      # no Slurm here: local subprocesses
    assert list((tmp_path / "slurm" / "submitit").glob("*/*_submitted.pkl"))

    expected = table(local)
    assert len(expected) == 2 and {r["STRATEGY"] for r in expected} == {"linear_probe", "head"}
    assert table(tmp_path / "pool") == expected and table(tmp_path / "slurm") == expected

    failing = []                                   # a point that fails is recorded; the others are not touched
    rows = sweep.run_sweep(NB, {"STRATEGY": ["nonsense", "head"], "SEED": [0]}, tmp_path / "pool", FIXED,
                           executor="pool", workers=2, threads=1, log=failing.append)
    assert "1 of 2 runs done before: skipped" in failing[0]
    bad = [r for r in rows if r["status"] != "ok"]
    assert len(rows) == 3 and len(bad) == 1 and bad[0]["status"].startswith("failed: UsageError: Unknown strategy")
    assert any("1 failed]" in line and "nonsense" in line for line in failing)
    probe = next(r for r in sweep.read_results(tmp_path / "pool" / "results.csv")
                 if r["STRATEGY"] == "linear_probe" and r["SEED"] == 0)
    right = ft.lab.correct_from_text(probe["test_correct"])       # one 0/1 per test cell, for paired claims
    assert len(right) == 656 and right.mean() == pytest.approx(probe["test_acc"])
    assert [f.name for f in sweep.save_sweep_figures(rows, tmp_path / "pool")] == ["scaling.png"]
    with pytest.raises(ft.FtlabError, match="no parameter.*EPOCH"):
        sweep.run_sweep(NB, {"EPOCH": [1]}, tmp_path / "pool")


def test_executor_options_are_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "cores", lambda: 2)
    assert sweep.plan_workers("pool", None, None, tasks=8) == (2, 1)
    assert sweep.plan_workers("pool", 1, None, tasks=8) == (1, 2)
    assert sweep.plan_workers("pool", None, None, tasks=1) == (1, 2)         # never more workers than tasks
    assert sweep.plan_workers("local", None, None, tasks=8) == (1, None)
    assert sweep.plan_workers("slurm", 50, None, tasks=8) == (50, 1)         # a cluster's cap, not this machine's
    with pytest.raises(ft.FtlabError, match="2 workers x 2 threads is more than the 2 cores"):
        sweep.plan_workers("pool", 2, 2, tasks=8)
    with pytest.raises(ft.FtlabError, match="Unknown executor 'dask'"):
        sweep.plan_workers("dask", None, None, tasks=8)
    with pytest.raises(ft.FtlabError, match="--workers must be a whole number"):
        sweep.plan_workers("pool", 0, None, tasks=8)
    cfg = tmp_path / "s.yaml"
    cfg.write_text("notebook: nb.ipynb\ngrid:\n  SEED: [0]\nexecutor:\n  name: pool\n  workers: 2\n  gpus: 1\n")
    with pytest.raises(ft.FtlabError, match="'executor' takes name.*not gpus"):
        sweep.load_config(cfg)


def test_the_experiment_notebook_runs_every_task(tmp_path):
    """One task each: the same notebook and run_experiment for images, text and boxes."""
    text = ft.lab.run_experiment(ft.lab.experiment_data("text"), "head", task="text", subset=8, epochs=1, seed=0)
    assert 0 <= text["test_acc"] <= 1 and len(text["test_correct"]) == 2558 and text["train_images"] == 16
    boxes = ft.lab.run_experiment(ft.lab.experiment_data("detection"), "head", task="detection", subset=4, epochs=1,
                                  seed=0)
    assert 0 <= boxes["test_map_50"] <= 1 and boxes["cached"] and boxes["train_images"] == 4
    assert boxes["trainable"] < ft.trainable_count(ft.detection.pretrained(num_classes=1))
    with pytest.raises(ft.FtlabError, match="no linear probe"):
        ft.lab.run_experiment(ft.lab.experiment_data("detection"), "linear_probe", task="detection")
    with pytest.raises(ft.FtlabError, match="Unknown task 'audio'"):
        ft.lab.experiment_data("audio")


@pytest.mark.slow
def test_the_decoder_is_a_task_of_the_experiment_too():
    """task='llm': the prompt (threshold on validation), its top layers or LoRA on cached token states, recorded alike."""
    rt = ft.lab.experiment_data("llm")
    kw = dict(task="llm", subset=4, eval_subset=3, epochs=1, lr=1e-3)
    prompt = ft.lab.run_experiment(rt, "zero_shot", seed=0, **kw)
    assert prompt["trainable"] == 0 and prompt["train_images"] == 0 and len(prompt["test_correct"]) == 6
    top = ft.lab.run_experiment(rt, "top2", seed=0, **kw)                    # layers.29 and the final norm
    assert top["trainable"] == 3_540_096 + 576
    lora = ft.lab.run_experiment(rt, "lora", seed=1, **kw)
    assert lora["trainable"] == 4 * 30_720 + 576 and lora["train_images"] == 8 and lora["seed"] == 1
    for row in (prompt, top, lora):
        right = ft.lab.correct_from_text(row["test_correct"])
        assert 0 <= row["test_acc"] <= 1 and row["test_acc"] == pytest.approx(right.mean())
    for bad in ("full", "linear_probe", "top0"):
        with pytest.raises(ft.FtlabError, match="Unknown decoder strategy"):
            ft.lab.run_experiment(rt, bad, **kw)
