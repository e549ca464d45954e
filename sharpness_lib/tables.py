"""Markdown tables: every table the library or a chapter prints goes through here.

One escaping rule (:func:`escape_cell`) for headers and cells alike: GitHub-flavoured
Markdown ends a cell at any unescaped ``|``, so ``max |f(x_i) - y_i|``, ``||∇f||²`` or
``median |f|`` would split a row; ``|`` becomes ``\\|`` and a line break becomes a space (a
row is one line).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["MarkdownTable", "escape_cell", "format_cell", "markdown_table"]


def escape_cell(text: Any) -> str:
    """``text`` as the content of one GFM table cell (header or body): ``|`` escaped, line
    breaks replaced by spaces."""
    s = str(text)
    s = s.replace("\\|", "|")  # already escaped: escape once, not twice
    return (
        s.replace("|", "\\|").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    )


def format_cell(v: Any, digits: int = 4) -> str:
    """A cell value as text: floats to ``digits`` significant digits, anything else by str;
    then escaped (:func:`escape_cell`)."""
    if isinstance(v, (float, np.floating)):
        return escape_cell(f"{v:.{digits}g}")
    return escape_cell(v)


class MarkdownTable:
    """Rows (dicts with the same keys) shown as a Markdown table in a notebook or the book.

    Displays through ``_repr_markdown_``, so no IPython import is needed; ``str()`` gives the
    Markdown text. Floats are rounded to ``digits`` significant digits (pre-format a column as
    strings to choose another format); headers and cells are escaped alike.
    """

    def __init__(self, rows: Sequence[Mapping[str, Any]], digits: int = 4):
        if not rows:
            raise ValueError("a table needs at least one row.")
        self.rows, self.digits = [dict(r) for r in rows], digits

    def __str__(self) -> str:
        head = list(self.rows[0])
        lines = [
            "| " + " | ".join(escape_cell(h) for h in head) + " |",
            "|" + "---|" * len(head),
        ]
        lines += [
            "| "
            + " | ".join(format_cell(r.get(k, ""), self.digits) for k in head)
            + " |"
            for r in self.rows
        ]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return str(self)


def markdown_table(rows: Sequence[Mapping[str, Any]], digits: int = 4) -> MarkdownTable:
    """Rows of results as a Markdown table (what the chapters print next to their figures)."""
    return MarkdownTable(rows, digits)
