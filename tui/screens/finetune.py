"""Finetune: a wizard that builds and launches a finetuning run, and the run's live view.

**n** opens the wizard (tui/screens/finetune_steps.py: method, base model, dataset, what to train,
hyperparameters, review), which ends in `core.runs.launch("finetune", preset)`: the run is its own
process and survives the workbench. This screen follows the run's event log (`tui.feed`) like the
Pretrain screen: the loss chart, plus accuracy and the latest confusion matrix for classification,
reward margin and reward accuracy for DPO, rewards, held-out pass@1 and a pausable rollout viewer
for RL. A stopped run resumes from its last checkpoint (**r**).
On start it attaches to the newest live finetuning run, else shows the newest finished one.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Static

from core import config
from core import lookup as core_lookup
from core import runs as core_runs
from core.errors import UserError
from tui.text import plain
from tui.messages import MetricsArrived, RunAttached
from tui.screens.finetune_steps import STEPS, method_preset
from tui.screens.live_run import LiveRunScreen, follow, launch_run, new_events, sample_markup, state_after
from tui.screens.shared import number
from tui.widgets.confusion import ConfusionMatrix
from tui.widgets.loss_chart import LossChart
from tui.widgets.metric_chart import METHOD_SERIES, MetricChart
from tui.widgets.rollout_view import RolloutView
from tui.widgets.run_picker import run_rows

METRIC_TITLES = {"classify": "accuracy", "preference": "reward margin and accuracy", "instruct": "validation perplexity",
                 "rl": "reward and held-out pass@1 / pass@k"}
RL_ROWS = (("train", "reward", "reward", "{:.3f}"), ("train", "reward_std", "reward std", "{:.3f}"),
           ("train", "kl", "KL", "{:.4f}"), ("train", "clip_fraction", "clipped", "{:.3f}"),
           ("train", "entropy", "entropy", "{:.3f}"), ("train", "completion_len", "length", "{:.1f}"),
           ("val", "pass_at_1", "val pass@1", "{:.3f}"), ("val", "pass_at_k", "val pass@k", "{:.3f}"))


def finetune_metrics_text(method: str, train: dict, val: dict, test: dict) -> str:
    rows = [("step", number(train.get("step"), "{:,}")), ("loss", number(train.get("loss"), "{:.4f}")),
            ("val loss", number(val.get("val_loss"), "{:.4f}"))]
    if method == "classify":
        rows += [("train acc", number(train.get("accuracy"), "{:.3f}")), ("val acc", number(val.get("accuracy"), "{:.3f}")),
                 ("val F1", number(val.get("macro_f1"), "{:.3f}"))]
    elif method == "preference":
        rows += [("margin", number(train.get("reward_margin"), "{:.3f}")),
                 ("reward acc", number(train.get("reward_accuracy"), "{:.3f}")),
                 ("val margin", number(val.get("reward_margin"), "{:.3f}")),
                 ("val rew acc", number(val.get("reward_accuracy"), "{:.3f}"))]
    elif method == "rl":
        src = {"train": train, "val": val}
        rows = rows[:2] + [(title, number(src[kind].get(key), fmt)) for kind, key, title, fmt in RL_ROWS]
        rows += [(f"{k.removeprefix('reward_')}", number(v, "{:.3f}")) for k, v in train.items()
                 if k.startswith("reward_") and not k.endswith("_std")]
    else:
        rows += [("val ppl", number(val.get("val_ppl"), "{:.2f}"))]
    rows += [("lr", number(train.get("lr"), "{:.2e}")), ("tokens/s", number(train.get("tokens_per_s"), "{:,.0f}"))]
    if test:
        for k in ("accuracy", "macro_f1", "reward_accuracy", "reward_margin", "loss", "pass_at_1", "gain"):
            if isinstance(test.get(k), float):
                rows.append((f"test {k}"[:11], f"{test[k]:.3f}"))
    return "\n".join(f"[b]{k:<11}[/] {v}" for k, v in rows)


class FinetuneScreen(LiveRunScreen):
    MODE = "finetune"
    ATTACH_TITLE = "Attach to a finetuning run"
    ATTACH_STAGE = "finetune"
    CSS_PATH = "../styles/model_screens.tcss"
    HELP = """Finetune a model: classification (a new head predicts labels), instruction tuning (SFT)
preference tuning (DPO) or reinforcement learning with verifiable rewards (GRPO).

**n** opens the wizard: method, base model (our checkpoints with their lineage, or GPT-2), dataset
(rows with the prompt template applied; dimmed tokens carry no loss; class balance), what to train
(head, last N blocks, all, LoRA), hyperparameters (from the method's preset, checked as typed) and a
review of the TOML that will run (save it with ctrl+s). Launch starts a run in its own process.

While it trains: the loss, plus accuracy and the confusion matrix (classification) or the reward
margin and reward accuracy (DPO) or the rewards, KL, clip fraction, held-out pass@1 and the
rollout viewer (RL: the newest groups first, **z** pauses it); live evaluations (train.eval_tasks)
against the loss chart's right axis. **x** stops at the next step (a checkpoint is saved), **r**
resumes the latest stopped finetuning run, **a** attaches to another run, **l** log loss axis,
**f** forks the attached run through the preset editor: from the checkpoint nearest at or before
the loss chart's cursor (**left**/**right** with the chart focused), else from a picked one."""

    BINDINGS = [
        Binding("n", "new", "new finetune"),
        Binding("x", "stop", "stop"),
        Binding("r", "resume", "resume"),
        Binding("a", "attach", "attach"),
        Binding("f", "fork", "fork", show=False),
        Binding("l", "log_scale", "log y"),
        Binding("z", "pause_rollouts", "pause rollouts", show=False),  # RL runs only: the viewer says so
    ]

    def compose_body(self) -> ComposeResult:
        yield Label("no run: press n to finetune a model, a to attach to a run", id="ft-status")
        with Horizontal(id="ft-main"):
            with Vertical(id="ft-charts"):
                yield LossChart(id="ft-loss")
                yield MetricChart("accuracy", METHOD_SERIES["classify"], id="ft-metric")
            with Vertical(id="ft-side"):
                yield Static(finetune_metrics_text("classify", {}, {}, {}), id="ft-metrics")
                yield ConfusionMatrix("", id="ft-confusion")
                yield Static("", id="ft-sample")
                yield RolloutView(id="ft-rollouts")

    def on_mount(self) -> None:
        self.method = "classify"
        self.last: dict[str, dict] = {"train": {}, "val": {}, "test": {}}
        super().on_mount()
        self.query_one(RolloutView).display = False
        self.watch(self.app, "live_runs", self._live_runs_changed, init=True)

    def _live_runs_changed(self, old, new) -> None:
        if self.run_name is None:
            live = self.app.live_run("finetune")
            if live:
                self.attach(live)
            else:
                self.attach_newest()

    @work(thread=True, exclusive=True, exit_on_error=False, group="finetune-newest")
    def attach_newest(self) -> None:
        rows = run_rows(self.app.runs_root, stage="finetune")
        if rows:
            self.app.call_from_thread(self._attach_if_idle, rows[0]["name"])

    def _attach_if_idle(self, name: str) -> None:
        if self.run_name is None:
            self.attach(name)

    # -------------------------------------------------------------------------------- runs
    def attach(self, name: str) -> None:
        try:
            run = core_runs.open_run(name, self.app.runs_root)
            preset = config.load(run.preset_path)
            self.method = preset.finetune.method
        except UserError as e:
            self.notify(str(e).split("\n")[0], severity="error")
            return
        self.run_name = name
        self.state = run.state
        self.last = {"train": {}, "val": {}, "test": {}}
        self.points = 0
        self.query_one(LossChart).clear_run()
        self.query_one(MetricChart).set_series(METHOD_SERIES[self.method], METRIC_TITLES[self.method])
        confusion = self.query_one(ConfusionMatrix)
        confusion.display = self.method == "classify"
        confusion.show(None)
        self.query_one("#ft-sample", Static).update("")
        rollouts = self.query_one(RolloutView)
        rollouts.clear()
        rollouts.display = self.method == "rl"
        self.feed = follow(self, run)
        self.show_state()
        self.post_message(RunAttached(name, run.stage))

    def on_metrics_arrived(self, message: MetricsArrived) -> None:
        events = new_events(self.feed, message)
        if events is None:
            return
        self.points += self.query_one(LossChart).add_events(events)
        self.points += self.query_one(MetricChart).add_events(events)
        self.query_one(RolloutView).add_events(events)
        confusion = None
        for ev in events:
            kind = ev.get("kind")
            if kind in self.last:
                self.last[kind] = ev
                if ev.get("confusion_matrix"):
                    confusion = ev
            elif kind == "sample":
                self.query_one("#ft-sample", Static).update(sample_markup(ev))
            self.state = state_after(ev, self.state)
        if confusion is not None:
            names = confusion.get("class_names") or self._class_names()
            title = f"{'test' if confusion.get('kind') == 'test' else 'val'} confusion (step {confusion.get('step', '?')})"
            self.query_one(ConfusionMatrix).show(confusion["confusion_matrix"], names, title)
        self.query_one("#ft-metrics", Static).update(
            finetune_metrics_text(self.method, self.last["train"], self.last["val"], self.last["test"]))
        self.show_state()

    def _class_names(self) -> list[str] | None:
        """The class names the run's checkpoints record (model.json), once one is committed."""
        from core.lookup import read_meta

        try:
            ckpt = core_lookup.resolve_checkpoint(self.feed.run.path, root=self.app.runs_root) if self.feed else None
        except UserError:
            return None
        return ((read_meta(ckpt) or {}).get("finetune") or {}).get("class_names") if ckpt else None

    def show_state(self) -> None:
        text = (f"run [b]{plain(self.run_name)}[/]  {self.method}  {plain(self.state)}  ({self.points} points)"
                if self.run_name else "no run: press n to finetune a model, a to attach to a run")
        if self.state in ("stopped", "crashed"):
            text += "  (r resumes)"
        self.query_one("#ft-status", Label).update(text)

    # ------------------------------------------------------------------------------ wizard
    def action_new(self) -> None:
        preset = self.preset
        if preset.finetune.method not in ("classify", "instruct", "preference", "rl"):
            preset = method_preset("classify", preset)
        self.open_step(0, preset)

    def open_step(self, index: int, preset: config.Preset) -> None:
        step = STEPS[index](preset, runs_root=self.app.runs_root, workdir=self.app.workdir)

        def done(result: tuple[str, config.Preset] | None) -> None:
            if result is None:
                return
            action, p = result
            if action == "launch":
                self.launch(p)
            elif action == "back":
                self.open_step(max(0, index - 1), p)
            else:
                self.open_step(min(len(STEPS) - 1, index + 1), p)
        self.app.push_screen(step, done)

    def launch(self, preset: config.Preset | None = None, resume: bool = False) -> None:
        current = self.run_name

        def start() -> core_runs.Handle:
            if not resume:
                assert preset is not None
                return core_runs.launch("finetune", preset, root=self.app.runs_root)
            # the attached run when it stopped, else the newest stopped finetuning run
            prev = next((r for r in core_runs.list_runs(self.app.runs_root)
                         if r.stage == "finetune" and r.state in ("stopped", "crashed", "failed")), None)
            if current:
                cur = core_runs.open_run(current, self.app.runs_root)
                if cur.state in ("stopped", "crashed", "failed"):
                    prev = cur
            if prev is None:
                raise UserError("no stopped finetuning run to resume")
            return core_runs.relaunch(prev, config.load(prev.preset_path))
        launch_run(self, "finetune", "finetune", start)

    def action_pause_rollouts(self) -> None:
        view = self.query_one(RolloutView)
        if view.display:
            self.notify("rollouts paused" if view.toggle_pause() else "rollouts follow the run")

    def action_log_scale(self) -> None:
        chart = self.query_one(LossChart)
        chart.log_y = not chart.log_y
