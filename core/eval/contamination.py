"""Contamination: the share of an evaluation set whose long n-grams occur in the pretraining corpus.

As the GPT-3 paper did (appendix C), text is lowercased into words and an example is dirty when
any of its 13-grams occurs in the corpus; an example shorter than 13 words cannot be checked and is
counted apart. The corpus's n-grams are hashed to 64 bits (a polynomial over per-word hashes,
computed with numpy over whole batches of documents) and kept as one sorted array of unique values,
so a check is a binary search and memory is 8 bytes per distinct n-gram, capped by `max_ngrams`.
The corpus is the one the model's lineage was pretrained on (core.eval.report.lineage -> the
pretraining run's preset -> core.data.Documents), re-read from its source.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.data.words import NGRAM, words
from core.errors import UserError
from core.eval.metrics import proportion_ci

MAX_NGRAMS = 50_000_000  # 400 MB of hashes; a larger corpus is indexed up to here and says so
_PRIME = np.uint64(1099511628211)  # the FNV-64 prime, as the polynomial's base


@dataclass
class _WordHashes:
    cache: dict[str, int] = field(default_factory=dict)

    def __call__(self, ws: list[str]) -> np.ndarray:
        out = np.empty(len(ws), dtype=np.uint64)
        for i, w in enumerate(ws):
            h = self.cache.get(w)
            if h is None:
                h = self.cache[w] = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
            out[i] = h
        return out


def _windows(wh: np.ndarray, doc: np.ndarray | None, n: int) -> np.ndarray:
    """Hashes of every n-word window (that stays inside one document when `doc` ids are given)."""
    m = len(wh) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    acc = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            acc = acc * _PRIME + wh[j:j + m]
    if doc is not None:
        acc = acc[doc[:m] == doc[n - 1:]]
    return acc


class NgramIndex:
    """The distinct n-gram hashes of a corpus, built from batches of documents."""

    def __init__(self, n: int = NGRAM, max_ngrams: int = MAX_NGRAMS):
        self.n, self.max_ngrams = n, max_ngrams
        self.hash_words = _WordHashes()
        self.hashes = np.empty(0, dtype=np.uint64)
        self._pending: list[np.ndarray] = []
        self._pending_size = 0
        self.documents = 0
        self.words = 0
        self.truncated = False

    def add(self, texts: list[str]) -> None:
        ws = [words(t) for t in texts]
        flat = [w for doc in ws for w in doc]
        doc = np.repeat(np.arange(len(ws)), [len(d) for d in ws])
        new = _windows(self.hash_words(flat), doc, self.n)
        self._pending.append(new)
        self._pending_size += len(new)
        self.documents += len(texts)
        self.words += len(flat)
        if self._pending_size > 4_000_000:
            self.merge()

    def merge(self) -> None:
        """Fold the added batches into the sorted unique array (done before any lookup)."""
        if self._pending:
            self.hashes = np.unique(np.concatenate([self.hashes, *self._pending]))
            self._pending, self._pending_size = [], 0
        if len(self.hashes) > self.max_ngrams:
            self.hashes, self.truncated = self.hashes[:self.max_ngrams], True

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        self.merge()
        if not len(self.hashes):
            return np.zeros(len(hashes), dtype=bool)
        i = np.searchsorted(self.hashes, hashes).clip(max=len(self.hashes) - 1)
        return self.hashes[i] == hashes

    def first_overlap(self, text: str) -> str | None:
        """The first n-gram of text that occurs in the corpus ('' for none, None when text is too short)."""
        ws = words(text)
        if len(ws) < self.n:
            return None
        hit = np.flatnonzero(self.contains(_windows(self.hash_words(ws), None, self.n)))
        return " ".join(ws[hit[0]:hit[0] + self.n]) if len(hit) else ""


def build_index(texts: Iterable[str], n: int = NGRAM, max_ngrams: int = MAX_NGRAMS,
                stop: threading.Event | None = None, batch: int = 2000) -> NgramIndex:
    index = NgramIndex(n, max_ngrams)
    buf: list[str] = []
    for t in texts:
        buf.append(t)
        if len(buf) >= batch:
            index.add(buf)
            buf = []
            if index.truncated or (stop is not None and stop.is_set()):
                return index
    if buf:
        index.add(buf)
    index.merge()
    return index


def check_set(index: NgramIndex, texts: list[str], show: int = 3) -> dict:
    """Dirty share (with its 95% interval) of a set's example texts, and a few dirty examples."""
    dirty, short = 0, 0
    examples: list[dict] = []
    for t in texts:
        hit = index.first_overlap(t)
        if hit is None:
            short += 1
        elif hit:
            dirty += 1
            if len(examples) < show:
                examples.append({"text": t[:300], "ngram": hit})
    checked = len(texts) - short
    ci = proportion_ci(dirty, checked)
    return {"n": len(texts), "n_checked": checked, "n_too_short": short, "n_dirty": dirty,
            "dirty_share": ci["rate"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"], "examples": examples}


# ------------------------------------------------------------------------- the lineage's corpus

def pretraining_data(spec: str) -> tuple[str, Any]:
    """(the pretraining run's path, its preset's DataConfig) along the model's lineage.

    A model with no pretraining run in its lineage (an imported model) has no known corpus: UserError."""
    from core import config
    from core.eval.report import lineage, stage_summary

    chain = lineage(spec)
    for ckpt, meta in chain:
        if meta.get("missing"):
            raise UserError(f"contamination: {ckpt}: the model's base checkpoint no longer exists, so the "
                            f"pretraining corpus of its lineage cannot be found")
        if (meta.get("lineage") or {}).get("stage") != "pretrain":
            continue
        s = stage_summary(ckpt, meta)
        run_path = s.get("run_path")
        if not run_path or not (Path(run_path) / "preset.toml").is_file():
            raise UserError(f"contamination: {ckpt}: the pretraining run's folder (and its preset.toml) no longer "
                            f"exists, so its corpus is unknown")
        return run_path, config.load(str(Path(run_path) / "preset.toml")).data
    origin = (chain[-1][1].get("lineage") or {}).get("imported_from") if chain else None
    raise UserError(f"contamination: {spec}: no pretraining run in the model's lineage"
                    + (f" (it was imported from {origin}; its pretraining corpus is not known)" if origin else ""))


def corpus_index(data: Any, stop: threading.Event | None = None, n: int = NGRAM) -> NgramIndex:
    """The n-gram index of a DataConfig's documents (re-read from their sources)."""
    from core.data.documents import Documents

    try:
        return build_index(Documents(data), n=n, stop=stop)
    except FileNotFoundError as e:
        raise UserError(f"contamination: the pretraining corpus {data.source!r} no longer exists ({e})") from None
