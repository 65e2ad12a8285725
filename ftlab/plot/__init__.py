"""ftlab's figures (matplotlib): ``ft.plot.history(h)``, ``ft.plot.gradcam(model, x)``, ...

Every function returns the ``Figure`` (Jupyter shows it as the cell's value), draws into ``ax``
when given one, and works headless. :mod:`~ftlab.plot.training` has the figures of numbers,
:mod:`~ftlab.plot.images` those of images, :mod:`~ftlab.plot.maps` those of layer groups,
:mod:`~ftlab.plot.results` those of experiments, :mod:`~ftlab.plot.text` those of text models,
:mod:`~ftlab.plot.detection` those of detectors;
:mod:`~ftlab.plot.style` the house style.
``import ftlab`` does not import matplotlib: this package loads on first use of ``ft.plot``.
"""
from .detection import boxes, iou_examples, pr_curves
from .images import augmentations, gradcam, gradcam_maps, show_batch, top_losses
from .maps import feature_maps, group_maps, probe_by_depth
from .results import augmentation_effect, baselines, intervals, scaling, spread, tradeoff
from .style import PALETTE, STYLE
from .text import similarity, token_attributions
from .training import classification_report, compare, confusion_matrix, embedding, history, lr_find, trainable

__all__ = ["augmentations", "gradcam", "gradcam_maps", "show_batch", "top_losses", "baselines", "intervals",
           "scaling", "spread", "tradeoff", "augmentation_effect", "PALETTE", "STYLE", "classification_report", "compare",
           "confusion_matrix", "embedding", "history", "lr_find", "trainable",
           "feature_maps", "group_maps", "probe_by_depth", "similarity", "token_attributions", "boxes", "pr_curves",
           "iou_examples"]
