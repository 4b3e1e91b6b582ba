"""Helpers the stage screens share: the preset's tokenizer when it exists (never trained here),
a stage run's progress as a label, and a metric as text (a dash where it is missing)."""

from __future__ import annotations

from core.config import Preset


def preset_tokenizer(preset: Preset):
    """(tokenizer or None, note): the preset's encoding, or its trained BPE if cached (never trains)."""
    from core.tokenizer.cache import ready_tokenizer

    return ready_tokenizer(preset)


def progress_of(ev: dict) -> tuple[float | None, str]:
    """(done/total or None, label) of a `progress` event."""
    done, total = ev.get("done", 0), ev.get("total") or 0
    label = f"{ev.get('what', 'working')} {done:,}" + (f"/{total:,}" if total else "") + f" {ev.get('unit', '')}"
    return (done / total if total else None), label


def number(x: object, fmt: str) -> str:
    """`x` formatted with `fmt`, or "-" when the event has no such number."""
    return fmt.format(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"
