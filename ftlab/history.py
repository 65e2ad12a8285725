"""History: what happened in each epoch of a training run (losses, accuracies, learning rates, time)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .tables import Table

__all__ = ["History"]

_COLUMNS = [("epoch", "{}"), ("train_loss", "{:.4f}"), ("train_acc", "{:.3f}"), ("val_loss", "{:.4f}"),
            ("val_acc", "{:.3f}"), ("lr", "{:.2e}"), ("trainable", "{:,}"), ("seconds", "{:.1f}")]


@dataclass
class History:
    """Per-epoch records of a run; ``rows`` is a plain list of dicts (no pandas needed).

    Each row has ``epoch``, ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``lr``
    (the head's rate at the end of the epoch), ``lrs`` (every param group's), ``seconds``,
    ``trainable`` (trainable parameter count), ``stage`` and ``unfrozen`` (True when the
    trainable set changed at the start of this epoch). ``stopped`` says why a run ended
    early (``"early stopping"``, ``"interrupted"``, ``"non-finite loss ..."``), ``best_epoch``
    the best epoch by the monitored score and ``kept_epoch`` the epoch whose weights the model
    holds at the end: the best one with ``restore_best=True``, else the last one.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    kept_epoch: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        """``h["val_acc"]`` is the list of that column; ``h[-1]`` the last row."""
        if isinstance(key, str):
            return [r.get(key) for r in self.rows]
        return self.rows[key]

    def to_list(self) -> list[dict[str, Any]]:
        """The rows as plain dicts (copies)."""
        return [dict(r) for r in self.rows]

    @property
    def best(self) -> dict[str, Any] | None:
        """The row of the best epoch by the monitored score (the weights kept only with ``restore_best``)."""
        return next((r for r in self.rows if r["epoch"] == self.best_epoch), None)

    @property
    def kept(self) -> dict[str, Any] | None:
        """The row of the epoch whose weights the model ended with (``kept_epoch``; the best one when unset)."""
        epoch = self.best_epoch if self.kept_epoch is None else self.kept_epoch
        return next((r for r in self.rows if r["epoch"] == epoch), None)

    @property
    def seconds(self) -> float:
        return sum(r["seconds"] for r in self.rows)

    def unfreeze_epochs(self) -> list[int]:
        """Epochs at whose start the trainable set changed (staged training)."""
        return [r["epoch"] for r in self.rows if r.get("unfrozen")]

    def __add__(self, other: "History") -> "History":
        """Chain two stages: epochs and stages continue counting.

        ``best_epoch`` and ``kept_epoch`` are the later stage's when it has them: its weights are
        the ones the model holds after that stage.
        """
        offset = len(self.rows)
        stage = max((r.get("stage", 0) for r in self.rows), default=-1) + 1
        rows = self.to_list() + [{**r, "epoch": r["epoch"] + offset, "stage": stage + r.get("stage", 0),
                                  "unfrozen": r.get("unfrozen") or i == 0} for i, r in enumerate(other.rows)]
        best = other.best_epoch + offset if other.best_epoch is not None else self.best_epoch
        if other.kept_epoch is not None or other.best_epoch is not None:     # the later stage set the weights
            kept = None if other.kept_epoch is None else other.kept_epoch + offset
        else:
            kept = self.kept_epoch
        return History(rows, best, other.stopped or self.stopped, {**self.meta, **other.meta}, kept)

    def table(self) -> Table:
        """The rows as a :class:`~ftlab.tables.Table` (the kept epoch starred, the best one marked when it differs)."""
        cols = [c for c, _ in _COLUMNS if any(c in r for r in self.rows)]
        fmt = dict(_COLUMNS)
        body = []
        for r in self.rows:
            cells = [fmt[c].format(r[c]) if r.get(c) is not None else "" for c in cols]
            kept = self.kept
            if kept is not None and r["epoch"] == kept["epoch"]:
                cells[0] += " *"
            elif r["epoch"] == self.best_epoch:
                cells[0] += " +"
            body.append(cells)
        note = "* the weights kept" + (" (the best epoch)" if self.kept is self.best else "; + the best epoch")
        note += f"; stopped: {self.stopped}" if self.stopped else ""
        return Table(cols, body, note=note)

    def __repr__(self) -> str:
        return self.table().text()

    def _repr_html_(self) -> str:
        return self.table().html()
