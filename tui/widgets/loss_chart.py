"""LossChart: training and validation loss of a run (and of past runs laid over it), drawn with plotext.

Points come from run events (`train` and `val`); the chart keeps them per series and redraws at most
a few times a second, however fast they arrive. The x axis is the step, the tokens seen or the wall
time; the y axis linear or log; the train curve can be smoothed (exponential moving average, as
TensorBoard does) while validation points are shown as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from textual.reactive import reactive
from textual_plotext import PlotextPlot

X_AXES = ("step", "tokens", "time")
SMOOTHING = (0.0, 0.6, 0.9)
# distinct in 256 colours and on both dark and light backgrounds
COLORS = {"train": "cyan", "val": "orange", "overlay": ("gray", "magenta", "green", "yellow")}


@dataclass
class Series:
    """One curve: x candidates per point and the loss."""

    name: str
    steps: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, step: float, tokens: float, t: float, value: float) -> None:
        self.steps.append(step)
        self.tokens.append(tokens)
        self.times.append(t)
        self.values.append(value)

    def __len__(self) -> int:
        return len(self.values)

    def xs(self, axis: str, t0: float) -> list[float]:
        if axis == "tokens":
            return self.tokens
        if axis == "time":
            return [(t - t0) / 60 for t in self.times]
        return self.steps


def smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing, so the start is not pulled to 0."""
    if weight <= 0:
        return list(values)
    out, last, n = [], 0.0, 0
    for v in values:
        n += 1
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight**n))
    return out


class LossChart(PlotextPlot):
    """Loss curves of the followed run plus overlays; feed it events with `add_events`."""

    DEFAULT_CSS = """
    LossChart { height: 1fr; min-height: 8; }
    """

    x_axis: reactive[str] = reactive("step")
    log_y: reactive[bool] = reactive(False)
    smoothing: reactive[float] = reactive(0.6)

    def __init__(self, *, title: str = "loss", redraw_s: float = 1.0, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.redraw_s = redraw_s
        self.train = Series("train")
        self.val = Series("val")
        self.overlays: dict[str, tuple[Series, Series]] = {}
        self._t0: float | None = None
        self._dirty = True

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(self.redraw_s, self._redraw_if_dirty)
        self._replot()

    # ---------------------------------------------------------------------------- data
    @staticmethod
    def _points(events: list[dict], train: Series, val: Series) -> tuple[Series, Series]:
        for ev in events:
            kind = ev.get("kind")
            if kind == "train" and _finite(ev.get("loss")):
                train.add(ev.get("step", len(train)), ev.get("tokens", 0), ev.get("t", 0.0), ev["loss"])
            elif kind == "val" and _finite(ev.get("val_loss")):
                val.add(ev.get("step", len(val)), ev.get("tokens", train.tokens[-1] if train.tokens else 0),
                        ev.get("t", 0.0), ev["val_loss"])
        return train, val

    def add_events(self, events: list[dict]) -> int:
        """Take `train` and `val` events; returns how many points were added."""
        before = len(self.train) + len(self.val)
        self._points(events, self.train, self.val)
        if self._t0 is None and (self.train.times or self.val.times):
            self._t0 = min(self.train.times[:1] + self.val.times[:1])
        self._dirty = True
        return len(self.train) + len(self.val) - before

    def clear_run(self) -> None:
        self.train, self.val, self._t0 = Series("train"), Series("val"), None
        self._dirty = True

    def set_overlay(self, name: str, events: list[dict]) -> None:
        """Lay a past run's curves under the current one."""
        self.overlays[name] = self._points(events, Series(name), Series(name + " val"))
        self._dirty = True

    def remove_overlays(self) -> None:
        self.overlays.clear()
        self._dirty = True

    # --------------------------------------------------------------------------- drawing
    def watch_x_axis(self) -> None:
        self._dirty = True
        self._redraw_if_dirty()

    def watch_log_y(self) -> None:
        self._dirty = True
        self._redraw_if_dirty()

    def watch_smoothing(self) -> None:
        self._dirty = True
        self._redraw_if_dirty()

    def cycle_x_axis(self) -> None:
        self.x_axis = X_AXES[(X_AXES.index(self.x_axis) + 1) % len(X_AXES)]

    def cycle_smoothing(self) -> None:
        i = SMOOTHING.index(self.smoothing) if self.smoothing in SMOOTHING else 0
        self.smoothing = SMOOTHING[(i + 1) % len(SMOOTHING)]

    def _redraw_if_dirty(self) -> None:
        if self._dirty and self.is_mounted:
            self._replot()

    def _replot(self) -> None:
        self._dirty = False
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        label = {"step": "step", "tokens": "tokens", "time": "minutes"}[self.x_axis]
        smooth_txt = f", smoothing {self.smoothing:g}" if self.smoothing else ""
        plt.title(f"{self.title} ({'log' if self.log_y else 'linear'}{smooth_txt})")
        plt.xlabel(label)
        # a log axis over no points makes plotext raise while drawing: only with points
        if self.log_y and (len(self.train) or len(self.val) or any(len(tr) for tr, _ in self.overlays.values())):
            plt.yscale("log")
        drawn = False
        steps: list[float] = []
        for i, (name, (tr, va)) in enumerate(self.overlays.items()):
            color = COLORS["overlay"][i % len(COLORS["overlay"])]
            t0 = (tr.times[:1] or va.times[:1] or [0.0])[0]
            if len(tr):
                plt.plot(tr.xs(self.x_axis, t0), smooth(tr.values, self.smoothing), label=name[-24:], color=color,
                         marker="braille")
                drawn = True
                steps += tr.xs(self.x_axis, t0)
        t0 = self._t0 or 0.0
        if len(self.train):
            plt.plot(self.train.xs(self.x_axis, t0), smooth(self.train.values, self.smoothing), label="train",
                     color=COLORS["train"], marker="braille")
            drawn = True
        if len(self.val):
            plt.plot(self.val.xs(self.x_axis, t0), self.val.values, label="val", color=COLORS["val"], marker="dot")
            drawn = True
        if not drawn:
            plt.title(f"{self.title}: no points yet")
        elif self.x_axis != "time":
            xs = steps + self.train.xs(self.x_axis, t0) + self.val.xs(self.x_axis, t0)
            ticks = whole_ticks(min(xs), max(xs))
            plt.xticks(ticks, [tick_label(t) for t in ticks])
        self.refresh()


def whole_ticks(lo: float, hi: float, n: int = 5) -> list[int]:
    """About `n` tick positions on whole, round numbers between lo and hi (steps and tokens are
    counts: an axis label of 63.2 steps means nothing)."""
    span = max(1.0, hi - lo)
    raw = span / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    step = max(1, int(round(step)))
    first = int(math.ceil(lo / step) * step)
    return list(range(first, int(hi) + 1, step)) or [int(lo)]


def tick_label(x: int) -> str:
    for unit, k in (("M", 1_000_000), ("k", 1_000)):
        if abs(x) >= k and x % (k // 10) == 0:
            return f"{x / k:g}{unit}"
    return str(x)


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
