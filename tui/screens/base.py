"""StageScreen: what every stage screen shares: the mode bar, the footer, help text, the preset.

A stage screen composes its body in `compose_body`, reacts to a new preset in `preset_changed`
(called on mount and whenever the app's preset changes), and gives `?` its help in `HELP`.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.screen import Screen
from textual.worker import Worker

from core import config
from tui.messages import WorkFailed
from tui.widgets.mode_bar import ModeBar
from tui.widgets.priority_footer import PriorityFooter


class StageScreen(Screen):
    MODE = ""
    HELP = ""
    # nothing that takes typing gets focus on arrival, so 1-8 and the screen's keys work at once
    AUTO_FOCUS = None
    # digits type into a focused field; esc leaves it so that 1-8 switch stages again
    BINDINGS = [Binding("question_mark", "app.help", "help", key_display="?"),
                Binding("escape", "leave_field", "leave field", show=False)]

    def compose(self) -> ComposeResult:
        yield ModeBar(self.MODE)
        with Container(id="body", classes=f"{self.MODE}-body"):
            yield from self.compose_body()
        yield PriorityFooter()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.watch(self.app, "preset", self._preset_watch, init=True)

    def _preset_watch(self, old: config.Preset, new: config.Preset) -> None:
        """Every screen follows a new preset; one that fails to must not end the app (an exception
        in a watcher does, and it would take the edited preset with it). A screen not on show follows
        when it is shown again: a typed edit then costs the current screen's update, not all eight
        (measured: 230-270 ms of CPU per applied edit with every screen mounted, 110 ms of it Model's)."""
        if self.is_mounted and self not in self.app.screen_stack:  # under a dialog it is still on show
            self._preset_stale = True
            return
        self._preset_stale = False
        try:
            self.query_one(ModeBar).show_preset(self.app.preset_label())
            self.preset_changed(new)
        except Exception as e:  # noqa: BLE001
            self.app.report_failure(f"{self.MODE} screen: showing the new preset", e)

    def _on_screen_resume(self) -> None:
        if getattr(self, "_preset_stale", False):
            self._preset_watch(self.app.preset, self.app.preset)

    def preset_changed(self, preset: config.Preset) -> None:
        """Hook: the current preset is `preset` (on mount and on every change)."""

    @property
    def preset(self) -> config.Preset:
        return self.app.preset

    def action_leave_field(self) -> None:
        self.set_focus(None)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.on_worker_state_changed(event)  # a worker that raised becomes a notification

    def on_work_failed(self, message: WorkFailed) -> None:
        self.notify(message.message, title=message.what, severity="error", timeout=8)
