"""ftlab: learn and experiment with fine-tuning pretrained networks, in Jupyter, offline.

Use it as ``import ftlab as ft``. The top level holds the five steps of fine-tuning and their
plumbing, for every modality: layer groups and freezing, optimizer groups, ``fit`` /
``evaluate`` / ``predict``, the caching engine (``extract`` at a cut, ``fit_cached``), checkpoints,
seeding and errors. The core (groups, freezing, optim, callbacks, train, recipes, caching,
history, checkpoint, splits, summary, tables) knows nothing of images or text or boxes; each
modality is a package with the same verbs (``pretrained``, ``loaders``, ``evaluate``, a
``predict_*`` from raw inputs, data sets by name) and a caching adapter:
:mod:`ftlab.vision` (``ft.vision``: images, EfficientNet-Lite0), :mod:`ftlab.text` (``ft.text``:
snippets, MiniLM, LoRA) and :mod:`ftlab.detection` (``ft.detection``: COCO YOLOv3-tiny, NEON tree
crowns, mAP); :mod:`ftlab.llm` (``ft.llm``: a GPT-style decoder, SmolLM2-135M-Instruct, for
instruction tuning) loads on first use. ``ft.plot`` and ``ft.widgets`` load on first use (matplotlib and ipywidgets are not
imported before).

The **lab** (``ft.lab``: a lesson's claims and records, spreads over seeds, strategies and
``run_strategy``, sweeps, the lesson runner, the full runs, the ``ftlab`` command) is built on the
library and loads on first use; nothing in the library imports it.
"""
import importlib

from . import detection, text, vision  # the modality packages (each registers its layer groups and caching adapter)
from .batches import seed_everything
from .caching import Features, extract, features_at, fit_cached, linear_probe
from .callbacks import L2SP, Callback, GradualUnfreeze, LRRangeTest
from .checkpoint import load_checkpoint, save_checkpoint
from .errors import DataError, FtlabError, UsageError, WeightsUnavailable
from .files import cache_dir
from .freezing import eval_mode, freeze, freeze_to, train_mode, train_top, trainable_count, trainable_summary, unfreeze
from .groups import group_names, layer_groups, register_architecture
from .history import History
from .optim import param_groups
from .recipes import fine_tune, lr_find
from .splits import Splits, stratified_subset
from .tables import Table
from .train import evaluate, fit, predict

__version__ = "0.1.0"

__all__ = [
    # the modality packages, figures, widgets and the lab (plot, widgets and lab load lazily)
    "vision", "text", "detection", "llm", "plot", "widgets", "lab",
    # errors
    "FtlabError", "UsageError", "DataError", "WeightsUnavailable",
    # layer groups and freezing
    "layer_groups", "group_names", "register_architecture",
    "freeze", "unfreeze", "freeze_to", "train_top", "train_mode", "eval_mode", "trainable_count", "trainable_summary",
    # optimisation and training
    "param_groups", "Callback", "GradualUnfreeze", "LRRangeTest", "L2SP",
    "fit", "evaluate", "predict", "History", "fine_tune", "lr_find", "seed_everything",
    # caching: extract at a cut, train the rest on the cache
    "Features", "extract", "features_at", "fit_cached", "linear_probe",
    # checkpoints, splits, tables, the cache folder
    "save_checkpoint", "load_checkpoint", "Splits", "stratified_subset", "Table", "cache_dir",
]

_LAZY = ("plot", "widgets", "lab", "llm")   # matplotlib / ipywidgets load on first use; the lab is built on the rest


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ftlab' has no attribute {name!r}")
