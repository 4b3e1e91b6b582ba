"""ConfusionMatrix: counts of true class (rows) against predicted class (columns), shaded by share.

Fed a `confusion_matrix` ([true][pred] counts, as core.eval.metrics.classification_report and the
classification objective's validation return it) and the class names; the diagonal is green, the
errors red, each cell shaded by its share of its row, and every row ends with that class's recall.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.widgets import Static


def confusion_table(matrix: Sequence[Sequence[int]], names: Sequence[str] | None = None, title: str = "") -> Table:
    n = len(matrix)
    names = [str(x) for x in (names or range(n))]
    table = Table(title=title or None, show_edge=False, pad_edge=False, box=None, padding=(0, 1))
    table.add_column("true \\ pred", style="bold")
    for name in names:
        table.add_column(name[:10], justify="right")
    table.add_column("recall", justify="right", style="dim")
    for i, row in enumerate(matrix):
        total = sum(row)
        cells = []
        for j, c in enumerate(row):
            share = c / total if total else 0.0
            # 4 shades per colour keep it readable in 256 colours
            level = 0 if share == 0 else 1 + min(3, int(share * 4))
            if i == j:
                style = ("", "on color(22)", "on color(28)", "on color(34)", "black on color(40)")[level]
            else:
                style = ("", "on color(52)", "on color(88)", "on color(124)", "on color(160)")[level]
            cells.append(Text(f"{c:,}", style=style))
        recall = f"{row[i] / total:.2f}" if total else "-"
        table.add_row(Text(names[i][:12]), *cells, recall)
    return table


class ConfusionMatrix(Static):
    DEFAULT_CSS = """
    ConfusionMatrix { height: auto; padding: 0 1; }
    """

    def show(self, matrix: Sequence[Sequence[int]] | None, names: Sequence[str] | None = None, title: str = "") -> None:
        self.matrix = matrix
        if not matrix:
            self.update(Text("(no confusion matrix yet)", style="dim"))
            return
        self.update(confusion_table(matrix, names, title))
