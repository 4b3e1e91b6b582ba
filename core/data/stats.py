"""Statistics of a corpus and of finetuning sets, as plain data for the data browser and reports.

Corpus statistics come from a shard folder's meta.json (exact counts gathered while the shards were
written: documents, characters, tokens, the document-length histogram, token frequencies) and are
related to a context length here, so a cached shard serves any model. `text_stats` gives the same
shape for a sample of raw text before shards exist; `record_stats` gives class balance and field
lengths of classification, instruction, preference and multiple-choice sets.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from core.data.shards import LENGTH_EDGES, TOP_TOKENS

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer

CTX_FRACTIONS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)


def length_histogram(edges: list[int], counts: list[int], context_length: int) -> list[dict]:
    """Documents per length bucket relative to the context: < ctx/8, < ctx/4, ..., < 4 ctx, >= 4 ctx.

    A bucket of the fine histogram counts where it starts, so a bound that is no fine edge (not a
    power of two) is approximate by at most a quarter octave."""
    bounds = [max(1, int(round(context_length * f))) for f in CTX_FRACTIONS]
    out, lo = [], 0
    starts = np.asarray(edges[:-1])
    c = np.asarray(counts)
    for f, b in zip(CTX_FRACTIONS, bounds):
        n = int(c[(starts >= lo) & (starts < b)].sum())
        out.append({"label": f"< {f:g} ctx", "max_tokens": b - 1, "docs": n})
        lo = b
    out.append({"label": f">= {CTX_FRACTIONS[-1]:g} ctx", "max_tokens": None, "docs": int(c[starts >= lo].sum())})
    return out


def _truncated(edges: list[int], counts: list[int], context_length: int) -> float:
    """Share of documents that do not fit one context window with their separator (length >= ctx)."""
    starts = np.asarray(edges[:-1])
    c = np.asarray(counts)
    total = c.sum()
    return float(c[starts >= context_length].sum() / total) if total else 0.0


def _top(pairs: list[list[int]], tokenizer: TextTokenizer | None, total: int) -> list[dict]:
    total = total or 1
    out = []
    for i, n in pairs:
        row: dict[str, Any] = {"id": int(i), "count": int(n), "share": n / total}
        if tokenizer is not None:
            row["text"] = tokenizer.decode([int(i)])
        out.append(row)
    return out


def shard_stats(meta: dict, context_length: int, tokenizer: TextTokenizer | None = None) -> dict:
    """Statistics of a prepared corpus (its meta.json) against a context length."""
    hist = meta["doc_tokens_hist"]
    tokens = meta["train_tokens"] + meta["val_tokens"]
    docs = meta["train_docs"] + meta["val_docs"]
    return {
        "docs": docs, "train_docs": meta["train_docs"], "val_docs": meta["val_docs"],
        "chars": meta["chars"], "tokens": tokens - docs,  # without the separators
        "train_tokens": meta["train_tokens"], "val_tokens": meta["val_tokens"],
        "chars_per_token": meta["chars"] / max(1, tokens - docs),
        "mean_doc_tokens": (tokens - docs) / max(1, docs),
        "context_length": context_length,
        "length_histogram": length_histogram(hist["edges"], hist["counts"], context_length),
        "truncated_share": _truncated(hist["edges"], hist["counts"], context_length),
        "top_tokens": _top(meta["top_tokens"], tokenizer, tokens - docs),
    }


def text_stats(docs: Iterable[str], tokenizer: TextTokenizer | None = None, context_length: int = 256, max_docs: int = 10_000) -> dict:
    """The same statistics for (a sample of) raw documents; token figures only with a tokenizer."""
    n = chars = 0
    lengths: list[int] = []
    counts: Counter = Counter()
    for doc in docs:
        n += 1
        chars += len(doc)
        if tokenizer is not None:
            ids = tokenizer.encode(doc)
            lengths.append(len(ids))
            counts.update(ids)
        if max_docs and n >= max_docs:
            break
    out: dict[str, Any] = {"docs": n, "chars": chars, "sampled": bool(max_docs and n >= max_docs)}
    if tokenizer is not None:
        hist = np.histogram(lengths, bins=LENGTH_EDGES)[0].tolist()
        tokens = sum(lengths)
        out.update(tokens=tokens, chars_per_token=chars / max(1, tokens), mean_doc_tokens=tokens / max(1, n),
                   context_length=context_length,
                   length_histogram=length_histogram(LENGTH_EDGES, hist, context_length),
                   truncated_share=_truncated(LENGTH_EDGES, hist, context_length),
                   top_tokens=_top([[i, c] for i, c in counts.most_common(TOP_TOKENS)], tokenizer, tokens))
    return out


def _lengths(values: list[int]) -> dict:
    if not values:
        return {"min": 0, "mean": 0.0, "p50": 0, "p95": 0, "max": 0}
    s = sorted(values)
    return {"min": s[0], "mean": statistics.fmean(s), "p50": s[len(s) // 2],
            "p95": s[min(len(s) - 1, int(0.95 * len(s)))], "max": s[-1]}


def record_stats(records: list[dict], tokenizer: TextTokenizer | None = None) -> dict:
    """Count, class balance (when records have a label), answer balance (multiple choice) and the
    length of every text field in characters (and tokens with a tokenizer)."""
    out: dict[str, Any] = {"records": len(records)}
    if records and "label" in records[0]:
        names = {r["label"]: r.get("label_name", str(r["label"])) for r in records}
        bal = Counter(r["label"] for r in records)
        out["classes"] = [{"label": k, "name": names[k], "count": v, "share": v / len(records)}
                          for k, v in sorted(bal.items())]
    if records and "answer" in records[0]:
        out["answers"] = dict(sorted(Counter(int(r["answer"]) for r in records).items()))
        out["chance"] = statistics.fmean(1 / len(r["choices"]) for r in records)
    fields = [k for k, v in (records[0].items() if records else []) if isinstance(v, str) and k != "label_name"]
    out["fields"] = {}
    for f in fields:
        texts = [r.get(f) or "" for r in records]
        row = {"chars": _lengths([len(t) for t in texts])}
        if tokenizer is not None:
            row["tokens"] = _lengths([len(tokenizer.encode(t)) for t in texts])
        out["fields"][f] = row
    return out
