"""Model: the preset's architecture fields, editable, with its numbers updated as they change.

Parameters per component, training memory at the chosen micro-batch and dtype, FLOPs per token
and KV-cache size all come from `core.model.stats` (instant, torch-free); so does the layer tree
with tensor shapes. A valid edit becomes the current preset at once, so Pretrain trains it.
"""

from __future__ import annotations

import dataclasses

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Select, Static, Tree

from core import advice
from core.config import Preset
from core.model import stats
from tui.screens.base import StageScreen
from tui.widgets.advice_panel import AdvicePanel
from tui.widgets.field_input import FieldInput
from tui.widgets.preset_form import PresetForm

DTYPES = ("bfloat16", "float16", "float32")
APPLY_AFTER_S = 0.12  # a typed architecture becomes the app's preset once the keys rest this long


def human(n: float, unit: str = "") -> str:
    for suffix, k in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= k:
            return f"{n / k:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def human_bytes(n: float) -> str:
    for suffix, k in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k:
            return f"{n / k:.2f} {suffix}"
    return f"{n:.0f} B"


def model_config(preset: Preset):
    """The preset's ModelConfig with the vocabulary filled in from the tokenizer when 0."""
    return dataclasses.replace(preset.model, vocab_size=advice.vocab_size(preset))


def stats_table(preset: Preset, batch_size: int, dtype: str, compact: bool = False) -> Table:
    """Parameters, memory and compute of the preset's model; `compact` fits 17 rows (80x24)."""
    if compact:
        return compact_stats_table(preset, batch_size, dtype)
    cfg = model_config(preset)
    s = stats.summary(cfg, batch_size=batch_size, dtype=dtype)
    p, m = s["params"], s["memory"]
    t = Table(show_header=True, header_style="bold", box=None, pad_edge=False, expand=True)
    t.add_column("component")
    t.add_column("value", justify="right", no_wrap=True)  # a value never breaks across lines
    total = p["total"] or 1
    for name, key in (("token embedding", "embeddings"), ("positions", "positions"), ("attention", "attention"),
                      ("MLP", "mlp"), ("norms", "norms"), ("output head", "head")):
        t.add_row(name, f"{human(p[key])}  {100 * p[key] / total:4.1f}%")
    # a row is bold as a whole, never a bold label beside a plain value: the value would start its
    # segment with the padding, and renderers that drop leading spaces (SVG) ran them together
    t.add_row("total", human(p["total"]), style="bold")
    t.add_row("non-embedding", human(p["non_embedding"]))
    t.add_row("untied total", human(p["total_untied"]))
    t.add_row("", "")
    t.add_row(f"memory (batch {batch_size}, {dtype})", "", style="bold")
    for name, key in (("weights", "weights"), ("gradients", "grads"), ("AdamW state", "optimizer"),
                      ("activations", "activations")):
        t.add_row(name, human_bytes(m[key]))
    t.add_row("total", human_bytes(m["total"]), style="bold")
    t.add_row("", "")
    t.add_row("FLOPs per token", human(s["flops_per_token"]))
    t.add_row("KV cache per token", human_bytes(s["kv_cache_bytes_per_token"]))
    t.add_row("KV cache, full context", human_bytes(s["kv_cache_bytes_per_token"] * cfg.context_length))
    t.add_row("head size / kv heads", f"{s['head_dim']} / {s['kv_heads']}")
    t.add_row("MLP hidden", str(s["mlp_hidden"]))
    return t


def compact_stats_table(preset: Preset, batch_size: int, dtype: str) -> Table:
    """The same numbers as stats_table in fewer rows: no blank rows, related values on one row."""
    cfg = model_config(preset)
    s = stats.summary(cfg, batch_size=batch_size, dtype=dtype)
    p, m = s["params"], s["memory"]
    t = Table(show_header=False, box=None, pad_edge=False, expand=True)
    t.add_column("what")
    t.add_column("value", justify="right", no_wrap=True)  # a value never breaks across lines
    total = p["total"] or 1
    for name, key in (("token embedding", "embeddings"), ("positions", "positions"), ("attention", "attention"),
                      ("MLP", "mlp"), ("norms", "norms"), ("output head", "head")):
        t.add_row(name, f"{human(p[key])} {100 * p[key] / total:4.1f}%")
    t.add_row("total params", human(p["total"]), style="bold")
    t.add_row("non-emb / untied", f"{human(p['non_embedding'])} / {human(p['total_untied'])}")
    # labels of at most 16 characters: at 80x24 the values take their whole width and labels wrap first
    t.add_row(f"mem b{batch_size} {dtype}", human_bytes(m["total"]), style="bold")
    t.add_row("weights / grads", f"{human_bytes(m['weights'])} / {human_bytes(m['grads'])}")
    t.add_row("AdamW / activ.", f"{human_bytes(m['optimizer'])} / {human_bytes(m['activations'])}")
    t.add_row("FLOPs per token", human(s["flops_per_token"]))
    t.add_row("KV cache/token", human_bytes(s["kv_cache_bytes_per_token"]))
    t.add_row("KV cache/context", human_bytes(s["kv_cache_bytes_per_token"] * cfg.context_length))
    t.add_row("head / kv / MLP", f"{s['head_dim']} / {s['kv_heads']} / {s['mlp_hidden']}")
    return t


def fill_tree(tree: Tree, preset: Preset) -> None:
    root_node = stats.layer_tree(model_config(preset))
    tree.clear()
    tree.root.set_label(f"model  {human(root_node.params)} params")

    def add(parent, node: stats.Node, expand: bool) -> None:
        short = node.name.rsplit(".", 1)[-1] if "." in node.name and node.shape is not None else node.name
        if node.shape is not None:
            parent.add_leaf(f"{short}  {tuple(node.shape)}  {human(node.params)}")
            return
        note = f"  [dim]{node.note}[/]" if node.note else ""
        branch = parent.add(f"{node.name}  {human(node.params)}{note}", expand=expand)
        for child in node.children:
            add(branch, child, expand and node.name in ("blocks", "blocks.0"))

    for child in root_node.children:
        add(tree.root, child, child.name in ("blocks",))
    tree.root.expand()


class ModelScreen(StageScreen):
    MODE = "model"
    HELP = """The architecture of the current preset. Edit the fields on the left: the table on
the right (parameters per component, training memory at the micro-batch and dtype below,
FLOPs per token, KV cache) and the layer tree follow as you type. A valid edit becomes the
current preset (save it with **e**, then ctrl+s). Problems show beside their fields.
A vocabulary size of 0 takes the tokenizer's.
**i** opens what a trained model finds hard: any checkpoint (the preset's latest pretraining run
first, **o** picks another), a typed text or the held-out documents with the highest loss (**h**),
each token coloured by its loss, the model's top-5 predictions under the cursor."""

    BINDINGS = [Binding("f", "focus_form", "fields"), Binding("T", "focus_tree", "layer tree / numbers"),
                Binding("i", "inspect", "inspect a checkpoint", show=False)]

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="model-main"):
            with Vertical(id="model-left"):
                yield PresetForm(self.app.preset, ["model"], show_docs=False, id="model-form")
                with Horizontal(id="model-knobs"):
                    yield Label("batch ")
                    yield FieldInput(str(self.app.preset.train.micro_batch_size), id="model-batch", type="integer")
                    yield Select([(d, d) for d in DTYPES], value="bfloat16", allow_blank=False, id="model-dtype")
            with Vertical(id="model-right"):
                yield Static("", id="model-stats")
                tree = Tree("model", id="model-tree")
                tree.display = False
                yield tree
        yield AdvicePanel("model", id="advice")

    def on_mount(self) -> None:
        # presets this form produced: their echo through the app must never rebuild the form, or a
        # key typed meanwhile is lost (the form would be redrawn from an older preset)
        self.typed: list[Preset] = []
        self.pending: Preset | None = None
        super().on_mount()

    def preset_changed(self, preset: Preset) -> None:
        form = self.query_one(PresetForm)
        if preset in self.typed:
            self.typed = self.typed[self.typed.index(preset) + 1:]
        elif form.preset != preset:  # changed elsewhere (picker, editor): show its values
            form.show(preset)
        self.show_numbers(preset)

    def show_numbers(self, preset: Preset) -> None:
        try:
            batch = max(1, int(self.query_one("#model-batch", Input).value or 1))
        except ValueError:
            batch = preset.train.micro_batch_size
        dtype = str(self.query_one("#model-dtype", Select).value)
        compact = self.app.size.height < 32  # the -short breakpoint: 17 rows instead of 26
        self.query_one("#model-stats", Static).update(stats_table(preset, batch, dtype, compact))
        tree = self.query_one("#model-tree", Tree)
        if tree.display:  # rebuilt only while shown: typing in a field stays cheap
            fill_tree(tree, preset)
        self.query_one(AdvicePanel).update_with_corpus_facts(preset)

    def on_resize(self) -> None:
        self.show_numbers(self.app.preset)

    def on_preset_form_changed(self, message: PresetForm.Changed) -> None:
        if message.preset is not None and message.preset != self.app.preset:
            # the field shows its check at once; the app (every screen's numbers and advice) follows
            # once the typing rests, so a burst of keys costs one update, not one per key
            self.pending = message.preset
            if getattr(self, "apply_timer", None) is not None:
                self.apply_timer.stop()
            self.apply_timer = self.set_timer(APPLY_AFTER_S, self._apply_typed)

    def _apply_typed(self) -> None:
        self.apply_timer = None
        if self.pending is not None and self.pending != self.app.preset:
            self.typed = [*self.typed[-15:], self.pending]
            self.app.set_preset(self.pending, "<edited>")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "model-batch":
            self.show_numbers(self.app.preset)

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "model-dtype":
            self.show_numbers(self.app.preset)

    def action_inspect(self) -> None:
        from tui.screens.inspect import InspectScreen

        self.app.push_screen(InspectScreen(f"run:{self.app.preset.name}:pretrain", self.app.runs_root))

    def action_focus_form(self) -> None:
        """Put the cursor in the first architecture field (tab moves on from there)."""
        self.query_one(PresetForm).focus_first()

    def action_focus_tree(self) -> None:
        """Swap the numbers for the layer tree (and back): both do not fit a small terminal."""
        tree, table = self.query_one(Tree), self.query_one("#model-stats", Static)
        tree.display, table.display = not tree.display, tree.display
        if tree.display:
            fill_tree(tree, self.app.preset)
            tree.focus()
