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
from textual.worker import get_current_worker

from core import runs as core_runs
from core.errors import UserError
from tui.feed import RunFeed, follow_run
from tui.messages import MetricsArrived, RunAttached, RunEnded, RunStarted, WorkFailed
from tui.screens.base import StageScreen
from tui.widgets.advice_panel import AdvicePanel
from tui.widgets.loss_chart import LossChart
from tui.widgets.run_picker import RunPicker


def _num(x: object, fmt: str) -> str:
    return fmt.format(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"


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
        ("step", _num(train.get("step"), "{:,}")),
        ("loss", _num(train.get("loss"), "{:.4f}")),
        ("val loss", _num(val.get("val_loss"), "{:.4f}")),
        ("val ppl", _num(val.get("val_ppl"), "{:.2f}")),
        ("lr", _num(train.get("lr"), "{:.2e}")),
        ("grad norm", _num(train.get("grad_norm"), "{:.3f}")),
        ("tokens", _num(train.get("tokens"), "{:,}")),
        ("tokens/s", _num(train.get("tokens_per_s"), "{:,.0f}")),
        ("MFU", _num(100 * train["mfu"] if isinstance(train.get("mfu"), (int, float)) else None, "{:.1f}%")),
        ("step time", _num(train.get("step_ms"), "{:.0f} ms")),
        ("ETA", _duration(train.get("eta_s"))),
        ("memory", _bytes(train.get("mem_bytes"))),
    ]
    return "\n".join(f"[b]{k:<10}[/] {v}" for k, v in rows)


class PretrainScreen(StageScreen):
    MODE = "pretrain"
    HELP = """Pretraining of the current preset's model on its token shards.

**s** starts a run of the current preset (it prepares the data and tokenizer first when they
are missing). The run is its own process: quit the workbench or drop the SSH connection and it
keeps training; open the workbench again and this screen attaches to it.
**x** asks the run to stop at its next step (it saves a checkpoint); **r** resumes the latest
pretraining run of this preset from its last checkpoint.
**a** attaches to another run (one started from the CLI or another terminal);
**o** lays a past run's loss under the current one, **c** clears those overlays.
**l** toggles a log loss axis, **t** cycles the x axis (step, tokens, time), **m** the smoothing."""

    BINDINGS = [
        Binding("s", "start", "start"),
        Binding("x", "stop", "stop"),
        Binding("r", "resume", "resume"),
        Binding("a", "attach", "attach"),
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
        self.feed: RunFeed | None = None
        self.run_name: str | None = None
        self.state = ""
        self.last_train: dict = {}
        self.last_val: dict = {}
        self.points = 0
        super().on_mount()
        self.watch(self.app, "live_runs", self._live_runs_changed, init=True)

    def preset_changed(self, preset) -> None:
        self.query_one(AdvicePanel).update_for(preset)

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
        self.feed = RunFeed(run)
        self._show_status()
        self.post_message(RunAttached(name, run.stage))
        self.follow(self.feed)

    @work(thread=True, exclusive=True, exit_on_error=False, group="pretrain-follow")
    def follow(self, feed: RunFeed) -> None:
        worker = get_current_worker()
        follow_run(feed, self.post_message, lambda: worker.is_cancelled, self.app.poll_s)

    def on_metrics_arrived(self, message: MetricsArrived) -> None:
        if self.feed is None or message.run_name != self.feed.run.name:
            return
        events = self.feed.drain()
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
            elif kind == "status":
                self.state = ev.get("state", self.state)
            elif kind == "progress":
                self.state = f"{ev.get('what', 'working')} {ev.get('done', 0)}/{ev.get('total') or '?'}"
        self.query_one("#metrics", Static).update(metrics_text(self.last_train, self.last_val))
        if sample is not None:
            self.query_one("#sample", Static).update(
                f"[b]sample[/] (step {sample.get('step', '?')})\n[i]{_escape(sample.get('prompt', ''))}[/i]"
                f"{_escape(sample.get('text', ''))}")
        self._show_status()

    def on_run_ended(self, message: RunEnded) -> None:
        if message.run_name != self.run_name:
            return
        self.state = message.state + (f": {message.error}" if message.error else "")
        self._show_status()

    def _show_status(self) -> None:
        self.query_one("#run-status", Label).update(
            f"run [b]{self.run_name}[/]  {self.state}  ({self.points} points)" if self.run_name
            else "no run: press s to start one, a to attach")

    # ------------------------------------------------------------------------- actions
    def action_start(self) -> None:
        self.launch()

    @work(thread=True, exclusive=True, exit_on_error=False, group="pretrain-launch")
    def launch(self, resume: bool = False) -> None:
        preset = self.app.preset
        try:
            if resume:
                from core.runs import relaunch
                prev = core_runs.latest_run(preset.name, "pretrain", self.app.runs_root, state=None)
                if prev is None:
                    raise UserError(f"{preset.name}: no earlier pretraining run to resume")
                if prev.state == "running":
                    raise UserError(f"{prev.name} is still running")
                handle = relaunch(prev, preset)
            else:
                handle = core_runs.launch("pretrain", preset, root=self.app.runs_root)
        except UserError as e:
            self.post_message(WorkFailed("pretrain", str(e)))
            return
        self.post_message(RunStarted(handle.run.name, "pretrain"))

    def on_run_started(self, message: RunStarted) -> None:
        self.notify(f"started {message.run_name}", title="pretrain")
        self.attach(message.run_name)

    def action_stop(self) -> None:
        if not self.run_name:
            self.notify("no run attached")
            return
        run = core_runs.open_run(self.run_name, self.app.runs_root)
        if run.state not in ("running", "created"):
            self.notify(f"{run.name} is not running ({run.state})")
            return
        core_runs.stop(run)
        self.state = "stopping (saving a checkpoint)"
        self._show_status()

    def action_resume(self) -> None:
        self.launch(resume=True)

    def action_attach(self) -> None:
        def done(name: str | None) -> None:
            if name:
                self.attach(name)
        self.app.push_screen(RunPicker("Attach to a run", self.app.runs_root, clock=self.app.clock), done)

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

    def action_clear_overlays(self) -> None:
        self.query_one(LossChart).remove_overlays()

    def action_log_scale(self) -> None:
        chart = self.query_one(LossChart)
        chart.log_y = not chart.log_y

    def action_x_axis(self) -> None:
        self.query_one(LossChart).cycle_x_axis()

    def action_smoothing(self) -> None:
        self.query_one(LossChart).cycle_smoothing()


def _escape(s: str) -> str:
    from rich.markup import escape
    return escape(str(s))
