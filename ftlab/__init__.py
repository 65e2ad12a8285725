"""ftlab: learn and experiment with fine-tuning pretrained networks, in Jupyter, offline.

Use it as ``import ftlab as ft``. The public names are re-exported here explicitly.
"""
from . import cache, data, errors, folders, loaders as _loaders_module, models, transforms, weights
from .cache import cache_dir
from .data import ImageSet, Splits, dataset, elpv
from .errors import DataError, FtlabError, WeightsUnavailable
from .folders import image_folder
from .loaders import Loaders, loaders, stratified_subset
from .models import head_module, imagenet_classes, predict_imagenet, preprocessing, pretrained
from .transforms import AUGMENTATIONS, augmentation, transforms as make_transforms

__version__ = "0.1.0"

__all__ = [
    "cache", "data", "errors", "folders", "models", "transforms", "weights",
    "cache_dir", "ImageSet", "Splits", "dataset", "elpv", "image_folder",
    "DataError", "FtlabError", "WeightsUnavailable",
    "Loaders", "loaders", "stratified_subset",
    "head_module", "imagenet_classes", "predict_imagenet", "preprocessing", "pretrained",
    "AUGMENTATIONS", "augmentation", "make_transforms",
]
