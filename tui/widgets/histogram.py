"""Histogram: bars of counts (a length histogram, class balance) drawn with plotext, with an
optional vertical marker (the context length)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from textual_plotext import PlotextPlot


def integer_ticks(top: float, n: int = 4) -> list[int]:
    """Whole-number axis ticks from 0 past `top`, at most n steps of 1, 2, 5, 10, 20, 50, ...
    (counts are never fractional, so the axis should not say 2.5 documents)."""
    k = 0
    while True:
        for m in (1, 2, 5):
            step = m * 10**k
            if top / step <= n:
                return list(range(0, math.ceil(top / step) * step + 1, step))
        k += 1


class Histogram(PlotextPlot):
    DEFAULT_CSS = """
    Histogram { height: 1fr; min-height: 6; }
    """

    def __init__(self, title: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.labels: list[str] = []
        self.counts: list[float] = []
        self.marker: float | None = None
        self.marker_label = ""

    def on_mount(self) -> None:
        super().on_mount()
        self._draw()

    def set_bars(self, labels: Sequence[str], counts: Sequence[float], title: str | None = None,
                 marker: float | None = None, marker_label: str = "") -> None:
        self.labels, self.counts = [str(x) for x in labels], list(counts)
        self.marker, self.marker_label = marker, marker_label
        if title is not None:
            self.title = title
        if self.is_mounted:
            self._draw()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title if self.counts else f"{self.title}: no data")
        if self.counts:
            plt.bar(self.labels, self.counts, color="cyan", marker="hd")
            if all(float(c).is_integer() for c in self.counts):
                ticks = integer_ticks(max(self.counts))
                plt.yticks(ticks, [f"{t:,}" for t in ticks])
            if self.marker is not None:
                plt.vline(self.marker, color="red")
        self.refresh()
