"""The corpus of a preset: its source (or weighted mixture of sources), read, limited and filtered.

This is what the tokenizer trains on and what the shards hold. `Documents(preset.data)` is
iterable any number of times (each pass re-reads the sources, so memory stays flat); after a pass,
`source_report()` has the realised mixture proportions and `filter_report()` what each rule removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from core.config import DataConfig, SourceConfig
from core.data.filters import DocumentFilter
from core.data.sources import ReadCounts, iter_texts, source_bytes


@dataclass
class _Member:
    cfg: SourceConfig
    share: float
    docs: int = 0
    chars: int = 0
    scheduled: int = 0  # chars, counting an empty document as 1 so an empty source cannot stall the mix


class Documents:
    """Iterate the filtered documents of a DataConfig; reports describe the last complete pass."""

    def __init__(self, data: DataConfig):
        self.data = data
        self.counts = ReadCounts()
        self.filter = DocumentFilter(data.filters, data.seed)
        self.members: list[_Member] = []
        self.exhausted: str | None = None
        self.limited_by: str | None = None
        self.chars_read = 0

    @property
    def name(self) -> str:
        d = self.data
        return " + ".join(s.source for s in d.mixture) if d.mixture else d.source

    def total_bytes(self) -> int | None:
        """Bytes the pass will read, when known up front (for progress), capped by max_bytes."""
        d = self.data
        specs = [s.source for s in d.mixture] if d.mixture else [d.source]
        sizes = [source_bytes(s, d.synthetic_mb) for s in specs]
        total = None if None in sizes else sum(sizes)  # type: ignore[arg-type]
        if d.mixture and total is not None:
            total = None  # a mixture stops when its first source runs out: size unknown up front
        if d.max_bytes:
            total = min(total, d.max_bytes) if total is not None else d.max_bytes
        return total

    def _texts(self, s: SourceConfig) -> Iterator[str]:
        d = self.data
        it = iter_texts(s.source, text_field=s.text_field, hf_config=s.hf_config, split=s.split,
                        streaming=d.streaming, txt_mode=d.txt_mode, seed=d.seed, synthetic_mb=d.synthetic_mb,
                        counts=self.counts)
        for i, text in enumerate(it):
            if s.max_docs and i >= s.max_docs:
                return
            yield text

    def _raw(self) -> Iterator[str]:
        """Unfiltered documents: one source, or the weighted mixture, under max_docs and max_bytes."""
        d = self.data
        if d.mixture:
            total_w = sum(s.weight for s in d.mixture)
            self.members = [_Member(s, s.weight / total_w) for s in d.mixture]
        else:
            self.members = [_Member(SourceConfig(source=d.source, hf_config=d.hf_config, split=d.split,
                                                 text_field=d.text_field), 1.0)]
        iters = [self._texts(m.cfg) for m in self.members]
        n_docs = n_bytes = 0
        while True:
            # deficit scheduling: take from the source furthest below its share of characters so far
            i = min(range(len(self.members)), key=lambda k: (self.members[k].scheduled / self.members[k].share, k))
            m = self.members[i]
            text = next(iters[i], None)
            if text is None:
                self.exhausted = m.cfg.source if len(self.members) > 1 else None
                return
            if d.max_docs and n_docs >= d.max_docs:
                self.limited_by = "max_docs"
                return
            size = len(text.encode("utf-8")) if d.max_bytes else len(text)
            if d.max_bytes and n_bytes + size > d.max_bytes and n_docs:
                self.limited_by = "max_bytes"
                return
            n_docs += 1
            n_bytes += size
            m.docs += 1
            m.chars += len(text)
            m.scheduled += len(text) or 1
            self.chars_read += len(text)
            yield text

    def __iter__(self) -> Iterator[str]:
        self.counts = ReadCounts()
        self.filter = DocumentFilter(self.data.filters, self.data.seed)
        self.exhausted = self.limited_by = None
        self.chars_read = 0
        yield from self.filter.apply(self._raw())
        self.filter.check_not_empty(self.name)

    # ------------------------------------------------------------------------------ reports
    def source_report(self) -> dict:
        total_chars = sum(m.chars for m in self.members) or 1
        total_docs = sum(m.docs for m in self.members) or 1
        return {
            "sources": [{"source": m.cfg.source, "weight": round(m.share, 6), "docs": m.docs, "chars": m.chars,
                         "share_chars": round(m.chars / total_chars, 6), "share_docs": round(m.docs / total_docs, 6)}
                        for m in self.members],
            "exhausted": self.exhausted,
            "limited_by": self.limited_by,
            "bad_utf8": self.counts.bad_utf8,
            "bad_utf8_files": sorted(self.counts.bad_utf8_files)[:20],
        }

    def filter_report(self) -> dict:
        return self.filter.report()
