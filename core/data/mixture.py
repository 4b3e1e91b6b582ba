"""Sources mixed by weight, with an account of every source: read, removed, used, repeated, left unread.

The middle of reading (core/data/documents.py drives it). Each source is a `SourceStream`: its
documents under its own reading options and filter thresholds, each tagged train or validation
(one random document in every 1/val_fraction of a source's kept documents is held out, so the
split is stratified by source). `mix()` interleaves the streams by deficit scheduling (the source
furthest below its share goes next) until `mixture_end`: "smallest" stops when a source runs out,
"largest" when the last one does (the others repeat their training documents, counted as epochs),
"budget" when every source gave its weight's share of `budget_tokens`. When the mixture stops early,
the rest of each local source is counted (not filtered), so nothing is left unread without a number.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.config import DataConfig, FilterConfig, SourceConfig
from core.data.filters import DocumentFilter, Prefetched
from core.data.sources import TEXT_SUFFIXES, ReadCounts, expand_paths, is_saved_dataset, iter_texts
from core.data.textfiles import iter_text_file
from core.errors import UserError

if TYPE_CHECKING:
    from core.data.workers import Judge

REMOVED, TRAIN, VAL = 0, 1, 2


def source_texts(s: SourceConfig, d: DataConfig, counts: ReadCounts) -> Iterator[str]:
    """One source's raw documents under its reading options (per-source txt_mode, separator, strip)."""
    mode = s.txt_mode or d.txt_mode
    local = not s.source.startswith(("embedded:", "hf:")) and not is_saved_dataset(Path(s.source).expanduser())
    if not local or not (s.separator or s.strip):
        yield from iter_texts(s.source, text_field=s.text_field, hf_config=s.hf_config, split=s.split,
                              streaming=d.streaming, txt_mode=mode, seed=d.seed, synthetic_mb=d.synthetic_mb,
                              counts=counts)
        return
    for path in expand_paths(s.source):
        if path.suffix.lower() in TEXT_SUFFIXES:
            yield from iter_text_file(path, counts, mode, s.separator, s.strip)
        else:
            yield from iter_texts(str(path), text_field=s.text_field, txt_mode=mode, counts=counts)


def source_filters(base: FilterConfig, s: SourceConfig) -> FilterConfig:
    """data.filters with the source's own thresholds (-1 keeps the corpus-wide value)."""
    over = {f.name: getattr(s.filters, f.name) for f in dataclasses.fields(s.filters)}
    return dataclasses.replace(base, **{k: v for k, v in over.items() if v != -1})


def sources_of(d: DataConfig) -> list[SourceConfig]:
    """The mixture's sources, or the single `source` as a one-source mixture."""
    if d.mixture:
        return list(d.mixture)
    return [SourceConfig(source=d.source, hf_config=d.hf_config, split=d.split, text_field=d.text_field,
                         separator=d.separator, strip=d.strip)]


@dataclass
class Account:
    """What one source gave. bytes are UTF-8 bytes of document text (not of the file's framing)."""
    source: str
    weight: float
    docs_read: int = 0
    bytes_read: int = 0
    docs_removed: int = 0
    bytes_removed: int = 0
    docs_used: int = 0  # in the corpus, repeats included
    bytes_used: int = 0
    docs_repeated: int = 0
    bytes_repeated: int = 0
    train_docs: int = 0
    val_docs: int = 0
    measure: int = 0  # chars, or tokens under a budget: what the shares are scheduled on
    finished: bool = False  # the first pass reached the source's end
    epochs: int = 1
    docs_unread: int | None = 0  # None: not counted (a hub source)
    bytes_unread: int | None = 0
    stopped_by: str = ""

    def to_dict(self, total_bytes_used: int) -> dict:
        out = dataclasses.asdict(self)
        out["share_bytes"] = round(self.bytes_used / total_bytes_used, 6) if total_bytes_used else 0.0
        out["epochs_used"] = round(self.bytes_used / max(1, self.bytes_used - self.bytes_repeated), 3)
        return out


class ReadLimit:
    """data.max_docs / data.max_bytes over the first reading of all sources together."""

    def __init__(self, max_docs: int, max_bytes: int):
        self.max_docs, self.max_bytes = max_docs, max_bytes
        self.docs = self.bytes = 0
        self.hit = ""

    def allows(self, size: int) -> bool:
        if self.max_docs and self.docs >= self.max_docs:
            self.hit = "max_docs"
        elif self.max_bytes and self.docs and self.bytes + size > self.max_bytes:
            self.hit = "max_bytes"
        if self.hit:
            return False
        self.docs += 1
        self.bytes += size
        return True


class SourceStream:
    """The kept documents of one source as (text, is_val); later epochs replay the training ones."""

    def __init__(self, index: int, cfg: SourceConfig, d: DataConfig, flt: DocumentFilter, limit: ReadLimit,
                 counts: ReadCounts, account: Account, judge: Judge | None = None):
        self.index, self.cfg, self.d, self.flt, self.limit, self.judge = index, cfg, d, flt, limit, judge
        self.counts, self.acc = counts, account
        self.fcfg = source_filters(d.filters, cfg)
        self.state = bytearray()  # per document read: REMOVED, TRAIN or VAL (replays reuse it)
        self._rng = np.random.default_rng([d.seed, index])
        self._interval = 0
        self._next_val = self._val_position(0)
        self._source = source_texts(cfg, d, counts)
        self._prepared: Prefetched | None = None  # judged in batches (the rules in workers, with a Judge)

    def _val_position(self, interval: int) -> int:
        """The held-out document of the interval-th run of ~1/val_fraction kept documents."""
        vf = self.d.val_fraction
        lo, hi = round(interval / vf), round((interval + 1) / vf)
        return lo + int(self._rng.random() * max(1, hi - lo))

    def _split(self, kept_index: int) -> int:
        if kept_index != self._next_val:
            return TRAIN
        self._interval += 1
        self._next_val = self._val_position(self._interval)
        return VAL

    def first_pass(self) -> Iterator[tuple[str, bool]]:
        """The kept documents, judged in batches; with a Judge, the rules and exact hashes come from
        worker processes (what they read ahead and the mixture did not take still counts as unread)."""
        ahead = self.judge.ahead(self._source, self.fcfg, self.flt.cfg.dedup_exact) if self.judge is not None else None
        self._prepared = self.flt.prepared(self._source, self.fcfg, ahead)
        a, kept = self.acc, 0
        for text, verdict in self._prepared:
            size = len(text.encode("utf-8"))
            if self.cfg.max_docs and a.docs_read >= self.cfg.max_docs or not self.limit.allows(size):
                a.stopped_by = self.limit.hit or "its max_docs"
                a.docs_unread, a.bytes_unread = 1, size  # count_unread adds the rest
                break
            a.docs_read += 1
            a.bytes_read += size
            if not self.flt.keep(text, self.index, self.fcfg, verdict):
                a.docs_removed += 1
                a.bytes_removed += size
                self.state.append(REMOVED)
                continue
            split = self._split(kept)
            kept += 1
            self.state.append(split)
            yield text, split == VAL
        a.finished = not self.limit.hit

    def replay(self) -> Iterator[tuple[str, bool]]:
        """The training documents again, in the same order (validation documents are never repeated)."""
        for i, text in enumerate(source_texts(self.cfg, self.d, ReadCounts())):
            if i >= len(self.state):
                return
            if self.state[i] == TRAIN:
                yield text, False

    def count_unread(self) -> None:
        """After the mixture ended: count (without filtering) what is left of the source; a hub
        source that was not read to its end is not counted (None)."""
        a = self.acc
        hub = self.cfg.source.startswith("hf:") or is_saved_dataset(Path(self.cfg.source).expanduser())
        if hub:
            if a.stopped_by or not a.finished:
                a.docs_unread = a.bytes_unread = None
            return
        for text in self._prepared.rest() if self._prepared is not None else self._source:
            a.docs_unread = (a.docs_unread or 0) + 1
            a.bytes_unread = (a.bytes_unread or 0) + len(text.encode("utf-8"))
        if a.docs_unread and not a.stopped_by:
            a.stopped_by = "the mixture ended"


@dataclass
class _Member:
    stream: SourceStream
    share: float
    epoch: Iterator[tuple[str, bool]] = field(init=False)
    done: bool = False  # its budget share is full

    def __post_init__(self) -> None:
        self.epoch = self.stream.first_pass()


def mix(d: DataConfig, flt: DocumentFilter, counts: ReadCounts, accounts: list[Account],
        measure: Callable[[str], int], judge: Judge | None = None) -> Iterator[tuple[str, int, bool]]:
    """(text, source index, is_val) under d.mixture_end; fills `accounts` as it goes. `measure` is
    a document's size in tokens, used only by mixture_end = "budget"."""
    srcs = sources_of(d)
    total_w = sum(s.weight for s in srcs)
    limit = ReadLimit(d.max_docs, d.max_bytes)
    members = []
    for i, s in enumerate(srcs):
        accounts.append(Account(s.source, round(s.weight / total_w, 6)))
        members.append(_Member(SourceStream(i, s, d, flt, limit, counts, accounts[-1], judge), s.weight / total_w))
    yield from _schedule(d, members, accounts, limit, flt, measure)
    for m in members:  # only after a complete pass: a reader that stops early reads nothing more
        m.stream.count_unread()


def _schedule(d: DataConfig, members: list[_Member], accounts: list[Account], limit: ReadLimit,
              flt: DocumentFilter, measure: Callable[[str], int]) -> Iterator[tuple[str, int, bool]]:
    """Deficit scheduling: the source furthest below its share (of characters, or of the token
    budget) goes next, until the mixture's end rule says stop."""
    end = d.mixture_end if len(members) > 1 else "smallest"
    quota = [m.share * d.budget_tokens for m in members] if end == "budget" else None
    while True:
        live = [k for k, m in enumerate(members) if not m.done]
        if not live:
            return
        k = min(live, key=lambda j: (accounts[j].measure / members[j].share, j))
        m, a = members[k], accounts[k]
        item = next(m.epoch, None)
        if item is None:
            if limit.hit:
                return  # data.max_docs / data.max_bytes: the whole mixture ends here
            if a.docs_used == 0:
                _nothing_left(d, a, flt, k)
            if end == "smallest" or end == "largest" and all(x.finished for x in accounts):
                return
            if a.train_docs == 0:
                raise UserError(f"{a.source}: no training documents to repeat (all {a.val_docs} kept documents "
                                f"are held out); add documents or lower data.val_fraction")
            m.epoch = m.stream.replay()
            a.epochs += 1
            continue
        text, is_val = item
        size = len(text.encode("utf-8"))
        a.docs_used += 1
        a.bytes_used += size
        a.val_docs += is_val
        a.train_docs += not is_val
        if a.epochs > 1:
            a.docs_repeated += 1
            a.bytes_repeated += size
        a.measure += measure(text) if quota is not None else (len(text) or 1)
        if quota is not None and a.measure >= quota[k]:
            m.done = True
        yield text, k, is_val


def _nothing_left(d: DataConfig, a: Account, flt: DocumentFilter, k: int) -> None:
    """A source that gave no document at all: say whether it was empty or which rule removed it all."""
    if a.docs_read == 0:
        raise UserError(f"{a.source}: the dataset is empty (no documents were read)")
    rules = flt.by_source.get(k, {})
    worst = max(rules.items(), key=lambda kv: kv[1][0])[0] if rules else "empty"
    by_rule = ", ".join(f"{r}: {v[0]}" for r, v in rules.items())
    where = f"data.mixture[{k}].filters.{worst} or data.filters.{worst}" if d.mixture else f"data.filters.{worst}"
    if worst == "empty":
        raise UserError(f"{a.source}: all {a.docs_read} documents are empty")
    which = " of this source" if d.mixture else ""
    raise UserError(f"{a.source}: the filters removed all {a.docs_read} documents{which} (rule {worst!r} "
                    f"removed {rules[worst][0]}; by rule: {by_rule}); loosen {where}")
