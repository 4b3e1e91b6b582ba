"""Worker processes of the shards' preparation: waiting on them safely, and filter verdicts computed ahead.

With `data.workers` > 1 the data stage reads the corpus in this process and hands batches of
documents to process pools: tokenizing (core/data/shards.py) and the part of filtering that needs no
memory of other documents (the rules and the exact-dedup hash, `core.data.filters.judge_alone`),
computed here ahead of the reading, in order. What must see the documents one after another stays
in this process (the dedup memories, the split, the mixture), and the verdicts are the ones it would
compute itself, so the shards are identical for any number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from core.config import FilterConfig
from core.data.filters import Judged, judge_alone
from core.errors import StageFailed, Stopped

BATCH_CHARS = 1 << 19  # text per verdict task: enough that IPC is noise, small enough to keep memory flat
BATCH_DOCS = 2048


class WorkerFailed(StageFailed):
    """A worker process failed or died; the run fails with this message instead of waiting."""


def result_of(res: Any, pool: Any, pids: set[int], stop: threading.Event | None) -> Any:
    """res.get() that never waits forever: it checks every second that no worker has died (the pool
    would replace it silently and the task would never finish) and whether a stop was asked."""
    while True:
        try:
            return res.get(timeout=1.0)
        except mp.TimeoutError:
            pass
        if stop is not None and stop.is_set():
            raise Stopped()
        alive = {p.pid for p in pool._pool if p.exitcode is None}
        if not pids <= alive:
            raise WorkerFailed("a data worker process died (killed, or out of memory); the shards were not written")


def _judge(texts: list[str], cfg: FilterConfig, exact: bool) -> list[Judged]:
    return [judge_alone(t, cfg, exact) for t in texts]


class Judge:
    """A pool of `workers` processes that compute filter verdicts ahead of the reading."""

    def __init__(self, workers: int, stop: threading.Event | None = None):
        self.workers, self.stop = workers, stop
        self._pool = mp.get_context("spawn").Pool(workers)  # spawn: the stage may run beside threads
        self._pids = {p.pid for p in self._pool._pool}  # type: ignore[attr-defined]

    def ahead(self, texts: Iterator[str], cfg: FilterConfig, exact: bool) -> Ahead:
        return Ahead(self, texts, cfg, exact)

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Ahead:
    """(text, verdict) of a source's documents, in order, with 2 batches per worker in flight;
    `rest()` gives back what was read ahead but not handed out, then the rest of the source."""

    def __init__(self, judge: Judge, texts: Iterator[str], cfg: FilterConfig, exact: bool):
        self.judge, self.texts, self.cfg, self.exact = judge, iter(texts), cfg, exact
        self.pending: deque[tuple[list[str], Any]] = deque()
        self.ready: deque[tuple[str, Judged]] = deque()
        self.exhausted = False

    def _fill(self) -> None:
        while not self.exhausted and len(self.pending) < 2 * self.judge.workers:
            batch: list[str] = []
            chars = 0
            for text in self.texts:
                batch.append(text)
                chars += len(text)
                if chars >= BATCH_CHARS or len(batch) >= BATCH_DOCS:
                    break
            else:
                self.exhausted = True
            if batch:
                res = self.judge._pool.apply_async(_judge, (batch, self.cfg, self.exact))
                self.pending.append((batch, res))

    def __iter__(self) -> Iterator[tuple[str, Judged]]:
        return self

    def __next__(self) -> tuple[str, Judged]:
        while not self.ready:
            self._fill()
            if not self.pending:
                raise StopIteration
            batch, res = self.pending.popleft()
            self.ready.extend(zip(batch, result_of(res, self.judge._pool, self.judge._pids, self.judge.stop)))
        return self.ready.popleft()

    def rest(self) -> Iterator[str]:
        yield from (text for text, _ in self.ready)
        for batch, _ in self.pending:
            yield from batch
        yield from self.texts
