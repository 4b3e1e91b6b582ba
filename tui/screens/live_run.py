"""Watching runs from a screen: launch a stage as a run, follow its event log, show its progress.

Every screen that starts or watches a run does the same few things: launch it in a thread worker
(posting `RunStarted` or `WorkFailed`), follow its `events.jsonl` in another worker (`tui.feed`),
and drain the feed when `MetricsArrived` names that run. The functions here do those once.
`LiveRunScreen` adds what Pretrain and Finetune share on top: one attached run with a state line,
and the keys to stop it, resume it and attach to another; `ProgressLine` is the status line and
progress bar of the short runs (data shards, tokenizer training).
"""

from __future__ import annotations

from collections.abc import Callable

from textual.screen import Screen
from textual.widgets import Label, ProgressBar
from textual.worker import get_current_worker

from core import runs as core_runs
from core.errors import UserError
from tui.text import plain
from tui.feed import RunFeed, follow_run
from tui.messages import MetricsArrived, RunEnded, RunStarted, WorkFailed
from tui.screens.base import StageScreen
from tui.screens.shared import progress_of
from tui.widgets.run_picker import RunPicker


def launch_run(screen: Screen, stage: str, what: str, start: Callable[[], core_runs.Handle]) -> None:
    """Call `start` (which launches or relaunches a run) in a thread worker of `screen`; post
    `RunStarted` when it returns, `WorkFailed(what, ...)` when it raises a UserError."""
    def work() -> None:
        try:
            handle = start()
        except UserError as e:
            screen.post_message(WorkFailed(what, str(e)))
            return
        screen.post_message(RunStarted(handle.run.name, stage))

    screen.run_worker(work, thread=True, exclusive=True, exit_on_error=False, group=f"{stage}-launch")


def follow(screen: Screen, run: core_runs.Run) -> RunFeed:
    """A feed of `run`'s events, filled by a thread worker of `screen` that posts `MetricsArrived`
    and finally `RunEnded`; following another run cancels the previous worker."""
    feed = RunFeed(run)

    def poll() -> None:
        worker = get_current_worker()
        follow_run(feed, screen.post_message, lambda: worker.is_cancelled, screen.app.poll_s)

    screen.run_worker(poll, thread=True, exclusive=True, exit_on_error=False, group="follow")
    return feed


def new_events(feed: RunFeed | None, message: MetricsArrived) -> list[dict] | None:
    """The events waiting in `feed` when `message` is about its run; None when it is about another."""
    if feed is None or message.run_name != feed.run.name:
        return None
    return feed.drain()


def state_after(ev: dict, state: str) -> str:
    """The state line of a run after its `status` or `progress` event (others leave it)."""
    if ev.get("kind") == "status":
        return ev.get("state", state)
    if ev.get("kind") == "progress":
        return f"{ev.get('what', 'working')} {ev.get('done', 0)}/{ev.get('total') or '?'}"
    return state


def sample_markup(ev: dict) -> str:
    """A `sample` event as markup: the prompt in italics, then what the model wrote."""
    return (f"[b]sample[/] (step {ev.get('step', '?')})\n[i]{plain(str(ev.get('prompt', '')))}[/i]"
            f"{plain(str(ev.get('text', '')))}")


class LiveRunScreen(StageScreen):
    """A stage screen attached to one run at a time (Pretrain, Finetune): x stops it, r resumes,
    a attaches to another. A subclass gives `attach(name)`, `launch(resume=...)` and
    `show_state()`, and names its run picker in ATTACH_TITLE and ATTACH_STAGE."""

    ATTACH_TITLE = "Attach to a run"
    ATTACH_STAGE: str | None = None  # the stage the picker lists; None lists every run

    def on_mount(self) -> None:
        self.feed: RunFeed | None = None
        self.run_name: str | None = None
        self.state = ""
        self.points = 0
        super().on_mount()

    def attach(self, name: str) -> None:
        raise NotImplementedError

    def launch(self, *args, resume: bool = False) -> None:
        raise NotImplementedError

    def show_state(self) -> None:
        """Hook: redraw the run's state line."""

    def on_run_started(self, message: RunStarted) -> None:
        if message.stage != self.MODE:
            return
        self.notify(f"started {message.run_name}", title=self.MODE)
        self.attach(message.run_name)

    def on_run_ended(self, message: RunEnded) -> None:
        if message.run_name != self.run_name:
            return
        self.state = message.state + (f": {message.error}" if message.error else "")
        self.show_state()

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
        self.show_state()

    def action_resume(self) -> None:
        self.launch(resume=True)

    def action_fork(self) -> None:
        """From the loss chart's cursor when the chart has focus and a cursor, else through a picker."""
        from tui.screens.fork import start_fork
        from tui.widgets.loss_chart import LossChart

        chart = self.focused if isinstance(self.focused, LossChart) else None
        start_fork(self, self.MODE, self.run_name, chart.cursor_step if chart is not None else None)

    def action_attach(self) -> None:
        def done(name: str | None) -> None:
            if name:
                self.attach(name)
        self.app.push_screen(RunPicker(self.ATTACH_TITLE, self.app.runs_root, stage=self.ATTACH_STAGE,
                                       clock=self.app.clock), done)


class ProgressLine:
    """A short run's status line and progress bar (the bar hides until a run starts); `logs` also
    shows the run's log messages on the line."""

    def __init__(self, status: Label, bar: ProgressBar, logs: bool = False) -> None:
        self.status, self.bar, self.logs = status, bar, logs
        bar.display = False

    def started(self, name: str) -> None:
        self.bar.display = True
        self.bar.update(total=None, progress=0)
        self.status.update(f"run {name}: starting")

    def show(self, run_name: str, events: list[dict]) -> None:
        for ev in events:
            if ev.get("kind") == "progress":
                _, label = progress_of(ev)
                if ev.get("total"):
                    self.bar.update(total=ev["total"], progress=ev.get("done", 0))
                self.status.update(f"run {run_name}: {plain(label)}")
            elif ev.get("kind") == "log" and self.logs:
                self.status.update(f"run {run_name}: {plain(str(ev.get('message', '')))[:80]}")

    def ended(self, message: RunEnded) -> None:
        err = f": {plain(message.error)}" if message.error else ""
        self.status.update(f"run {message.run_name}: {message.state}{err}")
        if message.state == "finished":
            self.bar.update(total=1, progress=1)
