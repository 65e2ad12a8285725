"""Object detection: a COCO-pretrained YOLOv3-tiny fine-tuned to find tree crowns in aerial photos.

Use it as ``ft.detection``: :func:`pretrained` (COCO weights, or a new head that keeps them),
:func:`coco_classes`, :func:`predict_boxes` (photos of any size), :func:`evaluate` (mAP@0.5 and
mAP@0.5:0.95 with torchmetrics), :func:`tree_crowns` (NEON tiles split by photo),
:func:`loaders` and the box-aware :func:`augmentation`; cut-point caching with
:func:`extract_maps` and :func:`fit_cached` (train the head, or neck and head, on cached maps).
The layer groups (``backbone.early``, ``backbone.middle``, ``backbone.late``, ``neck``, ``head``)
make ``ft.freeze_to``, ``ft.trainable_summary``, ``ft.fit`` and checkpoints work as for images and text.
Introduced in lesson 07.
"""
from .darknet import coco_classes, read_darknet
from .data import (
    Annotation,
    DetectionSet,
    as_photo,
    augmentation,
    class_indices,
    collate,
    loaders,
    read_voc,
    tile_image,
    tree_crowns,
)
from .features import CUTS, VIEWS, CachedMaps, extract_maps, fit_cached, neck_maps, view
from .models import DETECTORS, YOLOv3Tiny, pretrained
from .predict import box_precision_recall, detect, evaluate, letterbox, predict_boxes

__all__ = ["DETECTORS", "YOLOv3Tiny", "coco_classes", "pretrained", "read_darknet",
           "box_precision_recall", "detect", "evaluate", "letterbox", "predict_boxes",
           "CUTS", "VIEWS", "CachedMaps", "extract_maps", "fit_cached", "neck_maps", "view",
           "Annotation", "DetectionSet", "as_photo", "augmentation", "class_indices", "collate", "loaders", "read_voc",
           "tile_image", "tree_crowns"]
