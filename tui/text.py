"""Text is text: the one escaping helper for every user-visible string that goes into markup.

Preset and dataset names, file and run names, token text, help and key labels may hold `[`;
Textual's markup would read `[b]` or even `[ and ]` as tags and eat them (its own `escape` only
guards tag-like brackets). `plain()` makes any string print exactly as it is inside markup.
"""

from __future__ import annotations


def plain(value: object) -> str:
    """`value` as text that Textual markup shows verbatim (every `[` escaped)."""
    return str(value).replace("[", "\\[")
