"""Pretrain: start, stop and resume pretraining; watch it live; attach to any run; overlay past runs.

Training always runs in its own process (`core.runs.launch`), so closing the workbench or losing
the SSH connection leaves it going; this screen follows the run's event log (`tui.feed`) and draws
the loss chart, the latest metrics (learning rate, gradient norm, tokens/s, MFU, ETA) and samples.
On start it attaches to the newest live pretraining run, wherever that run was started from.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Static

from core import runs as core_runs
from core.errors import UserError
from tui.text import plain
from tui.messages import MetricsArrived, RunAttached
from tui.screens.live_run import LiveRunScreen, follow, launch_run, new_events, sample_markup, state_after
from tui.screens.shared import number
from tui.widgets.advice_panel import AdvicePanel
from tui.widgets.loss_chart import LossChart
from tui.widgets.run_picker import RunPicker


def _duration(s: object) -> str:
    if not isinstance(s, (int, float)):
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _bytes(b: object) -> str:
    if not isinstance(b, (int, float)) or not b:
        return "-"
    for unit, k in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if b >= k:
            return f"{b / k:.1f} {unit}"
    return f"{b:.0f} B"


def metrics_text(train: dict, val: dict) -> str:
    """The latest train and val events as the metrics panel's lines."""
    rows = [
        ("step", number(train.get("step"), "{:,}")),
        ("loss", number(train.get("loss"), "{:.4f}")),
        ("val loss", number(val.get("val_loss"), "{:.4f}")),
        ("val ppl", number(val.get("val_ppl"), "{:.2f}")),
        ("lr", number(train.get("lr"), "{:.2e}")),
        ("grad norm", number(train.get("grad_norm"), "{:.3f}")),
        ("tokens", number(train.get("tokens"), "{:,}")),
        ("tokens/s", number(train.get("tokens_per_s"), "{:,.0f}")),
        ("MFU", number(100 * train["mfu"] if isinstance(train.get("mfu"), (int, float)) else None, "{:.1f}%")),
        ("step time", number(train.get("step_ms"), "{:.0f} ms")),
        ("ETA", _duration(train.get("eta_s"))),
        ("memory", _bytes(train.get("mem_bytes"))),
    ]
    return "\n".join(f"[b]{k:<10}[/] {v}" for k, v in rows)


class PretrainScreen(LiveRunScreen):
    MODE = "pretrain"
    HELP = """Pretraining of the current preset's model on its token shards.

**s** starts a run of the current preset (it prepares the data and tokenizer first when they
are missing). The run is its own process: quit the workbench or drop the SSH connection and it
keeps training; open the workbench again and this screen attaches to it.
**x** asks the run to stop at its next step (it saves a checkpoint); **r** resumes the latest
pretraining run of this preset from its last checkpoint.
**a** attaches to another run (one started from the CLI or another terminal);
**o** lays a past run's loss under the current one, **c** clears those overlays.
**l** toggles a log loss axis, **t** cycles the x axis (step, tokens, time), **m** the smoothing.
Live evaluations (train.eval_tasks) are drawn against the chart's right axis.
With the chart focused, **left**/**right** (page up/down, home/end) move a cursor over the steps.
**f** forks the attached run: from the checkpoint nearest at or before the cursor (else pick one
of its checkpoints), change settings in the preset editor (the learning rate and schedule keep
the optimizer state, a new batch size or data starts it afresh, an architecture change is
refused), and the fork starts; its chart begins with the parent's curve up to the fork step."""

    BINDINGS = [
        Binding("s", "start", "start"),
        Binding("x", "stop", "stop"),
        Binding("r", "resume", "resume"),
        Binding("a", "attach", "attach"),
        Binding("f", "fork", "fork", show=False),
        Binding("o", "overlay", "overlay"),
        Binding("c", "clear_overlays", "clear overlays", show=False),
        Binding("l", "log_scale", "log y"),
        Binding("t", "x_axis", "x axis"),
        Binding("m", "smoothing", "smoothing", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        yield Label("no run: press s to start one, a to attach", id="run-status")
        with Horizontal(id="pretrain-main"):
            yield LossChart(id="loss-chart")
            with Vertical(id="pretrain-side"):
                yield Static(metrics_text({}, {}), id="metrics")
                yield Static("", id="sample")
        yield AdvicePanel("pretrain", id="advice")

    def on_mount(self) -> None:
        self.last_train: dict = {}
        self.last_val: dict = {}
        super().on_mount()
        self.watch(self.app, "live_runs", self._live_runs_changed, init=True)

    def preset_changed(self, preset) -> None:
        self.query_one(AdvicePanel).update_with_corpus_facts(preset)

    def _live_runs_changed(self, old, new) -> None:
        live = self.app.live_run("pretrain")
        if live and self.run_name is None:
            self.attach(live)

    # ---------------------------------------------------------------------------- runs
    def attach(self, name: str) -> None:
        try:
            run = core_runs.open_run(name, self.app.runs_root)
        except UserError as e:
            self.notify(str(e), severity="error")
            return
        self.run_name = name
        self.state = run.state
        self.last_train, self.last_val, self.points = {}, {}, 0
        chart = self.query_one(LossChart)
        chart.clear_run()
        chart.remove_overlays()
        self.feed = follow(self, run)
        if run.raw_status().get("parent"):
            self.load_parent(run)
        self.show_state()
        self.post_message(RunAttached(name, run.stage))

    def on_metrics_arrived(self, message: MetricsArrived) -> None:
        events = new_events(self.feed, message)
        if events is None:
            return
        self.points += self.query_one(LossChart).add_events(events)
        sample = None
        for ev in events:
            kind = ev.get("kind")
            if kind == "train":
                self.last_train = ev
            elif kind == "val":
                self.last_val = ev
            elif kind == "sample":
                sample = ev
            self.state = state_after(ev, self.state)
        self.query_one("#metrics", Static).update(metrics_text(self.last_train, self.last_val))
        if sample is not None:
            self.query_one("#sample", Static).update(sample_markup(sample))
        self.show_state()

    def show_state(self) -> None:
        self.query_one("#run-status", Label).update(
            f"run [b]{plain(self.run_name)}[/]  {plain(self.state)}  ({self.points} points)" if self.run_name
            else "no run: press s to start one, a to attach")

    # ------------------------------------------------------------------------- actions
    def action_start(self) -> None:
        self.launch()

    def launch(self, resume: bool = False) -> None:
        preset = self.app.preset

        def start() -> core_runs.Handle:
            if not resume:
                return core_runs.launch("pretrain", preset, root=self.app.runs_root)
            prev = core_runs.latest_run(preset.name, "pretrain", self.app.runs_root, state=None)
            if prev is None:
                raise UserError(f"{preset.name}: no earlier pretraining run to resume")
            if prev.state == "running":
                raise UserError(f"{prev.name} is still running")
            return core_runs.relaunch(prev, preset)
        launch_run(self, "pretrain", "pretrain", start)

    def action_overlay(self) -> None:
        def done(name: str | None) -> None:
            if name:
                self.load_overlay(name)
        self.app.push_screen(RunPicker("Overlay a past run", self.app.runs_root, stage="pretrain",
                                       clock=self.app.clock), done)

    @work(thread=True, exit_on_error=False, group="pretrain-overlay")
    def load_overlay(self, name: str) -> None:
        events = core_runs.open_run(name, self.app.runs_root).events()
        self.app.call_from_thread(self.query_one(LossChart).set_overlay, name, events)

    @work(thread=True, exit_on_error=False, group="pretrain-parent")
    def load_parent(self, run: core_runs.Run) -> None:
        """A fork's chart starts with its parent's curve up to the fork step."""
        from core.fork import parent_events

        events = parent_events(run)
        if events:
            name = f"parent {events[-1]['parent']}"
            self.app.call_from_thread(self.query_one(LossChart).set_overlay, name, events)

    def action_clear_overlays(self) -> None:
        self.query_one(LossChart).remove_overlays()

    def action_log_scale(self) -> None:
        chart = self.query_one(LossChart)
        chart.log_y = not chart.log_y

    def action_x_axis(self) -> None:
        self.query_one(LossChart).cycle_x_axis()

    def action_smoothing(self) -> None:
        self.query_one(LossChart).cycle_smoothing()
