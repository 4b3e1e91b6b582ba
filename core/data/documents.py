"""The corpus of a preset: its source (or weighted mixture of sources), read, limited and filtered.

This is what the tokenizer trains on and what the shards hold. `Documents(preset.data)` is
iterable any number of times (each pass re-reads the sources, so memory stays flat); `tagged()`
gives each document with its source and split (train or held-out validation, stratified by
source: core/data/mixture.py). After a complete pass, `source_report()` has every source's account
(read, removed, used, repeated, left unread) and `filter_report()` what each rule removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from core.config import DataConfig
from core.data.filters import DocumentFilter
from core.data.mixture import Account, mix, sources_of
from core.data.sources import ReadCounts, source_bytes

if TYPE_CHECKING:
    from core.data.workers import Judge


def estimated_tokens(text: str) -> int:
    """A document's tokens before a tokenizer exists: ~4 UTF-8 bytes per token, plus its separator."""
    return len(text.encode("utf-8")) // 4 + 1


class Documents:
    """Iterate the filtered documents of a DataConfig; reports describe the last complete pass.

    `count_tokens` sizes documents for mixture_end = "budget". The shards' pass gives the
    tokenizer's own count, so the budget is exact there (each source stops at its quota, within its
    last document). The tokenizer's training pass has no tokenizer yet and estimates ~4 bytes per
    token: it reads each source's same document sequence, cut where the estimate reaches the quota,
    so a source of b real bytes per token gives the tokenizer b / 4 times its share of the shards'
    text (tests/data/test_data_mixture.py pins both)."""

    def __init__(self, data: DataConfig, count_tokens: Callable[[str], int] | None = None, judge: Judge | None = None):
        self.data, self.judge = data, judge  # judge: filter verdicts from worker processes (core/data/workers.py)
        self.count_tokens = count_tokens or estimated_tokens
        self.counts = ReadCounts()
        self.filter = DocumentFilter(data.filters, data.seed)
        self.accounts: list[Account] = []
        self.complete = False

    @property
    def name(self) -> str:
        d = self.data
        return " + ".join(s.source for s in d.mixture) if d.mixture else d.source

    def source_names(self) -> list[str]:
        return [s.source for s in sources_of(self.data)]

    def total_bytes(self) -> int | None:
        """Bytes the pass will read, when known up front (for progress), capped by max_bytes. A
        mixture's end depends on its sources' contents, so its size is unknown up front."""
        d = self.data
        total = None if d.mixture else source_bytes(d.source, d.synthetic_mb)
        if d.max_bytes:
            total = min(total, d.max_bytes) if total is not None else d.max_bytes
        return total

    def tagged(self) -> Iterator[tuple[str, int, bool]]:
        """(text, source index, is_val) for every document of one pass."""
        self.counts = ReadCounts()
        self.filter = DocumentFilter(self.data.filters, self.data.seed)
        self.accounts = []
        self.complete = False
        yield from mix(self.data, self.filter, self.counts, self.accounts, self.count_tokens, self.judge)
        self.filter.check_not_empty(self.name)
        self.complete = True

    def __iter__(self) -> Iterator[str]:
        for text, _, _ in self.tagged():
            yield text

    def train_texts(self) -> Iterator[str]:
        """The training documents only (what a tokenizer may learn from)."""
        for text, _, is_val in self.tagged():
            if not is_val:
                yield text

    def held_out(self, bytes_per_source: int = 300_000) -> dict[str, list[str]]:
        """Validation documents of each source, up to `bytes_per_source` each: text no tokenizer
        trained on, for honest measurements. Reading stops once every source has its share."""
        names = self.source_names()
        out: dict[str, list[str]] = {n: [] for n in names}
        size = [0] * len(names)
        it = self.tagged()
        for text, src, is_val in it:  # a generator: close() ends the reading
            if is_val and size[src] < bytes_per_source:
                out[names[src]].append(text)
                size[src] += len(text.encode("utf-8"))
                if min(size) >= bytes_per_source:
                    it.close()  # type: ignore[attr-defined]
                    break
        return out

    # ------------------------------------------------------------------------------ reports
    def source_report(self) -> dict:
        used = sum(a.bytes_used for a in self.accounts)
        total_chars = sum(a.measure for a in self.accounts) or 1
        rows = []
        for a in self.accounts:
            row = a.to_dict(used)
            row.update(docs=a.docs_used, share_docs=round(a.docs_used / max(1, sum(x.docs_used for x in self.accounts)), 6))
            rows.append(row)
        left = [a for a in self.accounts if a.docs_unread]
        stopped = [a for a in self.accounts if a.stopped_by in ("max_docs", "max_bytes")]
        return {
            "sources": rows,
            "mixture_end": self.data.mixture_end if len(self.accounts) > 1 else None,
            "exhausted": next((a.source for a in self.accounts if a.finished), None) if left and len(self.accounts) > 1
            else None,
            "left_unread": [a.source for a in left],
            "limited_by": stopped[0].stopped_by if stopped else None,
            "scheduled_on": "tokens" if self.data.mixture_end == "budget" and len(self.accounts) > 1 else "chars",
            "measure_total": total_chars,
            "bad_utf8": self.counts.bad_utf8,
            "bad_utf8_files": sorted(self.counts.bad_utf8_files)[:20],
        }

    def filter_report(self) -> dict:
        return self.filter.report()
