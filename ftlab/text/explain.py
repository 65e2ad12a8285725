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

from ..errors import UsageError
from ..freezing import eval_mode

__all__ = ["similarities", "Attribution", "token_attributions", "confident_mistakes"]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def similarities(model: nn.Module, tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """Cosine similarities ``[N, N]`` of the model's sentence vectors (mean-pooled token states)."""
    if not texts:
        raise UsageError("similarities() needs at least one text.")
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt").to(_device(model))
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
    pred = probs.argmax(1)
    wrong = (pred != targets).nonzero().flatten()
    order = wrong[probs[wrong, pred[wrong]].argsort(descending=True)][:k]
    return [{"text": texts[i], "true": classes[int(targets[i])], "predicted": classes[int(pred[i])],
             "prob": float(probs[i, pred[i]])} for i in order.tolist()]
