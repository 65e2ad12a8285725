"""The training loop: fit / evaluate / predict, seeding and devices.

Introduced in lesson 02 (after the plain PyTorch loop it replaces). ``fit`` rebuilds the
optimizer whenever the set of trainable parameters changes, so unfreezing is never a silent
no-op; it re-applies the BatchNorm policy after every ``model.train()``; it keeps the best
weights; it stops cleanly on a non-finite loss or on KeyboardInterrupt (Jupyter's Stop button).
"""
from __future__ import annotations

import math
import random
import time
import warnings
from types import SimpleNamespace
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .errors import FtlabError
from .freeze import freeze_to, layer_groups, train_mode, trainable_count
from .history import History
from .params import param_groups

__all__ = ["fit", "evaluate", "predict", "Predictions", "seed_everything", "resolve_device",
           "Callback", "GradualUnfreeze", "make_optimizer", "make_scheduler", "prepare"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA). On CPU the same seed gives the same History."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else Apple MPS, else CPU."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Callback:
    """Base class for fit callbacks; override any of the hooks. ``state.stop = True`` ends training.

    ``state`` has ``model``, ``epoch``, ``epochs``, ``history``, ``optimizer``, ``loss`` (last
    batch), ``batch`` and ``stop``.
    """

    def on_fit_start(self, state): ...
    def on_epoch_start(self, state): ...
    def on_batch_end(self, state): ...
    def on_epoch_end(self, state): ...
    def on_fit_end(self, state): ...


class GradualUnfreeze(Callback):
    """Unfreeze one more layer group (from the top) every ``every`` epochs (ULMFiT's gradual unfreezing)."""

    def __init__(self, every: int = 1, start: int = -1, bn: str = "frozen"):
        self.every, self.start, self.bn = every, start, bn

    def on_epoch_start(self, state):
        n = len(layer_groups(state.model))
        k = max(-n, self.start - state.epoch // self.every)
        freeze_to(state.model, k, bn=self.bn)


def _loaders(loaders) -> tuple[Iterable, Iterable | None]:
    if hasattr(loaders, "train"):
        return loaders.train, getattr(loaders, "val", None)
    if isinstance(loaders, (tuple, list)) and 1 <= len(loaders) <= 5:
        return loaders[0], loaders[1] if len(loaders) > 1 else None
    raise FtlabError("Pass ftlab.loaders(...) or a (train_loader, val_loader) pair as `loaders`.")


def make_optimizer(model: nn.Module, name: str, lr, lr_mult, weight_decay: float) -> torch.optim.Optimizer:
    """An optimizer over the trainable parameters only, with ftlab's param groups."""
    groups = param_groups(model, lr, lr_mult=lr_mult, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups)
    if name == "sgd":
        return torch.optim.SGD(groups, momentum=0.9, nesterov=True)
    raise FtlabError(f"Unknown optimizer {name!r}: use 'adamw' or 'sgd' (or build your own with ftlab.param_groups).")


def make_scheduler(optimizer, name: str | None, total_steps: int):
    """``"onecycle"`` (warm-up then anneal), ``"cosine"`` or None (constant) over ``total_steps`` batches."""
    if name not in (None, "onecycle", "cosine"):
        raise FtlabError(f"Unknown scheduler {name!r}: use 'onecycle', 'cosine' or None.")
    if name is None or total_steps < 1:
        return None
    if name == "onecycle":
        if total_steps < 4:         # too short to warm up and anneal: keep the rate constant
            return None
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total_steps,
            pct_start=max(0.25, 2 / total_steps), cycle_momentum=isinstance(optimizer, torch.optim.SGD))
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)


def _to(x: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """Move a batch to the device; image batches go channels-last (1.5-2x faster convs on CPU)."""
    x = x.to(dev, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def prepare(model: nn.Module, device: str | torch.device = "auto") -> torch.device:
    """Move a model to the resolved device in channels-last memory format; returns the device."""
    dev = resolve_device(device)
    model.to(dev, memory_format=torch.channels_last)
    return dev


def _trainable_ids(model: nn.Module) -> frozenset[int]:
    return frozenset(id(p) for p in model.parameters() if p.requires_grad)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class _NonFinite(Exception):
    pass


def fit(model: nn.Module, loaders, epochs: int, lr: float | tuple[float, float] = 1e-3, *,
        lr_mult: float | None = None, optimizer: str = "adamw", weight_decay: float = 0.01,
        scheduler: str | None = "onecycle", early_stopping: int | None = None, monitor: str = "val_loss",
        restore_best: bool = True, callbacks: Iterable[Callback] = (), criterion: Callable | None = None,
        device: str | torch.device = "auto", seed: int | None = None, progress: bool = True) -> History:
    """Train the trainable part of a model and return its :class:`History`.

    Args:
        model: the model; what is frozen stays frozen (see :mod:`ftlab.freeze`).
        loaders: ``ftlab.loaders(...)`` or a ``(train_loader, val_loader)`` pair.
        epochs: number of passes over the training data.
        lr: head learning rate, or ``(lo, hi)`` for discriminative rates (see ``param_groups``).
        lr_mult: with a single ``lr``, the earliest trainable group gets ``lr / lr_mult``.
        optimizer: ``"adamw"`` or ``"sgd"`` (momentum 0.9, Nesterov).
        weight_decay: on weights only, never on biases and norm parameters.
        scheduler: ``"onecycle"``, ``"cosine"`` or None, stepped every batch.
        early_stopping: stop after this many epochs without improvement of ``monitor``.
        monitor: ``"val_loss"`` (lower is better) or ``"val_acc"``.
        restore_best: load the best epoch's weights at the end (needs a validation loader).
        callbacks: :class:`Callback` objects (e.g. :class:`GradualUnfreeze`).
        criterion: loss function (default cross-entropy).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``; mixed precision on CUDA.
        seed: seed everything (and the loader's shuffling) first, for a repeatable run.
        progress: show progress bars (a widget in Jupyter, text elsewhere).

    Returns:
        :class:`History`; ``stopped`` says why a run ended early.
    """
    if epochs < 1:
        raise FtlabError(f"epochs must be at least 1, got {epochs}.")
    if monitor not in ("val_loss", "val_acc"):
        raise FtlabError(f"monitor must be 'val_loss' or 'val_acc', not {monitor!r}.")
    train_dl, val_dl = _loaders(loaders)
    if seed is not None:
        seed_everything(seed)
        if getattr(train_dl, "generator", None) is not None:
            train_dl.generator.manual_seed(seed)
    dev = prepare(model, device)
    criterion = criterion or nn.CrossEntropyLoss()
    amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    history = History(meta={"optimizer": optimizer, "scheduler": scheduler, "weight_decay": weight_decay,
                            "lr": lr, "lr_mult": lr_mult, "device": str(dev)})
    state = SimpleNamespace(model=model, epoch=0, epochs=epochs, history=history, optimizer=None,
                            loss=None, batch=0, stop=False)
    best_state, best_score, since_best = _snapshot(model), math.inf, 0
    opt = sched = None
    active: frozenset[int] = frozenset()
    callbacks = list(callbacks)
    for cb in callbacks:
        cb.on_fit_start(state)
    bar = tqdm(range(epochs), desc="epochs", disable=not progress, leave=True)
    try:
        for epoch in bar:
            state.epoch = epoch
            for cb in callbacks:
                cb.on_epoch_start(state)
            unfrozen = _trainable_ids(model) != active
            if unfrozen:        # new or changed trainable set: never leave new parameters out
                active = _trainable_ids(model)
                opt = make_optimizer(model, optimizer, lr, lr_mult, weight_decay)
                sched = make_scheduler(opt, scheduler, (epochs - epoch) * len(train_dl))
                state.optimizer = opt
            t0 = time.perf_counter()
            train_mode(model)
            total, correct, seen = 0.0, 0, 0
            for x, y in tqdm(train_dl, desc=f"epoch {epoch + 1}", disable=not progress, leave=False):
                x, y = _to(x, dev), y.to(dev, non_blocking=True)
                with torch.autocast(dev.type, enabled=amp):
                    out = model(x)
                    loss = criterion(out, y)
                value = loss.item()
                if not math.isfinite(value):
                    raise _NonFinite(f"non-finite loss ({value}) at epoch {epoch + 1}, batch {state.batch + 1}")
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                if sched is not None:
                    sched.step()
                total += value * len(y)
                correct += (out.argmax(1) == y).sum().item()
                seen += len(y)
                state.loss, state.batch = value, state.batch + 1
                for cb in callbacks:
                    cb.on_batch_end(state)
                if state.stop:
                    break
            row = {"epoch": epoch, "train_loss": total / max(1, seen), "train_acc": correct / max(1, seen)}
            if val_dl is not None:
                ev = evaluate(model, val_dl, criterion=criterion, device=dev)
                row.update(val_loss=ev["loss"], val_acc=ev["acc"])
            lrs = [g["lr"] for g in opt.param_groups]
            row.update(lr=lrs[-1], lrs=lrs, seconds=time.perf_counter() - t0,
                       trainable=trainable_count(model), stage=0, unfrozen=unfrozen and epoch > 0)
            history.rows.append(row)
            if val_dl is not None:
                score = row["val_loss"] if monitor == "val_loss" else -row["val_acc"]
                if score < best_score:
                    best_score, since_best, history.best_epoch = score, 0, epoch
                    if restore_best:
                        best_state = _snapshot(model)
                else:
                    since_best += 1
            bar.set_postfix({k: round(row[k], 4) for k in ("train_loss", "val_loss", "val_acc") if k in row})
            for cb in callbacks:
                cb.on_epoch_end(state)
            if early_stopping is not None and since_best >= early_stopping:
                history.stopped = f"early stopping after epoch {epoch + 1} (best epoch {history.best_epoch + 1})"
                break
            if state.stop:
                history.stopped = history.stopped or f"stopped by a callback after epoch {epoch + 1}"
                break
    except KeyboardInterrupt:
        history.stopped = f"interrupted in epoch {state.epoch + 1}"
        print(f"ftlab: training {history.stopped}; returning the history so far.")
    except _NonFinite as err:
        history.stopped = str(err)
        warnings.warn(f"ftlab stopped training: {err}. The best weights so far were restored. "
                      "Lower the learning rate (try lr_find) or check the inputs for NaNs.", RuntimeWarning,
                      stacklevel=2)
    finally:
        bar.close()
    last_is_best = history.best_epoch is not None and history.best_epoch == len(history.rows) - 1 \
        and not (history.stopped or "").startswith(("non-finite", "interrupted"))
    if restore_best and not last_is_best and (history.best_epoch is not None or history.stopped and not history.rows):
        model.load_state_dict(best_state)       # (the weights in place are the best ones when the last epoch was)
    for cb in callbacks:
        cb.on_fit_end(state)
    model.eval()
    return history


@torch.no_grad()
def evaluate(model: nn.Module, loader, criterion: Callable | None = None,
             device: str | torch.device = "auto") -> dict[str, float]:
    """Mean loss and accuracy of a model on a loader (eval mode; the model's mode is restored).

    Returns:
        ``{"loss": float, "acc": float, "n": int}``.
    """
    p = predict(model, loader, device=device)
    criterion = criterion or nn.CrossEntropyLoss()
    loss = criterion(p.logits, p.targets).item() if len(p.targets) else math.nan
    acc = (p.preds == p.targets).float().mean().item() if len(p.targets) else math.nan
    return {"loss": loss, "acc": acc, "n": len(p.targets)}


class Predictions(NamedTuple):
    """Outputs of :func:`predict`: ``probs`` [N, C], ``preds`` [N], ``targets`` [N], ``logits`` [N, C]."""

    probs: torch.Tensor
    preds: torch.Tensor
    targets: torch.Tensor
    logits: torch.Tensor


@torch.no_grad()
def predict(model: nn.Module, loader, device: str | torch.device = "auto") -> Predictions:
    """Class probabilities, predicted classes and targets for every sample of a loader (in order)."""
    was_training = model.training
    dev = prepare(model, device)
    model.eval()
    logits, targets = [], []
    for x, y in loader:
        with torch.autocast(dev.type, enabled=dev.type == "cuda"):
            logits.append(model(_to(x, dev)).float().cpu())
        targets.append(torch.as_tensor(y))
    model.train(was_training)
    if was_training:
        train_mode(model)
    lg = torch.cat(logits) if logits else torch.empty(0, 0)
    tg = torch.cat(targets).long() if targets else torch.empty(0, dtype=torch.long)
    return Predictions(lg.softmax(-1), lg.argmax(-1), tg, lg)

