"""What a decoder says and how sure it is: generation, scoring fixed answers, perplexity.

For lesson 09. :func:`generate` answers instructions (greedy, or sampled with a fixed seed);
:func:`choice_scores` asks how likely each of a few fixed answers is after a prompt (how a decoder
is scored on a labelled task such as "fresh or rotten?", zero-shot, few-shot or fine-tuned, without
parsing free text); :func:`perplexity` measures how well the model predicts held-out text (what
fine-tuning on one task may cost it elsewhere).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..batches import prepare
from ..errors import DataError, UsageError
from ..freezing import eval_mode
from .data import chat_prompt
from .models import check_decoder

__all__ = ["generate", "choice_scores", "perplexity"]


def _texts(prompts: str | Sequence[str], what: str) -> list[str]:
    items = [prompts] if isinstance(prompts, str) else list(prompts)
    if not items or any(not isinstance(p, str) or not p.strip() for p in items):
        raise DataError(f"{what} must be non-empty text (or a list of them), not {prompts!r}.")
    return items


@torch.no_grad()
def generate(model: nn.Module, tok, instructions: str | Sequence[str], max_new_tokens: int = 40, chat: bool = True,
             sample: bool = False, temperature: float = 0.7, seed: int = 0, system: str | None = None,
             device: str | torch.device = "auto") -> list[str]:
    """The model's answers: greedy (the most likely token each step) or sampled (``temperature``, seeded).

    Args:
        instructions: one instruction or a list; with ``chat`` each is wrapped in the chat template
            (:func:`~ftlab.llm.data.chat_prompt`), else it is continued as plain text.
        max_new_tokens: the longest answer, in tokens (it ends earlier at the end-of-turn token).
    """
    check_decoder(model)
    dev = prepare(model, device)
    out = []
    with eval_mode(model):
        for text in _texts(instructions, "an instruction"):
            prompt = chat_prompt(tok, text, system) if chat else text
            ids = tok(prompt, return_tensors="pt", add_special_tokens=False).to(dev)
            context = getattr(model.config, "max_position_embeddings", None)
            if context and ids["input_ids"].shape[1] + max_new_tokens > context:
                raise DataError(f"The prompt is {ids['input_ids'].shape[1]} tokens; with {max_new_tokens} new tokens "
                                f"it is longer than the model's context ({context}): shorten it.")
            kw = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if sample else dict(do_sample=False)
            if sample:
                torch.manual_seed(seed)                  # transformers samples with the global generator
            seq = model.generate(**ids, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id or tok.eos_token_id,
                                 **kw)
            out.append(tok.decode(seq[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return out


@torch.no_grad()
def choice_scores(model: nn.Module, tok, prompts: Sequence[str], choices: Sequence[str], batch_size: int = 16,
                  device: str | torch.device = "auto") -> torch.Tensor:
    """``[N, C]`` log-probabilities of each fixed answer after each prompt (summed over its tokens).

    The prompts are used as they are (build them with :func:`~ftlab.llm.data.chat_prompt`, with
    in-context examples for few-shot); ``argmax(1)`` is the model's choice. Every answer is scored
    by teacher forcing, so none is parsed from free text.
    """
    check_decoder(model)
    prompts, choices = _texts(prompts, "a prompt"), _texts(choices, "an answer")
    dev = prepare(model, device)
    answer_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in choices]
    scores = torch.zeros(len(prompts), len(choices))
    with eval_mode(model):
        for start in range(0, len(prompts), batch_size):
            chunk = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts[start:start + batch_size]]
            for c, ans in enumerate(answer_ids):
                seqs = [p + ans for p in chunk]
                width = max(map(len, seqs))
                ids = torch.full((len(seqs), width), tok.pad_token_id or 0, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for r, s in enumerate(seqs):
                    ids[r, :len(s)], mask[r, :len(s)] = torch.tensor(s), 1
                logp = F.log_softmax(model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float(), -1)
                for r, p in enumerate(chunk):
                    pos = torch.arange(len(p) - 1, len(p) - 1 + len(ans))
                    scores[start + r, c] = logp[r, pos, torch.tensor(ans)].sum().cpu()
    return scores


@torch.no_grad()
def perplexity(model: nn.Module, tok, texts: Sequence[str], max_length: int = 256,
               device: str | torch.device = "auto") -> float:
    """``exp`` of the mean next-token loss over every token of ``texts`` (each cut at ``max_length``)."""
    check_decoder(model)
    if max_length < 2:
        raise UsageError("perplexity needs max_length of at least 2 tokens.")
    dev = prepare(model, device)
    total, count = 0.0, 0
    with eval_mode(model):
        for text in _texts(texts, "a text"):
            ids = tok(text, return_tensors="pt", add_special_tokens=False, truncation=True,
                      max_length=max_length)["input_ids"].to(dev)
            if ids.shape[1] < 2:
                continue
            logits = model(input_ids=ids).logits[0, :-1].float()
            total += F.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
            count += ids.shape[1] - 1
    if not count:
        raise DataError("perplexity needs texts of at least two tokens.")
    return math.exp(total / count)
