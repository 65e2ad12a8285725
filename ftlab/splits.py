"""What every modality's data shares: train / val / test :class:`Splits`, stratified subsets and splits,
and the :class:`Loaders` of a run.

A data set here is anything with ``targets`` (int64 tensor), ``classes``, ``name``, ``counts()``,
``subset(indices)`` and ``len()``: ftlab's :class:`~ftlab.vision.ImageSet` and
:class:`~ftlab.text.TextSet` are two.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader

from .errors import DataError, UsageError
from .tables import Table

__all__ = ["Splits", "Loaders", "Draws", "DATASETS", "register_dataset", "dataset", "stratified_split",
           "stratified_subset", "subset_parts", "class_share_draw"]

DATASETS: dict[str, tuple[str, Callable[..., "Splits"]]] = {}
"""Every data set ftlab knows by name: ``{name: (modality, function giving its Splits)}``."""


def register_dataset(name: str, modality: str, make: Callable[..., "Splits"]) -> None:
    """Make ``ft.<modality>.dataset(name)`` (and ``ftlab.splits.dataset(name)``) give ``make(**kwargs)``."""
    DATASETS[name] = (modality, make)


def dataset(name: str, modality: str | None = None, **kwargs) -> "Splits":
    """A data set by name, from the one registry (:data:`DATASETS`); ``modality`` restricts the names.

    Raises:
        DataError: an unknown name, with the close matches and the known names.
    """
    known = [n for n, (m, _) in DATASETS.items() if modality in (None, m)]
    if name in known:
        return DATASETS[name][1](**kwargs)
    close = difflib.get_close_matches(str(name), known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    what = f"{modality} data set" if modality else "data set"
    raise DataError(f"Unknown {what} {name!r}.{hint} Known: {', '.join(known) or 'none'}.")


@dataclass
class Splits:
    """The train / val / test parts of one data set. ``print(splits)`` shows class counts."""

    train: Any
    val: Any
    test: Any
    name: str = "data"

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: count}}``."""
        return {s: getattr(self, s).counts() for s in ("train", "val", "test")}

    def table(self) -> Table:
        """Class counts per split as a :class:`~ftlab.tables.Table`."""
        body = [[split, *c.values(), sum(c.values())] for split, c in self.counts().items()]
        return Table(["split", *self.classes, "total"], body, title=self.name)

    def __repr__(self) -> str:
        return self.table().text()

    def _repr_html_(self) -> str:
        return self.table().html()


@dataclass
class Loaders:
    """The three DataLoaders of a run plus what they were built with."""

    train: DataLoader
    val: DataLoader
    test: DataLoader
    classes: list[str]
    config: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):  # allows ``train, val, test, classes, config = loaders(...)``
        return iter((self.train, self.val, self.test, self.classes, self.config))


def stratified_split(n_items: int, strata, fraction: float, seed: int):
    """Indices ``0..n_items-1`` split into (kept, held out), stratified by ``strata``, seeded."""
    idx = np.arange(n_items)
    try:
        return train_test_split(idx, test_size=fraction, stratify=strata, random_state=seed)
    except ValueError as err:
        k = len(np.unique(np.asarray(strata)))
        raise DataError(f"Cannot hold out {fraction:.0%} of {n_items} items with all {k} classes on both sides "
                        f"({err}): give more items per class, or a larger held-out fraction.") from None


def _per_class(targets: np.ndarray, take, seed: int) -> np.ndarray:
    """Sorted positions: ``k`` items of each class ``c`` of ``take`` (``(c, k)`` pairs, in that order), each
    class shuffled with one generator seeded ``seed`` (what both stratified draws share)."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(targets == c))[:k] for c, k in take]))


def stratified_subset(data, subset: int | float, seed: int = 0):
    """A stratified, seeded subset: ``int`` = items per class, ``float`` in (0, 1] = fraction per class.

    Raises:
        DataError: more items per class than a class has, or a fraction outside (0, 1].
    """
    if getattr(data, "targets", None) is None:               # no class per item (tiles with boxes): one stratum
        counts, targets = {"items": len(data)}, np.zeros(len(data), dtype=np.int64)
    else:
        counts, targets = data.counts(), data.targets.numpy()
    if isinstance(subset, bool) or not isinstance(subset, (int, float)):
        raise DataError(f"subset must be an int (items per class) or a float fraction, not {subset!r}.")
    if isinstance(subset, float):
        if not 0 < subset <= 1:
            raise DataError(f"subset={subset} is not a fraction in (0, 1]; use e.g. 0.1 for 10 % "
                            "or an int for a number of items per class.")
        take = {c: max(1, round(n * subset)) for c, n in enumerate(counts.values())}
    else:
        small = {name: n for name, n in counts.items() if n < subset}
        if subset < 1 or small:
            raise DataError(f"subset={subset} items per class is more than {data.name} has: "
                            f"{small or counts}. Use at most {min(counts.values())} or a fraction like 0.1.")
        take = {c: subset for c in range(len(counts))}
    return data.subset(_per_class(targets, take.items(), seed))


def class_share_draw(targets, n: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of ``n`` of ``targets`` drawn with ``seed``, every class in its share (stratified, nested).

    Each class gets ``round(n * its share)`` items (at least one); for one seed a smaller draw is the start
    of a larger one, so a curve over training-set sizes adds examples rather than drawing new ones.

    Raises:
        UsageError: ``n`` is not between the number of classes and the number of items.
    """
    y = np.asarray(targets)
    classes, counts = np.unique(y, return_counts=True)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not len(classes) <= n <= len(y):
        raise UsageError(f"Cannot draw {n!r} of {len(y)} items with every one of the {len(classes)} classes: "
                         f"ask for an int from {len(classes)} to {len(y)}, or draw from more items.")
    take = np.maximum(1, np.round(n * counts / len(y)).astype(int))
    return _per_class(y, zip(classes, take), seed)


class Draws:
    """Training sets drawn per seed from one whole split, and the union of them to extract once.

    Each seed draws its own ``sizes`` items from ``data`` (:func:`class_share_draw`: every class in its
    share, nested over sizes), so runs on different seeds see different training sets, as a new
    collection of data would give. Only the union of the draws (:attr:`pool`) needs features:
    extract ``pool`` in its order, and :meth:`take` gives one seed's draw of them.

    Example::

        draws = ft.lab.Draws(splits.train, [40, 300], seeds=[0, 1, 2])
        pool = ft.Splits(draws.pool, splits.val, splits.test, splits.name)   # train: only the drawn items
        f = ft.extract(model, ft.vision.loaders(pool, model).train, cut="head")
        draws.take(f, 300, seed=1)          # seed 1's 300 training items, as features
    """

    def __init__(self, data, sizes, seeds):
        if getattr(data, "targets", None) is None:
            raise UsageError("Draws draws by class: the data need one class label per item (.targets).")
        self.data, self.sizes, self.seeds = data, sorted(sizes), list(seeds)
        if not self.sizes or not self.seeds:
            raise UsageError("Draws needs at least one size and one seed.")
        y = np.asarray(data.targets)
        self.index = {(n, s): class_share_draw(y, n, s) for n in self.sizes for s in self.seeds}
        self.positions = np.unique(np.concatenate(list(self.index.values())))    # sorted indices into ``data``
        self.pool = data.subset(self.positions)
        self._at = {int(i): k for k, i in enumerate(self.positions)}

    def take(self, features, n: int, seed: int):
        """Seed ``seed``'s draw of ``n`` items from ``features`` extracted over :attr:`pool`, in pool order."""
        if (n, seed) not in self.index:
            raise UsageError(f"No draw of {n} items for seed {seed}: these Draws have sizes {self.sizes} and "
                             f"seeds {self.seeds}.")
        if len(features.y) != len(self.positions):
            raise UsageError(f"The features hold {len(features.y)} items, the pool {len(self.positions)}: extract "
                             "them from Draws.pool, in its order.")
        return features.subset([self._at[int(i)] for i in self.index[n, seed]])

    def shared(self, n: int) -> tuple[int, int]:
        """The fewest and the most items that two seeds' draws of ``n`` have in common."""
        if len(self.seeds) < 2:
            return (0, 0)
        sets = [set(self.index[n, s].tolist()) for s in self.seeds]
        common = [len(a & b) for i, a in enumerate(sets) for b in sets[i + 1:]]
        return min(common), max(common)

    def __repr__(self) -> str:
        return (f"Draws({len(self.seeds)} seeds x sizes {self.sizes} from {len(self.data)} items; "
                f"pool of {len(self.positions)} to extract)")


def subset_parts(splits: Splits, subset: int | float | None, eval_subset: int | float | None, seed: int) -> dict:
    """``{"train", "val", "test"}`` of ``splits``, each cut to a stratified subset where asked (what loaders build on)."""
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    if subset is not None:
        parts["train"] = stratified_subset(parts["train"], subset, seed)
    if eval_subset is not None:
        parts["val"] = stratified_subset(parts["val"], eval_subset, seed)
        parts["test"] = stratified_subset(parts["test"], eval_subset, seed)
    return parts
