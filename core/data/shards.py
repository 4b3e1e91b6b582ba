"""Token shards: the corpus tokenized once into train.bin / val.bin, and the loader that trains from them.

The last step of the data stage and the first of pretraining. `prepare_shards` streams the
filtered documents through a pool of tokenizer processes (bounded, in order) into flat arrays of
token ids (uint16 below 65,536 ids, else uint32), each document preceded by the end-of-text token
(as GPT-2, nanoGPT and llm.c do), the validation split taken by whole documents, stratified by
source (`Documents.tagged`), with each source's token count in meta.json. Shards live in
`workspace()/data/<key>/`, where key hashes (source, filters, tokenizer): an unchanged preset reuses
them. They are written in a temporary folder that is renamed into place when complete, so nothing
prepared is ever damaged. `TokenLoader` reads them through `np.memmap`: a corpus larger than RAM trains.
"""

from __future__ import annotations

import datetime
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

from core.errors import StageFailed, Stopped, UserError
from core.runs import Logger
from core.schemas import SHARD_META, read_json

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer

SHARD_FORMAT = 2  # 2: the validation split is stratified by source
CHUNK_CHARS = 1 << 20  # text per task sent to a tokenizer process: large enough that IPC is noise
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
    from core.config import to_dict

    d = to_dict(data)
    d.pop("num_proc", None)  # how fast, not what
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


class WorkerFailed(StageFailed):
    """A worker process failed or died; the run fails with this message instead of waiting."""


def _result(res: Any, pool: Any, pids: set[int], stop: threading.Event | None) -> Any:
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
            raise WorkerFailed("a tokenizing worker process died (killed, or out of memory); the shards were not written")


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


def _chunks(docs: Iterable[tuple[str, int, bool]]) -> Iterator[Chunk]:
    chunk: list[str] = []
    flags: list[bool] = []
    srcs: list[int] = []
    chars = 0
    for doc, src, is_val in docs:
        chunk.append(doc)
        flags.append(is_val)
        srcs.append(src)
        chars += len(doc)
        if chars >= CHUNK_CHARS or len(chunk) >= CHUNK_DOCS:
            yield chunk, np.array(flags, dtype=bool), np.array(srcs, dtype=np.int64), chars
            chunk, flags, srcs, chars = [], [], [], 0
    if chunk:
        yield chunk, np.array(flags, dtype=bool), np.array(srcs, dtype=np.int64), chars


def _ordered_pool_map(chunks: Iterator[Chunk], enc: Any, eot: int, dtype: np.dtype, num_proc: int,
                      stop: threading.Event | None = None) -> Iterator[tuple[tuple[np.ndarray, np.ndarray, np.ndarray], Chunk]]:
    """(result, chunk) per chunk, in order. Pool.imap reads its input without limit, which would pull the
    whole corpus into memory when reading outpaces tokenizing; this keeps 2 tasks per process in flight."""
    if num_proc <= 1:
        _init_worker(enc, eot, dtype.str)
        for chunk in chunks:
            yield _encode_chunk_in_worker(chunk[0], chunk[1]), chunk
        return
    # spawn, not fork: the stage may run beside threads (TUI workers, the stop watcher)
    ctx = mp.get_context("spawn")
    with ctx.Pool(num_proc, initializer=_init_worker, initargs=(enc, eot, dtype.str)) as pool:
        pending: deque = deque()
        pids = {p.pid for p in pool._pool}  # type: ignore[attr-defined]  # the workers, to tell their exit
        for chunk in chunks:
            pending.append((pool.apply_async(_encode_chunk_in_worker, (chunk[0], chunk[1])), chunk))
            if len(pending) >= 2 * num_proc:
                res, c = pending.popleft()
                yield _result(res, pool, pids, stop), c
        while pending:
            res, c = pending.popleft()
            yield _result(res, pool, pids, stop), c


# ------------------------------------------------------------------------------------- writing


def write_shards(docs: Iterable[tuple[str, int, bool]], folder: Path, tokenizer: TextTokenizer, *, n_sources: int = 1,
                 num_proc: int = 2, log: Logger | None = None, stop: threading.Event | None = None,
                 total_bytes: int | None = None) -> dict:
    """Tokenize (text, source index, is_val) documents into folder/train.bin and folder/val.bin;
    returns the statistics for meta.json."""
    dtype = dtype_for(tokenizer.n_vocab)
    per_source = np.zeros((n_sources, 2), dtype=np.int64)  # text tokens (train, val) of each source
    counts = np.zeros(tokenizer.n_vocab, dtype=np.int64)
    hist = np.zeros(len(LENGTH_EDGES) - 1, dtype=np.int64)
    n = {"train_tokens": 0, "val_tokens": 0, "train_docs": 0, "val_docs": 0, "chars": 0}
    last_event = 0.0
    t0 = time.time()
    with open(folder / "train.bin", "wb") as ftrain, open(folder / "val.bin", "wb") as fval:
        for (train, val, lengths), (_, is_val, srcs, chars) in _ordered_pool_map(
                _chunks(docs), tokenizer.enc, tokenizer.eot_id, dtype, num_proc, stop):
            if stop is not None and stop.is_set():
                raise Stopped()
            train.tofile(ftrain)
            val.tofile(fval)
            n_val_docs = int((val == tokenizer.eot_id).sum()) if len(val) else 0
            n["train_tokens"] += len(train)
            n["val_tokens"] += len(val)
            n["val_docs"] += n_val_docs
            n["train_docs"] += len(lengths) - n_val_docs
            n["chars"] += chars
            counts += np.bincount(train, minlength=len(counts))[: len(counts)]
            counts += np.bincount(val, minlength=len(counts))[: len(counts)]
            hist += np.histogram(lengths, bins=LENGTH_EDGES)[0]
            np.add.at(per_source, (srcs, is_val.astype(np.int64)), lengths)
            now = time.time()
            if log is not None and now - last_event > 0.5:
                last_event = now
                log.log({"kind": "progress", "what": "tokenizing", "done": n["chars"], "total": total_bytes,
                         "unit": "bytes"})
        for f in (ftrain, fval):
            f.flush()
            os.fsync(f.fileno())
    if log is not None:
        log.log({"kind": "progress", "what": "tokenizing", "done": n["chars"], "total": n["chars"], "unit": "bytes"})
    counts[tokenizer.eot_id] -= n["train_docs"] + n["val_docs"]  # the separators are not text
    top = np.argsort(-counts, kind="stable")[:TOP_TOKENS]
    return {**n, "seconds": round(time.time() - t0, 3),
            "source_tokens": [{"train_tokens": int(t), "val_tokens": int(v)} for t, v in per_source],
            "doc_tokens_hist": {"edges": LENGTH_EDGES, "counts": hist.tolist()},
            "top_tokens": [[int(i), int(counts[i])] for i in top if counts[i] > 0]}


def prepare_shards(preset: Any, tokenizer: TextTokenizer, log: Logger | None = None, stop: threading.Event | None = None) -> Path:
    """Folder with train.bin, val.bin and meta.json for preset.data and this tokenizer (cached by key).

    `tokenizer` is anything with .enc (a tiktoken.Encoding), .eot_id, .n_vocab and .name."""
    from core.data.documents import Documents
    from core.data.quality import QualitySampler, quality_report, read_reference

    data = preset.data
    key = shard_key(data, tokenizer)
    root = workspace() / "data"
    final = root / key
    if (final / "meta.json").exists():
        if log is not None:
            log.log({"kind": "log", "level": "info", "message": f"reusing token shards {final}"})
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{key}-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        docs = Documents(data, count_tokens=lambda text: len(tokenizer.enc.encode_ordinary(text)) + 1)
        reference = read_reference(data.relevance_reference) if data.relevance_reference else None
        sampler = QualitySampler(len(docs.source_names()), data.seed)
        stats = write_shards(sampler.observe(docs.tagged()), tmp, tokenizer, n_sources=len(docs.source_names()),
                             num_proc=data.num_proc, log=log, stop=stop, total_bytes=docs.total_bytes())
        ctx = preset.model.context_length
        if stats["train_tokens"] + stats["val_tokens"] < ctx + 1:
            raise UserError(f"{docs.name}: the corpus has {stats['train_tokens'] + stats['val_tokens']} tokens, fewer than "
                            f"one context window (model.context_length + 1 = {ctx + 1}); add data or shorten the context")
        for split in ("train", "val"):
            if stats[f"{split}_tokens"] < ctx + 1:
                raise UserError(f"{docs.name}: the {split} split has {stats[f'{split}_tokens']} tokens, fewer than one "
                                f"context window ({ctx + 1}); {'raise' if split == 'val' else 'lower'} data.val_fraction "
                                f"(now {data.val_fraction:g}) or add data")
        from core.config import to_dict

        meta = {"format": SHARD_FORMAT, "key": key, "created": datetime.datetime.now().isoformat(timespec="seconds"),
                "tokenizer": tokenizer_identity(tokenizer), "dtype": dtype_for(tokenizer.n_vocab).name,
                "separator": "eot before each document", "data": to_dict(data), **stats,
                "source_report": docs.source_report(), "filter_report": docs.filter_report(),
                "quality": quality_report(sampler, docs.source_names(), docs.filter_report(), reference)}
        with open(tmp / "meta.json", "w") as f:
            json.dump(meta, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        if final.exists() and not (final / "meta.json").exists():
            shutil.rmtree(final)  # no meta.json: never a finished folder (those appear whole, by rename)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "meta.json").exists():  # not a finished twin written meanwhile: a real failure
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if log is not None:
        log.log({"kind": "log", "level": "info", "message": f"wrote token shards {final}"})
    return final


def read_meta(folder: Path) -> dict:
    path = Path(folder) / "meta.json"
    if not path.exists():
        raise UserError(f"{folder}: not a prepared shard folder (no meta.json); run `llmlab data PRESET`")
    return read_json(path, 64 << 20, SHARD_META)


# -------------------------------------------------------------------------------------- loading


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
        import torch

        idx = starts[:, None] + np.arange(self.T + 1)[None, :]  # (B, T + 1)
        rows = torch.from_numpy(self.data[idx].astype(np.int64))
        return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()

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
