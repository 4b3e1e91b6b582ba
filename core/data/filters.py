"""Quality filters and deduplication, with a report of what each rule removed.

The second step of the data stage, between reading and tokenizing. Heuristic rules in the spirit
of the C4/Gopher filters (length, words, share of non-letters, repeated lines; markup and code
measured apart, core/data/markup.py), exact deduplication by a hash of the normalised text, and
near-duplicate removal with MinHash LSH (core/data/neardup.py) over word or character n-grams. One filter
serves every source of a mixture: thresholds may differ per source, deduplication is corpus-wide.
`keep(text, source, cfg)` decides one document; `prepared(texts, cfg)` judges a stream ahead in
batches (the rules, hashes and near-dedup signatures of 256 documents at once: what a document
decides by itself, its `Verdict`), and `keep(..., verdict)` then asks the dedup memories in order,
so the removals are those of one document at a time. `report()` is plain data for the filter report
(documents and characters removed per rule, per source, a few examples each, near-duplicate clusters).
"""

from __future__ import annotations

import functools
import hashlib
import re
from array import array
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from core.config import FilterConfig
from core.data.markup import prose_lines
from core.errors import UserError

if TYPE_CHECKING:
    from core.data.neardup import NearDuplicates

EXAMPLES_PER_RULE = 3
EXAMPLE_CHARS = 200
_WORD = re.compile(r"\w+")
_NON_LETTER = re.compile(r"[^\w\s]|[\d_]")  # neither a letter nor whitespace

RULES = ("empty", "min_chars", "max_chars", "min_words", "max_non_letter_frac", "max_repeated_line_frac",
         "dedup_exact", "dedup_near")


def normalise(text: str) -> str:
    """Lower case, single spaces: two texts differing only in case or spacing are exact duplicates."""
    return " ".join(text.split()).lower()  # str.split is ~2x faster than a regex here


# ASCII text is measured by bytes.translate (C speed); the regex gives the same count for any text
_ASCII_KEEP = bytes(c for c in range(128) if chr(c).isalpha() or chr(c).isspace())


def _non_letters(text: str) -> int:
    if text.isascii():
        return len(text.encode("ascii").translate(None, _ASCII_KEEP))
    return _NON_LETTER.subn("", text)[1]


def _judged_text(text: str, markup_aware: bool) -> str:
    """The text the non-letter share is measured on: all of it, or the prose of a marked-up text."""
    return "\n".join(prose_lines(text, True)) if markup_aware else text


def non_letter_frac(text: str, markup_aware: bool = False) -> float:
    """Share of characters that are neither letters nor whitespace (digits, symbols, markup); with
    markup_aware, of the prose only (code blocks, inline literals and markup are left out)."""
    text = _judged_text(text, markup_aware)
    return _non_letters(text) / len(text) if text else 0.0


def _repeated_share(lines: list[str], min_chars: int) -> float:
    lines = [ln.strip() for ln in lines]
    lines = [ln for ln in lines if len(ln) >= min_chars] if min_chars else lines
    if len(lines) < 2:
        return 0.0
    return (len(lines) - len(set(lines))) / len(lines)


def repeated_line_frac(text: str, markup_aware: bool = False, min_chars: int = 0) -> float:
    """Share of non-empty lines that repeat an earlier line (boilerplate, spam, scraped menus).
    Lines shorter than `min_chars` (refrains, closing braces) never count; with markup_aware, code
    and markup lines are left out."""
    return _repeated_share(prose_lines(text, markup_aware), min_chars)


@functools.lru_cache(maxsize=16)
def _first_words(n: int) -> re.Pattern:
    return re.compile(r"\W*(?:\w+\b\W*){%d}" % n)  # \b: a word is a whole \w+ run, never split


def enough_words(text: str, n: int) -> bool:
    """At least n words (\\w+ runs)? One regex match that stops after the n-th word (no list of them)."""
    return _first_words(n).match(text) is not None


def failing_rule(text: str, c: FilterConfig) -> str | None:
    """The first quality rule of c (no dedup) that `text` fails, else None: a pure function of both."""
    if not text or text.isspace():
        return "empty"
    n = len(text)
    if c.min_chars and n < c.min_chars:
        return "min_chars"
    if c.max_chars and n > c.max_chars:
        return "max_chars"
    if c.min_words and not enough_words(text, c.min_words):
        return "min_words"
    check_nl, check_rep = c.max_non_letter_frac < 1.0, c.max_repeated_line_frac < 1.0
    if check_nl or check_rep:
        lines = prose_lines(text, c.markup_aware)  # one markup pass serves both rules
        if check_nl:
            judged = "\n".join(lines) if c.markup_aware else text
            if judged and _non_letters(judged) / len(judged) > c.max_non_letter_frac:
                return "max_non_letter_frac"
        if check_rep and _repeated_share(lines, c.repeated_line_min_chars) > c.max_repeated_line_frac:
            return "max_repeated_line_frac"
    return None


Judged = tuple[str | None, int | None]  # what a worker process decides alone: (failing rule, exact-dedup hash)


def exact_hash(norm: str) -> int:
    """The exact-dedup key of a normalised text: 8 bytes of its blake2b."""
    return int.from_bytes(hashlib.blake2b(norm.encode(), digest_size=8).digest(), "little")


class JudgedStream(Protocol):
    """Documents judged ahead by worker processes (core.data.workers.Ahead): (text, Judged) in order;
    `rest()` gives the texts read ahead but not taken, then the rest of the source."""

    def __iter__(self) -> Iterator[tuple[str, Judged]]: ...

    def rest(self) -> Iterator[str]: ...


def judge_alone(text: str, c: FilterConfig, exact: bool) -> Judged:
    """The part of a verdict that needs no memory of other documents, for worker processes
    (core/data/workers.py): the failing rule, else the exact-dedup hash when exact dedup is on."""
    rule = failing_rule(text, c)
    return rule, (exact_hash(normalise(text)) if exact and rule is None else None)


@dataclass
class Verdict:
    """What a document decides by itself, before the dedup memories are asked: the first quality
    rule it fails (None: it passes), its exact-dedup hash and its near-dedup band keys."""
    rule: str | None
    exact: int = 0
    near: np.ndarray | None = None  # band keys
    marks: np.ndarray | None = None  # the signature's low bytes, to verify a candidate


BATCH_DOCS = 256  # documents judged at once: numpy calls per batch, not per document
BATCH_CHARS = 1 << 21  # and at most ~2 M characters read ahead


class Prefetched:
    """An iterator of (text, verdict) over a stream of texts, judged BATCH_DOCS at a time; `rest()`
    gives the texts read ahead but not taken, then the rest of the stream (a reader that stops
    early counts what is left through it). With `ahead`, worker processes judge the stream's
    rules and exact hashes (core/data/workers.py) and this process adds the near-dedup keys."""

    def __init__(self, flt: DocumentFilter, texts: Iterator[str], cfg: FilterConfig | None,
                 ahead: JudgedStream | None = None):
        self._flt, self._texts, self._cfg, self._ahead = flt, texts, cfg, ahead
        self._buf: deque[tuple[str, Verdict]] = deque()

    def __iter__(self) -> Prefetched:
        return self

    def _pairs(self) -> Iterator[tuple[str, Judged | None]]:
        return iter(self._ahead) if self._ahead is not None else ((t, None) for t in self._texts)

    def __next__(self) -> tuple[str, Verdict]:
        if not self._buf:
            batch, judged, chars = [], [], 0
            for text, j in self._pairs():
                batch.append(text)
                judged.append(j)
                chars += len(text)
                if len(batch) >= BATCH_DOCS or chars >= BATCH_CHARS:
                    break
            known = judged if self._ahead is not None else None
            self._buf.extend(zip(batch, self._flt.verdicts(batch, self._cfg, known)))  # type: ignore[arg-type]
            if not self._buf:
                raise StopIteration
        return self._buf.popleft()

    def rest(self) -> Iterator[str]:
        while self._buf:
            yield self._buf.popleft()[0]
        yield from (self._ahead.rest() if self._ahead is not None else self._texts)


@dataclass
class RuleCount:
    docs: int = 0
    chars: int = 0
    examples: list[str] = field(default_factory=list)


class HashSet64:
    """The exact-dedup memory: 64-bit hashes in an open-addressing table in one array.array (16 bytes
    per hash at most half full). A Python set costs ~70 bytes per hash, and merging sorted arrays
    fragments the heap; this table grows by doubling, so peak memory stays near 16 bytes a document.

    The bound, chosen over an on-disk set: 16 bytes per kept document (24 while doubling), 16 GB per
    billion documents; FineWeb-Edu sample-10BT (9.7M documents of ~4.7 KB) needs ~155 MB, 0.3% of its
    text. An on-disk or sharded set would pay a disk probe per document, or a sort-merge pass that
    cannot decide a document while the stream goes by, for memory that is small at this scale."""

    def __init__(self, capacity: int = 1 << 16):
        self._table = array("Q", [0]) * capacity  # 0 marks an empty slot; array indexing is ~3x numpy's
        self._n = 0

    def _slot(self, h: int) -> int:
        table, mask = self._table, len(self._table) - 1
        i = h & mask
        v = table[i]
        while v and v != h:
            i = (i + 1) & mask
            v = table[i]
        return i

    def __contains__(self, h: int) -> bool:
        h = h or 1  # hash 0 is stored as 1 (a 2^-64 chance of a false duplicate)
        return self._table[self._slot(h)] == h

    def add(self, h: int) -> bool:
        """Store h; False when it was there already (one probe for both questions)."""
        h = h or 1
        i = self._slot(h)
        if self._table[i] == h:
            return False
        self._table[i] = h
        self._n += 1
        if self._n * 2 > len(self._table):
            self._grow()
        return True

    def _grow(self) -> None:
        old = np.frombuffer(self._table, dtype=np.uint64)
        used = old[old != 0]
        size = len(self._table) * 2
        del old
        self._table = array("Q")  # free the old table before the new one exists
        self._table = array("Q", [0]) * size
        for start in range(0, len(used), 1 << 14):  # small batches: no million Python ints at once
            for v in used[start:start + (1 << 14)].tolist():
                self._table[self._slot(v)] = v

    def __len__(self) -> int:
        return self._n


class DocumentFilter:
    """Applies the rules of one FilterConfig in a fixed order; the first rule that fires removes a
    document. A source may bring its own thresholds (`keep(text, source, cfg)`); the exact and near
    dedup memories are shared by all sources."""

    def __init__(self, cfg: FilterConfig, seed: int = 1337):
        self.cfg = cfg
        self.seed = seed
        self.counts = {r: RuleCount() for r in RULES}
        self.by_source: dict[int, dict[str, list[int]]] = {}  # source -> rule -> [docs, chars]
        self.docs_in = self.chars_in = self.docs_kept = self.chars_kept = 0
        self.clusters: dict[int, int] = {}  # near-dedup document number -> near duplicates removed for it
        self._seen = HashSet64()  # exact dedup: 8 bytes of hash per kept document
        self._near: NearDuplicates | None = None
        if cfg.dedup_near:  # imported only here: worker processes and unfiltered runs never load numba
            from core.data.neardup import NearDuplicates
            self._near = NearDuplicates(cfg.near_threshold, cfg.minhash_perm, seed)
        self._near_source = array("H")  # source of each document the near-dedup memory holds

    # ------------------------------------------------------------------------------- rules
    def rule_of(self, text: str, cfg: FilterConfig | None = None) -> str | None:
        """The first quality rule (no dedup) that `text` fails under `cfg` (default: data.filters'), else None."""
        return failing_rule(text, cfg or self.cfg)

    def verdicts(self, texts: list[str], cfg: FilterConfig | None = None,
                 judged: list[Judged] | None = None) -> list[Verdict]:
        """What each text decides by itself under `cfg`: its failing rule, or its dedup keys. The
        near-dedup signatures of the whole batch are computed at once (core/data/neardup.py);
        `judged` holds the rules and exact hashes when worker processes computed them ahead."""
        if judged is None:
            out = [Verdict(self.rule_of(t, cfg)) for t in texts]
        else:
            out = [Verdict(rule, h or 0) for rule, h in judged]
        c = self.cfg  # dedup is corpus-wide: data.filters' settings, whatever the source
        if not (c.dedup_exact or self._near is not None):
            return out
        todo = [i for i, v in enumerate(out) if v.rule is None]
        norms = [normalise(texts[i]) for i in todo] if self._near is not None or judged is None else []
        if c.dedup_exact and judged is None:
            for i, norm in zip(todo, norms):
                out[i].exact = exact_hash(norm)
        if self._near is not None and todo:
            from core.data.neardup import batch_shingles
            keys, marks = self._near.batch_keys(*batch_shingles(norms, c.shingle, c.shingle_size))
            for row, i in enumerate(todo):
                out[i].near, out[i].marks = keys[row], marks[row]
        return out

    def prepared(self, texts: Iterable[str], cfg: FilterConfig | None = None, ahead: JudgedStream | None = None) -> Prefetched:
        """(text, verdict) pairs for a stream, judged in batches ahead of `keep`; with `ahead`
        (worker processes judging the same stream), their rules and hashes are used."""
        return Prefetched(self, iter(texts), cfg, ahead)

    def _duplicate(self, v: Verdict, source: int) -> str | None:
        if self.cfg.dedup_exact:
            if not self._seen.add(v.exact):
                return "dedup_exact"
        if self._near is not None and v.near is not None and v.marks is not None:
            first = self._near.match_keys(v.near, v.marks)
            if first is not None:
                self.clusters[first] = self.clusters.get(first, 0) + 1
                return "dedup_near"
            self._near_source.append(source)
        return None

    # ------------------------------------------------------------------------------- stream
    def keep(self, text: str, source: int = 0, cfg: FilterConfig | None = None, verdict: Verdict | None = None) -> bool:
        """Decide one document of `source` (under that source's thresholds `cfg`; `verdict` from
        `prepared`/`verdicts` under the same cfg, else computed here) and count it."""
        self.docs_in += 1
        self.chars_in += len(text)
        v = verdict or self.verdicts([text], cfg)[0]
        rule = v.rule or self._duplicate(v, source)
        if rule is None:
            self.docs_kept += 1
            self.chars_kept += len(text)
            return True
        rc = self.counts[rule]
        rc.docs += 1
        rc.chars += len(text)
        per = self.by_source.setdefault(source, {}).setdefault(rule, [0, 0])
        per[0] += 1
        per[1] += len(text)
        if len(rc.examples) < EXAMPLES_PER_RULE and rule != "empty":
            rc.examples.append(text[:EXAMPLE_CHARS])
        return False

    def apply(self, docs: Iterable[str]) -> Iterator[str]:
        for text, v in self.prepared(docs):
            if self.keep(text, verdict=v):
                yield text

    def cluster_report(self) -> dict:
        """Near-duplicate clusters (a kept document and the ones removed as its near duplicates),
        per source of the kept document: how many, how many documents they hold, their sizes."""
        out: dict[int, dict] = {}
        for first, removed in self.clusters.items():
            src = self._near_source[first]
            row = out.setdefault(src, {"clusters": 0, "docs": 0, "sizes": {}})
            size = removed + 1
            row["clusters"] += 1
            row["docs"] += size
            row["sizes"][str(size)] = row["sizes"].get(str(size), 0) + 1
        return {str(k): v for k, v in sorted(out.items())}

    def report(self) -> dict:
        """Plain data: totals and, per rule that removed anything, documents, characters and examples."""
        return {
            "docs_in": self.docs_in, "chars_in": self.chars_in,
            "docs_kept": self.docs_kept, "chars_kept": self.chars_kept,
            "docs_removed": self.docs_in - self.docs_kept, "chars_removed": self.chars_in - self.chars_kept,
            "rules": {r: {"docs": c.docs, "chars": c.chars, "examples": c.examples}
                      for r, c in self.counts.items() if c.docs},
            "by_source": {str(s): {r: {"docs": v[0], "chars": v[1]} for r, v in rules.items()}
                          for s, rules in sorted(self.by_source.items())},
            "near_clusters": self.cluster_report(),
        }

    def check_not_empty(self, source: str) -> None:
        """UserError when nothing is left: say whether the source was empty or which rule removed it all."""
        if self.docs_kept:
            return
        if self.docs_in == 0:
            raise UserError(f"{source}: the dataset is empty (no documents were read)")
        worst = max(self.counts.items(), key=lambda kv: kv[1].docs)[0]
        removed = ", ".join(f"{r}: {c.docs}" for r, c in self.counts.items() if c.docs)
        if worst == "empty":
            raise UserError(f"{source}: all {self.docs_in} documents are empty")
        raise UserError(f"{source}: the filters removed all {self.docs_in} documents (rule {worst!r} removed "
                        f"{self.counts[worst].docs}; by rule: {removed}); loosen data.filters.{worst}")
