"""One table renderer: aligned text, Markdown and HTML from a header and rows of cells.

Everything in ftlab that shows a table (the trainable summary, a :class:`~ftlab.History`, the
class counts of a split, the lessons' summary, the widgets' run list) builds a :class:`Table`,
so they all print, render in Jupyter and export to Markdown the same way.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["Table", "table_from_dicts"]

_NUMBER = re.compile(r"^[-+]?[\d,]*\.?\d+(e[-+]?\d+)?\s*(%|\*)?( \(.*\))?$")


@dataclass
class Table:
    """A header and rows of cells (any values; shown with ``str``).

    Text columns whose cells all look like numbers are right-aligned, the others left-aligned.

    Attributes:
        header: column names.
        rows: one sequence of cells per row.
        title: shown above the table (optional).
        note: shown below it (optional).
        row_styles: per row, a CSS style for the HTML rendering (``""`` for none).
    """

    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    title: str = ""
    note: str = ""
    row_styles: Sequence[str] = field(default_factory=tuple)

    def _cells(self) -> list[list[str]]:
        return [["" if v is None else str(v) for v in row] for row in self.rows]

    def text(self) -> str:
        """The table as aligned plain text."""
        cells = self._cells()
        head = [str(h) for h in self.header]
        widths = [max([len(head[i])] + [len(r[i]) for r in cells]) for i in range(len(head))]
        right = [bool(col) and all(_NUMBER.match(v) or not v for v in col) and any(col)
                 for col in ([r[i] for r in cells] for i in range(len(head)))]

        def line(row):
            return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(row, widths, right)).rstrip()

        lines = ([self.title] if self.title else []) + [line(head)] + [line(r) for r in cells]
        return "\n".join(lines + ([self.note] if self.note else []))

    def markdown(self) -> str:
        """The table as GitHub-flavoured Markdown."""
        lines = ["| " + " | ".join(map(str, self.header)) + " |", "|" + "|".join("---" for _ in self.header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self._cells()]
        return "\n".join(([f"**{self.title}**", ""] if self.title else []) + lines + (["", self.note] if self.note else []))

    def html(self) -> str:
        """The table as HTML (what Jupyter shows)."""
        th = "".join(f"<th>{html.escape(str(h))}</th>" for h in self.header)
        styles = list(self.row_styles) + [""] * len(self.rows)
        trs = "".join((f'<tr style="{s}">' if s else "<tr>") + "".join(f"<td>{html.escape(v)}</td>" for v in r)
                      + "</tr>" for r, s in zip(self._cells(), styles))
        title = f"<b>{html.escape(self.title)}</b>" if self.title else ""
        note = f"<br><small>{html.escape(self.note)}</small>" if self.note else ""
        return f"{title}<table><tr>{th}</tr>{trs}</table>{note}"

    def __str__(self) -> str:
        return self.text()

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.html()


def table_from_dicts(rows: Sequence[dict[str, Any]], title: str = "", note: str = "") -> Table:
    """A :class:`Table` whose columns are the keys of the first row."""
    header = list(rows[0]) if rows else ["(nothing)"]
    return Table(header, [[r.get(c, "") for c in header] for r in rows], title=title, note=note)
