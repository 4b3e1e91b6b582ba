"""Checkpoints that do not stall training: copy to host memory, then write in a background thread.

`HostCopy` takes the weights, what model.json needs and (`to_host`) the optimizer state off the
live tensors (into pinned memory on CUDA, with non-blocking copies and one synchronisation); the
training step goes on while `BackgroundCommit` writes, hashes and commits the copy with the one
commit path (core.train.state.commit: temporary folder, COMMITTED last, rename, `latest`,
rotation). A second save waits for the first; a failed write is raised in the training thread at
its next step. A kill during the write leaves the previous committed checkpoint the newest, as a
synchronous save does. Used by core.train.loop (not under FSDP, whose ranks write their shards).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch


def to_host(tree: Any) -> Any:
    """A copy of every tensor of `tree` (dicts, lists, tuples) in host memory, detached from the
    live ones; other leaves are kept. On CUDA the copies are pinned and waited for once."""
    cuda = [False]

    def copy(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            if x.device.type == "cuda":
                cuda[0] = True
                out = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
                return out.copy_(x.detach(), non_blocking=True)
            return x.detach().to("cpu", copy=True)
        if isinstance(x, dict):
            return {k: copy(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(copy(v) for v in x)
        return x

    out = copy(tree)
    if cuda[0]:
        torch.cuda.synchronize()
    return out


class HostCopy:
    """What core.checkpoint writes of a model (weights(), config, head_kind, lm_head's shape),
    taken off the live model in host memory."""

    def __init__(self, model: Any):
        self.config = model.config
        self.head_kind = model.head_kind
        head = model.lm_head  # a LoRA-wrapped head may lack these; model.json reads them for other heads only
        self.lm_head = SimpleNamespace(out_features=getattr(head, "out_features", None),
                                       bias=None if getattr(head, "bias", None) is None else True)
        self._weights = to_host(model.weights())

    def weights(self) -> dict[str, torch.Tensor]:
        return self._weights


class BackgroundCommit:
    """One checkpoint write at a time in a background thread."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, write: Callable[[], None]) -> None:
        """Run `write` in the background, after the previous write ended (raising what it raised)."""
        self.wait()

        def run() -> None:
            try:
                write()
            except BaseException as e:  # noqa: BLE001 - handed to the training thread
                self._error = e

        self._thread = threading.Thread(target=run, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def check(self) -> None:
        """Raise the error of a write that has ended, without waiting for one in progress."""
        if not self.busy():
            self.wait()

    def wait(self) -> None:
        """Wait for the write in progress; raise its error."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error
