"""Looking inside a text classifier: sentence similarities, token attributions, the most confident mistakes.

Introduced in lesson 06. :func:`similarities` compares the model's sentence vectors (what the
pretrained encoder already knows); :func:`token_attributions` says which tokens pushed a
prediction, by **gradient x input** on the token embeddings (the gradient of the predicted
class's logit with respect to each token's input vector, dotted with that vector) or by
**occlusion** (the drop in the predicted class's probability when a token is replaced by
``[MASK]``); :func:`confident_mistakes` lists the wrong predictions the model was surest of.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..batches import prepare
from ..errors import UsageError
from ..freezing import eval_mode
from ..train import evaluate as evaluate_loader
from ..train import named_predictions
from .data import TextSet, check_texts
from .loading import TokenizedSet, check_max_length, tokenizer_of

__all__ = ["METRIC", "predict_texts", "evaluate", "similarities", "Attribution", "token_attributions", "confident_mistakes"]


METRIC = "acc"
"""The primary metric of :func:`evaluate` (accuracy)."""


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict_texts(model: nn.Module, texts: Sequence[str], classes: Sequence[str] | None = None, tokenizer=None,
                  max_length: int = 128, batch_size: int = 64, device: str | torch.device = "auto") -> dict:
    """Predictions for raw texts: class probabilities, predicted labels and their names.

    Args:
        model: a text classifier (:class:`~ftlab.text.SentenceClassifier`).
        texts: a list of strings (one string: wrap it in a list).
        classes: class names, index = label (default ``"0"``, ``"1"``, ...).
        tokenizer: default the model's own (``ft.text.tokenizer()`` for MiniLM).
        max_length: longer texts are cut to this many tokens (at most the model's limit).
        batch_size, device: how the model runs.

    Returns:
        ``{"probs": [N, C] tensor, "labels": [N] tensor, "names": list of str}``.
    """
    texts = check_texts(texts)
    tokenizer = tokenizer_of(model if tokenizer is None else tokenizer)
    check_max_length(tokenizer, max_length)
    dev = prepare(model, device)
    probs = []
    with eval_mode(model):
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i: i + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt").to(dev)
            probs.append(model(**enc).logits.float().softmax(-1).cpu())
    return named_predictions(torch.cat(probs), classes)


def evaluate(model: nn.Module, data, batch_size: int = 64, device: str | torch.device = "auto") -> dict[str, float]:
    """Loss, accuracy (the primary metric, :data:`METRIC`) and count of a text classifier on a split.

    Args:
        model: a text classifier.
        data: a loader of ``ft.text.loaders``, cached features, or a :class:`~ftlab.text.TextSet`
            (tokenized with the model's tokenizer, up to 128 tokens).
        batch_size, device: how the model runs (a loader keeps its own batch size).

    Returns:
        ``{"loss", "acc", "n"}``.
    """
    if isinstance(data, TextSet):
        from transformers import DataCollatorWithPadding

        tok = tokenizer_of(model)
        data = DataLoader(TokenizedSet(data, tok, 128), batch_size=batch_size,
                          collate_fn=DataCollatorWithPadding(tok, return_tensors="pt"))
    return evaluate_loader(model, data, device=device)


@torch.no_grad()
def similarities(model: nn.Module, tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """Cosine similarities ``[N, N]`` of the model's sentence vectors (mean-pooled token states)."""
    texts = check_texts(texts)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt").to(_device(model))
    with eval_mode(model):
        v = F.normalize(model.embed(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")), dim=-1)
    return (v @ v.T).cpu()


class Attribution(NamedTuple):
    """Per-token scores of one prediction: positive = pushed toward the predicted class."""

    text: str
    tokens: list[str]
    scores: torch.Tensor
    predicted: int
    prob: float
    method: str


def token_attributions(model: nn.Module, tokenizer, text: str, method: str = "grad_x_input",
                       target: int | None = None) -> Attribution:
    """Which tokens drove the prediction for ``text``.

    Args:
        model: a :class:`~ftlab.text.SentenceClassifier`.
        tokenizer: its tokenizer.
        text: one text.
        method: ``"grad_x_input"`` or ``"occlusion"``.
        target: the class to explain (default: the predicted one).

    Returns:
        :class:`Attribution` (``[CLS]`` and ``[SEP]`` included, scored like any token).
    """
    if method not in ("grad_x_input", "occlusion"):
        raise UsageError(f"Unknown attribution method {method!r}: use 'grad_x_input' or 'occlusion'.")
    if not isinstance(text, str):
        raise UsageError(f"token_attributions explains one text (a str), got {type(text).__name__}: pass texts one by one.")
    check_texts([text], "text")
    n_classes = model.classifier.out_features if hasattr(model, "classifier") else None
    if target is not None and (isinstance(target, bool) or not isinstance(target, int)
                               or not 0 <= target < (n_classes or target + 1)):
        raise UsageError(f"target must be a class index 0..{(n_classes or 1) - 1}, got {target!r}.")
    enc = tokenizer([text], truncation=True, max_length=128, return_tensors="pt").to(_device(model))
    ids, mask = enc["input_ids"], enc["attention_mask"]
    tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    with eval_mode(model):
        with torch.no_grad():
            probs = model(input_ids=ids, attention_mask=mask).logits.softmax(-1)[0]
        cls = int(probs.argmax()) if target is None else int(target)
        if method == "occlusion":
            masked = ids.repeat(len(tokens), 1)
            masked[torch.arange(len(tokens)), torch.arange(len(tokens))] = tokenizer.mask_token_id
            with torch.no_grad():
                p = model(input_ids=masked, attention_mask=mask.repeat(len(tokens), 1)).logits.softmax(-1)[:, cls]
            scores = probs[cls] - p
        else:
            emb = model.bert.embeddings.word_embeddings(ids).detach().requires_grad_(True)
            with torch.enable_grad():
                logit = model(inputs_embeds=emb, attention_mask=mask).logits[0, cls]
                (grad,) = torch.autograd.grad(logit, emb)
            scores = (grad * emb).sum(-1)[0]
    return Attribution(text, tokens, scores.detach().cpu(), cls, float(probs[cls]), method)


def confident_mistakes(texts: Sequence[str], probs: torch.Tensor, targets: torch.Tensor, classes: Sequence[str],
                       k: int = 5) -> list[dict]:
    """The ``k`` wrong predictions with the highest confidence: text, truth, prediction, probability."""
    probs, targets = torch.as_tensor(probs), torch.as_tensor(targets)
    if probs.ndim != 2 or len(probs) != len(texts) or len(targets) != len(texts) or probs.shape[1] != len(classes):
        raise UsageError(f"confident_mistakes needs one row of {len(classes)} class probabilities and one target per "
                         f"text: got {len(texts)} texts, probs {tuple(probs.shape)}, {len(targets)} targets.")
    pred = probs.argmax(1)
    wrong = (pred != targets).nonzero().flatten()
    order = wrong[probs[wrong, pred[wrong]].argsort(descending=True)][:k]
    return [{"text": texts[i], "true": classes[int(targets[i])], "predicted": classes[int(pred[i])],
             "prob": float(probs[i, pred[i]])} for i in order.tolist()]
