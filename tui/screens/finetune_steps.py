"""The finetuning wizard: one modal screen per step, each editing the preset that will run.

method -> base model -> dataset -> what to train -> hyperparameters -> review. Every step gets the
preset built so far and dismisses with (action, preset), action being "next", "back" or "launch"
(None cancels); the Finetune screen chains them. Every edit goes through `core.config` (apply the
value, validate the whole preset), so what the review shows is exactly what `core.runs.launch`
runs. Keys on every step: ctrl+n next (or launch on the review), ctrl+r back, esc cancel.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tui.text import plain as escape  # the one escaping helper (tui/text.py)
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import (Button, Checkbox, DataTable, Input, Label, OptionList, RadioButton, RadioSet, Select,
                             Static, TextArea)
from textual.widgets.option_list import Option
from textual.worker import Worker

from core import config
from core import lookup as core_lookup
from core.errors import UserError
from tui.widgets.priority_footer import PriorityFooter
from tui.widgets.tables import fill_table
from tui.widgets.advice_panel import AdvicePanel
from core.lookup import GPT2_MODELS, GPT2_NAMES, model_config, read_meta
from core.model.stats import trainable_params
from tui.widgets.lineage import LineageView, lineage_chain, short_path
from tui.widgets.model_picker import ModelTable, model_rows
from tui.widgets.preset_form import PresetForm
from tui.widgets.token_view import TokenView

METHODS = {
    "classify": ("Classification", "tiny-classify",
                 "A new head reads the last token and predicts a label (spam or not, happy or sad). "
                 "Metrics: accuracy, F1, confusion matrix."),
    "instruct": ("Instruction tuning (SFT)", "tiny-sft",
                 "The model learns to answer instructions; only the answer tokens carry loss. "
                 "Use the chat template to chat with the result."),
    "preference": ("Preference tuning (DPO)", "tiny-dpo",
                   "From pairs of a chosen and a rejected answer, the model learns to prefer the chosen one, "
                   "against a frozen copy of its start. Start from an instruction-tuned model."),
    "rl": ("Reinforcement learning (GRPO)", "tiny-rl",
           "The model samples several answers per question; a program checks them, and the better ones are "
           "reinforced (verifiable rewards). Start from an instruction-tuned model."),
}
DEFAULT_DATA = {"classify": "embedded:tinyworld-classify", "instruct": "embedded:tinyworld-instruct",
                "preference": "embedded:tinyworld-preference", "rl": "embedded:tinyworld-verify"}
STEP_TITLES = ("method", "base model", "dataset", "what to train", "hyperparameters", "review")
HYPER_KEYS = ("train.lr", "train.min_lr", "train.warmup_steps", "train.weight_decay", "train.micro_batch_size",
              "train.max_steps", "train.epochs", "train.log_every", "train.eval_every", "train.checkpoint_every", "train.seed",
              "train.device", "finetune.beta", "finetune.balance_classes", "finetune.truncate")
PREVIEW_ROWS = 50


def edit(preset: config.Preset, values: dict[str, Any]) -> config.Preset:
    """The preset with dotted-key values applied, validated by core.config (raises PresetError)."""
    doc = config.apply_overrides(config.to_dict(preset), values)
    return config.from_dict(doc, "wizard", default_name=preset.name)


def method_preset(method: str, current: config.Preset) -> config.Preset:
    """The current preset when it is a finetuning preset of this method (its [finetune] section
    says more than the defaults); else the method's built-in preset (tiny-classify, tiny-sft,
    tiny-dpo); else the current preset with the method and its embedded default set."""
    own = current.finetune != config.FinetuneConfig()
    if current.finetune.method == method and own:
        return current
    name = METHODS[method][1]
    if name in config.builtin_names():
        return config.load(name)
    return edit(current, {"finetune.method": method, "finetune.data": DEFAULT_DATA[method]})


# ----------------------------------------------------------------------------- data preview

def base_tokenizer(spec: str, preset: config.Preset, root: Path | None = None) -> tuple[Any, int]:
    """(tokenizer, context length) of the base model, read from its checkpoint (no weights)."""
    from core.tokenizer import get_tokenizer, load_tokenizer

    if spec in GPT2_NAMES:
        return get_tokenizer("gpt2", preset.tokenizer.chat_template), 1024
    ckpt = core_lookup.resolve_checkpoint(spec, root=root)
    meta = read_meta(ckpt) or {}
    ctx = int((meta.get("architecture") or {}).get("context_length") or preset.model.context_length)
    entry = meta.get("tokenizer") or {}
    folder = ckpt / (entry.get("folder") or "tokenizer")
    if folder.is_dir():  # ours or a real model's (kind "hf")
        return load_tokenizer(folder, entry.get("kind"), entry.get("name")), ctx
    from tui.screens.shared import preset_tokenizer

    tok, note = preset_tokenizer(preset)
    if tok is None:
        raise UserError(f"{ckpt}: the checkpoint has no tokenizer and {note}")
    return tok, ctx


def read_preview(preset: config.Preset, limit: int = PREVIEW_ROWS) -> tuple[list[dict], dict]:
    """The first train records of the finetuning set (fields mapped as the stage maps them) and
    their statistics (class balance for classification)."""
    from core.data import load_records, record_stats

    ft = preset.finetune
    fields: dict[str, str] = {}
    if ft.method == "classify":
        fields = {"text_field": ft.text_field if ft.text_field != "text" else "",
                  "label_field": ft.label_field if ft.label_field != "label" else ""}
    elif ft.prompt_field:
        fields = {("prompt_field" if ft.method == "preference" else "instruction_field"): ft.prompt_field}
    records = load_records(ft.data, "train", seed=preset.train.seed, hf_config=ft.hf_config,
                           val_fraction=ft.test_fraction, test_fraction=ft.test_fraction, **fields)
    return records[:limit], record_stats(records)


def encode_example(record: dict, preset: config.Preset, tok: Any, max_len: int) -> list[tuple[str, list[int], list[int]]]:
    """(title, ids, loss mask) of one record as the method will train on it (core.train.encode, the
    code path of training itself): 0 in the mask where a token carries no loss."""
    from core.train.encode import preview_example

    return [(p.title, p.ids, p.mask) for p in preview_example(record, preset, tok, max_len)]


def token_spans(tok: Any, ids: list[int]) -> list:
    from core.tokenizer.inspect import Span, printable

    out, pos = [], 0
    for i in ids:
        b = tok.token_bytes(i)
        out.append(Span(i, b, printable(b), pos, pos + len(b), False, special=tok.is_special(i)))
        pos += len(b)
    return out


def preview_columns(method: str) -> tuple[str, ...]:
    return {"classify": ("label", "text"), "instruct": ("instruction", "input", "output"),
            "preference": ("prompt", "chosen", "rejected"), "rl": ("instruction", "input", "answer")}[method]


def balance_text(stats: dict) -> str:
    classes = stats.get("classes") or []
    if not classes:
        return ""
    top = max(c["count"] for c in classes)
    lines = [f"[b]class balance[/] ({stats['records']:,} train rows)"]
    for c in classes:
        bar = "\u2588" * max(1, round(16 * c["count"] / top))
        lines.append(f"{escape(str(c['name']))[:12]:<12} [cyan]{bar:<16}[/] {c['count']:>7,} {100 * c['share']:3.0f}%")
    return "\n".join(lines)


# -------------------------------------------------------------------------- trainable sizes

# ------------------------------------------------------------------------------------ steps

class WizardStep(ModalScreen[tuple[str, config.Preset] | None]):
    """A step: a title with the choices so far, a body, Back / Next buttons and a problem line."""

    INDEX = 0
    NEXT_LABEL = "Next"
    BINDINGS = [
        Binding("escape", "cancel", "cancel"),
        Binding("ctrl+r", "back", "back"),
        Binding("ctrl+n", "next", "next"),
    ]
    DEFAULT_CSS = """
    WizardStep { align: center middle; }
    WizardStep > #wizard-box { width: 98%; height: 96%; border: thick $primary; background: $surface; }
    WizardStep #wizard-title { height: auto; padding: 0 1; background: $primary 30%; width: 100%; }
    WizardStep #wizard-trail { height: auto; width: 100%; padding: 0 1; color: $text-muted; }
    WizardStep #wizard-body { height: 1fr; }
    WizardStep #wizard-buttons { height: 3; align-horizontal: right; }
    WizardStep #wizard-buttons Button { margin-left: 1; min-width: 10; }
    WizardStep #wizard-problem { width: 1fr; padding: 1 1 0 1; color: $text-error; }
    """

    def __init__(self, preset: config.Preset, *, runs_root: Path | None = None, workdir: Path | None = None) -> None:
        super().__init__()
        self.preset = preset
        self.runs_root = runs_root
        self.workdir = workdir or Path.cwd()

    def compose(self) -> ComposeResult:
        with Vertical(id="wizard-box"):
            yield Label(f"[b]Finetune[/]  step {self.INDEX + 1} of {len(STEP_TITLES)}: [b]{STEP_TITLES[self.INDEX]}[/]"
                        "   ctrl+n next, ctrl+r back, esc cancel", id="wizard-title")
            yield Label(self.trail(), id="wizard-trail")
            with Vertical(id="wizard-body"):
                yield from self.compose_step()
            with Horizontal(id="wizard-buttons"):
                yield Label("", id="wizard-problem")
                if self.INDEX:
                    yield Button("Back", id="wizard-back")
                yield Button(self.NEXT_LABEL, id="wizard-next", variant="primary")
        yield PriorityFooter()  # over the Finetune screen's, whose keys would type into the fields here

    def compose_step(self) -> ComposeResult:
        yield from ()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.on_worker_state_changed(event)  # a worker that raised becomes a notification

    def trail(self) -> str:
        ft = self.preset.finetune
        parts = [f"method {ft.method}"]
        if self.INDEX > 1:
            parts.append(f"base {short_path(ft.base) if '/' in ft.base else ft.base}")
        if self.INDEX > 2:
            parts.append(f"data {ft.data}")
        if self.INDEX > 3:
            parts.append(f"train {ft.trainable}")
        return escape("  \u00b7  ".join(parts)) if self.INDEX else "choose what the model should learn"

    def problem(self, text: str) -> None:
        self.query_one("#wizard-problem", Label).update(escape(text))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "wizard-back":
            self.action_back()
        elif event.button.id == "wizard-next":
            self.action_next()

    def collect(self) -> config.Preset | None:
        """The preset with this step's choices, or None (after showing the problem)."""
        return self.preset

    def action_next(self) -> None:
        try:
            p = self.collect()
        except (config.PresetError, UserError) as e:
            self.problem(str(e).split("\n")[0])
            return
        if p is not None:
            self.dismiss(("next", p))

    def action_back(self) -> None:
        if self.INDEX:
            self.dismiss(("back", self.preset))

    def action_cancel(self) -> None:
        self.dismiss(None)


class MethodStep(WizardStep):
    INDEX = 0

    def compose_step(self) -> ComposeResult:
        yield OptionList(*[Option(f"[b]{title}[/]  ({m})\n  [dim]{escape(desc)}[/]", id=m)
                           for m, (title, _, desc) in METHODS.items()], id="wizard-methods")

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        ol.highlighted = list(METHODS).index(self.preset.finetune.method)
        ol.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_next()

    def collect(self) -> config.Preset | None:
        ol = self.query_one(OptionList)
        method = list(METHODS)[ol.highlighted or 0]
        return method_preset(method, self.preset)


class BaseStep(WizardStep):
    INDEX = 1

    def compose_step(self) -> ComposeResult:
        yield ModelTable(id="wizard-models")
        yield LineageView("", id="wizard-lineage")
        yield Input(placeholder="or type a checkpoint folder, run name, run:PRESET:STAGE or gpt2-medium", id="wizard-base")

    def on_mount(self) -> None:
        self.query_one(ModelTable).focus()
        self.load_models()

    @work(thread=True, exclusive=True, exit_on_error=False, group="wizard-models")
    def load_models(self) -> None:
        rows = model_rows(self.runs_root, include_gpt2=True, lm_only=self.preset.finetune.method != "classify")
        current = self.preset.finetune.base
        try:
            current = str(core_lookup.resolve_checkpoint(current, root=self.runs_root)) if current not in GPT2_NAMES else current
        except UserError:
            pass
        if self.preset.finetune.method in ("preference", "rl"):  # DPO and RL start best from an instruction-tuned model
            rows.sort(key=lambda r: r["method"] != "instruct")
        self.app.call_from_thread(self._fill, rows, current)

    def _fill(self, rows: list[dict], current: str) -> None:
        table = self.query_one(ModelTable)
        table.fill(rows, current)
        if not rows:
            self.problem("no models yet: pretrain one first, or type a GPT-2 name")

    def on_model_table_model_highlighted(self, event: ModelTable.ModelHighlighted) -> None:
        self.show_lineage(event.spec)

    @work(thread=True, exclusive=True, exit_on_error=False, group="wizard-lineage")
    def show_lineage(self, spec: str) -> None:
        chain = lineage_chain(spec, self.runs_root)
        self.app.call_from_thread(self.query_one(LineageView).show, chain)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_next()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_next()

    def collect(self) -> config.Preset | None:
        typed = self.query_one("#wizard-base", Input).value.strip()
        spec = typed or self.query_one(ModelTable).selected_spec
        if not spec:
            self.problem("pick a model or type one")
            return None
        if spec not in GPT2_NAMES:
            spec = str(core_lookup.resolve_checkpoint(spec, root=self.runs_root))  # UserError says what is wrong
        return edit(self.preset, {"finetune.base": spec})


class DataStep(WizardStep):
    INDEX = 2

    def compose_step(self) -> ComposeResult:
        ft = self.preset.finetune
        with Horizontal(id="wizard-data-top"):
            yield Input(ft.data, id="wizard-data", placeholder="embedded:NAME, hf:NAME or a local file")
            yield Select([("alpaca prompt", "alpaca"), ("chat template", "chat")], value=ft.template,
                         allow_blank=False, id="wizard-template", disabled=ft.method == "classify")
        with Horizontal(id="wizard-data-main"):
            yield DataTable(cursor_type="row", id="wizard-rows")
            with VerticalScroll(id="wizard-example"):
                yield Static("", id="wizard-balance")
                yield Label("", id="wizard-example-title-0")
                yield TokenView(id="wizard-tokens-0")
                yield Label("", id="wizard-example-title-1")
                yield TokenView(id="wizard-tokens-1")
        yield Label("[dim]dimmed tokens carry no loss; bright ones are what the model is trained to produce[/]",
                    id="wizard-data-note")

    def on_mount(self) -> None:
        self.records: list[dict] = []
        self.tok: Any = None
        self.max_len = 0
        self.query_one("#wizard-tokens-1").display = self.preset.finetune.method == "preference"
        self.query_one("#wizard-rows", DataTable).focus()
        self.load_preview(self.current())

    def current(self) -> config.Preset:
        return edit(self.preset, {"finetune.data": self.query_one("#wizard-data", Input).value.strip(),
                                  "finetune.template": self.query_one("#wizard-template", Select).value})

    @work(thread=True, exclusive=True, exit_on_error=False, group="wizard-preview")
    def load_preview(self, preset: config.Preset) -> None:
        try:
            tok, max_len = base_tokenizer(preset.finetune.base, preset, self.runs_root)
            records, stats = read_preview(preset)
        except UserError as e:
            self.app.call_from_thread(self.problem, str(e).split("\n")[0])
            return
        self.app.call_from_thread(self._show_preview, preset, tok, max_len, records, stats)

    def _show_preview(self, preset: config.Preset, tok: Any, max_len: int, records: list[dict], stats: dict) -> None:
        self.preview_preset, self.tok, self.max_len, self.records, self.stats = preset, tok, max_len, records, stats
        self.problem("")
        cols = preview_columns(preset.finetune.method)
        fill_table(self.query_one("#wizard-rows", DataTable), cols,
                   [[str(r.get("label_name", r.get(c, "")) if c == "label" else r.get(c, ""))[:60] for c in cols]
                    for r in records])
        self.query_one("#wizard-balance", Static).update(balance_text(stats))
        if records:
            self.show_example(0)

    def show_example(self, index: int) -> None:
        if not self.records or self.tok is None or not 0 <= index < len(self.records):
            return
        parts = encode_example(self.records[index], self.preview_preset, self.tok, self.max_len)
        for i in range(2):
            title = self.query_one(f"#wizard-example-title-{i}", Label)
            view = self.query_one(f"#wizard-tokens-{i}", TokenView)
            if i < len(parts):
                name, ids, mask = parts[i]
                title.update(f"[b]{escape(name)}[/]  {len(ids)} tokens, {sum(mask)} with loss")
                view.set_spans(token_spans(self.tok, ids), mask)
            else:
                title.update("")
                view.set_spans([], None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_example(event.cursor_row)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._reload()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if self.is_mounted and self.records:
            self._reload()

    def _reload(self) -> None:
        try:
            self.load_preview(self.current())
        except config.PresetError as e:
            self.problem(str(e).split("\n")[0])

    def collect(self) -> config.Preset | None:
        p = self.current()
        stats = getattr(self, "stats", None) or {}
        if p.finetune.method == "classify" and stats.get("classes") and getattr(self, "preview_preset", None) \
                and self.preview_preset.finetune.data == p.finetune.data:
            # the head gets as many outputs as the set has classes
            p = edit(p, {"finetune.num_classes": max(2, max(c["label"] for c in stats["classes"]) + 1)})
        if not self.records:
            self.problem("no rows to train on yet (press enter in the dataset field to load it)")
            return None
        return p


class ShapedRadioButton(RadioButton):
    """A radio button whose choice shows by shape (a filled dot, an empty one for the others), not
    only by colour: with 16 colours or NO_COLOR all four looked alike."""

    @property
    def _button(self):  # type: ignore[override]
        self.BUTTON_INNER = "\u25cf" if self.value else "\u25cb"
        return super()._button


class TrainableStep(WizardStep):
    INDEX = 3
    MODES = (("head", "the output head only"), ("last_blocks", "the last N blocks, the final norm and the head"),
             ("all", "every parameter"), ("lora", "LoRA adapters (low-rank updates; the base stays frozen)"))

    def compose_step(self) -> ComposeResult:
        ft = self.preset.finetune
        with Horizontal(id="wizard-train-main"):
            with Vertical(id="wizard-train-left"):
                with RadioSet(id="wizard-trainable"):
                    for mode, desc in self.MODES:
                        yield ShapedRadioButton(f"{mode}: {desc}", value=ft.trainable == mode,
                                                id=f"wizard-mode-{mode}")
                yield Static("", id="wizard-sizes")
            with Vertical(id="wizard-train-right"):
                for key, label, value in (("last_blocks", "last N blocks", ft.last_blocks),
                                          ("lora.rank", "LoRA rank", ft.lora.rank),
                                          ("lora.alpha", "LoRA alpha", ft.lora.alpha),
                                          ("lora.dropout", "LoRA dropout", ft.lora.dropout)):
                    with Horizontal(classes="wizard-knob"):
                        yield Label(label)
                        yield Input(f"{value:g}", id="wizard-" + key.replace(".", "-"))
                yield Label("LoRA targets")
                for t in ("attn", "mlp", "head"):
                    yield Checkbox(t, value=t in ft.lora.targets, id=f"wizard-target-{t}")

    def on_mount(self) -> None:
        self.arch: dict = {}
        self.query_one(RadioSet).focus()
        self.load_arch()

    @work(thread=True, exclusive=True, exit_on_error=False, group="wizard-arch")
    def load_arch(self) -> None:
        base = self.preset.finetune.base
        if base in GPT2_NAMES:  # the shapes are the built-in gpt2-* presets
            name = GPT2_MODELS[base].preset
            arch = dataclasses.asdict(config.load(name).model) if name in config.builtin_names() else {}
            arch["vocab_size"] = arch.get("vocab_size") or 50257
        else:
            meta = read_meta(base) or {}
            arch = meta.get("architecture") or {}
        self.app.call_from_thread(self._set_arch, arch)

    def _set_arch(self, arch: dict) -> None:
        self.arch = arch
        self._update_sizes()

    def mode(self) -> str:
        rs = self.query_one(RadioSet)
        return self.MODES[rs.pressed_index][0] if rs.pressed_index >= 0 else self.preset.finetune.trainable

    def values(self) -> dict[str, Any]:
        def num(key: str) -> Any:
            raw = self.query_one("#wizard-" + key.replace(".", "-"), Input).value.strip()
            try:
                return int(raw) if key in ("last_blocks", "lora.rank") else float(raw)
            except ValueError:
                return raw  # core.config names the problem
        targets = [t for t in ("attn", "mlp", "head") if self.query_one(f"#wizard-target-{t}", Checkbox).value]
        return {"finetune.trainable": self.mode(), "finetune.last_blocks": num("last_blocks"),
                "finetune.lora.rank": num("lora.rank"), "finetune.lora.alpha": num("lora.alpha"),
                "finetune.lora.dropout": num("lora.dropout"), "finetune.lora.targets": targets}

    def _update_sizes(self) -> None:
        try:
            p = edit(self.preset, self.values())
        except config.PresetError as e:
            self.problem(str(e).split("\n")[0])
            return
        self.problem("")
        if not self.arch:
            self.query_one("#wizard-sizes", Static).update("[dim](parameter counts appear when the base is known)[/]")
            return
        est = trainable_params(model_config({"architecture": self.arch}), p.finetune)
        lines = [f"[b]parameters that train[/] (of {est['total']:,}, \u2248)"]
        for mode, _ in self.MODES:
            mark = "\u25b6 " if mode == p.finetune.trainable else "  "
            lines.append(f"{mark}{mode:<12} {est[mode]:>12,}  {100 * est[mode] / max(1, est['total']):5.1f}%")
        n_layer = self.arch.get("n_layer")
        if n_layer:
            lines.append(f"[dim]the base has {n_layer} blocks[/]")
        self.query_one("#wizard-sizes", Static).update("\n".join(lines))

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        event.stop()
        self._update_sizes()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self.is_mounted:
            self._update_sizes()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self._update_sizes()

    def collect(self) -> config.Preset | None:
        return edit(self.preset, self.values())


class HyperForm(PresetForm):
    """The preset form with the hyperparameters that matter for the method only."""

    def __init__(self, preset: config.Preset, **kw: Any) -> None:
        super().__init__(preset, ["train", "finetune"], **kw)
        method = preset.finetune.method
        keys = [k for k in HYPER_KEYS if not (k == "finetune.beta" and method != "preference")
                and not (k == "finetune.balance_classes" and method != "classify")]
        self.specs = [s for s in self.specs if s.key in keys]


class HyperStep(WizardStep):
    INDEX = 4

    def compose_step(self) -> ComposeResult:
        with Horizontal(id="wizard-hyper"):
            yield HyperForm(self.preset, show_docs=False, id="wizard-form")
            yield AdvicePanel("finetune", id="wizard-advice")

    def on_mount(self) -> None:
        self.query_one(AdvicePanel).update_for(self.preset)

    def on_preset_form_changed(self, event: PresetForm.Changed) -> None:
        event.stop()
        if event.preset is not None:
            self.query_one(AdvicePanel).update_for(event.preset)
            self.problem("")

    def collect(self) -> config.Preset | None:
        form = self.query_one(HyperForm)
        p = form.check()
        if p is None:
            n = len(form.problems)
            self.problem(f"{n} problem{'s' * (n != 1)}: fix the marked fields")
        return p


class ReviewStep(WizardStep):
    INDEX = 5
    NEXT_LABEL = "Launch"
    BINDINGS = [*WizardStep.BINDINGS, Binding("ctrl+s", "save", "save TOML")]

    def compose_step(self) -> ComposeResult:
        yield Label("The preset that will run (ctrl+n launches it as a run; ctrl+s saves it as TOML):",
                    id="wizard-review-note")
        yield TextArea(config.dump(self.preset), read_only=True, show_line_numbers=True, id="wizard-toml")
        with Horizontal(id="wizard-save-row"):
            yield Label("save to ")
            yield Input(str(self.workdir / f"{self.preset.name or 'finetune'}.toml"), id="wizard-save-path")
            yield Button("Save", id="wizard-save")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "wizard-save":
            event.stop()
            self.action_save()
        else:
            super().on_button_pressed(event)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def action_save(self) -> None:
        path = Path(self.query_one("#wizard-save-path", Input).value).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(config.dump(self.preset))
        except OSError as e:
            self.problem(f"cannot save {path}: {e.strerror}")
            return
        self.notify(f"saved {path}", title="finetune preset")

    def action_next(self) -> None:
        self.dismiss(("launch", self.preset))


STEPS: tuple[type[WizardStep], ...] = (MethodStep, BaseStep, DataStep, TrainableStep, HyperStep, ReviewStep)
