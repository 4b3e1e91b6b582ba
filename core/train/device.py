"""Where training runs: device and dtype, autocast, seeding, memory, this process's place in a DDP job,
and the feed that moves batches onto the device one step ahead (pinned memory, non-blocking copies).

`checkpoint_activations` trades compute for activation memory. `Dist` is set up by core.train.ddp. The loop and every stage that trains use these."""

from __future__ import annotations

import contextlib
import random
import resource
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.errors import UserError


@dataclass
class Dist:
    """This process's place in a data-parallel job (see core.train.ddp); None means one process."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(spec: str = "auto", dist: Dist | None = None) -> torch.device:
    """cpu, cuda, cuda:N, mps or auto (cuda, then mps, then cpu). Under DDP on GPUs each process
    takes cuda:LOCAL_RANK."""
    if spec == "auto":
        if torch.cuda.is_available():
            spec = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            spec = "mps"
        else:
            spec = "cpu"
    if spec == "cuda" and dist is not None:
        spec = f"cuda:{dist.local_rank}"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f"train.device: {spec!r} is not a device; use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device: {spec!r} but this machine has no usable CUDA GPU; use auto or cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"train.device: {spec!r} but MPS is not available here; use auto or cpu")
    return device


def pick_dtype(spec: str, device: torch.device) -> torch.dtype:
    """The autocast dtype: auto = bf16 on GPUs that support it, else fp32 (CPU, MPS, older GPUs)."""
    if spec == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[spec]


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def checkpoint_activations(model: torch.nn.Module) -> None:
    """Each block of `model.blocks` keeps only its input for the backward pass and recomputes the rest
    there (torch.utils.checkpoint, non-reentrant: the RNG of dropout is replayed). In place; the module
    tree, and so every parameter name, stays the same; under FSDP the shards' hooks stay outside."""
    import functools

    from torch.utils.checkpoint import checkpoint

    for block in getattr(model, "blocks", []):
        if not getattr(block, "_checkpointed", False):
            block.forward = functools.partial(checkpoint, type(block).forward.__get__(block), use_reentrant=False)
            block._checkpointed = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA too


def memory_bytes(device: torch.device) -> int:
    """Peak accelerator memory, or the process's peak resident memory on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    if device.type == "mps":
        return int(torch.mps.current_allocated_memory())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # bytes on macOS, KiB on Linux


def to_device(batch: Any, device: torch.device) -> Any:
    """The batch on `device`; to a CUDA GPU through pinned host memory with a non-blocking copy, so
    the host does not wait for the copy (nor for the work queued before it)."""
    if isinstance(batch, torch.Tensor):
        if device.type == "cuda" and batch.device.type == "cpu":
            return batch.pin_memory().to(device, non_blocking=True)
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def batch_tokens(batch: Any) -> int:
    """Tokens in a batch: the elements of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return batch.numel()
    if isinstance(batch, dict):
        for key in ("input_ids", "x", "idx"):
            if key in batch:
                return batch[key].numel()
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for v in batch:
            n = batch_tokens(v)
            if n:
                return n
    return 0


def is_oom(e: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(e, oom) or (isinstance(e, RuntimeError) and "out of memory" in str(e))


class Feed:
    """This rank's micro-batches, already on the device: the next one is drawn and its copy issued
    when the current one is handed out, so data loading overlaps the step in flight.

    Every rank draws the same global sequence and keeps micro-batch i when i % world == rank
    (see core.train.loop); `next()` returns (batch on the device, tokens of the world micro-batches
    it stands for, its own included). `state_dict()` is the source's position before the batch
    drawn ahead, so a checkpoint resumes at the batch that was not yet trained on. A source with
    `prefetch = False` (rollouts sampled from the model being trained) is drawn only when asked."""

    def __init__(self, source: Any, device: torch.device, rank: int = 0, world: int = 1):
        self.source, self.device, self.rank, self.world = source, device, rank, world
        self._ahead: tuple[Any, int] | None = None
        self._state: dict | None = None

    def _draw(self) -> tuple[Any, int]:
        tokens, mine = 0, None
        for i in range(self.world):
            batch = self.source.next_batch()
            tokens += batch_tokens(batch)
            if i == self.rank:
                mine = batch
        return to_device(mine, self.device), tokens

    def next(self) -> tuple[Any, int]:
        if not getattr(self.source, "prefetch", True):  # batches made by the policy itself (RL rollouts)
            return self._draw()
        if self._ahead is None:
            self._ahead = self._draw()
        out = self._ahead
        self._state = self.source.state_dict() if hasattr(self.source, "state_dict") else None
        self._ahead = self._draw()
        return out

    def state_dict(self) -> dict | None:
        if self._ahead is None:
            return self.source.state_dict() if hasattr(self.source, "state_dict") else None
        return self._state

    def load_state_dict(self, state: dict) -> None:
        self.source.load_state_dict(state)
        self._ahead = None
