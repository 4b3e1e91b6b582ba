"""Pretraining on shards still being prepared (`data.prepare = "stream"`).

`ShardStream` runs the shards' preparation in a process beside the pretraining one (with its own
tokenizing workers, as ahead) and says what is committed (core/data/parts.py). Its loader reads
batch i as the B consecutive windows at token i x B x T of a split (sequential, as nanoGPT's
DataLoaderLite: a streamed corpus arrives in order), waits with a `progress` event while they
are not committed, and wraps around the split once the preparation is complete, so the batches are
the same whenever they are read, and a resumed run needs only the batch counter. A failed
preparation fails the run at its next batch with the preparation's message.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from core.data.parts import last_commit
from core.data.shards import dtype_for, partial_folder, prepare_shards, shard_key, window_batch, workspace
from core.errors import StageFailed, Stopped, UserError
from core.runs import Logger

POLL_S = 0.1
EVENT_S = 1.0


class _QueueLog:
    """The preparation process's logger: its events go to the training process, which writes them."""

    def __init__(self, queue: Any):
        self.queue = queue

    def log(self, event: dict) -> None:
        self.queue.put(("event", event))

    def close(self) -> None:
        pass


def _prepare_in_child(preset: Any, tokenizer: Any, queue: Any, halt: Any) -> None:
    try:
        prepare_shards(preset, tokenizer, _QueueLog(queue), halt)
    except Stopped:
        pass
    except BaseException as e:  # noqa: BLE001 - sent to the training process, which fails with it
        queue.put(("error", "input" if isinstance(e, UserError) else "failed", f"{type(e).__name__}: {e}"
                   if not isinstance(e, (UserError, StageFailed)) else str(e)))
    finally:
        queue.put(("done", None))


class ShardStream:
    """A preparation running in a process of its own beside the training (so its reading, filtering
    and tokenizing never hold the training's interpreter lock), and what it has committed so far."""

    def __init__(self, preset: Any, tokenizer: Any, log: Logger):
        key = shard_key(preset.data, tokenizer)
        self.final, self.partial = workspace() / "data" / key, partial_folder(key)
        self.dtype = dtype_for(tokenizer.n_vocab)
        self.error: BaseException | None = None
        self.log = log
        self._maps: dict[str, tuple[Path, int, np.memmap]] = {}
        self._ended = threading.Event()
        self._proc: Any = None
        if self.complete:
            self._ended.set()
            log.log({"kind": "log", "level": "info", "message": f"reading the token shards {self.final} in order"})
            return
        log.log({"kind": "log", "level": "info", "message": "training starts on the shards committed so far while "
                 "their preparation continues (data.prepare = \"stream\")"})
        ctx = mp.get_context("spawn")  # never fork beside the training's threads
        self._queue, self._halt = ctx.Queue(), ctx.Event()
        # not a daemon: its own tokenizing workers are processes
        self._proc = ctx.Process(target=_prepare_in_child, args=(preset, tokenizer, self._queue, self._halt),
                                 name="llmlab-shards")
        self._proc.start()
        self._relay = threading.Thread(target=self._forward, daemon=True, name="llmlab-shards-events")
        self._relay.start()

    def _forward(self) -> None:
        """Write the preparation's events into the run's log; keep its failure for the training thread."""
        while True:
            try:
                msg = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._proc.exitcode is None:
                    continue
                if self.error is None and not self.complete and not self._halt.is_set():
                    self.error = StageFailed(f"the shards' preparation process died (exit code {self._proc.exitcode})")
                break
            if msg[0] == "event":
                self.log.log(msg[1])
            elif msg[0] == "error":
                self.error = (UserError if msg[1] == "input" else StageFailed)(msg[2])
            else:
                break
        self._ended.set()

    @property
    def complete(self) -> bool:
        return (self.final / "meta.json").exists()

    def check(self) -> None:
        """Raise the preparation's failure, if it failed."""
        e = self.error
        if e is None:
            return
        kind = UserError if isinstance(e, UserError) else StageFailed
        raise kind(f"the shards' preparation (data.prepare = \"stream\") failed: {e}") from None

    @property
    def running(self) -> bool:
        return not self._ended.is_set()

    def committed(self, split: str) -> tuple[int, bool]:
        """(tokens of split committed so far, whether that is the whole split)."""
        if self.complete:
            return (self.final / f"{split}.bin").stat().st_size // self.dtype.itemsize, True
        last = last_commit(self.partial)
        if last is None and self.complete:  # renamed into place meanwhile
            return self.committed(split)
        return (int(last[f"{split}_tokens"]) if last else 0), False

    def tokens(self, split: str, n: int) -> np.ndarray:
        """The first n committed tokens of split (never more: what follows is not committed)."""
        folder = self.final if self.complete else self.partial
        cached = self._maps.get(split)
        if cached is None or cached[0] != folder or cached[1] < n:
            try:
                data = np.memmap(folder / f"{split}.bin", dtype=self.dtype, mode="r", shape=(n,))
            except FileNotFoundError:  # renamed into place between the two looks, or removed by a failure
                if not self.complete:
                    self._ended.wait(10)
                    self.check()
                    raise StageFailed(f"{folder}: the shards being prepared disappeared") from None
                data = np.memmap(self.final / f"{split}.bin", dtype=self.dtype, mode="r", shape=(n,))
                folder = self.final
            self._maps[split] = cached = (folder, n, data)
        return cached[2][:n]

    def close(self) -> None:
        """Stop the preparation where it is (it continues from its last commit next time) and wait for it."""
        if self._proc is None:
            return
        self._halt.set()
        self._proc.join()
        self._relay.join()
        if self.error is not None:  # after the training ended: the run stands, the shards are not complete
            self.log.log({"kind": "log", "level": "warning", "message": str(self.error)})
        elif not self.complete:
            have, _ = self.committed("train")
            self.log.log({"kind": "log", "level": "info",
                          "message": f"the shards' preparation paused at {have:,} training tokens; the next run "
                                     f"(or `llmlab data PRESET`) continues it from its last committed shard"})


class StreamTokenLoader:
    """(x, y) batches of a split of a ShardStream, in order; see the module docstring."""

    def __init__(self, stream: ShardStream, split: str, context_length: int, batch_size: int,
                 stop: threading.Event):
        self.stream, self.split, self.T, self.B, self.stop = stream, split, context_length, batch_size, stop
        self.step = 0

    def _wait(self, need: int) -> int:
        """Committed tokens, once at least `need` are or the split is complete."""
        told = 0.0
        while True:
            self.stream.check()
            have, whole = self.stream.committed(self.split)
            if have >= need or whole:
                return have
            if self.stop.is_set():
                raise Stopped()
            if not self.stream.running:
                self.stream.check()
                if not self.stream.complete:
                    raise StageFailed("the shards' preparation ended without finishing them")
                continue
            now = time.time()
            if now - told >= EVENT_S:
                told = now
                self.stream.log.log({"kind": "progress", "what": f"waiting for {self.split} shards", "done": have,
                                     "total": need, "unit": "tokens"})
            time.sleep(POLL_S)

    def _batch(self, windows: np.ndarray, have: int) -> tuple[Any, Any]:
        return window_batch(self.stream.tokens(self.split, have), windows * self.T, self.T)

    def next_batch(self) -> tuple[Any, Any]:
        """(x, y) torch.long (B, T): the next B windows of the split, waiting until they are committed."""
        first = self.step * self.B
        need = (first + self.B) * self.T + 1
        have = self._wait(need)
        windows = first + np.arange(self.B)
        if have < need:  # complete and shorter: around the split again
            windows %= max(1, (have - 1) // self.T)
            need = have
        self.step += 1
        return self._batch(windows, need)

    def eval_batches(self, n: int) -> Iterator[tuple[Any, Any]]:
        """The first n batches of consecutive windows (fewer if the whole split is shorter)."""
        need = n * self.B * self.T + 1
        have = min(self._wait(need), need)
        n_windows = (have - 1) // self.T
        for w in range(0, n_windows, self.B):
            yield self._batch(np.arange(w, min(w + self.B, n_windows)), have)

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
