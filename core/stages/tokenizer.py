"""The tokenizer stage (`llmlab tokenizer PRESET`): train or load the tokenizer, save it, report compression.

The preset's BPE is trained unless cached (or its tiktoken encoding loaded), saved into the run, and
its compression reported against GPT-2 and GPT-4 on a sample of the corpus.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from core.errors import Stopped
from core.runs import Logger, write_report
from core.tokenizer.cache import documents, tokenizer_dir, tokenizer_for
from core.tokenizer.encodings import is_saved_tokenizer
from core.tokenizer.inspect import DEFAULT_COMPARED, compression_table, format_compression_table

SAMPLE_BYTES = 1_000_000  # corpus sample for the compression table


def _sample(preset, max_bytes: int = SAMPLE_BYTES) -> list[str]:
    out, n = [], 0
    for doc in documents(preset):
        out.append(doc)
        n += len(doc.encode("utf-8"))
        if n >= max_bytes:
            break
    return out


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
    texts = _sample(preset)
    rows = compression_table(texts, [tok, *[e for e in DEFAULT_COMPARED if e != tok.name]])
    table = format_compression_table(rows)
    log.log({"kind": "log", "level": "info",
             "message": f"compression on {sum(len(x.encode()) for x in texts):,} bytes of the corpus:\n{table}"})
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
        "sample_bytes": sum(len(x.encode("utf-8")) for x in texts),
        "compression": [r.to_dict() for r in rows],
    }
    write_report(run_dir, report)
