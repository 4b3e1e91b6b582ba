"""Relevance, quality and diversity of a corpus, per source and overall, measured on a sample.

Gathered while the shards are written (`QualitySampler.observe` wraps the document stream): every
document's length, and a seeded reservoir sample per source. `quality_report` then gives, per
source and overall: language shares, the length distribution, distinct n-gram ratios and vocabulary
growth (over the first 50,000 words of the sample, so sources compare at equal size), near-duplicate
clusters (from the filter report) and, with `data.relevance_reference`, a TF-IDF cosine similarity
to the reference.

Language identification is py3langid (core/data/langid.py: its model unpacked once into a cache).
TF-IDF is a few lines over Counters
here: scikit-learn would bring ~40 MB (scipy, joblib) for one cosine.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np

from core.data.langid import language
from core.errors import UserError

SAMPLE_DOCS = 1000  # per source
SAMPLE_CHARS = 4000  # of each sampled document
DIVERSITY_WORDS = 50_000
GROWTH_POINTS = (1_000, 10_000, 50_000)
_WORDS = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


class QualitySampler:
    """Watches (text, source, is_val) documents go by; keeps lengths and a reservoir per source."""

    def __init__(self, n_sources: int, seed: int = 1337, sample_docs: int = SAMPLE_DOCS):
        self.rng = random.Random(seed)
        self.k = sample_docs
        self.seen = [0] * n_sources
        self.samples: list[list[str]] = [[] for _ in range(n_sources)]
        self.lengths: list[list[int]] = [[] for _ in range(n_sources)]

    def observe(self, docs: Iterable[tuple[str, int, bool]]) -> Iterator[tuple[str, int, bool]]:
        for item in docs:
            text, src = item[0], item[1]
            self.lengths[src].append(len(text))
            self.seen[src] += 1
            sample = self.samples[src]
            if len(sample) < self.k:
                sample.append(text[:SAMPLE_CHARS])
            else:
                j = self.rng.randrange(self.seen[src])
                if j < self.k:
                    sample[j] = text[:SAMPLE_CHARS]
            yield item


# ------------------------------------------------------------------------------------ measures


def length_summary(lengths: list[int]) -> dict:
    if not lengths:
        return {"docs": 0}
    a = np.asarray(lengths)
    p = np.percentile(a, [10, 50, 90]).round().astype(int).tolist()
    return {"docs": len(a), "mean_chars": round(float(a.mean()), 1), "p10_chars": p[0], "p50_chars": p[1],
            "p90_chars": p[2], "max_chars": int(a.max())}


def diversity(sample: list[str]) -> dict:
    """Distinct n-gram ratios (distinct / total) and vocabulary growth over the first words of a sample."""
    ws: list[str] = []
    for t in sample:
        ws.extend(words(t))
        if len(ws) >= DIVERSITY_WORDS:
            break
    ws = ws[:DIVERSITY_WORDS]
    out: dict = {"words": len(ws)}
    for n in (1, 2, 3):
        grams = len(ws) - n + 1
        out[f"distinct_{n}"] = round(len(set(zip(*(ws[i:] for i in range(n))))) / grams, 4) if grams > 0 else 0.0
    seen: set[str] = set()
    growth = {}
    for i, w in enumerate(ws, 1):
        seen.add(w)
        if i in GROWTH_POINTS:
            growth[str(i)] = len(seen)
    out["vocab_growth"] = growth
    if len(growth) >= 2:  # Heaps' law V = K n^beta between the first and the last point
        (n1, v1), (n2, v2) = [(int(k), v) for k, v in list(growth.items())[:: len(growth) - 1]]
        out["heaps_beta"] = round(math.log(v2 / v1) / math.log(n2 / n1), 3)
    return out


LANGUAGE_DOCS = 200  # per source: language shares to ~3 points at a fraction of a second


def language_counts(sample: list[str]) -> Counter:
    return Counter(language(t) for t in sample[:LANGUAGE_DOCS])


def shares(counts: Counter, top: int = 3) -> dict[str, float]:
    n = sum(counts.values())
    return {k: round(v / n, 4) for k, v in counts.most_common(top)} if n else {}


# ----------------------------------------------------------------------------------- relevance


def read_reference(spec: str) -> list[str]:
    """The reference texts: each file of a file, folder or glob, split at blank lines. Raises UserError
    naming data.relevance_reference when nothing readable is there."""
    from core.data.sources import expand_paths

    try:
        paths = expand_paths(spec)
        texts = [p.read_text(encoding="utf-8", errors="replace") for p in paths]
    except (UserError, OSError) as e:
        raise UserError(f"data.relevance_reference: {e}") from None
    blocks = [b for t in texts for b in re.split(r"\n\s*\n", t) if b.strip()]
    if not blocks:
        raise UserError(f"data.relevance_reference: {spec}: no text in it")
    return blocks


class Relevance:
    """TF-IDF cosine similarity of documents to the centroid of a reference (IDF over reference and sample)."""

    def __init__(self, reference: list[str], corpus_sample: list[str]):
        ref_tf = [Counter(words(t)) for t in reference]
        df: Counter = Counter()
        for tf in [*ref_tf, *(Counter(words(t)) for t in corpus_sample)]:
            df.update(tf.keys())
        self.n = len(reference) + len(corpus_sample)
        self.idf = {w: math.log((1 + self.n) / (1 + c)) + 1 for w, c in df.items()}
        centroid: Counter = Counter()
        for tf in ref_tf:
            centroid.update(self._vector(tf))
        norm = math.sqrt(sum(v * v for v in centroid.values())) or 1.0
        self.centroid = {w: v / norm for w, v in centroid.items()}

    def _vector(self, tf: Counter) -> dict[str, float]:
        default = math.log(1 + self.n) + 1
        vec = {w: c * self.idf.get(w, default) for w, c in tf.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {w: v / norm for w, v in vec.items()}

    def score(self, text: str) -> float:
        vec = self._vector(Counter(words(text)))
        return sum(v * self.centroid.get(w, 0.0) for w, v in vec.items())


# -------------------------------------------------------------------------------------- report


def _row(sample: list[str], lengths: list[int], rel: Relevance | None, langs: Counter) -> dict:
    row = {"length": length_summary(lengths), "languages": shares(langs), **diversity(sample)}
    if rel is not None and sample:
        row["relevance"] = round(float(np.mean([rel.score(t) for t in sample])), 4)
    return row


def quality_report(sampler: QualitySampler, names: list[str], filter_report: dict,
                   reference: list[str] | None = None) -> dict:
    """Per source and overall ("all sources"): lengths, languages, diversity, near-duplicate
    clusters and, with a reference, relevance."""
    everything = [t for s in sampler.samples for t in s]
    rel = Relevance(reference, everything) if reference else None
    clusters = filter_report.get("near_clusters", {})
    out: dict = {"sample_docs_per_source": sampler.k, "sources": {}}
    total_langs: Counter = Counter()
    for i, name in enumerate(names):
        langs = language_counts(sampler.samples[i])
        # overall language shares weight each source by its documents, not by its sample
        total_langs.update({k: v * sampler.seen[i] / max(1, sum(langs.values())) for k, v in langs.items()})
        row = _row(sampler.samples[i], sampler.lengths[i], rel, langs)
        c = clusters.get(str(i), {"clusters": 0, "docs": 0, "sizes": {}})
        read = sampler.seen[i] + c["docs"] - c["clusters"]  # kept documents + their removed near duplicates
        row["near_duplicates"] = {**c, "share_in_clusters": round(c["docs"] / read, 4) if read else 0.0}
        out["sources"][name] = row
    if len(names) > 1:
        rng = random.Random(0)  # overall diversity over an equal mix, so no source's size decides it
        mixed = everything[:]
        rng.shuffle(mixed)
        out["overall"] = _row(mixed, [n for ls in sampler.lengths for n in ls], rel, total_langs)
    return out


def row_measures(text: str, rel: Relevance | None = None) -> dict:
    """Per-document numbers the data browser sorts rows by."""
    from core.data.filters import non_letter_frac

    ws = words(text)
    out = {"chars": len(text), "words": len(ws), "non_letter": round(non_letter_frac(text, True), 4),
           "distinct_words": round(len(set(ws)) / len(ws), 4) if ws else 0.0}
    if rel is not None:
        out["relevance"] = round(rel.score(text), 4)
    return out
