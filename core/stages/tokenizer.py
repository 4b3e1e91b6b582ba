"""Stage `tokenizer`: train the preset's BPE (unless cached) or load its encoding, and report its compression on held-out text.

The encoding is saved into the run; the compression table (bytes per token, tokens per word, byte
fallbacks, against GPT-2, GPT-4 and GPT-4o) is measured on the validation documents of every source,
which the tokenizer never trained on, per source and overall.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from core.errors import Stopped
from core.runs import Logger, write_report
from core.tokenizer.cache import tokenizer_dir, tokenizer_for
from core.tokenizer.encodings import is_saved_tokenizer
from core.tokenizer.inspect import DEFAULT_COMPARED, compression_by_source, format_compression_table

SAMPLE_BYTES = 300_000  # held-out text per source for the compression table


def held_out(preset, bytes_per_source: int = SAMPLE_BYTES) -> dict[str, list[str]]:
    """Validation documents of every source of the preset's corpus (never training text)."""
    from core.data import Documents

    return Documents(preset.data).held_out(bytes_per_source)


def run(preset: Any, run_dir: Path, log: Logger, stop: threading.Event) -> None:
    """Stage `tokenizer`: train (kind = "bpe", unless cached) or load the encoding, save it into the
    run, and report the compression table over a corpus sample in run_dir/report.json."""
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    t = preset.tokenizer
    cached = t.kind == "bpe" and is_saved_tokenizer(tokenizer_dir(preset))
    if cached:
        log.log({"kind": "log", "level": "info", "message": f"using the cached tokenizer {tokenizer_dir(preset)}"})
    try:
        tok = tokenizer_for(preset, log, stop)
    except Stopped:
        log.log({"kind": "log", "level": "info", "message": "tokenizer training stopped; nothing was saved"})
        return
    seconds = time.perf_counter() - t0
    if stop.is_set():
        return

    saved = None
    if t.kind == "bpe" or Path(t.encoding).is_dir():
        saved = tok.save(run_dir / "tokenizer")
    texts = held_out(preset)
    tables = compression_by_source(texts, [tok, *[e for e in DEFAULT_COMPARED if e != tok.name]])
    sizes = {name: sum(len(x.encode("utf-8")) for x in docs) for name, docs in texts.items()}
    for name, rows in tables.items():
        n = sum(sizes.values()) if name == "all sources" else sizes[name]
        log.log({"kind": "log", "level": "info", "message": f"compression on {n:,} bytes of held-out text "
                 f"({name}):\n{format_compression_table(rows)}"})
    for name, docs in texts.items():
        if not docs:
            log.log({"kind": "log", "level": "warning",
                     "message": f"{name}: no held-out documents (fewer than 1 / data.val_fraction kept); not measured"})
    overall = tables.get("all sources") or next(iter(tables.values()), [])
    report = {
        "tokenizer": {
            "name": tok.name,
            "kind": t.kind,
            "path": str(tokenizer_dir(preset)) if t.kind == "bpe" else t.encoding,
            "run_copy": str(saved) if saved else None,
            "fingerprint": tok.fingerprint,
            "n_vocab": tok.n_vocab,
            "special_tokens": tok.special_tokens,
            "chat_template": tok.chat_template,
            "pattern": tok.pattern,
            "trained": t.kind == "bpe" and not cached,
            "seconds": round(seconds, 3),
        },
        "sample": "held-out validation documents of each source",
        "sample_bytes": sum(sizes.values()),
        "sample_bytes_by_source": sizes,
        "compression": [r.to_dict() for r in overall],
        "compression_by_source": {name: [r.to_dict() for r in rows] for name, rows in tables.items()},
    }
    write_report(run_dir, report)
