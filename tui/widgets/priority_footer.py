"""PriorityFooter: the footer that shows the keys that work now and that fit, most important first.

At 80 columns a screen has more keys than room, and Textual's footer cuts them off at the right
edge (quit and help went first). This footer keeps help, save and quit, then the preset key (every
screen works on the preset), then the screen's own keys in the order they are declared, then the
app's, and drops from the end what does not fit. While a text field has focus, keys that are
characters would be typed, so it hides them and shows the keys that still work there (f1 help,
ctrl+q quit, and on a stage screen esc, which leaves the field so that 1-8 switch stages again).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.keys import key_to_character
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, TextArea
from textual.widgets._footer import FooterKey

# actions kept whatever the width, in this order of importance
ESSENTIAL = ("help", "app.help", "save", "apply", "quit", "app.quit", "dismiss(None)")  # the last: close
# next in importance: the preset every screen works on
NEXT = ("pick_preset", "app.pick_preset", "leave_field")
# shown only while a text field has focus: what replaces a typed key there
WHILE_TYPING = (Binding("f1", "app.help", "help"), Binding("ctrl+q", "app.quit", "quit"))
NOT_IN_MODALS = ("pick_preset", "edit_preset")  # a dialog over the preset does not offer another
LEAVE_FIELD = Binding("escape", "leave_field", "leave field", key_display="esc")
PALETTE_WIDTH = 12


def typing(screen: Screen) -> bool:
    """Whether the focused widget of `screen` takes typed characters."""
    focused = screen.focused
    if isinstance(focused, TextArea):
        return not focused.read_only
    return isinstance(focused, Input)


def is_character(binding: Binding) -> bool:
    """Whether the binding's first key is a character (a text field would type it)."""
    key = binding.key.split(",")[0].strip()
    return key in ("slash", "space") or key_to_character(key) is not None


def key_width(display: str, description: str) -> int:
    return len(display) + 1 + len(description) + 1


def by_priority(bindings: list[Binding]) -> list[Binding]:
    """Essential keys first, then the preset key, then the rest in their order (screen keys come
    before the app's)."""
    essential = [b for b in bindings if b.action in ESSENTIAL]
    following = [b for b in bindings if b.action in NEXT]
    return essential + following + [b for b in bindings if b.action not in ESSENTIAL + NEXT]


def fit(bindings: list[Binding], displays: dict[str, str], width: int) -> list[Binding]:
    """The bindings, in priority order, that fit in `width` columns."""
    out, used = [], 0
    for b in by_priority(bindings):
        w = key_width(displays[b.action], b.description)
        if used + w <= width:
            out.append(b)
            used += w
    return out


class PriorityFooter(Footer):
    """Textual's Footer (compact), choosing its keys by priority and by what has focus."""

    def __init__(self) -> None:
        super().__init__(compact=True, show_command_palette=False)

    def shown_bindings(self) -> list[tuple[Binding, bool]]:
        """(binding, enabled) of the keys to show, in display order."""
        screen = self.screen
        typed = typing(screen)
        seen: dict[str, tuple[Binding, bool]] = {}
        for _, binding, enabled, _tooltip in screen.active_bindings.values():
            if not binding.show or binding.action in seen or (typed and is_character(binding)):
                continue
            if isinstance(screen, ModalScreen) and binding.action in NOT_IN_MODALS:
                continue
            seen[binding.action] = (binding, enabled)
        if typed:
            for b in WHILE_TYPING:
                bare = b.action.removeprefix("app.")
                if not any(k.action.removeprefix("app.") == bare for k, _ in seen.values()):
                    seen[b.action] = (b, True)
            # esc gives the number keys back: say so, unless the screen's esc does something else here
            if hasattr(screen, "action_leave_field") and not any(
                    "escape" in k.key.split(",") for k, _ in seen.values()):
                seen[LEAVE_FIELD.action] = (LEAVE_FIELD, True)
        bindings = [b for b, _ in seen.values()]
        displays = {b.action: self.app.get_key_display(b) for b in bindings}
        kept = {b.action for b in fit(bindings, displays, max(20, self.app.size.width - 1))}
        return [seen[a] for a in seen if a in kept]

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        shown = self.shown_bindings()
        self.styles.grid_size_columns = max(1, len(shown))
        for binding, enabled in shown:
            yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description, binding.action,
                            disabled=not enabled, tooltip=binding.description).data_bind(compact=Footer.compact)

    def on_resize(self) -> None:
        if self._bindings_ready:
            self.call_after_refresh(self.recompose)
