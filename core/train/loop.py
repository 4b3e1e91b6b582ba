"""The training loop every objective shares: pretraining, classification, instruction and preference.

`train()` takes a model, an objective (a function or small object turning a batch into a loss and
a metrics dict), a batch source, the preset's train section, a logger, a stop event and the run
folder. It runs AdamW with warmup and cosine decay, gradient accumulation and clipping, autocast
on GPUs, optional torch.compile and DDP; it validates, samples, checkpoints, and resumes exactly
from the newest committed checkpoint of the run (model, optimizer, schedule position, RNG states,
data position). It is composition, not a trainer class: a finetuning stage passes its own objective.

Objective protocol: `objective(model, batch) -> (loss, metrics)`, where `loss` is a scalar tensor
and `metrics` a dict of floats/scalar tensors averaged over the micro-batches of a step (a
`tokens` entry, if present, counts the tokens of the batch; default: elements of its first
tensor). An optional `objective.evaluate(model, batches) -> dict` replaces the default validation
(mean loss as val_loss, plus val_ppl). The objective must call `model(...)` (its forward), so that
DDP sees it.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import resource
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from core import checkpoint as ckpt_io
from core.config import TrainConfig
from core.errors import StageFailed, UserError
from core.schemas import check_trainer_state
from core.train.optim import build_optimizer, lr_at, set_lr

TRAINER_STATE_VERSION = 1


class BatchSource(Protocol):
    """Where training batches come from (core.data.TokenLoader is one). `state_dict()` and
    `load_state_dict()` are optional; without them a resume replays the data from the start."""

    def next_batch(self) -> Any: ...


@dataclass
class Dist:
    """This process's place in a data-parallel job (see core.train.ddp); None means one process."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class LoopResult:
    step: int                    # optimizer steps done (including those before a resume)
    tokens: int                  # training tokens seen, all ranks together
    val_loss: float | None       # the last validation loss
    best_val_loss: float | None
    stopped: bool                # ended by a stop request rather than a stopping rule
    checkpoint: Path | None      # the last committed checkpoint
    train_s: float               # seconds spent in training steps in this process
    tokens_per_s: float          # training tokens per second over this process's steps
    resumed_from: int | None = None
    val_metrics: dict = field(default_factory=dict)


def lm_objective(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Next-token prediction: batch = (x, y) token ids of shape (B, T)."""
    x, y = batch
    _, loss = model(x, y)
    return loss, {}


# -------------------------------------------------------------------------------- devices, dtypes

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


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

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
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
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


def _is_oom(e: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(e, oom) or (isinstance(e, RuntimeError) and "out of memory" in str(e))


def _errno(e: BaseException) -> int | None:
    """The OS error number of an OSError, or of a safetensors error (which carries it in its text)."""
    if isinstance(e, OSError):
        return e.errno
    m = re.search(r"os error (\d+)", str(e))
    return int(m.group(1)) if m else None


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return ckpt_io._unwrap(model)


# ------------------------------------------------------------------------------------- resume

def check_compatible(meta: dict, model: torch.nn.Module, tokenizer: Any, where: Path) -> None:
    """Refuse to resume a checkpoint whose architecture or tokenizer differs from this run's."""
    problems = []
    cfg = getattr(model, "config", None)
    if cfg is not None:
        problems += ckpt_io.architecture_diff(meta, cfg)
    saved = (meta.get("tokenizer") or {}).get("fingerprint")
    ours = getattr(tokenizer, "fingerprint", None) if tokenizer is not None else None
    if saved and ours and saved != ours:
        problems.append(f"tokenizer: checkpoint {meta['tokenizer'].get('name')!r} ({saved}), "
                        f"preset {getattr(tokenizer, 'name', '?')!r} ({ours})")
    head = (meta.get("head") or {}).get("kind", "lm")
    if head != getattr(model, "head_kind", head):
        problems.append(f"head: checkpoint {head!r}, this run {model.head_kind!r}")
    if problems:
        raise UserError(f"{where}: cannot resume, the preset no longer matches the checkpoint:\n  "
                        + "\n  ".join(problems)
                        + "\nrestore those preset values, or start a new run instead of --resume")


def resume_candidates(run_dir: Path) -> list[Path]:
    """Committed checkpoints of a run, newest first, starting at the one `latest` names."""
    root = Path(run_dir) / "checkpoints"
    found = ckpt_io.committed_checkpoints(root)
    latest = ckpt_io._read_pointer(root, "latest")
    if latest is not None:
        found = [c for c in found if c.name <= latest.name]
    return list(reversed(found))


def load_resume_state(run_dir: Path, model: torch.nn.Module, tokenizer: Any, log: Any) -> tuple[Path, dict] | None:
    """Load the newest loadable committed checkpoint of `run_dir` into `model`; returns (folder,
    trainer state), or None for a run without checkpoints. A corrupt checkpoint is skipped with a
    warning (the previous one is used); an incompatible one is refused."""
    candidates = resume_candidates(run_dir)
    if not candidates:
        return None
    raw = _unwrap(model)
    problems = []
    for ckpt in candidates:
        try:
            meta = ckpt_io.verify(ckpt)
            check_compatible(meta, raw, tokenizer, ckpt)
            try:
                sd = load_file(ckpt / ckpt_io.WEIGHTS)
                state = ckpt_io.load_trainer_state(ckpt)
            except (SafetensorError, OSError) as e:
                raise UserError(f"{ckpt}: cannot read ({e}); the checkpoint is corrupt") from None
            if state.get("version") != TRAINER_STATE_VERSION or "optimizer" not in state:
                raise UserError(f"{ckpt / ckpt_io.TRAINER}: not a trainer state of this version")
            check_trainer_state(state, ckpt / ckpt_io.TRAINER)
        except UserError as e:
            if "cannot resume, the preset no longer matches" in str(e):
                raise
            problems.append(str(e))
            log.log({"kind": "log", "level": "warning", "message": f"skipping checkpoint {ckpt.name}: {e}"})
            continue
        try:
            raw.load_weights(sd) if hasattr(raw, "load_weights") else raw.load_state_dict(sd)
        except (ValueError, RuntimeError) as e:
            raise UserError(f"{ckpt / ckpt_io.WEIGHTS}: does not fit the model ({e})") from None
        return ckpt, state
    raise UserError(f"{run_dir}: has checkpoints but none can be resumed:\n  " + "\n  ".join(problems)
                    + f"\nmove {Path(run_dir) / 'checkpoints'} away to start this run from scratch")


# --------------------------------------------------------------------------------------- train

class _Timer:
    """Wall time of training steps only (validation, samples and checkpoints excluded)."""

    def __init__(self) -> None:
        self.window_s = 0.0
        self.window_steps = 0
        self.window_tokens = 0
        self.total_s = 0.0
        self.total_tokens = 0
        self.step_ema_s: float | None = None

    def add(self, seconds: float, tokens: int) -> None:
        self.window_s += seconds
        self.window_steps += 1
        self.window_tokens += tokens
        self.total_s += seconds
        self.total_tokens += tokens
        # the first steps include warm-up (allocations, compile), so the ETA follows recent steps
        self.step_ema_s = seconds if self.step_ema_s is None else 0.9 * self.step_ema_s + 0.1 * seconds

    def reset_window(self) -> None:
        self.window_s, self.window_steps, self.window_tokens = 0.0, 0, 0


def train(model: torch.nn.Module, objective: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, dict]],
          train_batches: BatchSource, val_batches: Callable[[], Iterable[Any]] | None, cfg: TrainConfig,
          log: Any, stop: threading.Event, run_dir: str | Path, *, total_steps: int, grad_accum: int = 1,
          tokenizer: Any = None, sample: Callable[[torch.nn.Module, int], tuple[str, str] | None] | None = None,
          checkpoint_kwargs: dict | None = None, resume: bool = True, dist: Dist | None = None,
          device: torch.device | None = None) -> LoopResult:
    """Train `model` for `total_steps` optimizer steps (or until `stop`), resuming from the newest
    committed checkpoint in `run_dir` when there is one. Returns what happened.

    Each optimizer step consumes `grad_accum * world_size` micro-batches from `train_batches`:
    every rank draws the same sequence and keeps its share (micro-batch i goes to rank
    i % world_size), so the global batch, the data position and thus a checkpoint are the same
    at any world size. `val_batches()` returns a fresh iterable of validation batches;
    `sample(model, step)` returns (prompt, text). Raises StageFailed on a non-finite loss or
    gradient norm (before the optimizer step), out of memory, or a failed checkpoint write.
    """
    run_dir = Path(run_dir)
    main = dist is None or dist.is_main
    world = dist.world_size if dist else 1
    rank = dist.rank if dist else 0
    device = device or pick_device(cfg.device, dist)
    dtype = pick_dtype(cfg.dtype, device)
    if device.type == "cpu" and dtype == torch.float16:
        raise UserError("train.dtype: float16 needs a GPU; use float32 or bfloat16 on CPU")
    raw = _unwrap(model).to(device)
    optimizer = build_optimizer(raw, cfg, device.type)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    ck_kwargs = {"tokenizer": tokenizer, "keep_last": cfg.keep_last, **(checkpoint_kwargs or {})}

    # ---- resume (first clearing what a killed process left half-written: it also frees the space)
    if main:
        ckpt_io.remove_stale(run_dir / "checkpoints")
    step, tokens, best_val, last_val, resumed_from = 0, 0, None, None, None
    last_ckpt: Path | None = None
    val_step = -1  # the step at which last_val was measured
    loaded = load_resume_state(run_dir, raw, tokenizer, log if main else _Null()) if resume else None
    if loaded is not None:
        ckpt, state = loaded
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, tokens = int(state["step"]), int(state["tokens"])
        best_val = state.get("best_val_loss")
        last_val = state.get("val_loss")
        val_step = step if last_val is not None else -1
        if state.get("data") is not None and hasattr(train_batches, "load_state_dict"):
            train_batches.load_state_dict(state["data"])
        ckpt_io.restore_rng_state(state["rng"])
        resumed_from = step
        last_ckpt = ckpt
        if main:
            # `resumed_step` lets a reader drop events of steps after it that the interrupted process logged
            log.log({"kind": "log", "level": "info", "resumed_step": step,
                     "message": f"resumed from {ckpt.name} (step {step}, {tokens:,} tokens)"})
    last_saved_step = step if loaded is not None else -1

    # ---- wrap: compile, then DDP (the checkpoint and sampling code always see `raw`)
    fwd = torch.compile(raw) if cfg.compile else raw
    model_for_train = fwd
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model_for_train = DDP(fwd, device_ids=[device.index] if device.type == "cuda" else None)

    peak = None
    cfg_model = getattr(raw, "config", None)
    if cfg_model is not None:
        from core.model.stats import device_peak_flops, flops_per_token

        flops_tok = flops_per_token(cfg_model)
        peak = device_peak_flops(str(device)) * world
    timer = _Timer()
    stop_flag = torch.zeros((), device=device)
    stopped = False

    def evaluate() -> dict:
        nonlocal last_val, best_val, val_step
        if val_batches is None:
            return {}
        raw.eval()
        with torch.no_grad(), autocast(device, dtype):
            if hasattr(objective, "evaluate"):
                metrics = objective.evaluate(fwd, (to_device(b, device) for b in val_batches()))
            else:
                losses = [objective(fwd, to_device(b, device))[0].float() for b in val_batches()]
                loss = torch.stack(losses).mean().item() if losses else float("nan")
                metrics = {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}
        raw.train()
        metrics = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}
        if metrics.get("val_loss") is not None:
            last_val, val_step = metrics["val_loss"], step
            if best_val is None or last_val < best_val:
                best_val = last_val
        if main and metrics:
            log.log({"kind": "val", "step": step, **metrics})
        return metrics

    def save(at_step: int, val_loss: float | None) -> Path | None:
        nonlocal last_ckpt, last_saved_step
        if dist is not None:
            torch.distributed.barrier()
        if main:
            state = {
                "version": TRAINER_STATE_VERSION,
                "step": at_step,
                "tokens": tokens,
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": ckpt_io.capture_rng_state(),
                "data": train_batches.state_dict() if hasattr(train_batches, "state_dict") else None,
                "best_val_loss": best_val,
                "val_loss": val_loss,
                "total_steps": total_steps,
                "world_size": world,
            }
            try:
                last_ckpt = ckpt_io.save_checkpoint(run_dir, at_step, raw, trainer_state=state,
                                                    val_loss=val_loss, **ck_kwargs)
            except (OSError, SafetensorError) as e:
                shutil.rmtree(run_dir / "checkpoints" / f".tmp-{ckpt_io.step_name(at_step)}-{os.getpid()}",
                              ignore_errors=True)
                prev = ckpt_io.committed_checkpoints(run_dir)
                kept = f"; {prev[-1].name} stays the last committed checkpoint" if prev else ""
                code = _errno(e)
                if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    what = "disk full" if code != errno.EFBIG else "file size limit reached"
                    raise StageFailed(f"{what} while writing the checkpoint of step {at_step} in "
                                      f"{run_dir / 'checkpoints'}{kept}. Free space (or lower train.keep_last) "
                                      f"and continue with --resume") from None
                raise StageFailed(f"cannot write the checkpoint of step {at_step}: {e}{kept}") from None
            log.log({"kind": "checkpoint", "step": at_step, "path": str(last_ckpt), "val_loss": val_loss})
        if dist is not None:
            torch.distributed.barrier()
        last_saved_step = at_step
        return last_ckpt

    if main:
        n_params = sum(p.numel() for p in raw.parameters())
        log.log({"kind": "log", "level": "info",
                 "message": f"training {total_steps} steps on {device.type}"
                            + (f" x {world} processes" if world > 1 else "")
                            + f" ({str(dtype).removeprefix('torch.')}, {n_params:,} parameters, "
                            f"{grad_accum * world} micro-batches per step)"})

    model_for_train.train()
    try:
        while step < total_steps:
            # under DDP every rank must stop at the same step: use the flag reduced with the last loss
            if (stop_flag.item() > 0) if dist is not None else stop.is_set():
                stopped = True
                break
            if cfg.max_tokens and tokens >= cfg.max_tokens:
                break
            t0 = time.perf_counter()
            lr = lr_at(step, cfg, total_steps)
            set_lr(optimizer, lr)
            loss_sum = torch.zeros((), device=device)
            metric_sums: dict[str, Any] = {}
            step_tokens = 0
            mine = 0
            for i in range(grad_accum * world):
                batch = train_batches.next_batch()
                n_tok = batch_tokens(batch)
                if i % world != rank:
                    step_tokens += n_tok
                    continue
                mine += 1
                batch = to_device(batch, device)
                last_micro = mine == grad_accum
                sync = contextlib.nullcontext() if dist is None or last_micro else model_for_train.no_sync()
                with sync:
                    with autocast(device, dtype):
                        loss, metrics = objective(model_for_train, batch)
                    scaled = loss.float() / grad_accum
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                step_tokens += int(metrics.pop("tokens", n_tok))
                loss_sum += loss.detach().float()
                for k, v in metrics.items():
                    metric_sums[k] = metric_sums.get(k, 0.0) + (v.detach().float() if isinstance(v, torch.Tensor) else v)
            if scaler is not None:
                scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            loss_mean = loss_sum / grad_accum
            if dist is not None:
                # one collective for the logged loss and the stop request of any rank
                packed = torch.stack([loss_mean, (torch.ones if stop.is_set() else torch.zeros)((), device=device)])
                torch.distributed.all_reduce(packed)
                loss_mean, stop_flag = packed[0] / world, packed[1]
            loss_val, norm_val = torch.stack([loss_mean, grad_norm.float().to(device)]).tolist()
            if not (math.isfinite(loss_val) and math.isfinite(norm_val)) and scaler is None:
                what = "loss" if not math.isfinite(loss_val) else "gradient norm"
                msg = (f"non-finite {what} at step {step + 1} (loss {loss_val}, grad norm {norm_val}, lr {lr:.3g}); "
                       f"the optimizer step was not taken"
                       + (f" and {last_ckpt.name} is the last good checkpoint" if last_ckpt else "")
                       + ". Lower train.lr, raise train.warmup_steps or set train.grad_clip")
                if main:
                    log.log({"kind": "train", "step": step + 1, "loss": loss_val, "lr": lr, "grad_norm": norm_val,
                             "tokens": tokens})
                    log.log({"kind": "log", "level": "error", "message": msg})
                raise StageFailed(msg)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += step_tokens
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timer.add(time.perf_counter() - t0, step_tokens)

            if main and (step % cfg.log_every == 0 or step == total_steps or step == 1):
                tps = timer.window_tokens / timer.window_s if timer.window_s > 0 else 0.0
                ev = {"kind": "train", "step": step, "loss": loss_val, "lr": lr, "grad_norm": norm_val,
                      "tokens": tokens, "tokens_per_s": round(tps, 1),
                      "mfu": round(tps * flops_tok / peak, 5) if peak else None,
                      "step_ms": round(1000 * timer.window_s / max(1, timer.window_steps), 2),
                      "eta_s": round((total_steps - step) * (timer.step_ema_s or 0.0), 1),
                      "mem_bytes": memory_bytes(device)}
                for k, v in metric_sums.items():
                    v = v / grad_accum
                    ev[k] = v.item() if isinstance(v, torch.Tensor) else v
                log.log(ev)
                timer.reset_window()

            ckpt_due = step % cfg.checkpoint_every == 0
            if step % cfg.eval_every == 0 or ckpt_due or step == total_steps:
                evaluate()
            if main and sample is not None and cfg.sample_every and (step % cfg.sample_every == 0 or step == total_steps):
                raw.eval()
                with torch.no_grad(), autocast(device, dtype):
                    out = sample(raw, step)
                raw.train()
                if out is not None:
                    log.log({"kind": "sample", "step": step, "prompt": out[0], "text": out[1]})
            if ckpt_due:
                save(step, last_val if val_step == step else None)
    except StageFailed:
        raise
    except Exception as e:
        if _is_oom(e):
            if device.type == "cuda":
                torch.cuda.empty_cache()
            raise StageFailed(f"out of memory on {device} at step {step + 1} with train.micro_batch_size = "
                              f"{cfg.micro_batch_size}: try a smaller train.micro_batch_size (e.g. "
                              f"{max(1, cfg.micro_batch_size // 2)}) and keep train.batch_tokens to accumulate "
                              f"gradients up to the same batch") from None
        raise

    if not stopped and step > 0 and val_step != step:
        evaluate()  # ended by max_tokens between evaluations
    if last_saved_step != step and step > 0:
        save(step, last_val if val_step == step else None)
    if main and stopped:
        log.log({"kind": "log", "level": "info", "message": f"stopped at step {step}; saved {last_ckpt.name if last_ckpt else 'nothing'}"})
    return LoopResult(step=step, tokens=tokens, val_loss=last_val, best_val_loss=best_val, stopped=stopped,
                      checkpoint=last_ckpt, train_s=timer.total_s,
                      tokens_per_s=timer.total_tokens / timer.total_s if timer.total_s > 0 else 0.0,
                      resumed_from=resumed_from)


class _Null:
    def log(self, event: dict) -> None:
        pass

    def close(self) -> None:
        pass
