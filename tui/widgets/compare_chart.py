"""CompareChart: one metric of several runs laid over each other, drawn with plotext.

`set_curves({run: (xs, ys)}, metric, x_axis)` replaces what is drawn; the points come from core
(core.compare_runs.series), by step, tokens or training time. Smoothing (the loss chart's
debiased moving average) and a log y axis are reactive, so a key press redraws at once.
"""

from __future__ import annotations

import math
import re

from textual.reactive import reactive
from textual_plotext import PlotextPlot

from tui.widgets.loss_chart import SMOOTHING, smooth, tick_label, whole_ticks

COLORS = ("cyan", "orange", "green", "magenta", "yellow", "red", "blue", "gray")
MAX_POINTS = 300  # per curve: a terminal has a few hundred columns at most, plotext's cost grows with points


def thin(xs: list[float], ys: list[float], n: int = MAX_POINTS) -> tuple[list[float], list[float]]:
    """Every k-th point (and the last), so that no curve has more than about n."""
    if len(xs) <= n:
        return xs, ys
    k = math.ceil(len(xs) / n)
    idx = list(range(0, len(xs), k)) + ([len(xs) - 1] if (len(xs) - 1) % k else [])
    return [xs[i] for i in idx], [ys[i] for i in idx]



def legend_label(name: str, width: int = 28) -> str:
    """A run's name for the legend (and the tables of run names at 80 columns): without its date (the time of day still tells runs apart), and
    cut at the front with an ellipsis, never silently, when it is still too long."""
    name = re.sub(r"^\d{8}-(?=\d{6}-)", "", name)
    return name if len(name) <= width else "\u2026" + name[-(width - 1):]

class CompareChart(PlotextPlot):
    DEFAULT_CSS = """
    CompareChart { height: 1fr; min-height: 8; }
    """

    log_y: reactive[bool] = reactive(False)
    smoothing: reactive[float] = reactive(0.0)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.curves: dict[str, tuple[list[float], list[float]]] = {}
        self.metric, self.x_axis = "", "step"
        self.replots = 0

    def on_mount(self) -> None:
        super().on_mount()
        self._replot()

    def set_curves(self, curves: dict[str, tuple[list[float], list[float]]], metric: str, x_axis: str) -> None:
        self.curves, self.metric, self.x_axis = curves, metric, x_axis
        self._replot()

    def watch_log_y(self) -> None:
        self._replot()

    def watch_smoothing(self) -> None:
        self._replot()

    def cycle_smoothing(self) -> None:
        i = SMOOTHING.index(self.smoothing) if self.smoothing in SMOOTHING else 0
        self.smoothing = SMOOTHING[(i + 1) % len(SMOOTHING)]

    def _replot(self) -> None:
        if not self.is_mounted:
            return
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        label = {"step": "step", "tokens": "tokens", "time": "training seconds"}[self.x_axis]
        smooth_txt = f", smoothing {self.smoothing:g}" if self.smoothing else ""
        plt.title(f"{self.metric or 'no metric'} by {label} ({'log' if self.log_y else 'linear'}{smooth_txt})")
        plt.xlabel(label)
        drawn = [(n, c) for n, c in self.curves.items() if c[0]]
        positive = all(y > 0 for _, (_, ys) in drawn for y in ys)
        if self.log_y and drawn and positive:
            plt.yscale("log")
        xs_all: list[float] = []
        for i, (name, (xs, ys)) in enumerate(drawn):
            xs, ys = thin(xs, smooth(ys, self.smoothing))
            plt.plot(xs, ys, label=legend_label(name), color=COLORS[i % len(COLORS)], marker="braille")
            xs_all += xs[:1] + xs[-1:]
        if not drawn:
            plt.title(f"{self.metric or 'metric'}: no points in the marked runs")
        elif self.x_axis != "time":
            ticks = whole_ticks(min(xs_all), max(xs_all))
            plt.xticks(ticks, [tick_label(t) for t in ticks])
        self.replots += 1
        self.refresh()
