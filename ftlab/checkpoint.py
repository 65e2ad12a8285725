"""Checkpoints: weights, optimizer, history, class names and preprocessing, written atomically.

A checkpoint is never overwritten by accident: saving onto an existing file needs
``overwrite=True``, and the file is written to a temporary name and then renamed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .errors import UsageError
from .files import atomic_save
from .groups import head_module
from .history import History

__all__ = ["save_checkpoint", "load_checkpoint", "BUILDERS", "register_builder"]

FORMAT = "ftlab-checkpoint-1"

# How to build a fresh model of a saved kind: ``model.ftlab_builder`` names the entry, and
# ``builder(model.ftlab_name, num_classes=...)`` builds it (``ftlab.vision`` registers "vision").
BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_builder(kind: str, build: Callable[..., nn.Module]) -> None:
    """Let :func:`load_checkpoint` rebuild models whose ``ftlab_builder`` is ``kind``."""
    BUILDERS[kind] = build


def _out_features(model: nn.Module) -> int | None:
    if isinstance(getattr(model, "ftlab_num_classes", None), int):      # e.g. a detector: its head is convolutions
        return model.ftlab_num_classes
    try:
        head = head_module(model)
    except UsageError:
        return None
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer=None, history: History | None = None,
                    classes: list[str] | None = None, overwrite: bool = False) -> Path:
    """Save a model with what is needed to use it again.

    Args:
        path: file to write (``.pt``).
        model: the model.
        optimizer: optional optimizer whose state is saved too.
        history: the run's :class:`History`.
        classes: class names, index = output unit.
        overwrite: replace an existing file (otherwise that is an error).

    Returns:
        The path written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists; ftlab will not overwrite a checkpoint by accident. "
                         "Choose another name or pass overwrite=True.")
    config = getattr(model, "ftlab_preprocessing", None)
    payload = {"format": FORMAT, "arch": type(model).__name__, "name": getattr(model, "ftlab_name", None),
               "builder": getattr(model, "ftlab_builder", None),
               "num_classes": _out_features(model), "state_dict": model.state_dict(),
               "optimizer": optimizer.state_dict() if optimizer is not None else None,
               "history": None if history is None else {"rows": history.to_list(), "best_epoch": history.best_epoch,
                                                        "stopped": history.stopped, "meta": history.meta},
               "classes": list(classes) if classes is not None else None, "preprocessing": config}
    return atomic_save(payload, path)


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None, optimizer=None) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (or into a new model of the saved kind when None).

    Returns:
        ``{"model", "history", "classes", "preprocessing", "optimizer_state"}``.

    Raises:
        FtlabError: missing file, not an ftlab checkpoint, or a model of another
            architecture or class count.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"No checkpoint at {path}.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise UsageError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err}).") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UsageError(f"{path} is not an ftlab checkpoint (save one with ftlab.save_checkpoint).")
    if model is None:
        build = BUILDERS.get(ckpt.get("builder") or "")
        if not ckpt.get("name") or build is None:
            raise UsageError(f"{path} does not say how to build the model it holds; pass the model to load into.")
        model = build(ckpt["name"], num_classes=ckpt["num_classes"], weights=None)
    if type(model).__name__ != ckpt["arch"]:
        raise UsageError(f"{path} holds a {ckpt['arch']} ({ckpt.get('name')}), not a {type(model).__name__}: "
                         "build the same architecture to load it.")
    if ckpt["num_classes"] is not None and _out_features(model) != ckpt["num_classes"]:
        raise UsageError(f"{path} has a {ckpt['num_classes']}-class head, the model a {_out_features(model)}-class "
                         f"head: build it with num_classes={ckpt['num_classes']}.")
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise UsageError(f"{path} does not fit this {type(model).__name__}: {str(err).splitlines()[0]}") from err
    if optimizer is not None and ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    h = ckpt.get("history")
    history = History(h["rows"], h["best_epoch"], h["stopped"], h["meta"]) if h else None
    return {"model": model, "history": history, "classes": ckpt.get("classes"),
            "preprocessing": ckpt.get("preprocessing"), "optimizer_state": ckpt.get("optimizer")}
