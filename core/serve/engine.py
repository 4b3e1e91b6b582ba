"""The serving engine: one worker thread owns the model and answers queued requests one at a time.

HTTP handlers (core.serve.api) submit a `Job` (prompt ids, sampling options, a thread-safe `emit`)
and read what it emits: ("text", pieces) as they are decoded (the first at once, then at most one
every 20 ms), then ("done", Outcome) once. One generation at a time keeps each reply's KV cache and
sampling generator its own, so concurrent clients never see each other's tokens; a cancelled job
(its client went away) stops between two tokens and the next one starts. Generation is
core.generate.generate_pieces, the same as everywhere.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.generate import generate_pieces
from core.model.gpt import GPT
from core.tokenizer.protocol import TextTokenizer

# pieces decoded within this window go out as one: a small model makes a token in a millisecond or
# two, and a chunk (JSON, HTTP write, the client's parse) costs about as much as the token
FLUSH_S = 0.02


@dataclass
class Outcome:
    """How a job ended: finish_reason stop | length | cancelled | error, token counts and timings."""

    finish_reason: str
    completion_tokens: int = 0
    queued_s: float = 0.0
    first_token_s: float = 0.0
    seconds: float = 0.0
    error: str = ""


@dataclass
class Job:
    """One generation: `options` are generate_text keyword arguments (temperature, top_k, top_p,
    max_new_tokens, stop, seed); `emit` is called from the engine thread."""

    prompt_ids: list[int]
    options: dict[str, Any]
    stop_ids: list[int]
    emit: Callable[[tuple[str, Any]], None]
    endpoint: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    submitted: float = 0.0


class Engine:
    """A queue of jobs in front of one model; `on_done(job, outcome)` sees every finished job."""

    def __init__(self, model: GPT, tokenizer: TextTokenizer, on_done: Callable[[Job, Outcome], None] | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.on_done = on_done
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="serve-engine", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        job.submitted = time.perf_counter()
        if self._closing.is_set():
            job.emit(("done", Outcome("cancelled", error="the server is shutting down")))
            return
        self._queue.put(job)

    @property
    def waiting(self) -> int:
        """Jobs queued behind the one generating."""
        return self._queue.qsize()

    def close(self, timeout_s: float = 10.0) -> None:
        """Cancel the running and queued jobs and end the worker thread."""
        self._closing.set()
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._closing.is_set():
                job.cancel.set()
            outcome = self._generate(job)
            job.emit(("done", outcome))
            if self.on_done is not None:
                self.on_done(job, outcome)

    def _generate(self, job: Job) -> Outcome:
        start = time.perf_counter()
        out = Outcome("stop", queued_s=start - job.submitted)
        if job.cancel.is_set():
            out.finish_reason = "cancelled"
            return out
        pieces = generate_pieces(self.model, self.tokenizer, job.prompt_ids, stop_ids=job.stop_ids, **job.options)
        pending, last_emit = "", 0.0
        try:
            for piece in pieces:
                out.completion_tokens += len(piece.ids)  # ids held back for a stop string count, never sent
                if not piece.text:
                    continue
                now = time.perf_counter()
                if not out.first_token_s:
                    out.first_token_s = now - start
                pending += piece.text
                if now - last_emit >= FLUSH_S:  # the first piece at once, then at most one every FLUSH_S
                    job.emit(("text", pending))
                    pending, last_emit = "", now
                if job.cancel.is_set() or self._closing.is_set():
                    out.finish_reason = "cancelled"
                    break
            else:
                if out.completion_tokens >= job.options["max_new_tokens"]:
                    out.finish_reason = "length"
        except Exception as e:  # noqa: BLE001 - one failed generation must not stop the server
            out.finish_reason, out.error = "error", f"{type(e).__name__}: {e}"
        finally:
            pieces.close()
            if pending:
                job.emit(("text", pending))
        out.seconds = time.perf_counter() - start
        return out
