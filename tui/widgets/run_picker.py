"""RunPicker: a modal list of runs (optionally of one stage, or live ones only) that returns the
chosen run's name, or None. Used to attach to a run and to overlay past runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from tui.widgets.tables import fill_table
from textual.widgets import DataTable, Label

from core import runs as core_runs
from tui.text import plain


def run_rows(root: Path | None, stage: str | None = None, live_only: bool = False) -> list[dict]:
    """One dict per run from core.runs (newest first): name, stage, preset, state, started."""
    rows = []
    for r in core_runs.list_runs(root):
        st = r.status()
        st.setdefault("stage", r.stage)  # a damaged status.json: the stage the run's name ends with
        if stage and st.get("stage") != stage:
            continue
        if live_only and st.get("state") not in ("running", "created"):
            continue
        rows.append({"name": r.name, "stage": st.get("stage", ""), "preset": st.get("preset", ""),
                     "state": st.get("state", "unknown"), "started": st.get("started") or st.get("created"),
                     "error": st.get("error") or ""})
    return rows


STATE_STYLE = {"running": "cyan", "finished": "green", "failed": "red", "crashed": "red", "stopped": "yellow",
               "invalid": "red"}


def age(seconds_ago: float | None) -> str:
    if seconds_ago is None:
        return ""
    s = max(0, int(seconds_ago))
    for unit, k in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= k:
            return f"{s // k}{unit} ago"
    return f"{s}s ago"


RUN_COLUMNS = ("run", "stage", "preset", "state", "started")
REFRESH_S = 2.0  # how often lists of runs re-read status.json


def run_cells(rows: list[dict], clock: Callable[[], float] = time.time) -> list[tuple[str, ...]]:
    """What the table shows of each run, ages included (so a redraw is due when an age changes)."""
    now = clock()
    return [(r["name"], r["stage"], r["preset"], r["state"], age(now - r["started"]) if r.get("started") else "")
            for r in rows]


def fill_runs_table(table: DataTable, rows: list[dict], clock: Callable[[], float] = time.time) -> None:
    keep = table.cursor_row
    cells = run_cells(rows, clock)
    styled = [(name, stage, preset, Text(state, style=STATE_STYLE.get(state, "")), started)
              for name, stage, preset, state, started in cells]
    fill_table(table, RUN_COLUMNS, styled, keys=[r["name"] for r in rows])
    if rows:
        table.move_cursor(row=min(max(keep, 0), len(rows) - 1))


class RunPicker(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]
    DEFAULT_CSS = """
    RunPicker { align: center middle; }
    RunPicker > Vertical { width: 90%; max-width: 110; height: 80%; border: thick $primary; background: $surface; }
    RunPicker DataTable { height: 1fr; }
    """

    def __init__(self, title: str, root: Path | None, stage: str | None = None, live_only: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.title_text, self.root, self.stage, self.live_only, self.clock = title, root, stage, live_only, clock

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]{plain(self.title_text)}[/]  (enter: choose, esc: cancel)")
            yield DataTable(cursor_type="row", id="picker-table")

    def on_mount(self) -> None:
        self.cells: list[tuple[str, ...]] | None = None
        table = self.query_one(DataTable)
        table.add_columns(*RUN_COLUMNS)
        table.focus()
        self.read_rows()
        self.set_interval(REFRESH_S, self.read_rows)  # states change while the picker is open

    @work(thread=True, exclusive=True, exit_on_error=False, group="run-picker")
    def read_rows(self) -> None:
        rows = run_rows(self.root, self.stage, self.live_only)
        self.app.call_from_thread(self.show_rows, rows)

    def show_rows(self, rows: list[dict]) -> None:
        cells = run_cells(rows, self.clock)
        if cells == self.cells:
            return
        self.cells = cells
        fill_runs_table(self.query_one(DataTable), rows, self.clock)
        title = f"[b]{plain(self.title_text)}[/]" + (": no runs yet (esc to go back)" if not rows
                                                     else "  (enter: choose, esc: cancel)")
        self.query_one(Label).update(title)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(str(event.row_key.value))
