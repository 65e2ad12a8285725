"""The training loop: fit / evaluate / predict.

Introduced in lesson 02, after the plain PyTorch loop it replaces. ``fit`` reads like that loop:
for each epoch, train every batch (forward, loss, backward, step), then validate. What it adds
sits in small helpers beside it: the optimizer follows what trains (unfreezing adds param
groups and keeps the optimizer's state), the BatchNorm policy is re-applied after every
``model.train()``, the best weights are kept, and a non-finite loss or Jupyter's Stop button
ends the run cleanly with the kept weights in place.

**Batches.** One hook, :func:`ftlab.batches.batch_step`, turns a batch into a loss (and logits
and targets where there are some): ``(inputs, targets)`` tuples, Hugging Face-style dicts and
torchvision-style detection batches. Pass ``step=`` to ``fit`` / ``evaluate`` for anything else.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Iterable, NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from .batches import batch_step, prepare, seed_everything
from .callbacks import Callback, FitState
from .errors import UsageError
from .freezing import eval_mode, train_mode, trainable_count
from .history import History
from .optim import Schedule, add_unfrozen, make_optimizer, param_groups

__all__ = ["fit", "evaluate", "predict", "Predictions", "named_predictions"]


def _split_loaders(loaders) -> tuple[Iterable, Iterable | None]:
    if hasattr(loaders, "train"):
        return loaders.train, getattr(loaders, "val", None)
    if isinstance(loaders, (tuple, list)) and 1 <= len(loaders) <= 5:
        return loaders[0], loaders[1] if len(loaders) > 1 else None
    raise UsageError("Pass ftlab.loaders(...) or a (train_loader, val_loader) pair as `loaders`.")


def _check(model: nn.Module, epochs: int, monitor: str) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise UsageError(f"epochs must be a whole number of at least 1, got {epochs!r}.")
    if monitor not in ("val_loss", "val_acc"):
        raise UsageError(f"monitor must be 'val_loss' or 'val_acc', not {monitor!r}.")
    if trainable_count(model) == 0:
        raise UsageError(f"Nothing in this {type(model).__name__} is trainable: every parameter is frozen, so fit "
                         "would change nothing. Unfreeze something first, e.g. ftlab.train_top(model, 1) for the head.")


class _NonFinite(Exception):
    pass


class _Keeper:
    """Keeps the weights to end with: the best epoch's by ``monitor`` (or the last epoch's without validation)."""

    def __init__(self, model: nn.Module, monitor: str, enabled: bool):
        self.model, self.monitor, self.enabled = model, monitor, enabled
        self.saved = self._snapshot() if enabled else None     # until an epoch is done: the weights we started with
        self.score, self.since, self.current = math.inf, 0, True

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def epoch_end(self, row: dict, history: History) -> None:
        value = row.get(self.monitor)
        score = math.nan if value is None else (value if self.monitor == "val_loss" else -value)
        if math.isnan(score) or score < self.score:      # no validation score: the last epoch is the one to keep
            self.score, self.since = (self.score if math.isnan(score) else score), 0
            history.best_epoch = row["epoch"]
            self.saved, self.current = (self._snapshot() if self.enabled else None), True
        else:
            self.since += 1

    def restore(self) -> None:
        if self.enabled and not self.current:
            self.model.load_state_dict(self.saved)


def _sync_optimizer(state: FitState, kw: dict, steps_left: int) -> bool:
    """Build the optimizer and schedule at the start, or add groups that became trainable. True when it changed."""
    ids = frozenset(id(p) for p in state.model.parameters() if p.requires_grad)
    if state.optimizer is None:
        state.optimizer = make_optimizer(param_groups(state.model, kw["lr"], kw["lr_mult"], kw["weight_decay"]),
                                         kw["optimizer"])
        state.schedule = Schedule(state.optimizer, kw["scheduler"], steps_left)
    elif ids != state.extra["trainable"]:
        add_unfrozen(state.optimizer, state.model, kw["lr"], kw["lr_mult"], kw["weight_decay"])
        state.schedule.apply()                       # new groups start at the schedule's current point
    changed, state.extra["trainable"] = ids != state.extra.get("trainable"), ids
    return changed


def _train_epoch(state: FitState, loader, step, criterion, dev, callbacks, progress: bool) -> dict:
    """One pass over the training data; returns the epoch's mean loss (and accuracy where there are logits)."""
    train_mode(state.model)
    total, correct, seen, scored = 0.0, 0, 0, 0
    amp = dev.type == "cuda"
    for batch in tqdm(loader, desc=f"epoch {state.epoch + 1}", disable=not progress, leave=False):
        with torch.autocast(dev.type, enabled=amp):
            out = step(state.model, batch, criterion, dev)
        if out.loss is None:
            raise UsageError("The model returned no loss in training mode; pass criterion= or a step= function.")
        value = out.loss.item()
        if not math.isfinite(value):
            raise _NonFinite(f"non-finite loss ({value}) at epoch {state.epoch + 1}, batch {state.batch + 1}")
        state.optimizer.zero_grad(set_to_none=True)
        state.extra["scaler"].scale(out.loss).backward()
        state.extra["scaler"].step(state.optimizer)
        state.extra["scaler"].update()
        state.schedule.step()
        total, seen = total + value * out.n, seen + out.n
        if out.logits is not None and out.targets is not None:
            correct += (out.logits.argmax(-1) == out.targets).sum().item()
            scored += out.n
        state.loss, state.batch = value, state.batch + 1
        _call(callbacks, "on_batch_end", state)
        if state.stop:
            break
    return {"train_loss": total / max(1, seen), "train_acc": correct / scored if scored else None}


def _seed(seed: int | None, train_dl) -> None:
    """Seed everything and the loader's shuffling, for a repeatable run."""
    if seed is not None:
        seed_everything(seed)
        if getattr(train_dl, "generator", None) is not None:
            train_dl.generator.manual_seed(seed)


def _epoch_row(row: dict, state: FitState, t0: float, unfrozen: bool) -> dict:
    """An epoch's history row: its metrics, the learning rates it ended with, time, what trained."""
    lrs = [g["lr"] for g in state.optimizer.param_groups]
    return {**row, "lr": max(lrs), "lrs": lrs, "seconds": time.perf_counter() - t0,
            "trainable": trainable_count(state.model), "stage": 0, "unfrozen": unfrozen}


def _call(callbacks: list[Callback], hook: str, state: FitState) -> None:
    for cb in callbacks:
        getattr(cb, hook)(state)


def _epochs(state: FitState, bar, keeper: _Keeper, kw: dict, loaders: tuple, step, criterion, dev, callbacks,
            early_stopping: int | None, progress: bool) -> None:
    """The epochs of :func:`fit`: train, score on validation, keep the best weights, stop early or when asked."""
    train_dl, val_dl = loaders
    model, history, epochs = state.model, state.history, state.epochs
    for epoch in bar:
        state.epoch, t0 = epoch, time.perf_counter()
        _call(callbacks, "on_epoch_start", state)
        unfrozen = _sync_optimizer(state, kw, (epochs - epoch) * len(train_dl)) and epoch > 0
        keeper.current = False                                    # the weights are about to change
        row = {"epoch": epoch, **_train_epoch(state, train_dl, step, criterion, dev, callbacks, progress)}
        if val_dl is not None:
            ev = evaluate(model, val_dl, criterion=criterion, device=dev, step=step)
            row.update(val_loss=ev["loss"], val_acc=ev["acc"])
        history.rows.append(_epoch_row(row, state, t0, unfrozen))
        keeper.epoch_end(row, history)
        bar.set_postfix({k: round(row[k], 4) for k in ("train_loss", "val_loss", "val_acc") if row.get(k) is not None})
        _call(callbacks, "on_epoch_end", state)
        if early_stopping is not None and keeper.since >= early_stopping:
            history.stopped = f"early stopping after epoch {epoch + 1} (best epoch {history.best_epoch + 1})"
            return
        if state.stop:
            history.stopped = history.stopped or f"stopped by a callback after epoch {epoch + 1}"
            return


def fit(model: nn.Module, loaders, epochs: int, lr: float | tuple[float, float] = 1e-3, *,
        lr_mult: float | None = None, optimizer: str = "adamw", weight_decay: float = 0.01,
        scheduler: str | None = "onecycle", early_stopping: int | None = None, monitor: str = "val_loss",
        restore_best: bool = True, callbacks: Iterable[Callback] = (), criterion: Callable | None = None,
        step: Callable = batch_step, device: str | torch.device = "auto", seed: int | None = None,
        progress: bool = True) -> History:
    """Train the trainable part of a model and return its :class:`History`.

    Args:
        model: the model; what is frozen stays frozen (see :mod:`ftlab.freezing`).
        loaders: ``ftlab.loaders(...)`` or a ``(train_loader, val_loader)`` pair (val may be None).
        epochs: number of passes over the training data.
        lr: head learning rate, or ``(lo, hi)`` for discriminative rates (see :func:`ftlab.param_groups`).
        lr_mult: with a single ``lr``, the earliest trainable group gets ``lr / lr_mult``.
        optimizer: ``"adamw"`` or ``"sgd"`` (momentum 0.9, Nesterov).
        weight_decay: on weights only, never on biases and norm parameters.
        scheduler: ``"onecycle"``, ``"cosine"`` or None, stepped every batch.
        early_stopping: stop after this many epochs without improvement of ``monitor``.
        monitor: ``"val_loss"`` (lower is better) or ``"val_acc"``.
        restore_best: end with the best epoch's weights (by ``monitor``; without validation,
            the last completed epoch's). After a non-finite loss or an interruption the kept
            weights are restored either way when this is True.
        callbacks: :class:`~ftlab.Callback` objects (e.g. :class:`~ftlab.GradualUnfreeze`).
        criterion: loss function (default cross-entropy; Hugging Face models use their own loss).
        step: how a batch becomes a loss (default :func:`batch_step`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``; mixed precision on CUDA.
        seed: seed everything (and the loader's shuffling) first, for a repeatable run.
        progress: show progress bars (a widget in Jupyter, text elsewhere).

    Returns:
        :class:`History`; ``stopped`` says why a run ended early.
    """
    _check(model, epochs, monitor)
    train_dl, val_dl = _split_loaders(loaders)
    _seed(seed, train_dl)
    dev, callbacks = prepare(model, device), list(callbacks)
    kw = dict(lr=lr, lr_mult=lr_mult, weight_decay=weight_decay, optimizer=optimizer, scheduler=scheduler)
    history = History(meta={**kw, "device": str(dev)})
    state = FitState(model, epochs, history, extra={"scaler": torch.amp.GradScaler("cuda", enabled=dev.type == "cuda")})
    keeper = _Keeper(model, monitor, restore_best)
    _call(callbacks, "on_fit_start", state)
    bar = tqdm(range(epochs), desc="epochs", disable=not progress)
    try:
        _epochs(state, bar, keeper, kw, (train_dl, val_dl), step, criterion, dev, callbacks, early_stopping, progress)
    except KeyboardInterrupt:
        history.stopped = f"interrupted in epoch {state.epoch + 1}"
        print(f"ftlab: training {history.stopped}; the kept weights are restored.")
    except _NonFinite as err:
        history.stopped = str(err)
        warnings.warn(f"ftlab stopped training: {err}. The kept weights were restored. Lower the learning rate "
                      "(try lr_find) or check the inputs for NaNs.", RuntimeWarning, stacklevel=2)
    finally:
        bar.close()
    keeper.restore()
    history.kept_epoch = history.best_epoch if restore_best or not history.rows else history.rows[-1]["epoch"]
    _call(callbacks, "on_fit_end", state)
    model.eval()
    return history


def _scoring(model: nn.Module, data):
    """Cached features (``ft.extract``) are scored through the part of the model above their cut."""
    scoring = getattr(data, "ftlab_scoring", None)
    return scoring(model) if callable(scoring) else (model, data)


@torch.no_grad()
def evaluate(model: nn.Module, loader, criterion: Callable | None = None, device: str | torch.device = "auto",
             step: Callable = batch_step) -> dict[str, float]:
    """Mean loss and accuracy of a model on a loader (or on cached features), in eval mode (modes are restored).

    Returns:
        ``{"loss": float, "acc": float, "n": int}``; ``nan`` where the batches give no loss
        (a detector in eval mode) or no logits.
    """
    model, loader = _scoring(model, loader)
    dev = prepare(model, device)
    total, correct, seen, scored, lossless = 0.0, 0, 0, 0, False
    with eval_mode(model):
        for batch in loader:
            with torch.autocast(dev.type, enabled=dev.type == "cuda"):
                out = step(model, batch, criterion, dev)
            lossless |= out.loss is None
            total += 0.0 if out.loss is None else out.loss.float().item() * out.n
            seen += out.n
            if out.logits is not None and out.targets is not None:
                correct += (out.logits.argmax(-1) == out.targets).sum().item()
                scored += out.n
    loss = total / seen if seen and not lossless else math.nan
    return {"loss": loss, "acc": correct / scored if scored else math.nan, "n": seen}


class Predictions(NamedTuple):
    """Outputs of :func:`predict`: ``probs`` [N, C], ``preds`` [N], ``targets`` [N], ``logits`` [N, C]."""

    probs: torch.Tensor
    preds: torch.Tensor
    targets: torch.Tensor
    logits: torch.Tensor


@torch.no_grad()
def predict(model: nn.Module, loader, device: str | torch.device = "auto", step: Callable = batch_step) -> Predictions:
    """Class probabilities, predicted classes and targets for every sample of a loader or cached features (in order)."""
    model, loader = _scoring(model, loader)
    dev = prepare(model, device)
    logits, targets = [], []
    with eval_mode(model):
        for batch in loader:
            with torch.autocast(dev.type, enabled=dev.type == "cuda"):
                out = step(model, batch, None, dev)
            if out.logits is None:
                raise UsageError("predict() needs classification batches (inputs, targets) or dicts with labels; "
                                 "a detector's batches give boxes, not class scores: call the model in eval mode.")
            logits.append(out.logits.float().cpu())
            if out.targets is not None:                # unlabelled batches: predictions only
                targets.append(torch.as_tensor(out.targets).cpu())
    lg = torch.cat(logits) if logits else torch.empty(0, 0)
    tg = torch.cat(targets).long() if targets else torch.empty(0, dtype=torch.long)
    order = getattr(loader, "ftlab_order", None)       # batches of similar length: back to the data set's order
    if order is not None:
        lg, tg = _in_order(lg, order), (_in_order(tg, order) if len(tg) else tg)
    return Predictions(lg.softmax(-1), lg.argmax(-1), tg, lg)


def _in_order(rows: torch.Tensor, order: list[int]) -> torch.Tensor:
    if len(rows) != len(order):
        raise RuntimeError(f"ftlab: {len(rows)} predictions for {len(order)} examples in the loader's order.")
    out = torch.empty_like(rows)
    out[torch.as_tensor(order)] = rows
    return out


def named_predictions(probs: torch.Tensor, classes=None) -> dict:
    """``{"probs", "labels", "names"}`` for class probabilities ``[N, C]`` (names default ``"0"``, ``"1"``, ...):
    what every modality's raw-input ``predict_*`` returns."""
    names = list(classes) if classes is not None else [str(c) for c in range(probs.shape[1])]
    if len(names) != probs.shape[1]:
        raise UsageError(f"{len(names)} class names for a {probs.shape[1]}-class model: give one name per output.")
    labels = probs.argmax(1)
    return {"probs": probs, "labels": labels, "names": [names[i] for i in labels.tolist()]}
