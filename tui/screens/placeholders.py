"""Finetune, Eval and Chat: placeholders until TUI part 2 fills them; each says which command
does the job meanwhile and shows its stage's rules of thumb for the current preset."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from tui.screens.base import StageScreen
from tui.widgets.advice_panel import AdvicePanel


class PlaceholderScreen(StageScreen):
    COMMANDS_TEXT = ""

    def compose_body(self) -> ComposeResult:
        yield Static(self.COMMANDS_TEXT, classes="placeholder")
        yield AdvicePanel(self.MODE, id="advice")

    def preset_changed(self, preset) -> None:
        name = preset.name or "PRESET"
        self.query_one(".placeholder", Static).update(self.COMMANDS_TEXT.replace("PRESET", name))
        self.query_one(AdvicePanel).update_for(preset)


class FinetuneScreen(PlaceholderScreen):
    MODE = "finetune"
    HELP = "Finetuning wizards (classification, instruction, preference) arrive with TUI part 2."
    COMMANDS_TEXT = ("[b]Finetuning[/] has no screen yet. Meanwhile, from a shell:\n\n"
                     "  llmlab finetune PRESET --set finetune.method=classify\n"
                     "  llmlab finetune PRESET --set finetune.method=instruct\n"
                     "  llmlab finetune PRESET --set finetune.method=preference\n\n"
                     "The run shows up live in [b]8 Runs[/].")


class EvalScreen(PlaceholderScreen):
    MODE = "eval"
    HELP = "The evaluation report arrives with TUI part 2."
    COMMANDS_TEXT = ("[b]Evaluation[/] has no screen yet. Meanwhile, from a shell:\n\n"
                     "  llmlab eval PRESET\n"
                     "  llmlab eval PRESET --set eval.model=run:PRESET:pretrain\n\n"
                     "Results land in the run's report.json; follow the run in [b]8 Runs[/].")


class ChatScreen(PlaceholderScreen):
    MODE = "chat"
    HELP = "The chat pane arrives with TUI part 2."
    COMMANDS_TEXT = ("[b]Chat[/] has no screen yet. Meanwhile, from a shell:\n\n"
                     "  llmlab chat run:PRESET:pretrain\n"
                     "  llmlab generate run:PRESET:pretrain \"Once upon a time\"\n")
