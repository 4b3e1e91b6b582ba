"""LossChart: training and validation loss of a run (and of past runs laid over it), drawn with plotext.

Points come from run events (`train` and `val`); the chart keeps them per series and redraws at most
a few times a second, however fast they arrive. The x axis is the step, the tokens seen or the wall
time; the y axis linear or log; the train curve can be smoothed (exponential moving average, as
TensorBoard does) while validation points are shown as they are. Live downstream evaluations (`eval`
events: a task's headline metric by step) are drawn against a second axis on the right.
With focus, left/right move a cursor over the logged steps (shown in the title); a screen reads
`cursor_step` (the Pretrain and Finetune screens fork from there with `f`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from textual.binding import Binding
from textual.reactive import reactive
from textual_plotext import PlotextPlot

X_AXES = ("step", "tokens", "time")
SMOOTHING = (0.0, 0.6, 0.9)
# distinct in 256 colours and on both dark and light backgrounds
COLORS = {"train": "cyan", "val": "orange", "overlay": ("gray", "magenta", "green", "yellow"),
          "eval": ("green", "magenta", "yellow"), "cursor": "red"}
# the metric of an `eval` event that the chart draws, per task; others draw their first number
EVAL_METRIC = {"choice": "acc", "classify": "accuracy", "verify": "pass_at_1", "perplexity": "perplexity"}
NOT_METRICS = {"step", "t", "seconds", "n", "chance", "budget_hit", "tokens", "k", "ngram"}


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


def eval_point(ev: dict) -> tuple[str, float] | None:
    """(label, value) of the metric an `eval` event's task is charted by, or None."""
    task = str(ev.get("task", "eval"))
    key = EVAL_METRIC.get(task) or next((k for k, v in ev.items() if k not in NOT_METRICS and _finite(v)), None)
    if key is None or not _finite(ev.get(key)):
        return None
    return f"{task} {key}", float(ev[key])


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
    can_focus = True
    BINDINGS = [Binding("left", "cursor(-1)", "cursor", show=False), Binding("right", "cursor(1)", "cursor", show=False),
                Binding("pageup", "cursor(-10)", show=False), Binding("pagedown", "cursor(10)", show=False),
                Binding("home", "cursor_end(0)", show=False), Binding("end", "cursor_end(-1)", show=False)]

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
        self.evals: dict[str, Series] = {}    # "TASK METRIC" -> its points (right axis)
        self.cursor: int | None = None        # an index into the train points, once a key placed it
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
        """Take `train`, `val` and `eval` events; returns how many points were added."""
        before = len(self.train) + len(self.val)
        self._points(events, self.train, self.val)
        added = self._eval_points(events)
        if self._t0 is None and (self.train.times or self.val.times):
            self._t0 = min(self.train.times[:1] + self.val.times[:1])
        self._dirty = True
        return len(self.train) + len(self.val) - before + added

    def _eval_points(self, events: list[dict]) -> int:
        added = 0
        for ev in events:
            point = eval_point(ev) if ev.get("kind") == "eval" else None
            if point is not None:
                tokens = self.train.tokens[-1] if self.train.tokens else 0
                self.evals.setdefault(point[0], Series(point[0])).add(ev.get("step", 0), ev.get("tokens", tokens),
                                                                      ev.get("t", 0.0), point[1])
                added += 1
        return added

    def clear_run(self) -> None:
        self.train, self.val, self._t0, self.cursor = Series("train"), Series("val"), None, None
        self.evals = {}
        self._dirty = True

    # ---------------------------------------------------------------------------- cursor
    @property
    def cursor_step(self) -> int | None:
        """The step under the cursor (None until a key placed it)."""
        return int(self.train.steps[self.cursor]) if self.cursor is not None and len(self.train) else None

    def action_cursor(self, delta: int) -> None:
        if not len(self.train):
            return
        at = len(self.train) - 1 if self.cursor is None else self.cursor + delta
        self.cursor = max(0, min(len(self.train) - 1, at))
        self._dirty = True
        self._redraw_if_dirty()

    def action_cursor_end(self, index: int) -> None:
        if len(self.train):
            self.cursor = index % len(self.train)
            self._dirty = True
            self._redraw_if_dirty()

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
        plt.title(f"{self.title} ({'log' if self.log_y else 'linear'}{smooth_txt}){self._cursor_text()}")
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
        drawn = self._plot_evals(t0) or drawn
        if self.cursor_step is not None and self.cursor is not None:
            plt.vline(self.train.xs(self.x_axis, t0)[self.cursor], COLORS["cursor"])
        if not drawn:
            plt.title(f"{self.title}: no points yet")
        elif self.x_axis != "time":
            xs = steps + self.train.xs(self.x_axis, t0) + self.val.xs(self.x_axis, t0) + [
                x for ev in self.evals.values() for x in ev.xs(self.x_axis, t0)]
            ticks = whole_ticks(min(xs), max(xs))
            plt.xticks(ticks, [tick_label(t) for t in ticks])
        self.refresh()

    def _plot_evals(self, t0: float) -> bool:
        """The live evaluations against the right axis (their metrics are not losses: never log)."""
        for i, (name, ev) in enumerate(self.evals.items()):
            self.plt.plot(ev.xs(self.x_axis, t0), ev.values, label=f"{name} (right)", yside="right",
                          color=COLORS["eval"][i % len(COLORS["eval"])], marker="dot")
        return bool(self.evals)

    def _cursor_text(self) -> str:
        step = self.cursor_step
        if step is None or self.cursor is None:
            return ""
        val = next((v for s, v in zip(self.val.steps, self.val.values) if s == step), None)
        return (f"  step {step:,}: loss {self.train.values[self.cursor]:.3f}"
                + (f", val {val:.3f}" if val is not None else ""))


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
