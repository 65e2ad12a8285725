"""Object detection: a COCO-pretrained YOLOv3-tiny fine-tuned to find tree crowns in aerial photos.

Use it as ``ft.detection``: :func:`pretrained` (COCO weights, or a new head that keeps them),
:func:`coco_classes`, :func:`predict_boxes` (photos of any size), :func:`evaluate` (mAP@0.5 and
mAP@0.5:0.95 with torchmetrics; :func:`image_matches` and :func:`average_precision` for an AP
that a bootstrap over images can resample), :func:`tree_crowns` (NEON tiles split by photo),
:func:`loaders` and the box-aware :func:`augmentation`. Cut-point caching is ftlab's one engine
(``ft.extract(model, tiles, cut="head", views=8)`` and ``ft.fit_cached``), through the adapter in
:mod:`ftlab.detection.caching` (the boxes move with the views).
The layer groups (``backbone.early``, ``backbone.middle``, ``backbone.late``, ``neck``, ``head``)
make ``ft.freeze_to``, ``ft.trainable_summary``, ``ft.fit`` and checkpoints work as for images and text.
Introduced in lesson 07.
"""
from .caching import DetectionAdapter, DetectorTop
from .darknet import coco_classes, read_darknet
from .data import (
    AUGMENTATIONS,
    Annotation,
    DetectionSet,
    as_photo,
    augmentation,
    class_indices,
    collate,
    dataset,
    loaders,
    read_voc,
    tile_image,
    tree_crowns,
)
from .matching import ImageMatches, average_precision, image_matches
from .models import DETECTORS, YOLOv3Tiny, pretrained
from .predict import METRIC, box_precision_recall, detect, evaluate, letterbox, predict_boxes

__all__ = ["DETECTORS", "YOLOv3Tiny", "coco_classes", "pretrained", "read_darknet",
           "METRIC", "AUGMENTATIONS", "dataset", "box_precision_recall", "detect", "evaluate", "letterbox", "predict_boxes",
           "DetectionAdapter", "DetectorTop",
           "Annotation", "DetectionSet", "as_photo", "augmentation", "class_indices", "collate", "loaders", "read_voc",
           "tile_image", "tree_crowns", "ImageMatches", "average_precision", "image_matches"]
