"""ftlab: learn and experiment with fine-tuning pretrained networks, in Jupyter, offline.

Use it as ``import ftlab as ft``. The public names are re-exported here explicitly; no name
shadows a submodule. The core (groups, freezing, optim, callbacks, train, recipes, features,
history, checkpoint, splits, summary, tables) knows nothing of images or text or boxes;
:mod:`ftlab.vision` adds images (data, transforms, loaders, pretrained CNNs), :mod:`ftlab.text`
text (snippets, tokenized loaders, MiniLM, LoRA; use it as ``ft.text``) and
:mod:`ftlab.detection` boxes (COCO YOLOv3-tiny, NEON tree crowns, mAP; ``ft.detection``).
``ft.plot`` and ``ft.widgets`` load on first use (matplotlib and ipywidgets are not imported before).

The **lab** (``ft.lab``: a lesson's claims and records, strategies and ``run_strategy``, sweeps,
the lesson runner, the full runs, the ``ftlab`` command) is built on the library and loads on
first use; nothing in the library imports it.
"""
import importlib

from . import (
    batches,
    callbacks,
    checkpoint,
    detection,
    errors,
    features,
    files,
    freezing,
    groups,
    history,
    optim,
    recipes,
    splits,
    summary,
    tables,
    text,
    train,
    vision,
)
from .batches import batch_step, resolve_device, seed_everything
from .callbacks import L2SP, Callback, FitState, GradualUnfreeze, LRRangeTest
from .checkpoint import load_checkpoint, save_checkpoint
from .errors import DataError, FtlabError, UsageError, WeightsUnavailable
from .features import (
    Features,
    evaluate_cached,
    extract_features,
    features_at,
    fit_cached,
    fit_head,
    linear_probe,
    pooled_features,
    predict_cached,
)
from .files import cache_dir
from .freezing import (
    apply_bn_policy,
    eval_mode,
    freeze,
    freeze_to,
    train_mode,
    train_top,
    trainable_count,
    trainable_summary,
    unfreeze,
)
from .groups import group_names, head_module, layer_groups, register_architecture, resolve_groups
from .history import History
from .optim import Schedule, param_groups
from .recipes import fine_tune, lr_find
from .splits import Loaders, Splits, stratified_subset
from .summary import Spread, aggregate, spread
from .tables import Table
from .train import Predictions, evaluate, fit, predict
from .vision import (
    AUGMENTATIONS,
    D4_VIEWS,
    ImageSet,
    augmentation,
    dataset,
    elpv,
    image_folder,
    imagenet_classes,
    loaders,
    predict_imagenet,
    preprocess,
    preprocessing,
    pretrained,
    set_dropout,
)

__version__ = "0.1.0"

__all__ = [
    # submodules (plot and widgets load lazily)
    "batches", "callbacks", "checkpoint", "detection", "errors", "features", "files", "freezing",
    "groups", "history", "optim", "recipes", "splits", "summary", "tables", "text", "train", "vision", "plot", "widgets", "lab",
    # errors
    "FtlabError", "UsageError", "DataError", "WeightsUnavailable",
    # layer groups and freezing
    "layer_groups", "group_names", "resolve_groups", "register_architecture", "head_module",
    "freeze", "unfreeze", "freeze_to", "train_top", "train_mode", "eval_mode", "apply_bn_policy",
    "trainable_count", "trainable_summary",
    # optimisation and training
    "param_groups", "Schedule", "Callback", "FitState", "GradualUnfreeze", "LRRangeTest", "L2SP",
    "fit", "evaluate", "predict", "Predictions", "batch_step", "resolve_device", "seed_everything",
    "History", "fine_tune", "lr_find", "save_checkpoint", "load_checkpoint",
    # features
    "Features", "extract_features", "features_at", "fit_head", "fit_cached", "evaluate_cached", "predict_cached", "linear_probe",
    "pooled_features",
    "Table", "cache_dir",
    # summaries over seeds
    "Spread", "spread", "aggregate",
    # images
    "ImageSet", "Splits", "elpv", "image_folder", "dataset", "Loaders", "loaders", "stratified_subset",
    "AUGMENTATIONS", "augmentation", "preprocess", "D4_VIEWS", "pretrained", "preprocessing", "set_dropout",
    "imagenet_classes", "predict_imagenet",
]

_LAZY = ("plot", "widgets", "lab")   # matplotlib / ipywidgets load on first use; the lab is built on the rest


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ftlab' has no attribute {name!r}")
