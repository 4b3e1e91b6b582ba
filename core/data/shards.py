"""Token shards: the corpus tokenized once into train.bin / val.bin, and the loader that trains from them.

The last step of the data stage and the first of pretraining. `prepare_shards` streams the
filtered documents through a pool of tokenizer processes (bounded, in order) into flat arrays of
token ids (uint16 below 65,536 ids, else uint32), each document preceded by the end-of-text token
(as GPT-2, nanoGPT and llm.c do), the validation split taken by whole documents, stratified by
source (`Documents.tagged`), with each source's token count in meta.json. Shards live in
`workspace()/data/<key>/`, where key hashes (source, filters, tokenizer): an unchanged preset reuses
them. They are written in data/.partial-<key>, committed shard by shard (core/data/parts.py: a killed
preparation continues after its last commit), and renamed into place when complete, so nothing
prepared is ever damaged. `TokenLoader` reads them through `np.memmap`: a corpus larger than RAM trains.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.data import parts
from core.data.workers import Judge, WorkerFailed, result_of
from core.errors import Stopped, UserError
from core.runs import Logger
from core.schemas import SHARD_META, read_json

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer

SHARD_FORMAT = 2  # 2: the validation split is stratified by source
CHUNK_CHARS = 1 << 20  # text per task sent to a tokenizer process: large enough that IPC is noise
# (smaller when shards are: a chunk of ~4 characters a token fits in one, so commits come every shard_tokens)
CHUNK_DOCS = 8192
TOP_TOKENS = 50
# Document lengths are kept as a histogram over quarter-octave bins, so statistics against any
# context length can be computed later from meta.json (exact at powers of two).
LENGTH_EDGES = sorted({int(round(2 ** (i / 4))) for i in range(0, 4 * 25)}) + [2**62]


def workspace() -> Path:
    from core.runs import workspace as ws

    return ws()


# ---------------------------------------------------------------------------------- identity


def _fingerprint(enc: Any) -> str:
    h = hashlib.sha256(enc._pat_str.encode())
    h.update(json.dumps(sorted(enc._special_tokens.items())).encode())
    for token, rank in sorted(enc._mergeable_ranks.items(), key=lambda kv: kv[1]):
        h.update(rank.to_bytes(4, "little") + token)
    return h.hexdigest()[:16]


def tokenizer_identity(tokenizer: TextTokenizer) -> dict:
    """What makes two tokenizers produce the same ids: name, vocabulary size, eot and a fingerprint."""
    fp = getattr(tokenizer, "fingerprint", None) or _fingerprint(tokenizer.enc)
    return {"name": tokenizer.name, "n_vocab": int(tokenizer.n_vocab), "eot_id": int(tokenizer.eot_id), "fingerprint": fp}


def shard_key(data: Any, tokenizer: TextTokenizer) -> str:
    """Hash of everything that changes the shards' content: source, limits, filters, split, seed, tokenizer."""
    from core.config import DATA_SPEED_KEYS, to_dict

    d = to_dict(data)
    for k in DATA_SPEED_KEYS:  # how fast, not what
        d.pop(k, None)
    blob = json.dumps({"format": SHARD_FORMAT, "data": d, "tokenizer": tokenizer_identity(tokenizer)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dtype_for(n_vocab: int) -> np.dtype:
    return np.dtype(np.uint16) if n_vocab <= 65536 else np.dtype(np.uint32)


# ---------------------------------------------------------------------------- worker processes

_worker: dict[str, Any] = {}


def _init_worker(enc: Any, eot_id: int, dtype: str) -> None:
    # enc arrives pickled once per process (a built-in encoding by name, a trained one with its ranks)
    _worker.update(enc=enc, eot=eot_id, dtype=np.dtype(dtype))


def _encode_chunk_in_worker(docs: list[str], is_val: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """_encode_chunk where a BaseException (a Rust panic in tiktoken) would kill the worker without a
    result, leaving the parent waiting: it comes back as an ordinary exception with its message."""
    try:
        return _encode_chunk(docs, is_val)
    except Exception:
        raise
    except BaseException as e:  # noqa: BLE001 - PanicException derives from BaseException
        raise WorkerFailed(f"a tokenizing worker failed: {type(e).__name__}: {e}") from None


def _encode_chunk(docs: list[str], is_val: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids of a chunk of documents, each preceded by eot: (train ids, val ids, document lengths)."""
    enc, eot, dtype = _worker["enc"], _worker["eot"], _worker["dtype"]
    train: list[int] = []
    val: list[int] = []
    lengths = np.empty(len(docs), dtype=np.int64)
    for i, doc in enumerate(docs):
        ids = enc.encode_ordinary(doc)
        lengths[i] = len(ids)
        out = val if is_val[i] else train
        out.append(eot)
        out.extend(ids)
    return np.array(train, dtype=dtype), np.array(val, dtype=dtype), lengths


Chunk = tuple[list[str], np.ndarray, np.ndarray, int]  # documents, is_val, source index, chars


def _chunks(docs: Iterable[tuple[str, int, bool]], max_chars: int = CHUNK_CHARS) -> Iterator[Chunk]:
    chunk: list[str] = []
    flags: list[bool] = []
    srcs: list[int] = []
    chars = 0
    for doc, src, is_val in docs:
        chunk.append(doc)
        flags.append(is_val)
        srcs.append(src)
        chars += len(doc)
        if chars >= max_chars or len(chunk) >= CHUNK_DOCS:
            yield chunk, np.array(flags, dtype=bool), np.array(srcs, dtype=np.int64), chars
            chunk, flags, srcs, chars = [], [], [], 0
    if chunk:
        yield chunk, np.array(flags, dtype=bool), np.array(srcs, dtype=np.int64), chars


def _ordered_pool_map(chunks: Iterator[Chunk], enc: Any, eot: int, dtype: np.dtype, workers: int,
                      stop: threading.Event | None = None) -> Iterator[tuple[tuple[np.ndarray, np.ndarray, np.ndarray], Chunk]]:
    """(result, chunk) per chunk, in order. Pool.imap reads its input without limit, which would pull the
    whole corpus into memory when reading outpaces tokenizing; this keeps 2 tasks per process in flight."""
    if workers <= 1:
        _init_worker(enc, eot, dtype.str)
        for chunk in chunks:
            yield _encode_chunk_in_worker(chunk[0], chunk[1]), chunk
        return
    # spawn, not fork: the stage may run beside threads (TUI workers, the stop watcher)
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(enc, eot, dtype.str)) as pool:
        pending: deque = deque()
        pids = {p.pid for p in pool._pool}  # type: ignore[attr-defined]  # the workers, to tell their exit
        for chunk in chunks:
            pending.append((pool.apply_async(_encode_chunk_in_worker, (chunk[0], chunk[1])), chunk))
            if len(pending) >= 2 * workers:
                res, c = pending.popleft()
                yield result_of(res, pool, pids, stop), c
        while pending:
            res, c = pending.popleft()
            yield result_of(res, pool, pids, stop), c


# ------------------------------------------------------------------------------------- writing


class _Totals:
    """The statistics gathered while writing, saved with every commit so a resume continues them."""

    def __init__(self, n_vocab: int, n_sources: int):
        self.n = dict.fromkeys(parts.COUNTERS, 0)
        self.per_source = np.zeros((n_sources, 2), dtype=np.int64)  # text tokens (train, val) of each source
        self.counts = np.zeros(n_vocab, dtype=np.int64)
        self.hist = np.zeros(len(LENGTH_EDGES) - 1, dtype=np.int64)

    def add(self, train: np.ndarray, val: np.ndarray, lengths: np.ndarray, is_val: np.ndarray, srcs: np.ndarray,
            chars: int, eot: int) -> None:
        n_val_docs = int((val == eot).sum()) if len(val) else 0
        self.n["train_tokens"] += len(train)
        self.n["val_tokens"] += len(val)
        self.n["val_docs"] += n_val_docs
        self.n["train_docs"] += len(lengths) - n_val_docs
        self.n["chars"] += chars
        self.counts += np.bincount(train, minlength=len(self.counts))[: len(self.counts)]
        self.counts += np.bincount(val, minlength=len(self.counts))[: len(self.counts)]
        self.hist += np.histogram(lengths, bins=LENGTH_EDGES)[0]
        np.add.at(self.per_source, (srcs, is_val.astype(np.int64)), lengths)

    def state(self) -> dict[str, np.ndarray]:
        return {"per_source": self.per_source, "counts": self.counts, "hist": self.hist}

    def restore(self, manifest: dict, state: dict[str, np.ndarray]) -> bool:
        if state["per_source"].shape != self.per_source.shape or state["counts"].shape != self.counts.shape:
            return False
        self.per_source, self.counts, self.hist = state["per_source"], state["counts"], state["hist"]
        self.n = {k: int(manifest[k]) for k in parts.COUNTERS}
        return True

    def stats(self, eot: int, seconds: float) -> dict:
        counts = self.counts.copy()
        counts[eot] -= self.n["train_docs"] + self.n["val_docs"]  # the separators are not text
        top = np.argsort(-counts, kind="stable")[:TOP_TOKENS]
        return {**self.n, "seconds": round(seconds, 3),
                "source_tokens": [{"train_tokens": int(t), "val_tokens": int(v)} for t, v in self.per_source],
                "doc_tokens_hist": {"edges": LENGTH_EDGES, "counts": self.hist.tolist()},
                "top_tokens": [[int(i), int(counts[i])] for i in top if counts[i] > 0]}


def _resume_point(folder: Path, totals: _Totals, stamp: list, dtype: np.dtype) -> dict | None:
    """The last commit in folder, with the files cut back to it and the totals restored; None (and a
    clean folder) when there is none to continue from."""
    last = parts.last_commit(folder)
    state = parts.load_state(folder, last) if last is not None else None
    if last is None or state is None or last.get("stamp") != stamp or not all(
            (folder / f"{split}.bin").exists()
            and (folder / f"{split}.bin").stat().st_size >= int(last[f"{split}_tokens"]) * dtype.itemsize
            for split in ("train", "val")) or not totals.restore(last, state):
        parts.reset(folder)
        return None
    for split in ("train", "val"):  # what follows the commit was never committed
        os.truncate(folder / f"{split}.bin", int(last[f"{split}_tokens"]) * dtype.itemsize)
    return last


def _skip(docs: Iterable[tuple[str, int, bool]], n: int) -> Iterator[tuple[str, int, bool]]:
    """The documents after the first n (which are still read and filtered: that rebuilds the dedup
    memory and the reports exactly, but they are not tokenized again)."""
    it = iter(docs)
    for _ in range(n):
        if next(it, None) is None:
            return
    yield from it


def write_shards(docs: Iterable[tuple[str, int, bool]], folder: Path, tokenizer: TextTokenizer, *, n_sources: int = 1,
                 workers: int = 1, log: Logger | None = None, stop: threading.Event | None = None,
                 total_bytes: int | None = None, shard_tokens: int = 1 << 22, stamp: list | None = None) -> dict:
    """Tokenize (text, source index, is_val) documents into folder/train.bin and folder/val.bin,
    committing every `shard_tokens` tokens (core/data/parts.py) and continuing after the last commit
    a killed run left in folder; returns the statistics for meta.json."""
    folder = Path(folder)
    dtype = dtype_for(tokenizer.n_vocab)
    totals = _Totals(tokenizer.n_vocab, n_sources)
    stamp = stamp or []
    last = _resume_point(folder, totals, stamp, dtype)
    part, done_docs = (last["part"] + 1, int(last["docs"])) if last else (0, 0)
    if last is not None and log is not None:
        log.log({"kind": "log", "level": "info", "message": f"resuming the shards after commit {part - 1}: "
                 f"{done_docs:,} documents, {totals.n['train_tokens'] + totals.n['val_tokens']:,} tokens"})
    last_event, t0 = 0.0, time.time()
    since = 0
    with open(folder / "train.bin", "ab") as ftrain, open(folder / "val.bin", "ab") as fval:
        def commit_now() -> None:
            nonlocal part, since
            parts.commit(folder, {"part": part, "docs": done_docs, "stamp": stamp, **totals.n}, totals.state(),
                         [ftrain, fval])
            part, since = part + 1, 0

        chunks = _chunks(_skip(docs, done_docs), min(CHUNK_CHARS, 4 * shard_tokens))
        for (train, val, lengths), (_, is_val, srcs, chars) in _ordered_pool_map(
                chunks, tokenizer.enc, tokenizer.eot_id, dtype, workers, stop):
            if stop is not None and stop.is_set():
                raise Stopped()
            train.tofile(ftrain)
            val.tofile(fval)
            totals.add(train, val, lengths, is_val, srcs, chars, tokenizer.eot_id)
            done_docs += len(lengths)
            since += len(train) + len(val)
            if since >= shard_tokens:
                commit_now()
            now = time.time()
            if log is not None and now - last_event > 0.5:
                last_event = now
                log.log({"kind": "progress", "what": "tokenizing", "done": totals.n["chars"], "total": total_bytes,
                         "unit": "bytes"})
        commit_now()
    if log is not None:
        log.log({"kind": "progress", "what": "tokenizing", "done": totals.n["chars"], "total": totals.n["chars"],
                 "unit": "bytes"})
    return totals.stats(tokenizer.eot_id, time.time() - t0)


def partial_folder(key: str) -> Path:
    """Where the shards of `key` are written until they are complete (then renamed to data/<key>)."""
    return workspace() / "data" / f".partial-{key}"


@contextlib.contextmanager
def _preparing(root: Path, key: str, stop: threading.Event | None, log: Logger | None) -> Iterator[None]:
    """Hold the lock of key's preparation: one process at a time writes (and resumes) its folder; a
    second one waits here, then finds the shards finished or continues what the first left."""
    (root / ".locks").mkdir(parents=True, exist_ok=True)
    with open(root / ".locks" / key, "a") as lock:  # never removed: unlinking a lock file races its waiters
        told = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stop is not None and stop.is_set():
                    raise Stopped() from None
                if log is not None and not told:
                    told = True
                    log.log({"kind": "log", "level": "info", "message": f"waiting for another preparation of {key}"})
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _check_enough(stats: dict, name: str, data: Any, ctx: int) -> None:
    if stats["train_tokens"] + stats["val_tokens"] < ctx + 1:
        raise UserError(f"{name}: the corpus has {stats['train_tokens'] + stats['val_tokens']} tokens, fewer than "
                        f"one context window (model.context_length + 1 = {ctx + 1}); add data or shorten the context")
    for split in ("train", "val"):
        if stats[f"{split}_tokens"] < ctx + 1:
            raise UserError(f"{name}: the {split} split has {stats[f'{split}_tokens']} tokens, fewer than one "
                            f"context window ({ctx + 1}); {'raise' if split == 'val' else 'lower'} data.val_fraction "
                            f"(now {data.val_fraction:g}) or add data")


def prepare_shards(preset: Any, tokenizer: TextTokenizer, log: Logger | None = None, stop: threading.Event | None = None) -> Path:
    """Folder with train.bin, val.bin and meta.json for preset.data and this tokenizer (cached by key).

    Written in data/.partial-<key> and renamed into place when complete; a preparation that was
    killed or stopped continues there after its last committed shard.
    `tokenizer` is anything with .enc (a tiktoken.Encoding), .eot_id, .n_vocab and .name."""
    data = preset.data
    key = shard_key(data, tokenizer)
    root = workspace() / "data"
    final = root / key
    if not (final / "meta.json").exists():
        with _preparing(root, key, stop, log):
            if not (final / "meta.json").exists():  # not written by the process this one waited for
                _prepare_into(preset, tokenizer, key, final, log, stop)
                if log is not None:
                    log.log({"kind": "log", "level": "info", "message": f"wrote token shards {final}"})
                return final
    if log is not None:
        log.log({"kind": "log", "level": "info", "message": f"reusing token shards {final}"})
    return final


def _prepare_into(preset: Any, tokenizer: TextTokenizer, key: str, final: Path, log: Logger | None,
                  stop: threading.Event | None) -> None:
    from core.config import to_dict
    from core.data.documents import Documents
    from core.data.quality import QualitySampler, quality_report, read_reference

    data = preset.data
    tmp = partial_folder(key)
    tmp.mkdir(exist_ok=True)
    try:
        with Judge(data.workers, stop) if data.workers > 1 else contextlib.nullcontext() as judge:
            docs = Documents(data, count_tokens=lambda text: len(tokenizer.enc.encode_ordinary(text)) + 1, judge=judge)
            reference = read_reference(data.relevance_reference) if data.relevance_reference else None
            sampler = QualitySampler(len(docs.source_names()), data.seed)
            stats = write_shards(sampler.observe(docs.tagged()), tmp, tokenizer, n_sources=len(docs.source_names()),
                                 workers=data.workers, log=log, stop=stop, total_bytes=docs.total_bytes(),
                                 shard_tokens=data.shard_tokens, stamp=parts.source_stamp(data))
        _check_enough(stats, docs.name, data, preset.model.context_length)
    except UserError:
        shutil.rmtree(tmp, ignore_errors=True)  # the input is wrong: nothing of it is worth resuming
        raise
    meta = {"format": SHARD_FORMAT, "key": key, "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "tokenizer": tokenizer_identity(tokenizer), "dtype": dtype_for(tokenizer.n_vocab).name,
            "separator": "eot before each document", "data": to_dict(data), **stats,
            "source_report": docs.source_report(), "filter_report": docs.filter_report(),
            "quality": quality_report(sampler, docs.source_names(), docs.filter_report(), reference)}
    with open(tmp / "meta.json", "w") as f:
        json.dump(meta, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    for state in (tmp / parts.PARTS).glob("state-*.npz"):
        state.unlink()  # only a resume needs them
    if final.exists():
        shutil.rmtree(final)  # no meta.json (checked under the lock): never a finished folder
    os.rename(tmp, final)


def read_meta(folder: Path) -> dict:
    path = Path(folder) / "meta.json"
    if not path.exists():
        raise UserError(f"{folder}: not a prepared shard folder (no meta.json); run `llmlab data PRESET`")
    return read_json(path, 64 << 20, SHARD_META)


# -------------------------------------------------------------------------------------- loading


def window_batch(data: np.ndarray, starts: np.ndarray, T: int) -> tuple[Any, Any]:
    """(x, y) torch.long (B, T) of the windows of T + 1 tokens at `starts`, y shifted by one."""
    import torch

    idx = starts[:, None] + np.arange(T + 1)[None, :]  # (B, T + 1)
    rows = torch.from_numpy(data[idx].astype(np.int64))
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()


class TokenLoader:
    """Batches of (x, y) windows from a .bin shard: random for training, sequential for evaluation.

    Batch i draws its window starts from a generator seeded by (seed, rank, i), so the sequence is
    fixed by the seed and resuming needs only the batch counter (`state_dict`)."""

    def __init__(self, bin_path: str | Path, context_length: int, batch_size: int, seed: int = 1337,
                 rank: int = 0, world_size: int = 1):
        self.path = Path(bin_path)
        if not self.path.exists():
            raise UserError(f"{self.path}: no such token shard; run `llmlab data PRESET` first")
        meta_path = self.path.parent / "meta.json"
        dtype = np.dtype(read_json(meta_path, 64 << 20, {"dtype": SHARD_META["dtype"]})["dtype"]) \
            if meta_path.exists() else np.dtype(np.uint16)
        self.data = np.memmap(self.path, dtype=dtype, mode="r")
        self.n_tokens = len(self.data)
        self.T, self.B, self.seed = context_length, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.step = 0
        if self.n_tokens < self.T + 1:
            raise UserError(f"{self.path}: {self.n_tokens} tokens, fewer than one context window ({self.T + 1})")

    def _batch(self, starts: np.ndarray) -> tuple[Any, Any]:
        return window_batch(self.data, starts, self.T)

    def next_batch(self) -> tuple[Any, Any]:
        """(x, y) torch.long (B, T), y shifted by one; random windows anywhere in the shard."""
        rng = np.random.default_rng([self.seed, self.rank, self.step])
        self.step += 1
        return self._batch(rng.integers(0, self.n_tokens - self.T, size=self.B))

    def eval_batches(self, n: int) -> Iterator[tuple[Any, Any]]:
        """Up to n batches of consecutive, non-overlapping windows from the start (the last may be smaller)."""
        n_windows = (self.n_tokens - 1) // self.T
        w = 0
        for _ in range(n):
            if w >= n_windows:
                return
            k = min(self.B, n_windows - w)
            yield self._batch((np.arange(w, w + k) * self.T).astype(np.int64))
            w += k

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed, "rank": self.rank}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.seed = int(state.get("seed", self.seed))
