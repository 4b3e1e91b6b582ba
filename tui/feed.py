"""Following a run from the TUI: a thread-safe buffer of its events, filled by a worker.

The worker (`follow_run`, called inside a screen's thread worker) reads `events.jsonl` with
`core.runs.read_events` from the last offset, appends whole events to the feed and posts one
coalescing `MetricsArrived` per poll; the screen drains the feed on the UI thread. Polling is
cheap (one read of the new bytes), so following costs the training process nothing but I/O.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from textual.message import Message

from core import runs as core_runs
from tui.messages import MetricsArrived, RunEnded

FINAL_STATES = ("finished", "failed", "stopped", "crashed")


class RunFeed:
    """Events of one run that the UI has not taken yet."""

    def __init__(self, run: core_runs.Run):
        self.run = run
        self._events: list[dict] = []
        self._lock = threading.Lock()
        self.offset = 0
        self.total = 0

    def push(self, events: list[dict]) -> None:
        with self._lock:
            self._events.extend(events)
            self.total += len(events)

    def drain(self) -> list[dict]:
        with self._lock:
            out, self._events = self._events, []
        return out


def follow_run(feed: RunFeed, post: Callable[[Message], object], cancelled: Callable[[], bool],
               poll_s: float = 0.5) -> str:
    """Poll the run's event log until it ends or `cancelled()`; returns the final state seen."""
    run = feed.run
    while not cancelled():
        events, feed.offset = core_runs.read_events(run.events_path, feed.offset)
        if events:
            feed.push(events)
            post(MetricsArrived(run.name, len(events)))
            time.sleep(poll_s)  # batch what arrives meanwhile into the next read
            continue
        status = run.status()
        state = status.get("state", "unknown")
        if state in FINAL_STATES:
            events, feed.offset = core_runs.read_events(run.events_path, feed.offset)
            if events:
                feed.push(events)
                post(MetricsArrived(run.name, len(events)))
            post(RunEnded(run.name, state, status.get("error") or ""))
            return state
        time.sleep(poll_s)
    return "detached"
