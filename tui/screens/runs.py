"""Runs: every run with its state; open one to follow its events; stop it; delete it after asking.

The list comes from `core.runs.list_runs` in a thread worker every couple of seconds; an opened
run's events are followed through `tui.feed` like every other screen that watches a run.
"""

from __future__ import annotations

import shutil

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Label, RichLog

from core import runs as core_runs
from core.errors import UserError
from tui.text import plain
from tui.feed import RunFeed
from tui.messages import MetricsArrived, RunAttached, RunEnded, RunsListed
from tui.screens.base import StageScreen
from tui.screens.dialogs import ConfirmScreen
from tui.screens.live_run import follow, new_events
from tui.widgets.run_picker import REFRESH_S, RUN_COLUMNS, fill_runs_table, run_cells, run_rows


def format_event(ev: dict) -> str:
    """One line per event for the log view (markup escaped by the caller's choice of Text)."""
    kind = ev.get("kind", "?")
    step = f"step {ev['step']:>6} " if "step" in ev else ""
    if kind == "train":
        parts = [f"loss {ev.get('loss', float('nan')):.4f}"]
        for k, fmt in (("lr", "lr {:.2e}"), ("grad_norm", "gnorm {:.3f}"), ("tokens_per_s", "{:,.0f} tok/s")):
            if isinstance(ev.get(k), (int, float)):
                parts.append(fmt.format(ev[k]))
        return f"train {step}" + "  ".join(parts)
    if kind == "val":
        return f"val   {step}val_loss {ev.get('val_loss', float('nan')):.4f}"
    if kind == "sample":
        return f"sample {step}{ev.get('text', '')!r:.200}"
    if kind == "checkpoint":
        return f"checkpoint {step}{ev.get('path', '')}"
    if kind == "status":
        return f"status {ev.get('state')}" + (f": {ev['error']}" if ev.get("error") else "")
    if kind == "progress":
        total = ev.get("total") or 0
        return f"progress {ev.get('what', '')} {ev.get('done', 0)}/{total or '?'} {ev.get('unit', '')}"
    if kind == "log":
        return f"{ev.get('level', 'info')} {ev.get('message', '')}"
    return f"{kind} {step}" + " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("kind", "t", "step"))


class RunsScreen(StageScreen):
    MODE = "runs"
    AUTO_FOCUS = "#runs-table"
    HELP = """Every run under the workspace's `runs/` folder, newest first, with its state.
A run whose process died without a final state shows as **crashed**.

Runs keep going when the workbench closes or the SSH connection drops: they run in their
own process. Open one to follow its events live; stop asks it to save a checkpoint and end
at its next step; delete removes its folder (after you confirm).

Mark runs with space (of any stage, also folders copied in from another machine) and press c
to compare them: one metric of all of them on one chart, and their results and differing
settings in a sortable table."""

    BINDINGS = [
        Binding("enter", "open_run", "open", show=False),
        Binding("o", "open_run", "open", tooltip="open run"),
        Binding("s", "stop_run", "stop", tooltip="stop run"),
        Binding("d", "delete_run", "delete", tooltip="delete run"),
        Binding("r", "refresh", "refresh"),
        Binding("space", "mark", "mark", tooltip="mark for compare"),
        Binding("c", "compare", "compare", tooltip="compare marked"),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(id="runs-top"):
            yield DataTable(cursor_type="row", id="runs-table")
        with Vertical(id="runs-bottom"):
            yield Label("select a run and press o (or enter) to follow its events", id="run-title")
            yield RichLog(id="run-log", max_lines=2000, wrap=True, markup=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.rows: list[dict] = []
        self.opened: str | None = None
        self.feed: RunFeed | None = None
        self.marked: set[str] = set()
        table = self.query_one("#runs-table", DataTable)
        table.add_columns(*RUN_COLUMNS)
        self.refresh_runs()
        self.set_interval(REFRESH_S, self.refresh_runs)

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs-list")
    def refresh_runs(self) -> None:
        self.post_message(RunsListed(run_rows(self.app.runs_root)))

    def on_runs_listed(self, message: RunsListed) -> None:
        message.stop()
        cells = run_cells(message.rows, self.app.clock)
        if cells == getattr(self, "cells", None):  # same states and ages: nothing to redraw
            return
        self.rows, self.cells = message.rows, cells
        fill_runs_table(self.query_one("#runs-table", DataTable), self.rows, self.app.clock)
        self.marked &= {r["name"] for r in self.rows}
        self.show_marks()

    def show_marks(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        for i, r in enumerate(self.rows):
            table.update_cell_at(Coordinate(i, 0), ("* " if r["name"] in self.marked else "") + r["name"])

    def action_mark(self) -> None:
        name = self.selected()
        if name:
            self.marked ^= {name}
            self.show_marks()

    def action_compare(self) -> None:
        from tui.screens.compare import CompareScreen

        names = sorted(self.marked) or ([self.selected()] if self.selected() else [])
        if not names:
            self.notify("mark runs with space first, then press c", severity="warning")
            return
        root = core_runs.runs_root(self.app.runs_root)
        self.app.push_screen(CompareScreen([root / n for n in names]))

    def action_refresh(self) -> None:
        self.refresh_runs()

    def selected(self) -> str | None:
        table = self.query_one("#runs-table", DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]["name"]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.open_run(str(event.row_key.value))

    def action_open_run(self) -> None:
        name = self.selected()
        if name:
            self.open_run(name)

    def open_run(self, name: str) -> None:
        try:
            run = core_runs.open_run(name, self.app.runs_root)
        except UserError as e:
            self.notify(str(e), severity="error")
            return
        self.opened = name
        log = self.query_one("#run-log", RichLog)
        log.clear()
        status = run.status()
        if status.get("problem"):  # a damaged status.json: say what is wrong with it, then show its events
            log.write(Text(f"invalid: {status['problem']}", style="red"))
        self.query_one("#run-title", Label).update(f"[b]{plain(name)}[/]  {plain(str(status.get('state')))}")
        self.feed = follow(self, run)
        self.post_message(RunAttached(name, run.stage))

    def on_metrics_arrived(self, message: MetricsArrived) -> None:
        events = new_events(self.feed, message)
        if events is None:
            return
        log = self.query_one("#run-log", RichLog)
        for ev in events:
            log.write(format_event(ev))

    def on_run_ended(self, message: RunEnded) -> None:
        if message.run_name == self.opened:
            self.query_one("#run-title", Label).update(f"[b]{plain(message.run_name)}[/]  {message.state}")
        self.refresh_runs()

    def action_stop_run(self) -> None:
        name = self.selected()
        if not name:
            self.notify("no run selected: the list is empty", severity="warning")
            return
        run = core_runs.open_run(name, self.app.runs_root)
        if run.state != "running":
            self.notify(f"{name} is not running ({run.state})")
            return
        core_runs.stop(run)
        self.notify(f"stop requested: {name} saves a checkpoint at its next step")

    def action_delete_run(self) -> None:
        name = self.selected()
        if not name:
            self.notify("no run selected: the list is empty", severity="warning")
            return
        run = core_runs.open_run(name, self.app.runs_root)
        if run.state == "running":
            self.notify(f"{name} is still running; stop it first (s)", severity="warning")
            return

        def done(yes: bool | None) -> None:
            if yes:
                shutil.rmtree(run.path, ignore_errors=True)
                self.notify(f"deleted {run.path}")
                if self.opened == name:
                    self.opened, self.feed = None, None
                    self.query_one("#run-log", RichLog).clear()
                self.refresh_runs()
        self.app.push_screen(ConfirmScreen(f"Delete {name} and its checkpoints?\n{run.path}"), done)
