"""The corpus facts the rules of thumb use (core.advice.Facts), from the best source at hand.

Prepared shards' meta.json when this preset's shards exist (exact: tokens, validation tokens,
document lengths); otherwise a fast scan of local sources: file sizes (exact bytes) and the first
`scan_bytes` of each source read raw (no filters) for the documents' token lengths, tokenized when
the preset's tokenizer exists, else estimated at ~4 bytes per token. `origin` says which.
Used by `llmlab presets check` and the TUI's rules-of-thumb panels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.advice import Facts
from core.data.mixture import source_texts, sources_of
from core.data.shards import read_meta, shard_key, workspace
from core.data.sources import ReadCounts, is_saved_dataset, source_bytes
from core.errors import UserError

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer

SCAN_BYTES = 2_000_000
LENGTH_SAMPLE = 10_000


def lengths_from_histogram(edges: list[int], counts: list[int], n: int = LENGTH_SAMPLE) -> list[int]:
    """Document lengths standing for a histogram (each bin by its lower edge), at most ~n of them."""
    total = sum(counts) or 1
    scale = min(1.0, n / total)
    out: list[int] = []
    for lo, c in zip(edges[:-1], counts):
        out += [lo] * int(round(c * scale))
    return out


def facts_from_meta(meta: dict) -> Facts:
    hist = meta["doc_tokens_hist"]
    return Facts(corpus_bytes=sum(s.get("bytes_used", 0) for s in meta["source_report"]["sources"]) or meta["chars"],
                 corpus_tokens=meta["train_tokens"], val_tokens=meta["val_tokens"],
                 doc_tokens=lengths_from_histogram(hist["edges"], hist["counts"]),
                 origin=f"prepared shards {meta['key']}")


def _local(spec: str) -> bool:
    return not spec.startswith(("hf:", "embedded:")) and not is_saved_dataset(Path(spec).expanduser())


def scan_facts(preset: Any, tokenizer: TextTokenizer | None = None, scan_bytes: int = SCAN_BYTES) -> Facts:
    """Bytes from file sizes; with scan_bytes, document lengths from the head of each local source."""
    d = preset.data
    srcs = sources_of(d)
    sizes = [source_bytes(s.source, d.synthetic_mb) for s in srcs]
    if None in sizes:
        return Facts(origin="no scan: a hub source's size is unknown before it is prepared")
    total = sum(sizes)  # type: ignore[arg-type]
    if d.max_bytes:
        total = min(total, d.max_bytes)
    lengths: list[int] = []
    scanned = 0
    for s in srcs:
        if not scan_bytes or not _local(s.source):
            continue
        n = 0
        for text in source_texts(s, d, ReadCounts()):
            b = len(text.encode("utf-8"))
            lengths.append(len(tokenizer.encode(text)) if tokenizer is not None else b // 4)
            n += b
            if n >= scan_bytes // len(srcs):
                break
        scanned += n
    how = "tokenized" if tokenizer is not None else "~4 bytes per token"
    if scanned:
        origin = f"a scan of the local sources: file sizes, the first {scanned:,} bytes ({how})"
    else:
        origin = "sizes only (the embedded corpus's size, or local files not scanned)"
    tokens = None
    if tokenizer is not None and lengths and scanned:
        tokens = int(total * (1 - d.val_fraction) * sum(lengths) / scanned)
    return Facts(corpus_bytes=total, corpus_tokens=tokens, doc_tokens=lengths or None, origin=origin)


def corpus_facts(preset: Any, scan_bytes: int = SCAN_BYTES) -> Facts:
    """Facts from the prepared shards when they exist, else a scan (scan_bytes = 0: sizes only)."""
    from core.tokenizer.cache import ready_tokenizer

    tok, _ = ready_tokenizer(preset)
    if tok is not None:
        folder = workspace() / "data" / shard_key(preset.data, tok)
        if (folder / "meta.json").is_file():
            try:
                return facts_from_meta(read_meta(folder))
            except (KeyError, ValueError, TypeError, UserError):
                pass  # a meta.json from another version: scan instead
    try:
        return scan_facts(preset, tok, scan_bytes)
    except (UserError, OSError) as e:
        return Facts(origin=f"no facts: {e}")


def facts_line(facts: Facts) -> str:
    """One line of what is known about the corpus and from where, for the rules-of-thumb panels;
    "" when only the preset's own numbers are known (the rules then say "estimated")."""
    if facts.corpus_tokens is None and facts.doc_tokens is None:
        return ""
    parts = []
    if facts.corpus_tokens is not None:
        val = f" (+{facts.val_tokens:,} validation)" if facts.val_tokens else ""
        parts.append(f"{facts.corpus_tokens:,} training tokens{val}")
    if facts.corpus_bytes is not None:
        parts.append(f"{facts.corpus_bytes / 1e6:,.1f} MB")
    if facts.doc_tokens:
        lengths = np.asarray(facts.doc_tokens)
        parts.append(f"documents: median {int(np.median(lengths)):,} tokens, 90% under "
                     f"{int(np.percentile(lengths, 90)):,}")
    return f"corpus: {', '.join(parts)}; from {facts.origin}"
