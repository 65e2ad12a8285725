"""Checkpoints: weights, optimizer, history, class names, adapters and preprocessing, written atomically.

A checkpoint is never overwritten by accident: saving onto an existing file needs
``overwrite=True``, and the file is written to a temporary name and then renamed.

**Safe loading.** A checkpoint holds only tensors and plain values (numbers, strings, lists,
dicts): whatever else a model carries (an optimizer class in the history, say) is saved as its
name. :func:`load_checkpoint` reads files with ``torch.load(weights_only=True)``, which cannot
run code; a file that needs more (a checkpoint from elsewhere that pickles Python objects) is
refused with a message, and loads only with ``trusted=True``, for files you made yourself.

**What a model needs to be usable** is saved with it and restored: the kind of model and how
to build it (``ftlab_builder``, ``ftlab_name``, the class count), the class names a detector
reports (``class_names``), and adapters put into it after it was built (``ftlab_adapters``,
e.g. LoRA from :func:`ftlab.text.add_lora`), which :data:`ADAPTERS` re-applies.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .errors import UsageError
from .files import atomic_save
from .groups import head_module
from .history import History

__all__ = ["save_checkpoint", "load_checkpoint", "BUILDERS", "register_builder", "ADAPTERS", "register_adapter"]

FORMAT = "ftlab-checkpoint-1"

# How to build a fresh model of a saved kind: ``model.ftlab_builder`` names the entry, and
# ``builder(model.ftlab_name, num_classes=...)`` builds it (``ftlab.vision`` registers "vision").
BUILDERS: dict[str, Callable[..., nn.Module]] = {}


# Adapters added to a built model (``model.ftlab_adapters = {kind: options}``): ``ADAPTERS[kind]`` is
# ``(apply, call)``: ``apply(model, **options)`` adds them again, ``call(options)`` says how, as code.
ADAPTERS: dict[str, tuple[Callable[..., nn.Module], Callable[[dict], str]]] = {}


def register_builder(kind: str, build: Callable[..., nn.Module]) -> None:
    """Let :func:`load_checkpoint` rebuild models whose ``ftlab_builder`` is ``kind``."""
    BUILDERS[kind] = build


def register_adapter(kind: str, apply: Callable[..., nn.Module], call: Callable[[dict], str]) -> None:
    """Let :func:`load_checkpoint` re-apply adapters of ``kind`` (``model.ftlab_adapters[kind]`` holds their options)."""
    ADAPTERS[kind] = (apply, call)


def _plain(value: Any) -> Any:
    """``value`` as tensors and plain values only (what ``weights_only`` loading reads); anything else by its name."""
    if isinstance(value, (np.generic, np.ndarray)):            # before float: np.float64 is a float
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, dict):
        return {k if isinstance(k, (int, str)) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return (list if isinstance(value, list) else tuple)(_plain(v) for v in value)
    name = getattr(value, "__qualname__", None) or getattr(type(value), "__qualname__", "object")
    return f"{getattr(value, '__module__', '') or ''}.{name}".lstrip(".") if callable(value) else repr(value)


def _adapters_hint(adapters: dict) -> str:
    calls = [ADAPTERS[k][1](opts) if k in ADAPTERS else f"{k} adapters {opts}" for k, opts in adapters.items()]
    return "; ".join(calls)


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
    names = getattr(model, "class_names", None)
    payload = {"format": FORMAT, "arch": type(model).__name__, "name": getattr(model, "ftlab_name", None),
               "builder": getattr(model, "ftlab_builder", None),
               "num_classes": _out_features(model), "state_dict": model.state_dict(),
               "optimizer": optimizer.state_dict() if optimizer is not None else None,
               "history": None if history is None else {"rows": history.to_list(), "best_epoch": history.best_epoch,
                                                        "kept_epoch": history.kept_epoch,
                                                        "stopped": history.stopped, "meta": history.meta},
               "classes": list(classes) if classes is not None else None,
               "class_names": list(names) if isinstance(names, (list, tuple)) else None,
               "adapters": dict(getattr(model, "ftlab_adapters", None) or {}),
               "preprocessing": getattr(model, "ftlab_preprocessing", None)}
    return atomic_save(_plain(payload), path)


def _read(path: Path, trusted: bool) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"No checkpoint at {path}.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as err:
        if trusted or "Unsupported global" not in str(err):
            raise UsageError(f"{path} is not a readable checkpoint: it is damaged, or was not written by "
                             "torch.save (save one with ftlab.save_checkpoint).") from None
        raise UsageError(f"{path} holds Python objects besides tensors and plain values, and unpickling those can run "
                         "any code. ftlab's own checkpoints never need it. If you made this file yourself or trust "
                         "where it came from, load it with load_checkpoint(path, trusted=True).") from None
    except Exception as err:
        raise UsageError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err}).") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UsageError(f"{path} is not an ftlab checkpoint (save one with ftlab.save_checkpoint).")
    return ckpt


def _build(path: Path, ckpt: dict[str, Any]) -> nn.Module:
    """A fresh model of the saved kind, with the saved adapters (no trained weights yet)."""
    build = BUILDERS.get(ckpt.get("builder") or "")
    if not ckpt.get("name") or build is None:
        raise UsageError(f"{path} does not say how to build the model it holds; pass the model to load into.")
    model = build(ckpt["name"], num_classes=ckpt["num_classes"], weights=None)
    for kind, options in (ckpt.get("adapters") or {}).items():
        if kind not in ADAPTERS:
            raise UsageError(f"{path} holds {kind} adapters, which nothing imported can add back: import the "
                             "ftlab sub-package that made them, or pass the model to load into.")
        model = ADAPTERS[kind][0](model, **options)
    return model


def _check_fits(path: Path, ckpt: dict[str, Any], model: nn.Module) -> None:
    if type(model).__name__ != ckpt["arch"]:
        raise UsageError(f"{path} holds a {ckpt['arch']} ({ckpt.get('name')}), not a {type(model).__name__}: "
                         "build the same architecture to load it.")
    if ckpt["num_classes"] is not None and _out_features(model) != ckpt["num_classes"]:
        raise UsageError(f"{path} has a {ckpt['num_classes']}-class head, the model a {_out_features(model)}-class "
                         f"head: build it with num_classes={ckpt['num_classes']}.")
    saved, has = dict(ckpt.get("adapters") or {}), dict(getattr(model, "ftlab_adapters", None) or {})
    if saved != has:
        what = f"adapters: {_adapters_hint(saved)}" if saved else "no adapters"
        raise UsageError(f"{path} holds a model with {what}; the model given has "
                         f"{_adapters_hint(has) if has else 'none'}. Build it the same way first "
                         f"({'then ' + _adapters_hint(saved) if saved else 'without adapters'}), "
                         "or pass no model and load_checkpoint builds it.")


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None, optimizer=None,
                    trusted: bool = False) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (or into a new model of the saved kind, adapters included, when None).

    Args:
        path: a file written by :func:`save_checkpoint`.
        model: the model to load into; None builds one of the saved kind.
        optimizer: optional optimizer to restore the saved state into.
        trusted: also read files that pickle Python objects (which can run code on load): only
            for files you made yourself. ftlab's own checkpoints never need it.

    Returns:
        ``{"model", "history", "classes", "preprocessing", "optimizer_state"}``. A model with
        ``class_names`` (a detector) gets the saved names back.

    Raises:
        FtlabError: missing file, not an ftlab checkpoint, a file that would unpickle objects, or a
            model of another architecture, class count or set of adapters.
    """
    path = Path(path)
    ckpt = _read(path, trusted)
    model = _build(path, ckpt) if model is None else model
    _check_fits(path, ckpt, model)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise UsageError(f"{path} does not fit this {type(model).__name__}: {str(err).splitlines()[0]}") from err
    names = ckpt.get("class_names") or ckpt.get("classes")
    if isinstance(getattr(model, "class_names", None), list) and names and len(names) == len(model.class_names):
        model.class_names = list(names)
    if optimizer is not None and ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    h = ckpt.get("history")
    history = History(h["rows"], h["best_epoch"], h["stopped"], h["meta"], h.get("kept_epoch")) if h else None
    return {"model": model, "history": history, "classes": ckpt.get("classes"),
            "preprocessing": ckpt.get("preprocessing"), "optimizer_state": ckpt.get("optimizer")}
