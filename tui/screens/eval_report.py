"""Eval: the report of one model: its lineage, every evaluation, sample generations; new evaluations.

Everything shown comes from `core.eval.report.model_card(spec)`, read in a thread worker: the
stages from pretraining to the last finetuning (each with its loss curves, held-out scores and
samples) and every evaluation run that measured one of those checkpoints. Scores are tables and
bars (multiple choice against chance, classification against the majority baseline, judge scores
and win rates with their intervals), with a confusion matrix for classifiers. **e** launches a new
evaluation of the model as a run and reloads the card when it ends; **c** launches the compare task
against a second model (by default its base) and the Comparison section shows the paired verdicts;
**x** / **h** export the card as Markdown / HTML (core.eval.render.to_markdown / to_html).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Label, Static

from core import config
from core import runs as core_runs
from core.errors import UserError
from core.eval.render import signed
from tui.text import plain
from tui.feed import RunFeed
from tui.messages import MetricsArrived, RunEnded, RunStarted
from tui.screens.base import StageScreen
from tui.screens.live_run import follow, launch_run, new_events
from tui.widgets.confusion import ConfusionMatrix
from tui.widgets.lineage import LineageView, describe, short_path
from tui.widgets.loss_chart import LossChart
from tui.widgets.model_picker import ModelPicker, model_rows
from tui.widgets.score_bars import Score, ScoreBars


def card_chain(card: dict) -> list[dict]:
    """The card's stages as LineageView rows, oldest first."""
    out = []
    for st in card.get("lineage") or []:
        if st.get("missing"):
            out.append({"path": st["checkpoint"], "stage": "?", "missing": True})
            continue
        meta = {"path": st["checkpoint"], "lineage": st.get("lineage") or {}, "step": st.get("step"),
                "architecture": st.get("architecture") or {}, "head": st.get("head") or {},
                "val_loss": st.get("final_val_loss")}
        row = describe(meta)
        row["preset"] = st.get("preset_name") or row["preset"]
        out.append(row)
    return out


def scores_of(card: dict) -> list[Score]:
    """The headline scores of every evaluation, as bars on a 0..1 scale (judge 0-100 scaled)."""
    out: list[Score] = []
    for ev in card.get("evaluations") or []:
        tag = ev["run"].split("-")[1] if ev.get("run", "").count("-") >= 2 else ev.get("run", "")
        for task, r in (ev.get("tasks") or {}).items():
            if task == "choice":
                acc, se = r.get("acc"), r.get("acc_stderr") or 0.0
                out.append(Score(f"choice acc {tag}", acc, _sub(acc, 1.96 * se), _add(acc, 1.96 * se), r.get("chance")))
                out.append(Score(f"choice norm {tag}", r.get("acc_norm"), reference=r.get("chance")))
            elif task == "classify":
                bow = (r.get("baseline_bow") or {}).get("accuracy")
                out.append(Score(f"classify acc {tag}", r.get("accuracy"), r.get("ci_low"), r.get("ci_high"),
                                 bow if bow is not None else r.get("majority_baseline"),
                                 reference_label="bag of words" if bow is not None else "majority"))
            elif task == "judge":
                scale = 100.0 if r.get("scale", "0-100") == "0-100" else 5.0
                out.append(Score(f"judge {tag}", _div(r.get("mean"), scale), _div(r.get("ci_low"), scale),
                                 _div(r.get("ci_high"), scale)))
            elif task == "pairwise":
                out.append(Score(f"win rate {tag}", r.get("win_rate"), r.get("ci_low"), r.get("ci_high"), 0.5,
                                 reference_label="tie"))
    return out


def _add(a, b):
    return a + b if isinstance(a, (int, float)) else None


def _sub(a, b):
    return a - b if isinstance(a, (int, float)) else None


def _div(a, b):
    return a / b if isinstance(a, (int, float)) else None


def evaluations_renderable(card: dict):
    """One table per evaluation (task, metric, value, settings) via core.eval.report's rows."""
    from core.eval.render import task_rows as _task_rows

    evals = card.get("evaluations") or []
    if not evals:
        return Text("No evaluations of this model yet: press e to run one.", style="dim")
    parts = []
    for ev in evals:
        parts.append(Text(f"evaluation {ev['run']} ({ev.get('state', '')})", style="italic"))
        t = Table(show_edge=False, pad_edge=False, box=None, padding=(0, 1))
        for col, kw in (("task", {"style": "bold"}), ("metric", {}), ("value", {"justify": "right"})):
            t.add_column(col, **kw)
        notes = []
        for task, r in (ev.get("tasks") or {}).items():
            for metric, value, sett in _task_rows(task, r):
                t.add_row(task, metric, value)
                if sett:
                    notes.append(f"{task}: {sett}")
        for task, why in (ev.get("skipped") or {}).items():
            t.add_row(task, "skipped", "")
            notes.append(f"{task}: {why}")
        parts.append(t)
        parts.append(Text("\n".join(notes), style="dim"))
    return Group(*parts)


VERDICT_STYLE = {"B": "bold green", "A": "bold red"}  # "B is better" / "A is better"; no difference: dim


def comparisons_renderable(card: dict, newest: int = 2):
    """The paired verdicts of the newest compare evaluations: per task B - A, its interval, p, the
    verdict and the means A -> B, two short lines each (the left pane is about 45 columns at 80x24)."""
    found = [ev for ev in reversed(card.get("evaluations") or []) if "compare" in (ev.get("tasks") or {})][:newest]
    if not found:
        return None
    out = Text.from_markup("[b]Comparison[/] [dim](B - A on the same examples, 95% paired interval)[/]")
    for ev in found:
        r = ev["tasks"]["compare"]
        a = ((r.get("models") or {}).get("A") or {}).get("checkpoint", "?")
        out.append(f"\nB this model, A {short_path(a)}", style="italic")
        for task, row in (r.get("tasks") or {}).items():
            verdict = str(row.get("verdict", ""))
            out.append(f"\n{task:<10} ", style="bold")
            out.append(f"{signed(row.get('difference'))} [{signed(row.get('ci_low'))},{signed(row.get('ci_high'))}]"
                       f" p {row.get('p_value', 1):.2g}")
            out.append(f"\n{'':<10} ")
            out.append(verdict.split(":")[0], style=VERDICT_STYLE.get(verdict[:1], "dim"))
            out.append(f"  {row.get('mean_a', 0):.3f} \u2192 {row.get('mean_b', 0):.3f}", style="dim")
    return out


def held_out_text(card: dict) -> str:
    lines = []
    for st in card.get("lineage") or []:
        ho = st.get("held_out") or {}
        scores = [f"{k} {v:.3f}" for k, v in ho.items()
                  if isinstance(v, float) and k in ("accuracy", "macro_f1", "reward_accuracy", "reward_margin", "loss")]
        if scores:
            lines.append(f"[b]{plain(st.get('run') or short_path(st['checkpoint']))}[/] held-out: {', '.join(scores)}")
    return "\n".join(lines)


def samples_text(card: dict) -> str:
    lines = []
    for ev in card.get("evaluations") or []:
        for s in ev.get("samples") or []:
            lines.append(f"[b]{plain(ev['run'])}[/]  [i]{plain(str(s.get('prompt', '')))}[/i]{plain(str(s.get('text', '')))}")
    for st in card.get("lineage") or []:
        for s in (st.get("samples") or [])[-1:]:
            lines.append(f"[b]{plain(st.get('run') or '')}[/] step {s.get('step')}  [i]{plain(str(s.get('prompt') or ''))}[/i]"
                         f"{plain(str(s.get('text') or ''))}")
    return "[b]Samples[/]\n" + "\n".join(lines) if lines else ""


def confusion_of(card: dict) -> tuple[list | None, list | None, str]:
    """The newest confusion matrix: a classify evaluation's, else the last finetuning's held-out one."""
    for ev in reversed(card.get("evaluations") or []):
        r = (ev.get("tasks") or {}).get("classify")
        if r and r.get("confusion_matrix"):
            names = [c.get("name") for c in r.get("per_class") or []] or None
            return r["confusion_matrix"], names, f"confusion, evaluation {ev['run']}"
    for st in reversed(card.get("lineage") or []):
        ho = st.get("held_out") or {}
        if ho.get("confusion_matrix"):
            names = ((st.get("report") or {}).get("test") or {}).get("class_names")
            return ho["confusion_matrix"], names, "confusion, held-out test split"
    return None, None, ""


class EvalScreen(StageScreen):
    MODE = "eval"
    CSS_PATH = "../styles/model_screens.tcss"
    HELP = """The report of one model. **m** picks the model; the screen shows its lineage from
pretraining to its last finetuning stage, the loss curves of every stage, every evaluation of it
(tables, and bars: multiple-choice accuracy against chance, classification accuracy against the
majority class, judge scores and win rates with their 95% intervals), the confusion matrix of a
classifier, and sample generations.

**e** runs a new evaluation of the model (the current preset's eval.tasks, or classify for a
classifier) as a run; the report reloads when it ends. **c** compares the model (B) with another
one (A; the picker starts on its base, the stage before it): both answer the same held-out
questions (multiple choice, and the exact match or preference accuracy its finetuning claims) and
the Comparison section shows B - A per task with its 95% paired-bootstrap interval, p and the
verdict, "B is better" only where the interval excludes 0. **x** exports the report as Markdown,
**h** as a self-contained HTML page (into the working directory). **g** reloads."""

    BINDINGS = [
        Binding("m", "pick_model", "model"),
        Binding("e", "evaluate", "evaluate"),
        Binding("c", "compare", "compare"),
        Binding("x", "export('md')", "export md"),
        Binding("h", "export('html')", "export html"),
        Binding("g", "reload", "reload"),
    ]

    class CardLoaded(Message):
        def __init__(self, spec: str, card: dict | None, error: str = "") -> None:
            super().__init__()
            self.spec, self.card, self.error = spec, card, error

    def compose_body(self) -> ComposeResult:
        yield Label("no model: press m to pick one", id="ev-header")
        with Horizontal(id="ev-main"):
            with VerticalScroll(id="ev-left"):
                yield Label("[b]Lineage[/]", classes="ev-section")
                yield LineageView("", id="ev-lineage")
                compared = Static("", id="ev-compare")
                compared.display = False  # until a comparison of the model is loaded
                yield compared
                yield Static("", id="ev-tables")
                yield Static("[b]Scores[/] [dim](\u2502 chance, majority or tie; \u2500 95% interval)[/]",
                            classes="ev-section", id="ev-scores-title")
                yield ScoreBars("", id="ev-scores")
                yield ConfusionMatrix("", id="ev-confusion")
                yield Static("", id="ev-heldout")
                yield Static("", id="ev-samples")
            with Vertical(id="ev-right"):
                yield LossChart(title="loss by stage", id="ev-loss")

    def on_mount(self) -> None:
        self.spec: str | None = None
        self.card: dict | None = None
        self.eval_run: str | None = None
        self.feed: RunFeed | None = None
        super().on_mount()
        chosen = self.preset.eval.model
        if chosen:
            self.show_model(chosen)
        else:
            self.pick_default()

    @work(thread=True, exclusive=True, exit_on_error=False, group="eval-default")
    def pick_default(self) -> None:
        rows = model_rows(self.app.runs_root)
        if rows:
            self.app.call_from_thread(self._show_default, rows[0]["spec"])

    def _show_default(self, spec: str) -> None:
        if self.spec is None:  # a model the user picked meanwhile wins over the default
            self.show_model(spec)

    # ------------------------------------------------------------------------------ the card
    def show_model(self, spec: str) -> None:
        self.spec = spec
        self.query_one("#ev-header", Label).update(f"[b]model[/] {plain(short_path(spec))}  loading the report\u2026")
        self.load_card(spec)

    @work(thread=True, exclusive=True, exit_on_error=False, group="eval-card")
    def load_card(self, spec: str) -> None:
        from core.eval.report import model_card

        try:
            card = model_card(spec, self.app.runs_root)
        except UserError as e:
            self.post_message(self.CardLoaded(spec, None, str(e)))
            return
        self.post_message(self.CardLoaded(spec, card))

    def on_eval_screen_card_loaded(self, message: CardLoaded) -> None:
        if message.spec != self.spec:
            return
        if message.card is None:
            self.query_one("#ev-header", Label).update(f"[red]{plain(message.error)}[/]")
            return
        self.card = card = message.card
        n_eval = len(card.get("evaluations") or [])
        n_stages = len(card.get("lineage") or [])
        self._header(f"{n_stages} stage{'s' * (n_stages != 1)}, {n_eval} evaluation{'s' * (n_eval != 1)}")
        self.query_one(LineageView).show(card_chain(card))
        compared = comparisons_renderable(card)
        self.query_one("#ev-compare", Static).display = compared is not None
        self.query_one("#ev-compare", Static).update(compared or "")
        self.query_one("#ev-tables", Static).update(evaluations_renderable(card))
        scores = scores_of(card)
        self.query_one("#ev-scores-title").display = bool(scores)
        bars = self.query_one(ScoreBars)
        bars.display = bool(scores)
        bars.show(scores)
        matrix, names, title = confusion_of(card)
        confusion = self.query_one(ConfusionMatrix)
        confusion.display = matrix is not None
        confusion.show(matrix, names, title)
        self.query_one("#ev-heldout", Static).update(held_out_text(card))
        self.query_one("#ev-samples", Static).update(samples_text(card))
        chart = self.query_one(LossChart)
        chart.clear_run()
        chart.remove_overlays()
        stages = card.get("lineage") or []
        for i, st in enumerate(stages):
            curves = st.get("curves") or {}
            events = [{"kind": "train", "step": s, "loss": v} for s, v in curves.get("train") or []]
            events += [{"kind": "val", "step": s, "val_loss": v} for s, v in curves.get("val") or []]
            if i == len(stages) - 1:
                chart.add_events(events)
            elif events:
                chart.set_overlay(f"{i + 1} {st.get('stage') or ''} {st.get('preset_name') or ''}".strip(), events)

    def _header(self, extra: str = "") -> None:
        text = f"[b]model[/] {plain(short_path(self.spec or ''))}"
        if extra:
            text += f"  [dim]{plain(extra)}[/]"
        if self.eval_run:
            text += f"  evaluating: {plain(self.eval_run)}"
        self.query_one("#ev-header", Label).update(text)

    def action_reload(self) -> None:
        if self.spec:
            self.show_model(self.spec)

    def action_pick_model(self) -> None:
        def done(spec: str | None) -> None:
            if spec:
                self.show_model(spec)
        self.app.push_screen(ModelPicker("Model to report on", self.app.runs_root, current=self.spec), done)

    # -------------------------------------------------------------------------- evaluation
    def eval_preset(self, baseline: str = "") -> config.Preset:
        """The current preset aimed at this model: a classifier is scored on its own finetuning set.
        With a baseline: the compare task, this model (B) against it (A)."""
        from tui.screens.finetune_steps import edit

        assert self.spec is not None
        values: dict = {"eval.model": self.spec}
        head = ((self.card or {}).get("head") or {}).get("kind", "lm")
        if head == "classify":
            values["eval.tasks"] = ["classify"]
            last = ((self.card or {}).get("lineage") or [{}])[-1]
            ft = ((last.get("preset") or {}).get("finetune") or {})
            for key in ("data", "text_field", "label_field", "num_classes", "test_fraction", "hf_config"):
                if key in ft:
                    values[f"finetune.{key}"] = ft[key]
        else:
            values["eval.tasks"] = [t for t in self.preset.eval.tasks if t not in ("classify", "compare")] or ["perplexity"]
        if baseline:
            values.update({"eval.tasks": ["compare"], "eval.baseline": baseline})
        return edit(self.preset, values)

    def base_spec(self) -> str | None:
        """The checkpoint this model was finetuned from (the stage before it in its lineage)."""
        stages = [st for st in (self.card or {}).get("lineage") or [] if not st.get("missing")]
        return stages[-2]["checkpoint"] if len(stages) >= 2 else None

    def action_compare(self) -> None:
        if not self.spec or self.card is None:
            self.notify("no model: press m to pick one")
            return
        base = self.base_spec()

        def done(spec: str | None) -> None:
            if spec:
                try:
                    preset = self.eval_preset(baseline=spec)
                except config.PresetError as e:
                    self.notify(str(e), title="cannot compare", severity="error")
                    return
                self.launch(preset)
        title = "Compare this model (B) with A" + (": enter keeps its base" if base else "")
        self.app.push_screen(ModelPicker(title, self.app.runs_root, current=base), done)

    def action_evaluate(self) -> None:
        if not self.spec:
            self.notify("no model: press m to pick one")
            return
        try:
            preset = self.eval_preset()
        except config.PresetError as e:
            self.notify(str(e), title="cannot evaluate", severity="error")
            return
        self.launch(preset)

    def launch(self, preset: config.Preset) -> None:
        launch_run(self, "eval", "eval", lambda: core_runs.launch("eval", preset, root=self.app.runs_root))

    def on_run_started(self, message: RunStarted) -> None:
        if message.stage != "eval":
            return
        self.eval_run = message.run_name
        self.notify(f"started {message.run_name}", title="evaluation")
        self.feed = follow(self, core_runs.open_run(message.run_name, self.app.runs_root))
        self._header()

    def on_metrics_arrived(self, message: MetricsArrived) -> None:
        for ev in new_events(self.feed, message) or ():
            if ev.get("kind") == "eval":
                self.notify(f"{ev.get('task')}: " + ", ".join(f"{k} {v:.3g}" for k, v in ev.items()
                                                              if isinstance(v, float)), title="evaluation")
            elif ev.get("kind") == "progress":
                self._header(f"{ev.get('what', '')} {ev.get('done', 0)}/{ev.get('total') or '?'}")

    def on_run_ended(self, message: RunEnded) -> None:
        if message.run_name != self.eval_run:
            return
        self.eval_run = None
        severity = "information" if message.state == "finished" else "error"
        self.notify(f"{message.run_name}: {message.state} {message.error}".strip(), title="evaluation", severity=severity)
        self.action_reload()

    # ------------------------------------------------------------------------------- export
    def action_export(self, fmt: str) -> None:
        if self.card is None:
            self.notify("no report loaded yet")
            return
        from core.eval.render import to_html, to_markdown

        stem = "model-card-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in short_path(self.spec or "model"))
        path = Path(self.app.workdir) / f"{stem}.{fmt}"
        try:
            path.write_text(to_markdown(self.card) if fmt == "md" else to_html(self.card))
        except OSError as e:
            self.notify(f"cannot write {path}: {e.strerror}", severity="error")
            return
        self.notify(f"wrote {path}", title="report")
