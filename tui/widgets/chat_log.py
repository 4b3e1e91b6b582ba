"""ChatLog: the turns of a conversation, with the reply that is streaming in at the bottom.

Each message is a `ChatMessage` (role, text, and a footer such as "42 tokens, 180 tokens/s");
`start_reply` opens an empty assistant message, `extend_reply` adds the pieces that arrived since
the last UI update (the chat pane batches them, so this runs a few dozen times a second at most),
and `finish_reply` adds the footer. The log stays scrolled to the end while it is anchored.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

ROLE_STYLE = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta", "note": "bold yellow"}


class ChatMessage(Static):
    DEFAULT_CSS = """
    ChatMessage { height: auto; padding: 0 1; margin-bottom: 1; }
    ChatMessage.-user { background: $boost; }
    ChatMessage.-streaming { border-left: thick $success; }
    """

    def __init__(self, role: str, text: str = "", footer: str = "", label: str = "") -> None:
        super().__init__(classes=f"-{role}")
        self.role, self.text, self.footer, self.label = role, text, footer, label or role
        self.update(self._render_text())

    def _render_text(self) -> Text:
        out = Text()
        out.append(self.label, style=ROLE_STYLE.get(self.role, "bold"))
        out.append("\n")
        out.append(self.text or ("\u2026" if self.has_class("-streaming") else ""))
        if self.footer:
            out.append("\n" + self.footer, style="dim italic")
        return out

    def set_text(self, text: str, footer: str | None = None) -> None:
        self.text = text
        if footer is not None:
            self.footer = footer
        self.update(self._render_text())


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
        self._reply.set_text(self.reply_text, footer)
        self.scroll_end(animate=False)

    def finish_reply(self, footer: str = "") -> None:
        if self._reply is None:
            return
        self._reply.remove_class("-streaming")
        self._reply.set_text(self.reply_text, footer)
        self._reply = None
        self.scroll_end(animate=False)
