"""TokenView: a text as coloured token spans with their ids; a cursor selects one token.

Given `core.tokenizer.inspect.Span`s (and optionally a loss mask), it draws each token on a
cycling background so boundaries show, special tokens inverted, and tokens that carry no loss
dimmed. With 16 colours or none (NO_COLOR, TERM=screen) neighbouring backgrounds can collapse
into one, so every other token is also underlined: the boundary shows by shape. Left/right (home, end) move the selection and posts `TokenView.Selected`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

# 256-colour friendly backgrounds (xterm indices), readable with black text
BACKGROUNDS = ("color(153)", "color(187)", "color(223)", "color(151)", "color(225)", "color(230)")


class TokenView(Widget, can_focus=True):
    """Coloured spans; `show_ids` adds each id after its token; `loss_mask` dims tokens with 0."""

    DEFAULT_CSS = """
    TokenView { height: auto; min-height: 3; padding: 0 1; border: round $primary 50%; }
    TokenView:focus { border: round $accent; }
    """

    BINDINGS = [
        Binding("left", "move(-1)", "prev token", show=False),
        Binding("right", "move(1)", "next token", show=False),
        Binding("home", "jump(0)", "first token", show=False),
        Binding("end", "jump(-1)", "last token", show=False),
        Binding("i", "toggle_ids", "ids"),
    ]

    cursor: reactive[int] = reactive(-1)
    show_ids: reactive[bool] = reactive(False)

    @dataclass
    class Selected(Message):
        view: TokenView
        index: int
        token_id: int

    def __init__(self, spans: Sequence = (), loss_mask: Sequence[int] | None = None, *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.spans = list(spans)
        self.loss_mask = list(loss_mask) if loss_mask is not None else None

    def set_spans(self, spans: Sequence, loss_mask: Sequence[int] | None = None) -> None:
        self.spans = list(spans)
        self.loss_mask = list(loss_mask) if loss_mask is not None else None
        self.cursor = min(self.cursor, len(self.spans) - 1)
        self.refresh(layout=True)

    def few_colours(self) -> bool:
        """16 colours or none: the backgrounds alone cannot tell neighbours apart."""
        app = self.app
        return bool(getattr(app, "no_color", False) or app.ansi_color
                    or app.console.color_system in (None, "standard", "windows"))

    def render(self) -> Text:
        if not self.spans:
            return Text("(no tokens)", style="dim")
        alternate = self.few_colours()
        out = Text()
        for i, s in enumerate(self.spans):
            bg = BACKGROUNDS[i % len(BACKGROUNDS)]
            style = f"black on {bg}"
            if getattr(s, "special", False):
                style = "bold white on color(90)"
            if self.loss_mask is not None and i < len(self.loss_mask) and not self.loss_mask[i]:
                style = "color(245) on color(236)" if not getattr(s, "special", False) else "color(250) on color(238)"
            if alternate and i % 2:
                style += " underline"
            if i == self.cursor:
                style += " reverse bold"
            out.append(s.text or "\u2205", Style.parse(style))
            if self.show_ids:
                out.append(f"{s.id}", Style.parse("dim italic"))
            if s.text.endswith("\\n"):
                out.append("\n")
        return out

    def action_move(self, delta: int) -> None:
        if self.spans:
            self.action_select(max(0, min(len(self.spans) - 1, self.cursor + delta)))

    def action_jump(self, index: int) -> None:
        if self.spans:
            self.action_select(index % len(self.spans))

    def action_select(self, index: int) -> None:
        if 0 <= index < len(self.spans):
            self.cursor = index
            self.post_message(self.Selected(self, index, self.spans[index].id))

    def action_toggle_ids(self) -> None:
        self.show_ids = not self.show_ids
        self.refresh(layout=True)
