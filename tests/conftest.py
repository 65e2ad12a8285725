"""Shared fixtures: the real ELPV splits and the offline pretrained model, loaded once."""
from __future__ import annotations

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
# The lessons run by nbval at their classroom defaults must give every claim the verdict its prose declares: under this
# switch ft.lab.check_claims raises on any other verdict. Runs with other (tiny) settings unset it.
os.environ.setdefault("FTLAB_STRICT_CLAIMS", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one thread each, and the same for the kernels they start
    # (nbval, papermill, JupyterLab inherit the environment), so the workers never fight over the cores.
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

import ftlab as ft  # noqa: E402


@pytest.fixture(scope="session")
def elpv2():
    return ft.vision.elpv(classes=2)


@pytest.fixture(scope="session")
def lite0():
    """The ImageNet model (1000-way head); tests that train must copy it."""
    return ft.vision.pretrained()


@pytest.fixture()
def small_bert():
    """A 2-layer, 32-wide BERT with MiniLM's vocabulary: fast exact tests of the text plumbing (128 positions)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return ft.text.SentenceClassifier(BertModel(cfg, add_pooling_layer=False), 2)


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch):
    """An empty ftlab cache for tests that must not touch the real one."""
    monkeypatch.setenv("FTLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# The scopes that take longest (seconds of work at one torch thread, warm cache, from `--durations`, 2026-12-06).
# make test: notebooks 09 about 360, 06 330, 07 180, 08 125 (+ about 150 with an empty cache), 03 120, 04 75.
# make test-slow (-m integration): the browser test about 370 (each lesson in JupyterLab), the sweeps 130, the hub
# 100, the blank and filled student copies 100. Both pass --no-loadscope-reorder, so xdist hands the scopes out in
# this order: the longest first, the many short ones fill the gaps at the end, and no long scope starts last while
# the other worker has nothing left to do.
LONGEST_FIRST = ("notebooks/09_", "notebooks/06_", "tests/test_browser.py", "notebooks/08_", "tests/test_notebooks.py",
                 "tests/test_hub.py", "notebooks/07_", "tests/test_sweep_executors.py", "notebooks/03_", "tests/test_llm.py",
                 "tests/test_grading.py", "notebooks/04_")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=rank)          # stable: a notebook's cells (one kernel, in order) and a module's tests keep their order
