"""App-wide messages of the workbench, named in the past tense.

Workers (threads) post these; screens and the app handle them on the UI thread. Per-step floods
coalesce: a `MetricsArrived` replaces an unhandled one of the same run, and the handler drains the
run's feed (`tui.feed.RunFeed`), so no event is lost however many messages were merged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message


@dataclass
class PresetChanged(Message):
    """The current preset was switched, edited or reloaded."""

    name: str
    source: str  # built-in name, file path, or "<edited>"


@dataclass
class PresetSaved(Message):
    path: str


@dataclass
class RunStarted(Message):
    """A stage was launched as a detached run."""

    run_name: str
    stage: str


@dataclass
class RunAttached(Message):
    """A screen began following a run (started here, from the CLI or another terminal)."""

    run_name: str
    stage: str


@dataclass
class MetricsArrived(Message):
    """New events of a run are waiting in its feed."""

    run_name: str
    count: int = 0

    def can_replace(self, message: Message) -> bool:
        if isinstance(message, MetricsArrived) and message.run_name == self.run_name:
            self.count += message.count
            return True
        return False


@dataclass
class RunEnded(Message):
    """A followed run reached a final state (finished, failed, stopped, crashed)."""

    run_name: str
    state: str
    error: str = ""


@dataclass
class RunsListed(Message):
    """The runs folder was read: (name, stage, preset, state, started) per run, newest first."""

    rows: list[dict] = field(default_factory=list)

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsListed)


@dataclass
class WorkFailed(Message):
    """A worker's call into core raised; `message` is what the user should read."""

    what: str
    message: str
