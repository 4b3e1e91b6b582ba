"""Helpers the stage screens share: the preset's tokenizer when it exists (never trained here),
a stage run's progress as a label, and a metric as text (a dash where it is missing)."""

from __future__ import annotations

from core.config import Preset
from core.errors import UserError


def preset_tokenizer(preset: Preset):
    """(tokenizer or None, note): the preset's encoding, or its trained BPE if cached. Training is
    long work that belongs to a run, so an untrained BPE returns None and says how to train it."""
    from core.tokenizer import Tokenizer, get_tokenizer
    from core.tokenizer.encodings import is_saved_tokenizer
    from core.tokenizer.cache import tokenizer_dir

    t = preset.tokenizer
    if t.kind == "model":
        return None, "this preset finetunes with its base model's own tokenizer (tokenizer.kind = \"model\")"
    if t.kind == "tiktoken":
        try:
            return get_tokenizer(t.encoding, t.chat_template), t.encoding
        except UserError as e:
            return None, str(e)
    folder = tokenizer_dir(preset)
    if is_saved_tokenizer(folder):
        return Tokenizer.load(folder), f"BPE {t.vocab_size} ({folder.name})"
    return None, f"the preset's BPE ({t.vocab_size}) is not trained yet: train it as a run (Tokenizer screen, T)"


def progress_of(ev: dict) -> tuple[float | None, str]:
    """(done/total or None, label) of a `progress` event."""
    done, total = ev.get("done", 0), ev.get("total") or 0
    label = f"{ev.get('what', 'working')} {done:,}" + (f"/{total:,}" if total else "") + f" {ev.get('unit', '')}"
    return (done / total if total else None), label


def number(x: object, fmt: str) -> str:
    """`x` formatted with `fmt`, or "-" when the event has no such number."""
    return fmt.format(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"
