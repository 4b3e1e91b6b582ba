"""Models to choose from: every committed checkpoint of our runs (and imported models), GPT-2 sizes.

`model_rows` reads the runs folder (status and model.json only, no weights) into one row per model;
`ModelTable` lists them; `ModelPicker` is the modal that returns the chosen spec (a checkpoint
folder or a GPT-2 name), with the highlighted model's lineage shown below the list and a field to
type any other spec (a path, `run:PRESET:STAGE`). The chat pane, the eval report and the finetuning
wizard's base step use these.
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label
from textual.worker import Worker

from core import lookup as core_lookup
from core import runs as core_runs
from core.errors import UserError
from tui.widgets.compare_chart import legend_label
from tui.widgets.tables import fill_table
from core.lookup import GPT2_MODELS, GPT2_NAMES, read_meta
from tui.widgets.lineage import LineageView, describe, lineage_chain


def model_rows(root: Path | None = None, *, include_gpt2: bool = False, lm_only: bool = False) -> list[dict]:
    """One dict per usable model, newest run first: spec (what to pass to core), label, stage,
    preset, method, step, val_loss, head; imported models in workspace()/models; GPT-2 names last."""
    out: list[dict] = []
    for run in core_runs.list_runs(root):
        st = run.raw_status()
        if st.get("stage") not in ("pretrain", "finetune"):
            continue
        try:
            ckpt = core_lookup.resolve_checkpoint(run.path, root=root)
        except UserError:
            continue
        meta = read_meta(ckpt)
        if meta is None:
            continue
        d = describe(meta)
        if lm_only and d["head"] != "lm":
            continue
        out.append({"spec": str(ckpt), "label": run.name, "stage": st.get("stage"), "preset": st.get("preset", ""),
                    "method": d["method"], "step": d["step"], "val_loss": d["val_loss"], "head": d["head"],
                    "state": run.state, "size": f"{d['n_layer']}x{d['n_embd']}"})
    models = core_lookup.models_root()
    if models.is_dir():
        for p in sorted(models.iterdir()):
            meta = read_meta(p)
            if meta is not None:
                d = describe(meta)
                out.append({"spec": str(p), "label": p.name, "stage": "import", "preset": "", "method": "",
                            "step": d["step"], "val_loss": d["val_loss"], "head": d["head"], "state": "",
                            "size": f"{d['n_layer']}x{d['n_embd']}"})
    if include_gpt2:
        imported = {r["label"] for r in out if r["stage"] == "import"}
        for name in GPT2_NAMES:
            if name not in imported:
                out.append({"spec": name, "label": name, "stage": "gpt2", "preset": "", "method": "",
                            "step": None, "val_loss": None, "head": "lm", "state": "",
                            "size": GPT2_MODELS[name].size + " (download)"})
    return out


# a finetune's stage cell is its method (or head): one column for both, so "size" fits at 80 columns
MODEL_COLUMNS = ("model", "stage", "step", "val loss", "size")


class ModelTable(DataTable):
    """Rows of `model_rows`; posts `ModelTable.Highlighted` with the row's spec as the cursor moves."""

    class ModelHighlighted(Message):
        def __init__(self, table: ModelTable, spec: str) -> None:
            super().__init__()
            self.table, self.spec = table, spec

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(cursor_type="row", id=id, classes=classes)
        self.rows_data: list[dict] = []

    def on_mount(self) -> None:
        fill_table(self, MODEL_COLUMNS, [])

    def fill(self, rows: list[dict], selected: str | None = None) -> None:
        self.rows_data = rows
        narrow = self.app.size.width < 100  # 80 columns: run names without their date, cut at the front
        cells = [[legend_label(r["label"], 22) if narrow else r["label"],
                  r["method"] or ("" if r["head"] == "lm" else r["head"]) or r["stage"],
                  "" if r.get("step") is None else str(r["step"]),
                  f"{r['val_loss']:.3f}" if isinstance(r.get("val_loss"), (int, float)) else "", r["size"]]
                 for r in rows]
        fill_table(self, MODEL_COLUMNS, cells, keys=[r["spec"] for r in rows])
        specs = [r["spec"] for r in rows]
        if selected in specs:
            self.move_cursor(row=specs.index(selected))

    @property
    def selected_spec(self) -> str | None:
        if not self.rows_data or not 0 <= self.cursor_row < len(self.rows_data):
            return None
        return self.rows_data[self.cursor_row]["spec"]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key is not None and event.row_key.value is not None:
            self.post_message(self.ModelHighlighted(self, str(event.row_key.value)))


class ModelPicker(ModalScreen[str | None]):
    """Pick a model: enter on a row, or type a spec and press enter; esc cancels."""

    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]
    DEFAULT_CSS = """
    ModelPicker { align: center middle; }
    ModelPicker > Vertical { width: 96%; max-width: 120; height: 90%; border: thick $primary; background: $surface; }
    ModelPicker ModelTable { height: 1fr; }
    ModelPicker LineageView { height: auto; max-height: 6; border-top: solid $primary 40%; }
    """

    def __init__(self, title: str, root: Path | None = None, *, include_gpt2: bool = False, lm_only: bool = False,
                 current: str | None = None) -> None:
        super().__init__()
        self.title_text, self.root, self.include_gpt2, self.lm_only, self.current = (
            title, root, include_gpt2, lm_only, current)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]{self.title_text}[/]  (enter: choose, tab: type a path, esc: cancel)", id="picker-title")
            yield ModelTable(id="picker-models")
            yield LineageView("", id="picker-lineage")
            yield Input(placeholder="or type a checkpoint folder, run name or run:PRESET:STAGE", id="picker-spec")

    def on_mount(self) -> None:
        self.query_one(ModelTable).focus()
        self.load_rows()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        handler = getattr(self.app, "on_worker_state_changed", None)  # the workbench reports failures
        if handler is not None:
            handler(event)

    @work(thread=True, exclusive=True, exit_on_error=False, group="model-picker")
    def load_rows(self) -> None:
        rows = model_rows(self.root, include_gpt2=self.include_gpt2, lm_only=self.lm_only)
        self.app.call_from_thread(self._show_rows, rows)

    def _show_rows(self, rows: list[dict]) -> None:
        self.query_one(ModelTable).fill(rows, self.current)
        if not rows:
            self.query_one("#picker-title", Label).update(
                f"[b]{self.title_text}[/]: no trained models yet; type a path below (esc to go back)")

    def on_model_table_model_highlighted(self, event: ModelTable.ModelHighlighted) -> None:
        self.show_lineage(event.spec)

    @work(thread=True, exclusive=True, exit_on_error=False, group="model-picker-lineage")
    def show_lineage(self, spec: str) -> None:
        chain = lineage_chain(spec, self.root)
        self.app.call_from_thread(self.query_one(LineageView).show, chain)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(str(event.row_key.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())
