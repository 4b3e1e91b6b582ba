"""Chat: talk to any checkpoint, or to two side by side, with the reply streaming token by token.

Every reply is `core.chat.Conversation.stream_reply` running in a thread worker (one per pane). The
worker puts the pieces in the pane's buffer and posts a coalescing `ChatScreen.ReplyStreamed` at
most every 50 ms, so a fast model costs the UI a few dozen updates a second, not one per token,
and key presses stay prompt (tests/bench/chat_responsiveness.py measures it). Escape sets the
pane's cancel event; the partial reply stays in the history. The system prompt and the sampling
fields on the right apply to the next message; ctrl+t shows the prompt exactly as the model will
see it (the checkpoint's chat template applied).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static, TextArea

from core import runs as core_runs
from core.chat import Conversation, Sampling
from core.sampling import check_sampling
from core.errors import UserError
from tui.messages import RunStarted
from tui.text import plain
from tui.screens.base import StageScreen
from tui.widgets.chat_log import ChatLog
from tui.widgets.lineage import short_path
from tui.widgets.model_picker import ModelPicker, model_rows

PANES = ("a", "b")
UI_BATCH_S = 0.05  # pieces that arrive within this window reach the screen as one update

SAMPLING_FIELDS = (("temperature", "temperature", float), ("top_k", "top-k", int), ("top_p", "top-p", float),
                   ("max_new_tokens", "max tokens", int))


@dataclass
class Pane:
    """What one side of the chat holds: the conversation, its cancel event and the piece buffer
    the worker fills and the UI drains."""

    name: str
    conv: Conversation | None = None
    spec: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: list[str] = field(default_factory=list)
    tokens: int = 0
    t0: float = 0.0
    streaming: bool = False
    loading: bool = False

    def push(self, text: str, n_ids: int) -> None:
        with self.lock:
            self.pending.append(text)
            self.tokens += n_ids

    def drain(self) -> tuple[str, int]:
        with self.lock:
            text, self.pending = "".join(self.pending), []
            return text, self.tokens


def field_id(pane: str, key: str) -> str:
    """The id of a sampling field of a pane (A's keep the ids they had before compare mode had its own)."""
    return f"chat-{key}" if pane == "a" else f"chat-{pane}-{key}"


def stats_line(st) -> str:
    dropped = f", {st.dropped_messages} old messages left out" if st.dropped_messages else ""
    ended = {"end": "", "max_tokens": ", hit max tokens", "cancelled": ", stopped"}.get(st.ended, f", {st.ended}")
    return f"{st.tokens} tokens, {st.tokens_per_s:.1f} tokens/s, first token {1000 * st.first_token_s:.0f} ms{ended}{dropped}"


class TemplateScreen(ModalScreen[None]):
    """The prompt as the model sees it: the chat template applied, special tokens spelled out."""

    BINDINGS = [Binding("escape,ctrl+t", "dismiss(None)", "close")]
    DEFAULT_CSS = """
    TemplateScreen { align: center middle; }
    TemplateScreen > Vertical { width: 90%; height: 80%; border: thick $primary; background: $surface; }
    TemplateScreen TextArea { height: 1fr; }
    """

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text, self.text = title, text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]{plain(self.title_text)}[/]  (esc closes)")
            yield TextArea(self.text, read_only=True, soft_wrap=True, show_line_numbers=False, id="template-text")


class SavePathScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]
    DEFAULT_CSS = """
    SavePathScreen { align: center middle; }
    SavePathScreen > Vertical { width: 80; height: auto; border: thick $primary; background: $surface; padding: 0 1; }
    """

    def __init__(self, title: str, default: str) -> None:
        super().__init__()
        self.title_text, self.default = title, default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"[b]{plain(self.title_text)}[/]  (enter saves, esc cancels)")
            yield Input(self.default, id="save-path")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)


class ChatScreen(StageScreen):
    MODE = "chat"
    CSS_PATH = "../styles/model_screens.tcss"
    HELP = """Chat with a checkpoint. **i** or **enter** (or a click) moves to the message field; type
and press **enter**: the reply streams in with its tokens/s. **esc** stops a reply (what was said
stays in the history) and leaves the field, so 1-8 switch stages again.

The system prompt and the sampling fields (temperature, top-k, top-p, max tokens) on the right
apply to the next message; **tab** moves between them. In compare mode each model has its own
sampling fields (A above, B below), so one can answer greedily while the other samples. Long
conversations drop their oldest turns to fit `chat.max_history_tokens` (or the model's context).

**ctrl+o** picks the model, **ctrl+g** compares two models (the second answers the same messages
side by side; ctrl+g again closes it), **ctrl+t** shows the prompt with the chat template applied,
**ctrl+n** starts a new conversation (system prompt and sampling back to the preset's),
**ctrl+l** clears the history only, **ctrl+s** saves the conversation as JSONL, **ctrl+f** loads a
saved one (its system prompt and sampling too; in compare mode B loads FILE-b.jsonl when there is
one, else the same file), **ctrl+r** serves the
model over an OpenAI-compatible API (a `serve` run on `serve.host:serve.port`; its URL shows above;
`llmlab runs stop RUN` or the Runs screen ends it)."""

    BINDINGS = [
        Binding("escape", "stop", "stop reply"),
        Binding("i,enter", "focus_message", "message", key_display="i"),
        Binding("ctrl+o", "pick_model", "model"),
        Binding("ctrl+g", "compare", "compare"),
        Binding("ctrl+t", "template", "template"),
        Binding("ctrl+n", "new", "new"),
        Binding("ctrl+l", "clear", "clear"),
        Binding("ctrl+s", "save", "save"),
        Binding("ctrl+f", "load_conversation", "load"),
        Binding("ctrl+r", "serve", "serve"),
    ]

    @dataclass
    class ModelLoaded(Message):
        pane: str
        spec: str
        conv: Conversation | None
        error: str = ""

    @dataclass
    class ReplyStreamed(Message):
        """New pieces wait in the pane's buffer (coalesces: one pending message per pane)."""

        pane: str

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, ChatScreen.ReplyStreamed) and message.pane == self.pane

    @dataclass
    class ReplyFinished(Message):
        pane: str
        footer: str
        error: str = ""

    @dataclass
    class ServeUp(Message):
        """A serve run of this screen's model listens at `url` (or failed with `error`)."""

        run_name: str
        url: str = ""
        error: str = ""

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="chat-header"):
            yield Label("no model: ctrl+o picks one", id="chat-model")
            yield Label("", id="chat-status")
        with Horizontal(id="chat-main"):
            with Vertical(id="chat-pane-a", classes="chat-pane"):
                yield ChatLog("Press i (or enter) to type a message below; enter sends it.", id="chat-log-a")
            with Vertical(id="chat-pane-b", classes="chat-pane"):
                yield Label("", id="chat-title-b", classes="chat-title")
                yield ChatLog(id="chat-log-b")
            with VerticalScroll(id="chat-side"):
                yield Label("system prompt", classes="chat-field")
                yield TextArea("", id="chat-system", soft_wrap=True, show_line_numbers=False)
                for pane in PANES:
                    with Vertical(id=f"chat-sampling-{pane}", classes="chat-sampling"):
                        yield Label(f"model {pane.upper()} sampling", classes="chat-field chat-side-title")
                        for key, label, _ in SAMPLING_FIELDS:
                            with Horizontal(classes="chat-knob"):
                                yield Label(label, classes="chat-field")
                                yield Input("", id=field_id(pane, key))
                yield Static("", id="chat-problem")
        yield Input(placeholder="message (enter sends, esc stops the reply)", id="chat-input")

    def on_mount(self) -> None:
        self.panes = {p: Pane(p) for p in PANES}
        self.compare = False
        self.serve_url = ""
        self.query_one("#chat-pane-b").display = False
        self.query_one("#chat-sampling-b").display = False
        self.query_one("#chat-sampling-a .chat-side-title").display = False
        super().on_mount()
        self.reset_settings()
        chosen = self.preset.chat.model
        if chosen:
            self.load_model("a", chosen)
        else:
            self.pick_default_model()

    def reset_settings(self) -> None:
        """System prompt and sampling fields from the current preset."""
        p = self.preset
        self.query_one("#chat-system", TextArea).text = p.chat.system_prompt
        for pane in PANES:
            self.show_sampling(pane, Sampling.from_preset(p.generate))
        self.query_one("#chat-problem", Static).update("")

    def show_sampling(self, pane: str, s: Sampling) -> None:
        for key, _, _ in SAMPLING_FIELDS:
            self.query_one(f"#{field_id(pane, key)}", Input).value = f"{getattr(s, key):g}"

    def show_compare(self, on: bool) -> None:
        self.compare = on
        self.query_one("#chat-pane-b").display = on
        self.query_one("#chat-sampling-b").display = on
        self.query_one("#chat-sampling-a .chat-side-title").display = on

    # ------------------------------------------------------------------------------ models
    @work(thread=True, exclusive=True, exit_on_error=False, group="chat-default-model")
    def pick_default_model(self) -> None:
        """The newest language model (finetuned first), so a new user can type at once."""
        rows = model_rows(self.app.runs_root, lm_only=True)
        rows.sort(key=lambda r: r["stage"] != "finetune")  # stable: newest finetune, then newest pretrain
        if rows:
            self.app.call_from_thread(self.load_model, "a", rows[0]["spec"])

    def load_model(self, pane: str, spec: str) -> None:
        self.panes[pane].loading = True
        self._show_header()
        self._load(pane, spec)

    @work(thread=True, exclusive=False, exit_on_error=False, group="chat-load")
    def _load(self, pane: str, spec: str) -> None:
        chat = self.preset.chat
        try:
            conv = Conversation.open(spec, device=self.preset.train.device,
                                     max_history_tokens=chat.max_history_tokens)
        except UserError as e:
            self.post_message(self.ModelLoaded(pane, spec, None, str(e)))
            return
        self.post_message(self.ModelLoaded(pane, spec, conv))

    def on_chat_screen_model_loaded(self, message: ModelLoaded) -> None:
        pane = self.panes[message.pane]
        pane.loading = False
        if message.conv is None:
            self.notify(message.error, title="cannot load the model", severity="error", timeout=8)
        else:
            old = pane.conv
            pane.conv, pane.spec = message.conv, message.spec
            if old is not None and old.messages:  # a new model takes over the conversation so far
                pane.conv.messages = list(old.messages)
            if message.pane == "b":
                self.show_compare(True)
                self.query_one("#chat-title-b", Label).update(f"[b]B[/] {plain(short_path(message.spec))}")
        self._show_header()

    def _show_header(self) -> None:
        a, b = self.panes["a"], self.panes["b"]

        def name(p: Pane) -> str:
            if p.loading:
                return "loading\u2026"
            if p.conv is None:
                return "none (ctrl+o)"
            tpl = p.conv.tokenizer.chat_template if hasattr(p.conv.tokenizer, "chat_template") else "?"
            return f"{plain(short_path(p.spec))} [dim](ctx {p.conv.context_length}, {plain(tpl)})[/]"

        text = f"[b]{'A ' if self.compare else ''}model[/] {name(a)}"
        if self.compare:
            text += f"   [b]B[/] {name(b)}"
        if self.serve_url:
            text += f"   [b]serving[/] {self.serve_url}"
        self.query_one("#chat-model", Label).update(text)

    def action_pick_model(self) -> None:
        def done(spec: str | None) -> None:
            if spec:
                self.load_model("a", spec)
        self.app.push_screen(ModelPicker("Chat with", self.app.runs_root, lm_only=True,
                                         current=self.panes["a"].spec or None), done)

    def action_compare(self) -> None:
        if self.compare:
            self.action_stop()
            self.show_compare(False)
            self.panes["b"] = Pane("b")
            self.query_one("#chat-log-b", ChatLog).clear_log()
            self._show_header()
            self._show_status()  # B's tokens/s leave with it
            return

        def done(spec: str | None) -> None:
            if spec:
                self.load_model("b", spec)
        self.app.push_screen(ModelPicker("Compare with (model B)", self.app.runs_root, lm_only=True), done)

    # ---------------------------------------------------------------------------- sending
    def sampling(self, pane: str = "a") -> Sampling | None:
        """A pane's sampling fields as typed, or None (with the problem shown) when one is not valid."""
        values = {}
        problem = ""
        side = f"{pane.upper()} " if self.compare else ""
        for key, label, kind in SAMPLING_FIELDS:
            raw = self.query_one(f"#{field_id(pane, key)}", Input).value.strip()
            try:
                values[key] = kind(raw)
            except ValueError:
                problem = f"{side}{label}: {raw!r} is not a {'whole ' if kind is int else ''}number"
                break
        s = None
        if not problem:
            gen = self.preset.generate
            try:
                s = Sampling.from_preset(check_sampling({**values, "stop": list(gen.stop), "seed": gen.seed}, "sampling"))
            except UserError as e:
                problem = side + str(e).removeprefix("sampling: ")
        self.query_one("#chat-problem", Static).update(f"[red]{plain(problem)}[/]" if problem else "")
        return s

    def active_panes(self) -> list[Pane]:
        return [self.panes["a"], self.panes["b"]] if self.compare else [self.panes["a"]]

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "chat-input":
            return
        event.stop()
        text = event.value.strip()
        if not text:
            return
        if self.send(text):
            event.input.value = ""

    def send(self, text: str) -> bool:
        """Send `text` to every active pane; False (and a notice) when that cannot happen now."""
        panes = self.active_panes()
        if any(p.streaming for p in panes):
            self.notify("a reply is still streaming: esc stops it", severity="warning")
            return False
        if any(p.conv is None for p in panes):
            self.notify("no model yet: ctrl+o picks one" if not any(p.loading for p in panes) else "the model is loading")
            return False
        sampling = {p.name: self.sampling(p.name) for p in panes}
        if any(s is None for s in sampling.values()):
            self.notify("fix the sampling field on the right first", severity="error")
            return False
        system = self.query_one("#chat-system", TextArea).text.strip()
        for p in panes:
            assert p.conv is not None
            p.conv.system_prompt = system
            p.conv.sampling = sampling[p.name]  # type: ignore[assignment]
            p.conv.add_user(text)
            log = self.query_one(f"#chat-log-{p.name}", ChatLog)
            log.add_message("user", text)
            log.start_reply("assistant" if not self.compare else f"assistant {p.name.upper()}")
            p.cancel = threading.Event()
            p.pending, p.tokens, p.t0, p.streaming = [], 0, time.perf_counter(), True
            self.stream(p)
        self._show_status()
        return True

    def stream(self, pane: Pane) -> None:
        """One thread worker per pane (its own group, so A and B stream at once)."""
        self.run_worker(partial(self._stream, pane), thread=True, exclusive=True, exit_on_error=False,
                        group=f"chat-stream-{pane.name}")

    def _stream(self, pane: Pane) -> None:
        """Thread: iterate the reply into the pane's buffer; post at most one update per UI_BATCH_S."""
        assert pane.conv is not None
        last_post = 0.0
        try:
            for piece in pane.conv.stream_reply(pane.cancel):
                pane.push(piece.text, len(piece.ids))
                now = time.perf_counter()
                if now - last_post >= UI_BATCH_S:
                    self.post_message(self.ReplyStreamed(pane.name))
                    last_post = now
        except UserError as e:
            self.post_message(self.ReplyFinished(pane.name, "", str(e)))
            return
        except Exception as e:  # noqa: BLE001 - a model failure must not leave the pane streaming forever
            self.post_message(self.ReplyFinished(pane.name, "", f"{type(e).__name__}: {e}"))
            return
        self.post_message(self.ReplyFinished(pane.name, stats_line(pane.conv.last_stats)))

    def on_chat_screen_reply_streamed(self, message: ReplyStreamed) -> None:
        pane = self.panes[message.pane]
        if not pane.streaming:
            return
        text, tokens = pane.drain()
        elapsed = time.perf_counter() - pane.t0
        self.query_one(f"#chat-log-{pane.name}", ChatLog).extend_reply(
            text, footer=f"{tokens} tokens, {tokens / elapsed if elapsed > 0 else 0:.1f} tokens/s")
        self._show_status()

    def on_chat_screen_reply_finished(self, message: ReplyFinished) -> None:
        pane = self.panes[message.pane]
        text, _ = pane.drain()
        pane.streaming = False
        log = self.query_one(f"#chat-log-{pane.name}", ChatLog)
        if text:
            log.extend_reply(text)
        log.finish_reply(message.footer if not message.error else f"error: {message.error}")
        if message.error:
            self.notify(message.error, title="reply failed", severity="error", timeout=8)
        self._show_status()

    def _show_status(self) -> None:
        parts = []
        for p in self.active_panes():
            if p.streaming:
                elapsed = time.perf_counter() - p.t0
                parts.append(f"{p.name.upper() + ' ' if self.compare else ''}{p.tokens} tokens, "
                             f"{p.tokens / elapsed if elapsed > 0 else 0:.1f} tokens/s, esc stops")
            elif p.conv is not None and p.conv.last_stats.tokens:
                st = p.conv.last_stats
                parts.append(f"{p.name.upper() + ' ' if self.compare else ''}{st.tokens_per_s:.1f} tokens/s")
        self.query_one("#chat-status", Label).update("  ".join(parts))

    # ---------------------------------------------------------------------------- actions
    def action_stop(self) -> None:
        for p in self.panes.values():
            if p.streaming:
                p.cancel.set()
        self.set_focus(None)  # like esc on every screen: leave the field so 1-8 reach the app

    def action_focus_message(self) -> None:
        self.query_one("#chat-input", Input).focus()

    def _each_conversation_reset(self, reset_settings: bool) -> None:
        if any(p.streaming for p in self.panes.values()):
            self.notify("a reply is still streaming: esc stops it first", severity="warning")
            return
        for p in self.panes.values():
            if p.conv is not None:
                p.conv.clear()
            self.query_one(f"#chat-log-{p.name}", ChatLog).clear_log()
        if reset_settings:
            self.reset_settings()
        self._show_status()

    def action_new(self) -> None:
        self._each_conversation_reset(reset_settings=True)
        self.notify("new conversation")

    def action_clear(self) -> None:
        self._each_conversation_reset(reset_settings=False)

    def action_template(self) -> None:
        p = self.panes["a"]
        if p.conv is None:
            self.notify("no model yet: ctrl+o picks one")
            return
        p.conv.system_prompt = self.query_one("#chat-system", TextArea).text.strip()
        pending = self.query_one("#chat-input", Input).value.strip()
        text = p.conv.template_text(pending)
        ids, dropped = p.conv.prompt_ids() if p.conv.messages and p.conv.messages[-1]["role"] == "user" else ([], 0)
        tpl = getattr(p.conv.tokenizer, "chat_template", "chat")
        note = f", {dropped} old messages left out" if dropped else ""
        self.app.push_screen(TemplateScreen(f"{tpl} template applied ({len(text)} characters{note})", text))

    def action_serve(self) -> None:
        """Launch a serve run of model A (the preset's [serve] host and port, its [generate] defaults)."""
        from core import config
        from tui.screens.finetune_steps import edit
        from tui.screens.live_run import launch_run

        p = self.panes["a"]
        if p.conv is None:
            self.notify("no model yet: ctrl+o picks one")
            return
        try:
            preset = edit(self.preset, {"serve.model": p.spec})
        except config.PresetError as e:
            self.notify(str(e), title="cannot serve", severity="error")
            return
        launch_run(self, "serve", "serve", lambda: core_runs.launch("serve", preset, root=self.app.runs_root))

    def on_run_started(self, message: RunStarted) -> None:
        if message.stage == "serve":
            self.notify(f"started {message.run_name}; waiting for the server", title="serve")
            self._wait_for_server(message.run_name)

    @work(thread=True, exclusive=True, exit_on_error=False, group="chat-serve")
    def _wait_for_server(self, run_name: str) -> None:
        from core.serve import server_url

        run = core_runs.open_run(run_name, self.app.runs_root)
        while True:
            url = server_url(run.path)
            if url or run.state not in ("created", "running"):
                error = "" if url else (run.status().get("error") or f"the run {run.state}")
                self.post_message(self.ServeUp(run_name, url or "", error))
                return
            time.sleep(self.app.poll_s)

    def on_chat_screen_serve_up(self, message: ServeUp) -> None:
        if message.error:
            self.notify(message.error, title="cannot serve", severity="error", timeout=10)
            return
        self.serve_url = message.url
        self.notify(f"{message.url} (run {message.run_name})", title="serving", timeout=10)
        self._show_header()

    def action_save(self) -> None:
        p = self.panes["a"]
        if p.conv is None or not p.conv.messages:
            self.notify("nothing to save yet")
            return
        from core.runs import workspace

        default = str(workspace() / "chats" / time.strftime("chat-%Y%m%d-%H%M%S.jsonl", time.localtime(self.app.clock())))

        def done(path: str | None) -> None:
            if not path:
                return
            try:
                saved = [p.conv.save(path)]
                b = self.panes["b"]
                if self.compare and b.conv is not None:
                    saved.append(b.conv.save(path.removesuffix(".jsonl") + "-b.jsonl"))
            except (OSError, UserError) as e:
                self.notify(str(e), title="cannot save", severity="error")
                return
            self.notify("saved " + ", ".join(str(s) for s in saved), title="chat")
        self.app.push_screen(SavePathScreen("Save the conversation (JSONL)", default), done)

    def action_load_conversation(self) -> None:
        if any(p.streaming for p in self.panes.values()):
            self.notify("a reply is still streaming: esc stops it first", severity="warning")
            return
        if any(p.conv is None for p in self.active_panes()):
            self.notify("no model yet: ctrl+o picks one")
            return
        from core.runs import workspace

        self.app.push_screen(SavePathScreen("Load a conversation (JSONL)", str(workspace() / "chats") + "/"),
                             self.load_conversation)

    def load_conversation(self, path: str | None) -> None:
        """Load a saved conversation into every active pane (B prefers PATH-b.jsonl); a bad file is a
        notification and changes nothing (core.chat.Conversation.load checks every line first)."""
        if not path:
            return
        for p in self.active_panes():
            assert p.conv is not None
            own = path.removesuffix(".jsonl") + "-b.jsonl"
            source = own if p.name == "b" and Path(own).expanduser().is_file() else path
            try:
                p.conv.load(source)
            except (OSError, UserError) as e:
                self.notify(str(e), title="cannot load", severity="error", timeout=8)
                return
            log = self.query_one(f"#chat-log-{p.name}", ChatLog)
            log.clear_log()
            for m in p.conv.messages:
                log.add_message(m["role"], m["content"])
            self.show_sampling(p.name, p.conv.sampling)
        self.query_one("#chat-system", TextArea).text = self.panes["a"].conv.system_prompt  # type: ignore[union-attr]
        self.notify(f"loaded {len(self.panes['a'].conv.messages)} messages from {path}", title="chat")  # type: ignore[union-attr]
        self._show_status()
