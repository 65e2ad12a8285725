"""Shared fixtures: the real ELPV splits and the offline pretrained model, loaded once."""
from __future__ import annotations

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

import ftlab as ft  # noqa: E402


@pytest.fixture(scope="session")
def elpv2():
    return ft.elpv(classes=2)


@pytest.fixture(scope="session")
def lite0():
    """The ImageNet model (1000-way head); tests that train must copy it."""
    return ft.pretrained()


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch):
    """An empty ftlab cache for tests that must not touch the real one."""
    monkeypatch.setenv("FTLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
