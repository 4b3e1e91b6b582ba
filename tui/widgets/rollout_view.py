"""The rollout viewer of an RL run: the newest rollout groups first, each prompt with its sampled
completions, their rewards and advantages (from the run's `rollout` events); pausable, so a group
can be read while training goes on.
"""

from __future__ import annotations

from textual.widgets import Static

from tui.text import plain

KEEP = 20  # groups held (the newest first)


def rollout_markup(events: list[dict], paused: bool, width: int = 60) -> str:
    """Markup for rollout events, newest first (every number comes from the event)."""
    head = "[b]rollouts[/] (newest first" + (", [reverse] paused [/] z resumes)" if paused else ", z pauses)")
    lines = [head]
    for ev in reversed(events):
        lines.append(f"[b]step {ev.get('step', '?')}[/] {plain(str(ev.get('prompt', '')))[:width * 2]}")
        lines.append(f"  gold: {plain(str(ev.get('answer', '')))}")
        for c in ev.get("completions", []):
            reward, adv = c.get("reward"), c.get("advantage")
            mark = "[green]+[/]" if isinstance(adv, (int, float)) and adv > 0 else "[red]-[/]" if \
                isinstance(adv, (int, float)) and adv < 0 else " "
            text = plain(" ".join(str(c.get("text", "")).split()))[:width]
            r = f"{reward:.2f}" if isinstance(reward, (int, float)) else "?"
            a = f"{adv:+.2f}" if isinstance(adv, (int, float)) else "?"
            lines.append(f" {mark} r {r} A {a}  {text!s}")
    return "\n".join(lines)


class RolloutView(Static):
    """Rollout groups of a GRPO run; `add_events` takes the run's events, `toggle_pause` freezes it."""

    DEFAULT_CSS = """
    RolloutView { height: 1fr; overflow-y: auto; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.events: list[dict] = []
        self.paused = False

    def add_events(self, events: list[dict]) -> int:
        """Keep the rollout events among `events`; redraw unless paused. Returns how many were new."""
        new = [e for e in events if e.get("kind") == "rollout"]
        if not new:
            return 0
        self.events = (self.events + new)[-KEEP:]
        if not self.paused:
            self.refresh_view()
        return len(new)

    def toggle_pause(self) -> bool:
        self.paused = not self.paused
        self.refresh_view()
        return self.paused

    def clear(self) -> None:
        self.events, self.paused = [], False
        self.update("")

    def refresh_view(self) -> None:
        self.update(rollout_markup(self.events, self.paused) if self.events else "")
