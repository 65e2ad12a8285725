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
from torch.nn.utils.rnn import pad_sequence

from ..batches import StepOutput, prepare, to_device
from ..errors import DataError, UsageError
from ..freezing import eval_mode
from .caching import DecoderTop, run_layers
from .data import IGNORE, InstructionSet, answer_states, chat_prompt
from .models import check_decoder

GENERATE_BATCH = 8      # greedy answers generated together
PREFIX_MIN = 8          # a shared prompt prefix at least this long is run once per batch, not once per example

__all__ = ["generate", "choice_scores", "perplexity", "Prefixed", "predict_choices", "choice_tokens", "margin_threshold",
           "decide"]


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
    prompts = [chat_prompt(tok, text, system) if chat else text for text in _texts(instructions, "an instruction")]
    context = getattr(model.config, "max_position_embeddings", None)
    for prompt in prompts:
        n = len(tok(prompt, add_special_tokens=False)["input_ids"])
        if context and n + max_new_tokens > context:
            raise DataError(f"The prompt is {n} tokens; with {max_new_tokens} new tokens it is longer than the model's "
                            f"context ({context}): shorten it.")
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    kw = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if sample else dict(do_sample=False)
    # greedy answers come a batch at a time (padded on the left, so every prompt ends where its answer begins: the
    # weights are read once a step for the whole batch); sampled ones one at a time, each from the same seed
    batch = 1 if sample else GENERATE_BATCH
    out, side = [], tok.padding_side
    try:
        tok.padding_side = "left"
        with eval_mode(model):
            for start in range(0, len(prompts), batch):
                ids = tok(prompts[start:start + batch], return_tensors="pt", padding=True, add_special_tokens=False).to(dev)
                if sample:
                    torch.manual_seed(seed)                  # transformers samples with the global generator
                seq = model.generate(**ids, max_new_tokens=max_new_tokens, pad_token_id=pad, **kw)
                out += [tok.decode(row[ids["input_ids"].shape[1]:], skip_special_tokens=True).strip() for row in seq]
    finally:
        tok.padding_side = side
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
                ids, mask = _padded([p + ans for p in chunk], tok)
                logp = F.log_softmax(model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float(), -1)
                for r, p in enumerate(chunk):
                    pos = torch.arange(len(p) - 1, len(p) - 1 + len(ans))
                    scores[start + r, c] = logp[r, pos, torch.tensor(ans)].sum().cpu()
    return scores


@torch.no_grad()
def perplexity(model: nn.Module, tok, texts: Sequence[str], max_length: int = 256, per_text: bool = False,
               batch_size: int = 16, device: str | torch.device = "auto", cut: int | str | None = None
               ) -> float | torch.Tensor:
    """``exp`` of the mean next-token loss over every token of ``texts`` (each cut at ``max_length``).

    With ``per_text`` the ``[N]`` mean token losses of each text (log-perplexities), for a paired
    comparison of two models over the same texts (``ft.lab.paired``).

    ``cut``: the first layer group that may differ between the models you score (e.g. the cut they
    were fine-tuned above). The texts' token states below it are computed once and cached on disk,
    keyed by those layers' weights (as :func:`ftlab.extract` does), and each model runs only its
    layers from the cut up: the same values, far less work when many fine-tuned copies of one model
    are scored. A model whose layers below the cut differ gets its own states, never another's.
    """
    check_decoder(model)
    if max_length < 2:
        raise UsageError("perplexity needs max_length of at least 2 tokens.")
    texts = _texts(texts, "a text")
    dev = prepare(model, device)
    rows = [tok(t, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    short = [i for i, r in enumerate(rows) if len(r) < 2]
    if short:
        raise DataError(f"perplexity needs texts of at least two tokens; text {short[0]} ({texts[short[0]]!r}) has "
                        f"{len(rows[short[0]])}.")
    sums, counts = torch.zeros(len(rows)), torch.zeros(len(rows))
    with eval_mode(model):
        below, index = (None, 0) if cut is None else _states_below(model, rows, cut, tok, batch_size, dev)
        top = None if below is None else DecoderTop(model, index, share=False)      # the layers from the cut up
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            ids, mask = _padded(chunk, tok)
            if below is None:
                states, _, head = answer_states(model, {"input_ids": ids.to(dev), "attention_mask": mask.to(dev)})
            else:
                h = pad_sequence(below[start:start + batch_size], batch_first=True)
                states, _, head = top.token_states(h.to(dev), mask.to(dev))
            keep = mask[:, 1:].bool()
            # the output layer (49,152 words) only where a next token is predicted, not on the padding
            loss = torch.zeros(keep.shape)
            loss[keep] = F.cross_entropy(head(states[:, :-1][keep.to(dev)]).float(), ids[:, 1:][keep].to(dev),
                                         reduction="none").cpu()
            sums[start:start + len(chunk)], counts[start:start + len(chunk)] = loss.sum(1), keep.sum(1)
    if per_text:
        return sums / counts
    return math.exp(sums.sum().item() / counts.sum().item())


def _states_below(model: nn.Module, rows: list[list[int]], cut, tok, batch_size: int, dev):
    """Each text's token states at group ``cut`` (one ``[tokens, D]`` tensor a text) and the cut's index,
    from the features cache when the layers below it and the texts are the same."""
    from ..caching.engine import group_weights, resolve_cut
    from ..files import atomic_save, cache_file, stable_hash
    from ..groups import layer_groups

    index, groups = resolve_cut(model, cut), layer_groups(model)
    if not 1 <= index < len(groups) - 1 or not groups[index].name.startswith("layers."):
        raise UsageError(f"perplexity's cut names a decoder layer (e.g. 'layers.26'), not {cut!r}.")
    key = stable_hash("perplexity", type(model).__name__, index, *group_weights(model, 0, index), rows)
    path = cache_file("features", f"decoder-texts-cut{index}-{key}.pt")
    if path.is_file():
        return torch.load(path, weights_only=True)["states"], index
    states = []
    for start in range(0, len(rows), batch_size):
        ids, mask = _padded(rows[start:start + batch_size], tok)
        ids, mask = ids.to(dev), mask.to(dev)
        h = run_layers(model, model.model.embed_tokens(ids), mask, 0, index - 1)
        states += [s[m.bool()].float().cpu() for s, m in zip(h, mask)]
    atomic_save({"states": states}, path)
    return states, index


def _padded(rows: list[list[int]], tok) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tok.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, s in enumerate(rows):
        ids[r, :len(s)], mask[r, :len(s)] = torch.tensor(s), 1
    return ids, mask


class Prefixed(nn.Module):
    """A frozen decoder that runs the prompt prefix every example shares (``prefix`` token ids) once per batch.

    Few-shot prompts repeat the same system turn and worked examples before every question; the
    prefix's keys and values are computed for one row and shared by the batch (the model's ``cache``),
    so an example costs its own tokens only (the prefix stops before the
    last prompt token, whose state predicts the answer). The states are the same as running each whole prompt
    (causal attention: a token never sees what comes after it). For scoring, not training.
    """

    def __init__(self, model: nn.Module, prefix: Sequence[int]):
        super().__init__()
        self.model, self.prefix = check_decoder(model), torch.as_tensor(list(prefix), dtype=torch.long)
        if len(self.prefix) < 1:
            raise UsageError("Prefixed needs a prefix of at least one token.")

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        n, prefix = len(self.prefix), self.prefix.to(input_ids.device)
        if input_ids.shape[1] <= n or not (input_ids[:, :n] == prefix).all() or not attention_mask[:, :n].all():
            raise UsageError("Every example of the batch must start with the shared prefix (the same system turn and "
                             "worked examples): build them with one ft.llm.instruction_loader(..., shots=...).")
        decoder = self.model.model                 # the same shared-start pass as training on cached states
        h = run_layers(self.model, decoder.embed_tokens(input_ids), attention_mask, 0, len(decoder.layers), shared=n)
        return decoder.norm(h), 0, self.model.lm_head


def choice_tokens(tok, choices: Sequence[str]) -> list[int]:
    """The first token of each answer (as the assistant's turn starts with it); they must differ."""
    firsts = [tok(c, add_special_tokens=False)["input_ids"][0] for c in _texts(choices, "an answer")]
    if len(set(firsts)) < len(firsts):
        raise UsageError(f"The answers {list(choices)} start with the same token, so their first tokens cannot tell "
                         "them apart: choose answers whose first words differ.")
    return firsts


def _choice_step(firsts: list[int]):
    ids = torch.tensor(firsts)

    def step(model, batch, criterion, device) -> StepOutput:
        batch = to_device(batch, device)
        states, offset, head = answer_states(model, batch)
        labels = batch["labels"][:, offset:]
        counted = labels != IGNORE
        if not counted.any(1).all():
            raise UsageError("Every example needs an answer to score (labels that are not -100).")
        start = counted.float().argmax(1)                        # each row's first answer token
        rows = torch.arange(len(start), device=start.device)
        logits = head(states[rows, start - 1])[:, ids.to(states.device)]
        match = labels[rows, start][:, None] == ids.to(labels.device)[None]
        if not match.any(1).all():
            raise UsageError("An example's answer is none of the choices: score a set whose answers are the choices.")
        targets = match.float().argmax(1)
        return StepOutput(F.cross_entropy(logits.float(), targets), len(start), logits, targets)

    return step


def predict_choices(model: nn.Module, data, tok, choices: Sequence[str], device: str | torch.device = "auto"):
    """Which of a few fixed answers the decoder finds likeliest, for every example: ``ft.Predictions``.

    The model's choice is the answer whose **first token** is the likeliest next token where the
    assistant's turn begins (teacher forcing: nothing is generated or parsed); ``probs`` are those
    tokens' probabilities renormalised over the choices, ``targets`` the index of each example's
    own answer. ``data`` is an ``ft.llm.instruction_loader`` (the prompt prefix every example shares,
    system turn and worked examples, runs once per batch: :class:`Prefixed`) or the decoder's cached
    token states (``ft.extract``: the layers above the cut run).
    """
    from ..caching.engine import by_length, loader_batch_size
    from ..train import predict

    step = _choice_step(choice_tokens(tok, choices))
    ds = getattr(data, "dataset", None)
    if isinstance(ds, InstructionSet):
        check_decoder(model)
        prefix = ds.shared_prefix()
        if len(prefix) >= PREFIX_MIN:
            model = Prefixed(model, prefix)
        # batches of similar length (little padding); predict gives the predictions back in the set's order
        data = by_length(ds, [len(it["input_ids"]) for it in ds.items], loader_batch_size(data) or 16, data.collate_fn)
    return predict(model, data, device=device, step=step)


def _margins(preds) -> torch.Tensor:
    if preds.logits.ndim != 2 or preds.logits.shape[1] != 2:
        raise UsageError("A margin threshold is for two answers: predictions of predict_choices with two choices.")
    return preds.logits[:, 1] - preds.logits[:, 0]


def margin_threshold(val_preds) -> float:
    """The threshold on ``logit(choice 1) - logit(choice 0)`` that is right most often on the **validation** predictions.

    A model that prefers one answer whatever it reads (a prompted decoder often does) may still
    rank the examples well; moving the boundary between the two answers, chosen on validation and
    then applied once to the test predictions (:func:`decide`), reads that ranking (*calibration*).
    The validation accuracy at the chosen threshold is optimistic: it was chosen there.
    """
    m = _margins(val_preds).double()
    y = val_preds.targets.long()
    if len(m) < 2 or len(set(y.tolist())) < 2:
        raise UsageError("Choosing a threshold needs validation predictions of both answers.")
    cuts = torch.cat([m.min()[None] - 1, (m.sort().values[1:] + m.sort().values[:-1]) / 2, m.max()[None] + 1])
    right = torch.stack([((m > c).long() == y).double().mean() for c in cuts])
    best = torch.nonzero(right == right.max()).flatten()
    return float(cuts[best[len(best) // 2]])          # the middle of the best (a plateau has many)


def decide(preds, threshold: float) -> torch.Tensor:
    """``[N]`` answers (0 or 1) with the boundary moved to ``threshold`` (:func:`margin_threshold`)."""
    return (_margins(preds) > threshold).long()
