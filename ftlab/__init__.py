"""ftlab: learn and experiment with fine-tuning pretrained networks, in Jupyter, offline.

Use it as ``import ftlab as ft``. The public names are re-exported here explicitly.
"""
import importlib

from . import (cache, checkpoint, data, errors, experiments, features, folders, freeze, history, models, params, recipes,
               report, train, transforms, weights)
from .cache import cache_dir
from .checkpoint import load_checkpoint, save_checkpoint
from .data import ImageSet, Splits, dataset, elpv
from .errors import DataError, FtlabError, WeightsUnavailable
from .features import Features, extract_features, fit_cached, fit_head, linear_probe
from .folders import image_folder
from .freeze import (apply_bn_policy, freeze, freeze_to, layer_groups, select_groups, train_mode,
                     trainable_count, unfreeze)
from .history import History
from .loaders import Loaders, loaders, stratified_subset
from .experiments import run_experiment
from .models import head_module, imagenet_classes, predict_imagenet, preprocessing, pretrained, set_dropout
from .params import param_groups, trainable_summary
from .report import record
from .recipes import fine_tune, lr_find
from .train import Callback, GradualUnfreeze, evaluate, fit, predict, resolve_device, seed_everything
from .transforms import AUGMENTATIONS, augmentation, transforms as make_transforms

__version__ = "0.1.0"

__all__ = [
    "cache", "checkpoint", "data", "errors", "experiments", "features", "folders", "freeze", "history", "models", "params",
    "plot", "recipes", "report", "train", "transforms", "weights", "widgets",
    "cache_dir", "load_checkpoint", "save_checkpoint", "ImageSet", "Splits", "dataset", "elpv",
    "DataError", "FtlabError", "WeightsUnavailable", "Features", "extract_features", "fit_cached", "fit_head", "linear_probe", "set_dropout", "record", "run_experiment",
    "image_folder", "apply_bn_policy", "freeze", "freeze_to", "layer_groups", "select_groups", "train_mode",
    "trainable_count", "unfreeze", "History", "Loaders", "loaders", "stratified_subset",
    "head_module", "imagenet_classes", "predict_imagenet", "preprocessing", "pretrained",
    "param_groups", "trainable_summary", "fine_tune", "lr_find",
    "Callback", "GradualUnfreeze", "evaluate", "fit", "predict", "resolve_device", "seed_everything",
    "AUGMENTATIONS", "augmentation", "make_transforms",
]


_LAZY = ("plot", "plot_more", "plot_sweep", "widgets")   # matplotlib / ipywidgets load on first use


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ftlab' has no attribute {name!r}")
