"""ModeBar: the row of stages at the top of every screen (click or press its number) and the preset.

The current stage is highlighted; the preset name on the right opens the preset picker when clicked.
Below COMPACT_BELOW columns the other stages show as their numbers only, so the preset name and its
advice mark stay on the bar at 80 columns.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

MODES = ("data", "tokenizer", "model", "pretrain", "finetune", "eval", "chat", "runs")
COMPACT_BELOW = 110  # columns: under this, stages other than the current one show as numbers


class ModeLink(Static):
    def __init__(self, mode: str, number: int, current: bool) -> None:
        super().__init__(f"{number} {mode.capitalize()}", classes="mode-link" + (" -current" if current else ""),
                         id=f"mode-{mode}", markup=False)
        self.mode, self.number, self.current = mode, number, current

    def show(self, compact: bool) -> None:
        self.update(str(self.number) if compact and not self.current else f"{self.number} {self.mode.capitalize()}")

    def on_click(self) -> None:
        self.app.switch_mode(self.mode)


class PresetLink(Static):
    def on_click(self) -> None:
        self.app.run_action("pick_preset")


class ModeBar(Horizontal):
    DEFAULT_CSS = """
    ModeBar { height: 1; dock: top; background: $panel; }
    ModeBar .mode-link { width: auto; padding: 0 1; color: $text-muted; }
    ModeBar .mode-link:hover { background: $boost; color: $text; }
    ModeBar .mode-link.-current { background: $primary; color: $text; text-style: bold; }
    ModeBar #preset-link { width: 1fr; content-align: right middle; padding: 0 1; color: $text-accent;
                           text-overflow: ellipsis; text-wrap: nowrap; }
    ModeBar #preset-link:hover { text-style: underline; }
    """

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        for i, m in enumerate(MODES, 1):
            yield ModeLink(m, i, m == self.current)
        yield PresetLink("", id="preset-link")

    def on_resize(self) -> None:
        compact = self.app.size.width < COMPACT_BELOW
        for link in self.query(ModeLink):
            link.show(compact)

    def show_preset(self, label: str) -> None:
        self.query_one("#preset-link", PresetLink).update(label)
