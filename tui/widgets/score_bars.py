"""ScoreBars: scores as horizontal bars on one scale, with an interval and a reference mark.

Used by the eval report for multiple-choice accuracy against chance, judge scores with their
confidence intervals, win rates against 0.5 and classification accuracy against the majority
baseline. Each row is (label, value, low, high, reference); low/high/reference may be None.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static


@dataclass
class Score:
    label: str
    value: float | None
    low: float | None = None
    high: float | None = None
    reference: float | None = None  # chance, baseline or 0.5: drawn as a bar mark
    reference_label: str = "chance"


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def bars_text(scores: list[Score], lo: float = 0.0, hi: float = 1.0, width: int = 40) -> Text:
    """One line per score: label, a bar of `width` cells from lo to hi (interval as ─, reference as │), value."""
    out = Text()
    label_w = max([len(s.label) for s in scores] + [5])
    span = (hi - lo) or 1.0

    def cell(x: float) -> int:
        return max(0, min(width - 1, int(round((x - lo) / span * (width - 1)))))

    for s in scores:
        if _finite(s.low) and _finite(s.high):  # a normal-approximation interval can leave the scale (1.005)
            s = dataclasses.replace(s, low=max(lo, s.low), high=min(hi, s.high))
        out.append(f"{s.label:<{label_w}} ", style="bold")
        row = [" "] * width
        styles = [""] * width
        if _finite(s.value):
            for k in range(cell(s.value) + 1):
                row[k], styles[k] = "\u2588", "cyan"
        if _finite(s.low) and _finite(s.high):
            for k in range(cell(s.low), cell(s.high) + 1):
                if row[k] == " ":
                    row[k], styles[k] = "\u2500", "cyan"
                else:
                    styles[k] = "bright_cyan"
        if _finite(s.reference):
            k = cell(s.reference)
            row[k], styles[k] = "\u2502", "bold yellow"
        for ch, st in zip(row, styles):
            out.append(ch, style=st or "dim")
        value = f" {s.value:.3f}" if _finite(s.value) else " -"
        if _finite(s.low) and _finite(s.high):
            value += f" [{s.low:.3f}, {s.high:.3f}]"
        if _finite(s.reference):
            value += f"  ({s.reference_label} {s.reference:.3f})"
        out.append(value + "\n")
    return out


class ScoreBars(Static):
    DEFAULT_CSS = """
    ScoreBars { height: auto; padding: 0 1; }
    """

    def show(self, scores: list[Score], lo: float = 0.0, hi: float = 1.0, width: int = 36) -> None:
        self.scores = scores
        self.update(bars_text(scores, lo, hi, width) if scores else Text("(none)", style="dim"))
