"""ChatLog: the turns of a conversation, with the reply that is streaming in at the bottom.

Each message is a `ChatMessage` (role, text, and a footer such as "42 tokens, 180 tokens/s");
`start_reply` opens an empty assistant message, `extend_reply` adds the pieces that arrived since
the last UI update (the chat pane batches them, so this runs a few dozen times a second at most),
and `finish_reply` adds the footer. The log stays scrolled to the end while it is anchored.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

ROLE_STYLE = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta", "note": "bold yellow"}


class ChatMessage(Vertical):
    """One message: a role line, the text in chunks, a footer. A streaming reply only grows, and
    only its last chunk is re-rendered as it grows (a chunk is frozen at about CHUNK_CHARS, at a
    line break or a space), so an update costs the same at token 20 as at token 2,000."""

    CHUNK_CHARS = 400
    DEFAULT_CSS = """
    ChatMessage { height: auto; padding: 0 1; margin-bottom: 1; }
    ChatMessage > Static { height: auto; }
    ChatMessage > .foot { color: $text-muted; text-style: italic; }
    ChatMessage.-user { background: $boost; }
    ChatMessage.-streaming { border-left: thick $success; }
    """

    def __init__(self, role: str, text: str = "", footer: str = "", label: str = "") -> None:
        super().__init__(classes=f"-{role}")
        self.role, self.label = role, label or role
        self.text, self.footer = text, footer
        self._frozen = 0  # characters of text held by frozen chunks
        self._chunks: list[Static] = []

    def compose(self):
        yield Static(Text(self.label, style=ROLE_STYLE.get(self.role, "bold")), classes="head")
        tail = Static(Text(self.text), classes="chunk")
        self._chunks = [tail]
        yield tail
        foot = Static(self.footer, classes="foot", markup=False)
        foot.display = bool(self.footer)
        yield foot

    def set_text(self, text: str, footer: str | None = None) -> None:
        if footer is not None and footer != self.footer:
            self.footer = footer
            if self.is_mounted:
                foot = self.query_one(".foot", Static)
                foot.update(footer)
                foot.display = bool(footer)
        if not self._chunks:  # not composed yet: compose shows it
            self.text = text
            return
        if not text.startswith(self.text[: self._frozen]):  # not a continuation: start over
            for extra in self._chunks[1:]:
                extra.remove()
            self._chunks, self._frozen = self._chunks[:1], 0
        self.text = text
        rest = text[self._frozen:]
        while len(rest) > self.CHUNK_CHARS:
            window = rest[: self.CHUNK_CHARS]
            cut = window.rfind("\n") + 1 or window.rfind(" ") + 1 or self.CHUNK_CHARS
            self._chunks[-1].update(Text(rest[:cut]))
            self._frozen += cut
            rest = rest[cut:]
            tail = Static(Text(""), classes="chunk")
            self.mount(tail, before=self.query_one(".foot"))
            self._chunks.append(tail)
        self._chunks[-1].update(Text(rest or ("\u2026" if self.has_class("-streaming") else "")))


class ChatLog(VerticalScroll):
    """The messages of one conversation; `reply_text` is what the streaming reply says so far."""

    DEFAULT_CSS = """
    ChatLog { height: 1fr; padding: 0 0; }
    ChatLog > .empty { color: $text-muted; padding: 1 2; }
    """

    def __init__(self, placeholder: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.placeholder = placeholder
        self._reply: ChatMessage | None = None
        self._parts: list[str] = []

    def on_mount(self) -> None:
        self.clear_log()
        self.anchor()

    def clear_log(self) -> None:
        self._reply = None
        self._parts = []
        self.remove_children()
        if self.placeholder:
            self.mount(Static(self.placeholder, classes="empty"))

    def _drop_placeholder(self) -> None:
        for w in self.query(".empty"):
            w.remove()

    def add_message(self, role: str, text: str, footer: str = "", label: str = "") -> ChatMessage:
        self._drop_placeholder()
        msg = ChatMessage(role, text, footer, label)
        self.mount(msg)
        self.scroll_end(animate=False)
        return msg

    # ------------------------------------------------------------------------- streaming
    @property
    def streaming(self) -> bool:
        return self._reply is not None

    @property
    def reply_text(self) -> str:
        return "".join(self._parts)

    def start_reply(self, label: str = "assistant") -> None:
        self._drop_placeholder()
        self._parts = []
        self._reply = ChatMessage("assistant", "", "", label)
        self._reply.add_class("-streaming")
        self.mount(self._reply)
        self.scroll_end(animate=False)

    def extend_reply(self, text: str, footer: str | None = None) -> None:
        if self._reply is None:
            self.start_reply()
        if text:
            self._parts.append(text)
        assert self._reply is not None
        self._reply.set_text(self.reply_text, footer)  # the anchored log follows the end by itself

    def finish_reply(self, footer: str = "") -> None:
        if self._reply is None:
            return
        self._reply.remove_class("-streaming")
        self._reply.set_text(self.reply_text, footer)
        self._reply = None
        self.scroll_end(animate=False)
