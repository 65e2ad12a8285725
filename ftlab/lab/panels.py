"""The TrainPanel: pick a strategy and hyper-parameters, Run, watch the curves, Stop; every run joins a comparison.

A lab panel (it runs :func:`ftlab.lab.run_strategy`), built the way :mod:`ftlab.widgets` builds its
panels: the widget in ``self.widget``, events wired with ``on_click``, the work in plain methods
(``settings``, ``train_one``) that tests call without a browser.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import ipywidgets as W
from IPython.display import display
from torch import nn

from .. import plot
from ..callbacks import Callback
from ..groups import layer_groups
from ..tables import table_from_dicts
from ..vision.loading import Loaders, with_augmentation
from ..vision.transforms import AUGMENTATIONS
from ..widgets import show_figure
from .strategies import run_strategy

__all__ = ["PANEL_STRATEGIES", "TrainPanel"]

PANEL_STRATEGIES = ("head", "top k", "full")


class _StopFlag(Callback):
    def __init__(self, panel: "TrainPanel"):
        self.panel = panel

    def on_batch_end(self, state):
        if self.panel._stop:
            state.stop = True

    def on_epoch_end(self, state):
        self.panel._live(state.history)


class TrainPanel:
    """Pick a strategy and hyper-parameters, Run, watch the curves, Stop; every run joins a comparison."""

    def __init__(self, make_model: Callable[[], nn.Module], loaders: Loaders):
        self.make_model, self.loaders = make_model, loaders
        self.results: list[dict[str, Any]] = []
        self._stop = False
        self._thread: threading.Thread | None = None
        s = {"description_width": "initial"}
        self.strategy = W.Dropdown(options=PANEL_STRATEGIES, value="head", description="strategy")
        self.k = W.IntSlider(value=2, min=1, max=len(layer_groups(make_model())), description="k (top k)", style=s)
        self.lr = W.FloatLogSlider(value=3e-3, base=10, min=-5, max=-1, description="learning rate", style=s)
        self.epochs = W.IntSlider(value=3, min=1, max=30, description="epochs")
        self.weight_decay = W.FloatLogSlider(value=1e-2, base=10, min=-4, max=0, description="weight decay", style=s)
        self.augment = W.Dropdown(options=AUGMENTATIONS, value="none", description="augment")
        self.patience = W.IntSlider(value=0, min=0, max=10, description="early stop (0=off)", style=s)
        self.run_button = W.Button(description="Run", button_style="success", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.status = W.HTML("ready")
        self.live, self.table, self.comparison = W.Output(), W.HTML(), W.Output()
        self.run_button.on_click(lambda _: self.run(blocking=False))
        self.stop_button.on_click(lambda _: self.stop())
        controls = W.VBox([W.HBox([self.strategy, self.k]), W.HBox([self.lr, self.epochs]),
                           W.HBox([self.weight_decay, self.augment]), W.HBox([self.patience]),
                           W.HBox([self.run_button, self.stop_button, self.status])])
        self.widget = W.VBox([controls, self.live, self.table, self.comparison])

    def settings(self) -> dict[str, Any]:
        """The current choices: a strategy of :mod:`ftlab.lab.strategies` and its training settings."""
        strategy = f"top{self.k.value}" if self.strategy.value == "top k" else self.strategy.value
        return {"strategy": strategy, "lr": self.lr.value, "epochs": self.epochs.value,
                "weight_decay": self.weight_decay.value, "augment": self.augment.value,
                "early_stopping": self.patience.value or None}

    def train_one(self, callbacks=(), seed: int = 0) -> dict[str, Any]:
        """Train a fresh model with the current settings; the result row joins ``self.results``."""
        settings = self.settings()
        augment = settings.pop("augment")
        row = run_strategy(self.make_model(), with_augmentation(self.loaders, augment), callbacks=callbacks,
                           seed=seed, lr_mult=10, **settings)
        row["name"] = f"{settings['strategy']}, lr {settings['lr']:g}, {augment}"
        self.results.append(row)
        return row

    def run(self, blocking: bool = True) -> None:
        """Train with the current settings (in a background thread when not ``blocking``, so Stop works)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = False
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.status.value = "training ..."
        if blocking:
            self._train()
        else:
            self._thread = threading.Thread(target=self._train, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask the running training to stop after the current batch (the best weights are kept)."""
        self._stop = True
        self.status.value = "stopping ..."

    def _train(self) -> None:
        try:
            row = self.train_one(callbacks=[_StopFlag(self)])
            self.status.value = f"done: test accuracy {row['test_acc']:.1%}" + (f" ({row['stopped']})" if row["stopped"] else "")
            self._refresh()
        except Exception as err:  # shown in the panel: a thread has nowhere else to report
            self.status.value = f"<span style='color:#D55E00'>failed: {type(err).__name__}: {err}</span>"
            if self._thread is None:
                raise
        finally:
            self.run_button.disabled, self.stop_button.disabled = False, True

    def _live(self, history) -> None:
        show_figure(self.live, plot.history(history))

    def _refresh(self) -> None:
        rows = [{"#": i + 1, "run": r["name"], "test acc": f"{r['test_acc']:.1%}", "trainable": f"{r['trainable']:,}",
                 "seconds": f"{r['seconds']:.1f}", "epochs": r["epochs_run"],
                 "cached": "yes" if r["cached"] else "no"} for i, r in enumerate(self.results)]
        self.table.value = table_from_dicts(rows).html()
        show_figure(self.comparison, plot.compare(self.results))

    def _ipython_display_(self) -> None:
        display(self.widget)
