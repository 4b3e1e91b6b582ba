"""fill_table: a DataTable's columns and rows at once, the columns as wide as their widest cell.

DataTable measures automatic column widths only when its message queue is idle; a header drawn
before that keeps the labels' widths and no longer lines up with the cells. Explicit widths make
the table look the same however early it is drawn (and make snapshots deterministic).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable


def as_cell(cell: object) -> object:
    """A string cell as plain Text: DataTable would read `[...]` in a run, file or token name as
    markup; a caller that wants a style passes a rich Text."""
    return Text(cell) if isinstance(cell, str) else cell


def cell_width(cell: object) -> int:
    """Columns a cell takes, as DataTable draws it."""
    return cell.cell_len if isinstance(cell, Text) else Text(str(cell)).cell_len


def fill_table(table: DataTable, columns: Sequence[str], rows: Sequence[Sequence[object]],
               keys: Sequence[str] | None = None, column_keys: Sequence[str] | None = None) -> None:
    """Replace the table's columns and rows."""
    widths = [max([cell_width(label), *(cell_width(as_cell(r[i])) for r in rows)]) for i, label in enumerate(columns)]
    table.clear(columns=True)
    for i, (label, width) in enumerate(zip(columns, widths)):
        table.add_column(label, width=width, key=column_keys[i] if column_keys else None)
    for i, row in enumerate(rows):
        table.add_row(*(as_cell(c) for c in row), key=keys[i] if keys else None)
