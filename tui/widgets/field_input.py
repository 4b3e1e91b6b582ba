"""FieldInput: a text field whose editing keys keep their order with the characters typed.

Textual inserts a character as soon as the field sees its key, but runs a field's key bindings
(backspace, ctrl+u, delete, arrows, home, end) only once the key has bubbled back up to the app.
In a burst (a fast typist on a busy box, a terminal that sends keys together) "backspace 1 2"
then becomes "1 2 backspace", and a digit is lost. FieldInput runs those bindings at once, in
the order the keys arrived.
"""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.widgets import Input


def _edit_actions() -> dict[str, str]:
    out: dict[str, str] = {}
    for b in Input.BINDINGS:
        if isinstance(b, Binding):
            for key in b.key.split(","):
                out.setdefault(key.strip(), b.action)
    return out


EDIT_ACTIONS = _edit_actions()


class FieldInput(Input):
    """An Input whose own key bindings run in arrival order, like the characters."""

    async def _on_key(self, event: events.Key) -> None:
        action = EDIT_ACTIONS.get(event.key)
        if action is not None and not event.is_printable:
            event.stop()
            event.prevent_default()
            self._restart_blink()
            await self.run_action(action)
            return
        await super()._on_key(event)
