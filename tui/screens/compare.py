"""Compare: the runs marked on the Runs screen, one metric of all of them on one chart, and a
sortable table of their results and of the settings where their presets differ.

A thread worker reads the runs through core.compare_runs (summaries, every metric's points) and
posts `RunsRead`; switching metric, x axis, smoothing or log scale redraws from what was read.
Time to target is the training time to the lowest validation loss every run reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Label

from core import compare_runs as cmp
from core.errors import UserError
from core.runs import Run
from tui.text import plain
from tui.widgets.compare_chart import CompareChart, legend_label
from tui.widgets.tables import fill_table
from tui.widgets.priority_footer import PriorityFooter


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def table_rows(sums: list[cmp.RunSummary]) -> tuple[list[str], list[list[str]], list[list[Any]]]:
    """(columns, cells, sort keys) of the comparison table: results first, then differing settings."""
    target = cmp.common_target(sums)
    hit_col = f"to val<={target:g} (s)" if target is not None else "to target"
    metrics = [m for m in cmp.metric_order({m for s in sums for m in s.final})
               if m in ("val_loss", "loss") or "." in m][:4]
    settings = cmp.differing(sums)
    cols = ["run", "state", "steps", "tokens", "train s", hit_col, *(f"{m} best" for m in metrics), *settings]
    cells, keys = [], []
    for i, s in enumerate(sums):
        hit = s.time_to(target) if target is not None else None
        key: list[Any] = [s.name, s.state, s.steps, s.tokens, s.train_s, hit.train_s if hit else None,
                          *(s.best.get(m) for m in metrics), *(v[i] for v in settings.values())]
        keys.append(key)
        cells.append([_cell(k) for k in key])
    return cols, cells, keys


def _sort_key(v: Any) -> tuple:
    """Numbers before text, and missing values last, whatever the column."""
    if v is None:
        return (2, 0.0, "")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, str(v))


class CompareScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,q", "dismiss(None)", "close"),
        Binding("n", "next_metric", "metric"),
        Binding("t", "x_axis", "x axis"),
        Binding("m", "smoothing", "smoothing"),
        Binding("l", "log_scale", "log scale"),
        Binding("s", "sort", "sort", tooltip="sort by the next column"),
        Binding("S", "reverse", "reverse", tooltip="reverse the order"),
    ]

    @dataclass
    class RunsRead(Message):
        summaries: list[cmp.RunSummary]
        points: dict[str, dict[str, list[cmp.Point]]]
        problems: list[str]

    def __init__(self, run_paths: list[Path]) -> None:
        super().__init__()
        self.run_paths = run_paths
        self.sums: list[cmp.RunSummary] = []
        self.points: dict[str, dict[str, list[cmp.Point]]] = {}
        self.metrics: list[str] = []
        self.metric, self.x_axis = "", "step"
        self.sort_col, self.descending = 5, False

    def compose(self) -> ComposeResult:
        with Vertical(id="compare-box"):
            yield Label(f"comparing {len(self.run_paths)} runs: reading ...", id="compare-title")
            yield CompareChart(id="compare-chart")
            yield DataTable(cursor_type="row", id="compare-table")
        yield PriorityFooter()

    def on_mount(self) -> None:
        self.read_runs()

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare-read")
    def read_runs(self) -> None:
        sums, points, problems = [], {}, []
        for path in self.run_paths:
            run = Run(path)
            try:
                sums.append(cmp.summarize(run))
            except UserError as e:  # a damaged run is named and left out; the others compare
                problems.append(str(e))
                continue
            points[run.name] = sums[-1].points
        self.post_message(self.RunsRead(sums, points, problems))

    def on_compare_screen_runs_read(self, message: CompareScreen.RunsRead) -> None:
        self.sums, self.points = message.summaries, message.points
        self.metrics = cmp.metric_order({m for pts in self.points.values() for m in pts})
        self.metric = self.metrics[0] if self.metrics else ""
        for p in message.problems:
            self.notify(p, severity="warning")
        self.redraw()
        self.fill()

    def redraw(self) -> None:
        curves = {name: cmp.xy(pts.get(self.metric, []), self.x_axis) for name, pts in self.points.items()}
        self.query_one(CompareChart).set_curves(curves, self.metric, self.x_axis)
        chart = self.query_one(CompareChart)
        self.query_one("#compare-title", Label).update(
            f"[b]{len(self.sums)} runs[/]  metric [b]{plain(self.metric or '-')}[/] (n)  x {self.x_axis} (t)  "
            f"smoothing {chart.smoothing:g} (m)  {'log' if chart.log_y else 'linear'} (l)  sort s/S")

    def fill(self) -> None:
        cols, cells, keys = table_rows(self.sums)
        self.sort_col = min(self.sort_col, len(cols) - 1)
        order = sorted(range(len(cells)), key=lambda i: _sort_key(keys[i][self.sort_col]), reverse=self.descending)
        cols = [c + (" v" if self.descending else " ^") if i == self.sort_col else c for i, c in enumerate(cols)]
        if self.app.size.width < 100:  # 80 columns: short run names, so the results up to the target fit
            cells = [[legend_label(self.sums[i].name, 22), *row[1:]] for i, row in enumerate(cells)]
        fill_table(self.query_one("#compare-table", DataTable), cols, [cells[i] for i in order],
                   keys=[self.sums[i].name for i in order])

    def action_next_metric(self) -> None:
        if self.metrics:
            self.metric = self.metrics[(self.metrics.index(self.metric) + 1) % len(self.metrics)]
            self.redraw()

    def action_x_axis(self) -> None:
        self.x_axis = cmp.X_AXES[(cmp.X_AXES.index(self.x_axis) + 1) % len(cmp.X_AXES)]
        self.redraw()

    def action_smoothing(self) -> None:
        self.query_one(CompareChart).cycle_smoothing()
        self.redraw()

    def action_log_scale(self) -> None:
        chart = self.query_one(CompareChart)
        chart.log_y = not chart.log_y
        self.redraw()

    def action_sort(self) -> None:
        n = len(table_rows(self.sums)[0]) if self.sums else 1
        self.sort_col = (self.sort_col + 1) % n
        self.fill()

    def action_reverse(self) -> None:
        self.descending = not self.descending
        self.fill()
