"""Inspect: what a model finds hard, for any checkpoint (opened from the Model screen with `i`).

A typed text (enter) or one of the held-out documents of the checkpoint's run is scored by
core.token_loss in a thread worker; the tokens are drawn coloured by their loss (tui/widgets/
loss_view.py), the cursor starts on the hardest one, and the panel beside shows, for the token
under the cursor, its loss, probability and rank and the model's top-5 predictions there. `h`
ranks the documents of a validation batch by their mean token loss and lists the hardest.
This lives beside the Model screen because it is about one checkpoint's predictions, not about
how a tokenizer splits text (the Tokenizer screen) or about the architecture being designed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from core.errors import UserError
from tui.text import plain
from tui.widgets.loss_view import LossView, legend
from tui.widgets.model_picker import ModelPicker
from tui.widgets.priority_footer import PriorityFooter
from tui.widgets.token_view import TokenView


@dataclass
class Scored(Message):
    """A worker's result: the model it loaded (kept for the next text) and what it scored, or why not."""
    spec: str
    loaded: tuple[Any, Any, dict] | None
    results: list  # core.token_loss.TextLoss: one for a typed text, the hardest documents for `h`
    hardest: bool = False
    error: str = ""


def top_text(t: Any) -> str:
    """The panel for one scored token: its loss, probability and rank, and the model's top 5 there."""
    rows = [f"[b]token[/] {plain(repr(t.text))}", f"[b]loss[/]  {t.loss:.3f} nats",
            f"[b]p[/]     {t.prob:.3f}   [b]rank[/] {t.rank}", "", "[b]the model expected[/]"]
    rows += [f"{p:6.3f}  {plain(repr(s))}" for s, p in t.top]
    return "\n".join(rows)


class InspectScreen(Screen):
    DEFAULT_CSS = """
    InspectScreen #inspect-body { height: 1fr; }
    InspectScreen #inspect-model { height: 1; padding: 0 1; }
    InspectScreen #inspect-left { width: 1fr; }
    InspectScreen LossView { height: 1fr; }
    InspectScreen #inspect-top { width: 34; padding: 0 1; border-left: solid $primary 40%; }
    InspectScreen #inspect-hardest { height: 8; }
    InspectScreen #inspect-legend { height: 1; padding: 0 1; }
    """
    BINDINGS = [Binding("escape", "app.pop_screen", "back"), Binding("o", "pick_model", "model"),
                Binding("h", "hardest", "hardest held-out"), Binding("t", "focus_text", "text")]
    AUTO_FOCUS = None

    def __init__(self, spec: str, runs_root: Any = None) -> None:
        super().__init__()
        self.spec, self.runs_root = spec, runs_root
        self.loaded: tuple[Any, Any, dict] | None = None  # (model, tokenizer, meta) of self.spec
        self.documents: list = []

    def compose(self) -> ComposeResult:
        yield Label("", id="inspect-model")
        with Horizontal(id="inspect-body"):
            with Vertical(id="inspect-left"):
                yield Input(placeholder="a text to score (enter); h: the hardest held-out documents", id="inspect-text")
                yield LossView(id="inspect-tokens")
                yield OptionList(id="inspect-hardest")
            yield Static("", id="inspect-top")
        yield Static("", id="inspect-legend")
        yield PriorityFooter()

    def on_mount(self) -> None:
        self.query_one(OptionList).display = False
        self.query_one("#inspect-legend", Static).update(legend(self.query_one(LossView).few_colours()))
        self.show_model()
        # the token view, not the text field, has the keys at first: h, o and t must not type
        self.call_after_refresh(self.query_one(LossView).focus)

    def show_model(self, note: str = "") -> None:
        self.query_one("#inspect-model", Label).update(f"[b]model[/] {plain(self.spec)}  (o: another, esc: back)"
                                                       + (f"  {plain(note)}" if note else ""))

    # ------------------------------------------------------------------------------ work
    def score(self, text: str) -> None:
        self.show_model("scoring\u2026")
        self._score(self.spec, self.loaded, text, False)

    @work(thread=True, exclusive=True, exit_on_error=False, group="inspect-score")
    def _score(self, spec: str, loaded: tuple | None, text: str, hardest: bool) -> None:
        from core.token_loss import hardest as rank, held_out_documents, load_scorer, token_losses

        try:
            loaded = loaded or load_scorer(spec, root=self.runs_root)
            model, tok, meta = loaded
            if hardest:
                results = rank(model, tok, held_out_documents(meta["path"], tok), n=8)
            else:
                results = [token_losses(model, tok, text)]
        except UserError as e:
            self.post_message(Scored(spec, None, [], hardest, str(e).split("\n")[0]))
            return
        self.post_message(Scored(spec, loaded, results, hardest))

    def on_scored(self, message: Scored) -> None:
        if message.spec != self.spec:
            return
        if message.error:
            self.show_model()
            self.notify(plain(message.error), title="cannot inspect", severity="error", timeout=8)
            return
        self.loaded = message.loaded
        self.show_model()
        if message.hardest:
            self.documents = message.results
            hardest = self.query_one(OptionList)
            hardest.clear_options()
            hardest.add_options([Option(f"{r.mean_loss:5.2f}  {plain(r.text[:70].replace(chr(10), ' '))}", id=str(i))
                                 for i, r in enumerate(message.results)])
            hardest.display = bool(message.results)
            if not message.results:
                self.notify("the held-out set has no documents")
                return
        self.show(message.results[0])

    def show(self, result: Any) -> None:
        view = self.query_one(LossView)
        view.set_tokens(result.tokens)
        if view.hardest is not None:
            view.action_select(view.hardest)
        view.focus()

    # --------------------------------------------------------------------------- events
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.score(event.value)

    def on_token_view_selected(self, message: TokenView.Selected) -> None:
        view = self.query_one(LossView)
        self.query_one("#inspect-top", Static).update(top_text(view.spans[message.index]))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.show(self.documents[int(event.option.id or 0)])

    def action_hardest(self) -> None:
        self.show_model("scoring the held-out documents\u2026")
        self._score(self.spec, self.loaded, "", True)

    def action_focus_text(self) -> None:
        self.query_one(Input).focus()

    def action_pick_model(self) -> None:
        def done(spec: str | None) -> None:
            if spec and spec != self.spec:
                self.spec, self.loaded = spec, None
                self.show_model()
        self.app.push_screen(ModelPicker("Inspect which model?", self.runs_root, lm_only=True, current=self.spec), done)
