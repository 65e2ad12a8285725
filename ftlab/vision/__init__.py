"""Images: data sets as uint8 tensors, the two transform stages, seeded loaders, pretrained CNNs.

Importing it registers the layer groups of timm's and torchvision's CNNs in :mod:`ftlab.groups`,
the images' caching adapter (:class:`ImageAdapter`) and lets :func:`ftlab.load_checkpoint`
rebuild the models it makes. Use it as ``ft.vision.<name>``.
"""
from .caching import ImageAdapter, pooled_features
from .choosing import gflops, images_per_second, model_facts
from .data import ImageSet, Splits, elpv, stratified_split
from .folders import image_folder
from .loading import Loaders, dataset, loaders, stratified_subset, with_augmentation
from .models import imagenet_classes, preprocessing, pretrained, set_dropout
from .predict import METRIC, evaluate, predict_imagenet, predict_images
from .transforms import AUGMENTATIONS, D4, augmentation, d4_boxes, d4_view, preprocess

__all__ = ["ImageSet", "Splits", "elpv", "stratified_split", "gflops", "images_per_second", "model_facts",
           "image_folder", "Loaders", "dataset", "loaders", "stratified_subset", "with_augmentation",
           "imagenet_classes", "preprocessing", "pretrained", "set_dropout",
           "METRIC", "evaluate", "predict_images", "predict_imagenet",
           "AUGMENTATIONS", "D4", "augmentation", "d4_boxes", "d4_view", "preprocess",
           "ImageAdapter", "pooled_features"]
