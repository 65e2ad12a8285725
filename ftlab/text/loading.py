"""Tokenized, seeded DataLoaders for text, with dynamic padding; your own texts as splits.

Introduced in lesson 06. :func:`loaders` tokenizes every text once (the fast tokenizer does the
whole data set in well under a second) and pads each batch only to its own longest text
(``transformers.DataCollatorWithPadding``), so short snippets cost short sequences. Batches
are dicts in the Hugging Face convention (``input_ids``, ``attention_mask``, ``token_type_ids``,
``labels``), which ``ft.fit`` / ``ft.evaluate`` / ``ft.predict`` pass as ``model(**batch)``.
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import DataError, UsageError
from ..files import stable_hash
from ..splits import Loaders, Splits, stratified_split, subset_parts
from .data import TextSet

__all__ = ["TokenizedSet", "LengthGroupedBatches", "check_max_length", "tokenizer_of", "loaders", "texts_to_splits"]


class TokenizedSet(torch.utils.data.Dataset):
    """A :class:`TextSet` tokenized once; ``ds[i]`` is a dict of token lists and the label."""

    def __init__(self, data: TextSet, tokenizer, max_length: int):
        self.data, self.max_length = data, max_length
        enc = tokenizer(data.texts, truncation=True, max_length=max_length)
        self.encodings = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        self.targets = data.labels
        self.tokenizer_name = str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__)).split("site-packages/")[-1]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> dict:
        return {**{k: v[i] for k, v in self.encodings.items()}, "labels": int(self.targets[i])}

    @property
    def texts(self) -> list[str]:
        return self.data.texts

    @property
    def lengths(self) -> list[int]:
        """Tokens per text (``[CLS]`` and ``[SEP]`` included, after truncation)."""
        return [len(ids) for ids in self.encodings["input_ids"]]

    def by_length(self) -> "TokenizedSet":
        """The same texts, shortest first (ties in their order): sequential batches of it pad little."""
        order = np.argsort(np.asarray(self.lengths), kind="stable")
        out = copy.copy(self)
        out.data = self.data.subset(order)
        out.targets = out.data.labels
        out.encodings = {k: [v[i] for i in order] for k, v in self.encodings.items()}
        return out

    def cache_key(self) -> str:
        """A hash of the token ids (what a model sees), not of the labels."""
        return stable_hash("tokens", self.max_length, [np.asarray(ids, dtype=np.int32) for ids in self.encodings["input_ids"]])

    def __repr__(self) -> str:
        return f"TokenizedSet({self.data.name!r}, {len(self)} texts, max_length={self.max_length})"


class LengthGroupedBatches(torch.utils.data.Sampler):
    """Shuffled batches of texts of similar length (Hugging Face's ``group_by_length``): less padding.

    Each epoch the texts are shuffled, cut into chunks of ``chunk`` batches (50, as Hugging Face's
    megabatches), each chunk sorted by length and cut into batches, and the batches shuffled again,
    all from one seeded ``generator`` (the loader's: ``ft.fit(seed=...)`` reseeds it). A chunk as
    large as the data set gives the same batches every epoch, in another order; smaller chunks
    pad a little more and mix the batches more.
    """

    def __init__(self, lengths, batch_size: int, generator: torch.Generator | None = None, chunk: int = 50):
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise UsageError(f"chunk must be a whole number of batches of at least 1, not {chunk!r}.")
        self.lengths, self.batch_size, self.chunk = torch.as_tensor(lengths), batch_size, chunk
        self.g = generator if generator is not None else torch.Generator().manual_seed(0)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.g)
        chunk = self.chunk * self.batch_size
        batches = []
        for c in order.split(chunk):
            c = c[torch.argsort(self.lengths[c], descending=True, stable=True)]
            batches += [b.tolist() for b in c.split(self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.g).tolist():
            yield batches[i]


def check_max_length(tokenizer, max_length) -> int:
    """``max_length`` if it is a whole number of tokens from 1 to what the tokenizer's model reads, else a UsageError."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise UsageError(f"max_length must be a whole number of tokens of at least 1, got {max_length!r} "
                         "(e.g. 64: [CLS], the text's word pieces, [SEP]; longer texts are cut).")
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and limit < 1_000_000 and max_length > limit:
        raise UsageError(f"max_length={max_length} is longer than this model reads: {limit} tokens (its position "
                         f"embeddings), so max_length must be at most {limit}; longer texts are cut.")
    return max_length


def tokenizer_of(model=None):
    """The tokenizer for ``model``: a tokenizer itself, a text model (its own, by ``model.ftlab_name``), or None (MiniLM's)."""
    if model is not None and callable(model) and not isinstance(model, torch.nn.Module):
        return model                                         # a tokenizer
    from .models import tokenizer

    return tokenizer(getattr(model, "ftlab_name", None) or "minilm")


def loaders(splits: Splits, model=None, max_length: int = 64, batch_size: int = 32, augment: str = "none",
            subset: int | float | None = None, eval_subset: int | float | None = None, seed: int = 0,
            num_workers: int = 0, eval_batch_size: int | None = None, group_by_length: bool = True) -> Loaders:
    """Train / val / test DataLoaders of tokenized text with dynamic padding.

    Args:
        splits: :class:`~ftlab.splits.Splits` of :class:`TextSet` (``ft.text.rotten_tomatoes()``).
        model: the model the batches are for (its own tokenizer is used), or a Hugging Face
            tokenizer (``ft.text.tokenizer()``); None: MiniLM's tokenizer.
        max_length: texts longer than this many tokens are cut.
        batch_size: training batch size.
        augment: ``"none"`` (text has no label-preserving augmentation in ftlab).
        subset: a stratified subset of the training split (texts per class, or a fraction).
        eval_subset: the same for validation and test (quick runs only).
        seed: shuffling and subset seed: the same seed gives the same batches.
        num_workers: DataLoader worker processes (0 = in the main process).
        eval_batch_size: batch size of val/test (default: 2 x batch_size).
        group_by_length: training batches of snippets of similar length (:class:`LengthGroupedBatches`,
            Hugging Face's ``group_by_length``): less padding, about 1.5x faster epochs on a CPU; and
            the validation and test snippets stored shortest first (``L.test.dataset`` is in that
            order, its ``texts`` and ``targets`` too), which halves the time to score them.
            False: plain shuffling, and val / test in the order of the split.

    Returns:
        :class:`~ftlab.splits.Loaders` (``train``, ``val``, ``test``, ``classes``, ``config``).
    """
    from transformers import DataCollatorWithPadding

    if not isinstance(splits, Splits) or not isinstance(splits.train, TextSet):
        raise UsageError(f"ft.text.loaders needs the Splits of a text data set (ft.text.rotten_tomatoes(), "
                         f"ft.text.texts_to_splits(...)), not {type(splits).__name__}.")
    tokenizer = tokenizer_of(model)
    check_max_length(tokenizer, max_length)
    if augment != "none":
        raise UsageError(f"Text has no augmentation preset in ftlab (augment={augment!r}): use 'none'.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size must be a whole number of at least 1, got {batch_size!r}.")
    parts = subset_parts(splits, subset, eval_subset, seed)
    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    made = {}
    for split, part in parts.items():
        ds = TokenizedSet(part, tokenizer, max_length)
        if split != "train":
            ds = ds.by_length() if group_by_length else ds
            made[split] = DataLoader(ds, collate_fn=collate, batch_size=eval_batch_size or 2 * batch_size,
                                     num_workers=num_workers)
            continue
        g = torch.Generator().manual_seed(seed)
        made[split] = (DataLoader(ds, batch_sampler=LengthGroupedBatches(ds.lengths, batch_size, g), collate_fn=collate,
                                  generator=g, num_workers=num_workers) if group_by_length else
                       DataLoader(ds, collate_fn=collate, batch_size=batch_size, shuffle=True, generator=g,
                                  num_workers=num_workers))
    used = {"max_length": max_length, "batch_size": batch_size, "subset": subset, "seed": seed, "data": splits.name,
            "group_by_length": group_by_length,
            "tokenizer": made["train"].dataset.tokenizer_name}
    return Loaders(made["train"], made["val"], made["test"], list(splits.classes), used)


def _whole(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _label_indices(labels: list, classes: Sequence[str] | None) -> tuple[list[str], list[int]]:
    """Class names and one class index per label; labels are all names or all whole numbers, checked against ``classes``."""
    import difflib

    if classes is not None and len(set(map(str, classes))) != len(list(classes)):
        raise DataError(f"classes {list(classes)} names a class twice: give each class once, index = label.")
    names = [isinstance(lab, str) for lab in labels]
    if any(names) and not all(names):
        i = names.index(not names[0])
        raise DataError(f"Labels must be all class names or all class indices; label 0 is {labels[0]!r}, label {i} is "
                        f"{labels[i]!r}.")
    if all(names):
        classes = sorted(set(labels)) if classes is None else [str(c) for c in classes]
        for i, lab in enumerate(labels):
            if lab not in classes:
                close = difflib.get_close_matches(lab, classes, n=1)
                raise DataError(f"Label {i} is {lab!r}, which is not one of the classes {classes}"
                                f"{f' (did you mean {close[0]!r}?)' if close else ''}: fix the label, or add it to classes.")
        return classes, [classes.index(lab) for lab in labels]
    bad = next((lab for lab in labels if not _whole(lab)), None)
    if bad is not None:
        raise DataError(f"Labels must be class names (str) or class indices (whole numbers), found {bad!r} "
                        f"({type(bad).__name__}).")
    index = [int(lab) for lab in labels]
    classes = [str(c) for c in range(max(index) + 1)] if classes is None else [str(c) for c in classes]
    out = [v for v in index if not 0 <= v < len(classes)]
    if out:
        raise DataError(f"Label {out[0]} is not a class index 0..{len(classes) - 1} of classes {classes}: "
                        "give indices into classes, or class names.")
    return classes, index


def texts_to_splits(texts: Sequence[str], labels: Sequence[int | str], classes: Sequence[str] | None = None,
                    val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0, name: str = "texts") -> Splits:
    """Your own labelled texts as stratified train / val / test splits (duplicates kept once).

    Args:
        texts: the texts.
        labels: one per text: class indices, or class names (then ``classes`` defaults to their sorted set).
        classes: class names, index = label.
        val_fraction, test_fraction: shares held out, stratified by label.
        seed: seed of the split.
        name: a name for the data.

    Raises:
        DataError: no texts, texts and labels of different lengths, fewer than two classes, or a
            class too small to be in every split.
    """
    texts, labels = list(texts), list(labels)
    if not texts:
        raise DataError("No texts were given: pass a list of strings and one label per string.")
    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} texts but {len(labels)} labels: give one label per text.")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(f"val_fraction={val_fraction!r} and test_fraction={test_fraction!r} must each be between 0 "
                        "and 1 and leave texts for training (e.g. 0.1 and 0.2).")
    classes, index = _label_indices(labels, classes)
    data = TextSet(texts, torch.as_tensor(index), classes, name=name)
    seen: dict[str, int] = {}
    for i, t in enumerate(data.texts):
        seen.setdefault(t.strip().lower(), i)
    data = data.subset(sorted(seen.values()))
    present = {c: n for c, n in data.counts().items() if n}
    if len(present) < 2:
        raise DataError(f"All texts are in one class ({', '.join(present) or 'none'}): a classifier needs texts "
                        "of at least two classes.")
    small = {c: n for c, n in present.items() if n < 3}
    if small:
        raise DataError(f"Classes {small} have fewer than 3 texts: each class needs at least one text in "
                        "train, val and test.")
    y = data.labels.numpy()
    rest, test = stratified_split(len(data), y, test_fraction, seed)
    fit, val = stratified_split(len(rest), y[rest], val_fraction / (1 - test_fraction), seed)
    return Splits(data.subset(rest[fit], f"{name}/train"), data.subset(rest[val], f"{name}/val"),
                  data.subset(test, f"{name}/test"), name=name)
