"""LossView: a text's tokens coloured by their loss under a model (core.token_loss), a cursor on one.

The five levels of `core.token_loss.loss_level` go from green (easy) to red (the hardest tokens of
the text). With 16 colours or none (NO_COLOR) neighbouring levels collapse into one colour, so each
level also has its own shape: dim, plain, italic, underline, bold underline. Left/right (home, end)
move the cursor and post `TokenView.Selected`, like the tokenizer's TokenView it extends.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style
from rich.text import Text

from core.token_loss import LEVELS, loss_level
from tui.widgets.token_view import TokenView

COLOURS = ("on dark_green", "on green4", "on yellow4", "on dark_orange3", "on red3")
SHAPES = ("dim", "", "italic", "underline", "bold underline")  # what tells the levels apart without colour
assert len(COLOURS) == len(SHAPES) == LEVELS


def level_style(level: int, few_colours: bool) -> str:
    return f"white {COLOURS[level]}" + (f" {SHAPES[level]}" if few_colours and SHAPES[level] else "")


class LossView(TokenView):
    """`set_tokens(core.token_loss.TokenLoss list)`; `hardest` is the index of the highest loss."""

    high = 0.0  # the text's highest token loss: the top of the scale

    def set_tokens(self, tokens: Sequence) -> None:
        self.set_spans(tokens)
        self.high = max((t.loss for t in tokens), default=0.0)

    @property
    def hardest(self) -> int | None:
        return max(range(len(self.spans)), key=lambda i: self.spans[i].loss) if self.spans else None

    def levels(self) -> list[int]:
        return [loss_level(t.loss, self.high) for t in self.spans]

    def render(self) -> Text:
        if not self.spans:
            return Text("(type a text and press enter, or h for the hardest held-out documents)", style="dim")
        few = self.few_colours()
        out = Text()
        for i, (t, level) in enumerate(zip(self.spans, self.levels())):
            style = level_style(level, few) + (" reverse" if i == self.cursor else "")
            out.append(t.text.replace("\n", "\u21b5\n") or "\u2205", Style.parse(style))
        return out


def legend(few_colours: bool) -> Text:
    """One line naming the levels in their own styles."""
    out = Text("loss: ")
    for level, name in enumerate(("easy", "", "", "", "hardest")):
        out.append(f" {name or '.'} ", Style.parse(level_style(level, few_colours)))
    return out
