"""MetricChart: curves of any run metrics other than the loss (accuracy, reward margin, ...), with plotext.

Series are named by (event kind, key): ("train", "accuracy") is the training accuracy logged every
few steps, ("val", "accuracy") the validation accuracy. Points arrive through `add_events` as the
run's feed is drained; the chart redraws at most every `redraw_s`, however fast they come. The
finetuning screen shows accuracy for classification and reward margin and reward accuracy for DPO.
"""

from __future__ import annotations

import math

from textual_plotext import PlotextPlot
from tui.widgets.loss_chart import tick_label, whole_ticks

COLORS = ("cyan", "orange", "green", "magenta", "yellow", "gray")
# (kind, key, label) per finetuning method: what to watch besides the loss
METHOD_SERIES: dict[str, list[tuple[str, str, str]]] = {
    "classify": [("train", "accuracy", "train acc"), ("val", "accuracy", "val acc")],
    "preference": [("train", "reward_margin", "margin"), ("train", "reward_accuracy", "reward acc"),
                   ("val", "reward_margin", "val margin"), ("val", "reward_accuracy", "val reward acc")],
    "instruct": [("val", "val_ppl", "val ppl")],
    "rl": [("train", "reward", "reward"), ("val", "pass_at_1", "val pass@1"), ("val", "pass_at_k", "val pass@k")],
}


class MetricChart(PlotextPlot):
    DEFAULT_CSS = """
    MetricChart { height: 1fr; min-height: 8; }
    """

    def __init__(self, title: str = "metrics", series: list[tuple[str, str, str]] | None = None, *,
                 redraw_s: float = 1.0, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.redraw_s = redraw_s
        self.set_series(series or [])

    def set_series(self, series: list[tuple[str, str, str]], title: str | None = None) -> None:
        self.series = list(series)
        self.points: dict[tuple[str, str], tuple[list[float], list[float]]] = {(k, m): ([], []) for k, m, _ in series}
        if title is not None:
            self.title = title
        self._dirty = True

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(self.redraw_s, self._redraw_if_dirty)
        self._replot()

    def add_events(self, events: list[dict]) -> int:
        """Take the events' values of the charted keys; returns how many points were added."""
        added = 0
        for ev in events:
            for kind, key, _ in self.series:
                v = ev.get(key)
                if ev.get("kind") == kind and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    xs, ys = self.points[(kind, key)]
                    xs.append(ev.get("step", len(xs)))
                    ys.append(float(v))
                    added += 1
        if added:
            self._dirty = True
        return added

    def count(self) -> int:
        return sum(len(ys) for _, ys in self.points.values())

    def _redraw_if_dirty(self) -> None:
        if self._dirty and self.is_mounted:
            self._replot()

    def _replot(self) -> None:
        self._dirty = False
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        plt.xlabel("step")
        drawn = False
        steps: list[float] = []
        for i, (kind, key, label) in enumerate(self.series):
            xs, ys = self.points[(kind, key)]
            if ys:
                plt.plot(xs, ys, label=label, color=COLORS[i % len(COLORS)],
                         marker="braille" if kind == "train" else "dot")
                drawn = True
                steps += xs
        if not drawn:
            plt.title(f"{self.title}: no points yet")
        else:
            ticks = whole_ticks(min(steps), max(steps))
            plt.xticks(ticks, [tick_label(t) for t in ticks])
        self.refresh()
