"""The training loop every objective shares: pretraining, classification, instruction and preference.

`train()` takes a model, an objective (a function or small object turning a batch into a loss and
a metrics dict), a batch source, the preset's train section, a logger, a stop event and the run
folder. It runs AdamW with warmup and cosine decay, gradient accumulation and clipping, autocast
on GPUs, optional torch.compile, and DDP or FSDP2 (core.train.fsdp); it validates, samples, checkpoints (copied to
host memory and committed in a background thread, core.train.saver; sharded per rank under FSDP), and resumes exactly
from the newest committed checkpoint of the run (core.train.state). Devices and dtypes come from
core.train.device. It is composition, not a trainer class: a finetuning stage passes its own objective.

A step never waits for the device: batches arrive one step ahead (core.train.device.Feed), and the
loss, gradient norm, non-finite check and (under DDP) the stop request are read back only on the
steps that log, validate or checkpoint (`_readback_due`), so a GPU runs steps back to back.

Objective protocol: `objective(model, batch) -> (loss, metrics)`, where `loss` is a scalar tensor
and `metrics` a dict of floats/scalar tensors averaged over the micro-batches of a step (a
`tokens` entry, if present, counts the tokens of the batch; default: elements of its first
tensor). An optional `objective.evaluate(model, batches) -> dict` replaces the default validation
(mean loss as val_loss, plus val_ppl). The objective must call `model(...)` (its forward), so that
DDP sees it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from core import checkpoint as ckpt_io
from core.config import TrainConfig
from core.errors import StageFailed, UserError
from core.runs import Logger, NullLogger
from core.train.device import Dist, Feed, autocast, batch_tokens, is_oom, memory_bytes, pick_device, pick_dtype, to_device
from core.train.optim import Optimizer, build_optimizer, lr_at, set_lr
from core.train.live_eval import LiveEval
from core.train.saver import BackgroundCommit, HostCopy, to_host
from core.train.state import TrainState, commit, is_sharded, load_resume_state, restore, trainer_state

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer

Objective = Callable[[torch.nn.Module, Any], "tuple[torch.Tensor, dict]"]
Sampler = Callable[[torch.nn.Module, int], "tuple[str, str] | None"]


class BatchSource(Protocol):
    """Where training batches come from (core.data.TokenLoader is one). `state_dict()` and
    `load_state_dict()` are optional; without them a resume replays the data from the start."""

    def next_batch(self) -> Any: ...


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
    wall_s: float = 0.0          # seconds of this train() call, from setup to the last checkpoint
    eval_s: float = 0.0          # of which in live downstream evaluations (train.eval_tasks)
    early_stopped_at: int | None = None
    best_step: int | None = None  # the early-stopping rule's best evaluation


def lm_objective(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Next-token prediction: batch = (x, y) token ids of shape (B, T)."""
    x, y = batch
    _, loss = model(x, y, logits=False)  # the head and the loss fused, no logits kept (core.model.head_loss)
    return loss, {}


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

    def reset_window(self) -> None:
        # per window, not per step: on a GPU a step's own time is only its launch until a read-back waits;
        # the first window includes warm-up (allocations, compile), so the ETA follows recent windows
        if self.window_steps:
            avg = self.window_s / self.window_steps
            self.step_ema_s = avg if self.step_ema_s is None else 0.5 * self.step_ema_s + 0.5 * avg
        self.window_s, self.window_steps, self.window_tokens = 0.0, 0, 0


@dataclass
class _Run:
    """The fixed pieces of one train() call."""

    raw: torch.nn.Module           # the model itself: checkpoints and samples see this
    fwd: Any                       # raw, compiled when train.compile
    model: Any                     # fwd, wrapped in DDP under data parallelism: what the objective trains
    objective: Objective
    batches: BatchSource
    feed: Feed                     # this rank's share of `batches`, on the device, one step ahead
    val_batches: Callable[[], Iterable[Any]] | None
    sample: Sampler | None
    cfg: TrainConfig
    optimizer: Optimizer
    scaler: torch.amp.GradScaler | None
    device: torch.device
    dtype: torch.dtype
    dist: Dist | None
    run_dir: Path
    log: Logger                    # rank 0's logger; a NullLogger on the other ranks
    stop: threading.Event
    total_steps: int
    grad_accum: int
    checkpoint_kwargs: dict
    flops_per_token: float = 0.0
    peak_flops: float | None = None  # of all processes together; None when the model has no config
    stop_flag: torch.Tensor | None = None  # under DDP: any rank's stop request, reduced with the loss
    live: LiveEval | None = None           # downstream evaluations and early stopping (core.train.live_eval)
    stop_seen: bool = False        # under DDP: the stop flag as last read back
    first_bad: torch.Tensor | None = None  # the first step with a non-finite loss or norm (-1: none), on the device
    fsdp: bool = False             # train.parallel = "fsdp" on several processes
    saved_optimizer: dict | None = None  # under FSDP: a resumed optimizer state, loaded after sharding ...
    saved_from: Path | None = None       # ... from this checkpoint (its shards, when it is sharded)
    saver: BackgroundCommit = field(default_factory=BackgroundCommit)  # rank 0's checkpoint writes

    @property
    def main(self) -> bool:
        return self.dist is None or self.dist.is_main

    @property
    def world(self) -> int:
        return self.dist.world_size if self.dist else 1

    @property
    def rank(self) -> int:
        return self.dist.rank if self.dist else 0


@dataclass
class _Step:
    loss: float
    grad_norm: float
    tokens: int
    metrics: dict


# ---------------------------------------------------------------------------------------- setup

def _setup(model: torch.nn.Module, cfg: TrainConfig, dist: Dist | None, device: torch.device | None,
           log: Logger, **pieces: Any) -> _Run:
    """Device and precision, and the optimizer; the wrappers come after a resume (`_wrap`)."""
    device = device or pick_device(cfg.device, dist)
    dtype = pick_dtype(cfg.dtype, device)
    if device.type == "cpu" and dtype == torch.float16:
        raise UserError("train.dtype: float16 needs a GPU; use float32 or bfloat16 on CPU")
    raw = ckpt_io._unwrap(model).to(device)
    if cfg.activation_checkpointing:
        from core.train.device import checkpoint_activations

        checkpoint_activations(raw)
    if cfg.parallel == "fsdp":
        from core.train import fsdp

        fsdp.check(raw, cfg, dist)
    optimizer = build_optimizer(raw, cfg, device.type)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    main = dist is None or dist.is_main
    if device.type == "cuda":  # TF32 tensor cores for the float32 matmuls left outside autocast
        torch.set_float32_matmul_precision("high")
    feed = Feed(pieces["batches"], device, dist.rank if dist else 0, dist.world_size if dist else 1)
    r = _Run(raw=raw, fwd=raw, model=raw, cfg=cfg, optimizer=optimizer, scaler=scaler, device=device,
             dtype=dtype, dist=dist, log=log if main else NullLogger(), stop_flag=torch.zeros((), device=device),
             first_bad=torch.full((), -1, dtype=torch.long, device=device), feed=feed,
             fsdp=cfg.parallel == "fsdp", **pieces)
    cfg_model = getattr(raw, "config", None)
    if cfg_model is not None:
        from core.model.stats import device_peak_flops, flops_per_token

        r.flops_per_token = flops_per_token(cfg_model)
        r.peak_flops = device_peak_flops(str(device)) * r.world
    return r


def _wrap(r: _Run) -> None:
    """compile, then DDP (which broadcasts rank 0's weights: the resumed ones); or shard (FSDP, every
    rank holding the same resumed weights), rebuild the optimizer over the shards, then compile."""
    if r.fsdp:
        from core.train import fsdp

        fsdp.shard(r.raw, r.cfg, r.device, r.dtype, r.world)
        r.optimizer = build_optimizer(r.raw, r.cfg, fsdp.optimizer_device(r.cfg, r.device))
        if r.saved_optimizer is not None and r.saved_from is not None:
            if is_sharded({"optimizer": r.saved_optimizer}):
                fsdp.load_sharded_optimizer(r.raw, r.optimizer, r.saved_from)
            else:  # a checkpoint that gathered the whole optimizer state, keyed by parameter name
                fsdp.load_optimizer(r.raw, r.optimizer, r.saved_optimizer, str(r.saved_from))
        r.fwd = r.model = torch.compile(r.raw) if r.cfg.compile else r.raw
        return
    r.fwd = torch.compile(r.raw) if r.cfg.compile else r.raw
    r.model = r.fwd
    if r.dist is not None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        r.model = DDP(r.fwd, device_ids=[r.device.index] if r.device.type == "cuda" else None)


def _resume(r: _Run, state: TrainState, tokenizer: TextTokenizer | None) -> None:
    """Continue from the newest loadable committed checkpoint of the run, if it has one."""
    loaded = load_resume_state(r.run_dir, r.raw, tokenizer, r.log)
    if loaded is None:
        return
    ckpt, saved = loaded
    restore(state, saved, ckpt, None if r.fsdp else r.optimizer, r.scaler, r.feed)
    if r.fsdp:
        r.saved_optimizer, r.saved_from = saved["optimizer"], ckpt
    elif is_sharded(saved):  # an FSDP run's checkpoint, resumed without FSDP
        from core.train.fsdp import load_sharded_optimizer

        load_sharded_optimizer(r.raw, r.optimizer, ckpt)
    if r.live is not None:
        r.live.load_state_dict(saved.get("live_eval"))
    for g in r.optimizer.param_groups:  # the preset's settings win over the saved ones (a fork may change them)
        if "betas" in g:
            g["betas"] = (r.cfg.beta1, r.cfg.beta2)
            g["weight_decay"] = r.cfg.weight_decay if g["weight_decay"] else 0.0
    # `resumed_step` lets a reader drop events of steps after it that the interrupted process logged
    r.log.log({"kind": "log", "level": "info", "resumed_step": state.step,
               "message": f"resumed from {ckpt.name} (step {state.step}, {state.tokens:,} tokens)"})


# ----------------------------------------------------------------------------------------- step

def _stop_requested(r: _Run) -> bool:
    # under DDP every rank must stop at the same step: use the flag reduced with the loss, as last read back
    if r.dist is not None:
        return r.stop_seen
    return r.stop.is_set()


def _readback_due(r: _Run, step: int) -> bool:
    """Whether optimizer step `step` (1-based) reads its numbers back to the host: when it logs,
    validates or checkpoints, and at the last step (so nothing non-finite is ever validated or saved)."""
    c = r.cfg
    return (step == 1 or step % c.log_every == 0 or step % c.eval_every == 0 or step % c.checkpoint_every == 0
            or step == r.total_steps)


def _accumulate(r: _Run) -> tuple[torch.Tensor, dict, int]:
    """Forward and backward over this step's micro-batches: every rank draws the same sequence and
    keeps its share. Returns (sum of the losses, sums of the metrics, tokens of the whole step)."""
    loss_sum = torch.zeros((), device=r.device)
    metric_sums: dict[str, Any] = {}
    step_tokens = 0
    for mine in range(1, r.grad_accum + 1):
        batch, n_tok = r.feed.next()
        last_micro = mine == r.grad_accum
        if r.fsdp:  # reduce-scatter the gradients on the last micro-batch only
            r.raw.set_requires_gradient_sync(last_micro)  # type: ignore[operator]
        sync = contextlib.nullcontext() if r.dist is None or r.fsdp or last_micro else r.model.no_sync()
        with sync:
            with autocast(r.device, r.dtype):
                loss, metrics = r.objective(r.model, batch)
            scaled = loss.float() / r.grad_accum
            (r.scaler.scale(scaled) if r.scaler is not None else scaled).backward()
        # the objective counts its own batch's tokens (e.g. without padding); the other ranks' count whole
        own = metrics.pop("tokens", None)
        step_tokens += n_tok if own is None else n_tok - batch_tokens(batch) + int(own)
        loss_sum += loss.detach().float()
        for k, v in metrics.items():
            metric_sums[k] = metric_sums.get(k, 0.0) + (v.detach().float() if isinstance(v, torch.Tensor) else v)
    return loss_sum, metric_sums, step_tokens


def _refuse_non_finite(r: _Run, state: TrainState, loss: float, norm: float, lr: float, first_bad: int) -> None:
    """A non-finite loss or gradient norm fails the run at the read-back that sees it: before this
    step's optimizer update; steps since the first bad one (between read-backs) were taken."""
    with contextlib.suppress(Exception):  # the checkpoint being written is the last good one once it lands
        r.saver.wait()
    step = state.step + 1
    what = ("loss" if not math.isfinite(loss) else "gradient norm") if first_bad < 0 else "loss or gradient norm"
    at = step if first_bad < 0 else first_bad
    taken = ("the optimizer step was not taken" if first_bad < 0 else
             f"found at step {step}, when the losses were read back; step {step}'s update was not taken")
    msg = (f"non-finite {what} at step {at} (loss {loss}, grad norm {norm}, lr {lr:.3g}); {taken}"
           + (f" and {state.checkpoint.name} is the last good checkpoint" if state.checkpoint else "")
           + ". Lower train.lr, raise train.warmup_steps or set train.grad_clip")
    r.log.log({"kind": "train", "step": state.step + 1, "loss": loss, "lr": lr, "grad_norm": norm,
               "tokens": state.tokens})
    r.log.log({"kind": "log", "level": "error", "message": msg})
    raise StageFailed(msg)


def _refuse_non_finite_val(r: _Run, state: TrainState, val_loss: float) -> None:
    """The update of the step just taken made the weights non-finite (its own loss and norm were
    finite): fail before that step is validated into a checkpoint."""
    with contextlib.suppress(Exception):
        r.saver.wait()
    msg = (f"non-finite validation loss at step {state.step} (val_loss {val_loss}): step {state.step}'s update made "
           f"the weights non-finite; no checkpoint of it was written"
           + (f" and {state.checkpoint.name} is the last good checkpoint" if state.checkpoint else "")
           + ". Lower train.lr, raise train.warmup_steps or set train.grad_clip")
    r.log.log({"kind": "log", "level": "error", "message": msg})
    raise StageFailed(msg)


def _step(r: _Run, state: TrainState, lr: float) -> _Step:
    """One optimizer step: accumulate, clip, reduce the logged loss (and stop requests), check, update.
    Only a step that is `_readback_due` waits for the device; the others flag a non-finite value there."""
    set_lr(r.optimizer, lr)
    loss_sum, metric_sums, step_tokens = _accumulate(r)
    if r.scaler is not None:  # float16 only, which muon refuses (core.config.validate)
        assert isinstance(r.optimizer, torch.optim.Optimizer)
        r.scaler.unscale_(r.optimizer)
    clip = r.cfg.grad_clip if r.cfg.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(r.raw.parameters(), clip)
    if r.fsdp:
        from core.train.fsdp import full_tensor

        grad_norm = full_tensor(grad_norm)
    loss_mean = loss_sum / r.grad_accum
    if r.dist is not None:
        # one collective for the logged loss and the stop request of any rank
        stop_now = (torch.ones if r.stop.is_set() else torch.zeros)((), device=r.device)
        packed = torch.stack([loss_mean, stop_now])
        torch.distributed.all_reduce(packed)
        loss_mean, r.stop_flag = packed[0] / r.world, packed[1]
    norm = grad_norm.float().to(r.device)
    loss_val = norm_val = math.nan
    assert r.first_bad is not None and r.stop_flag is not None
    if _readback_due(r, state.step + 1):
        loss_val, norm_val, first_bad, stop_now = torch.stack(
            [loss_mean, norm, r.first_bad.float(), r.stop_flag.float()]).tolist()
        r.stop_seen = stop_now > 0
        bad = not (math.isfinite(loss_val) and math.isfinite(norm_val)) or first_bad >= 0
        if bad and r.scaler is None:
            _refuse_non_finite(r, state, loss_val, norm_val, lr, int(first_bad))
    elif r.scaler is None:  # no wait: remember the first non-finite step on the device
        bad_now = ~(torch.isfinite(loss_mean) & torch.isfinite(norm))
        r.first_bad = torch.where(bad_now & (r.first_bad < 0), state.step + 1, r.first_bad)
    if r.scaler is not None:
        assert isinstance(r.optimizer, torch.optim.Optimizer)
        r.scaler.step(r.optimizer)
        r.scaler.update()
    else:
        r.optimizer.step()
    r.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.tokens += step_tokens
    metrics = {k: v / r.grad_accum for k, v in metric_sums.items()}
    return _Step(loss_val, norm_val, step_tokens, metrics)


def _log_train(r: _Run, state: TrainState, out: _Step, lr: float, timer: _Timer) -> None:
    tps = timer.window_tokens / timer.window_s if timer.window_s > 0 else 0.0
    ev = {"kind": "train", "step": state.step, "loss": out.loss, "lr": lr, "grad_norm": out.grad_norm,
          "tokens": state.tokens, "tokens_per_s": round(tps, 1),
          "mfu": round(tps * r.flops_per_token / r.peak_flops, 5) if r.peak_flops else None,
          "step_ms": round(1000 * timer.window_s / max(1, timer.window_steps), 2),
          "eta_s": round((r.total_steps - state.step) * (timer.step_ema_s or 0.0), 1),
          "mem_bytes": memory_bytes(r.device), "train_s": round(state.train_s, 3)}
    for k, v in out.metrics.items():
        ev[k] = v.item() if isinstance(v, torch.Tensor) else v
    r.log.log(ev)
    timer.reset_window()


# ------------------------------------------------------------------------- evaluate, sample, save

def _evaluate(r: _Run, state: TrainState) -> dict:
    if r.val_batches is None:
        return {}
    r.raw.eval()
    with torch.no_grad(), autocast(r.device, r.dtype):
        if hasattr(r.objective, "evaluate"):
            metrics = r.objective.evaluate(r.fwd, (to_device(b, r.device) for b in r.val_batches()))
        else:
            losses = [r.objective(r.fwd, to_device(b, r.device))[0].float() for b in r.val_batches()]
            loss = torch.stack(losses).mean().item() if losses else float("nan")
            metrics = {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}
    r.raw.train()
    metrics = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}
    if metrics.get("val_loss") is not None and not math.isfinite(metrics["val_loss"]) and r.scaler is None:
        _refuse_non_finite_val(r, state, metrics["val_loss"])
    if metrics.get("val_loss") is not None:
        state.record_val(metrics["val_loss"])
    elif metrics:
        state.val_step = state.step  # evaluated (an objective without a loss, e.g. RL's pass@k): not again at the end
    if metrics:
        r.log.log({"kind": "val", "step": state.step, **metrics})
    return metrics


def _sample(r: _Run, step: int) -> None:
    assert r.sample is not None
    r.raw.eval()
    with torch.no_grad(), autocast(r.device, r.dtype):
        out = r.sample(r.raw, step)
    r.raw.train()
    if out is not None:
        r.log.log({"kind": "sample", "step": step, "prompt": out[0], "text": out[1]})


def _save(r: _Run, state: TrainState) -> None:
    """Commit a checkpoint of this step: rank 0 writes it, between barriers of all ranks."""
    if r.first_bad is not None and (bad := int(r.first_bad.item())) >= 0:  # ended between read-backs
        raise StageFailed(f"non-finite loss or gradient norm at step {bad}; no checkpoint of step {state.step} "
                          f"was written. Lower train.lr, raise train.warmup_steps or set train.grad_clip")
    if r.dist is not None:
        torch.distributed.barrier()
    opt_state: dict | None = None
    kwargs = r.checkpoint_kwargs
    if r.fsdp:  # every rank writes its shard of the weights and optimizer state; rank 0 commits
        from core.train.fsdp import save_sharded

        save_sharded(r.raw, r.optimizer, r.run_dir / "checkpoints" / ckpt_io.step_name(state.step), r.main)
        opt_state = {"sharded": ckpt_io.SHARDS}
        kwargs = {**kwargs, "sharded": r.world}
    elif r.main:  # the stall: a copy to host memory; the write goes on in the background
        r.saver.wait()  # a second save waits for the first
        opt_state = to_host(r.optimizer.state_dict())
    if r.main:
        assert opt_state is not None
        trainer = trainer_state(state, opt_state, r.scaler, r.feed, r.total_steps, r.world)
        if r.live is not None:
            trainer["live_eval"] = r.live.state_dict()
        if r.live is not None and r.live.early is not None and r.live.early.best_step is not None:
            kwargs = {**kwargs, "best_step": r.live.early.best_step}
        if r.fsdp:
            _commit(r, state, r.raw, dataclasses.replace(state), trainer, kwargs)
        else:
            host, snapshot = HostCopy(r.raw), dataclasses.replace(state)
            r.saver.start(lambda: _commit(r, state, host, snapshot, trainer, kwargs))
    if r.dist is not None:
        torch.distributed.barrier()
    state.saved_step = state.step


def _commit(r: _Run, state: TrainState, model: Any, snapshot: TrainState, trainer: dict, kwargs: dict) -> None:
    """Commit the checkpoint of `snapshot` (the state when it was taken) and announce it."""
    path = commit(r.run_dir, model, snapshot, trainer, **kwargs)
    state.checkpoint = path
    r.log.log({"kind": "checkpoint", "step": snapshot.step, "path": str(path), "val_loss": snapshot.fresh_val()})


def _after_step(r: _Run, state: TrainState) -> None:
    """Validation, a sample and a checkpoint, each on its schedule (and all at the last step)."""
    cfg, step, last = r.cfg, state.step, state.step == r.total_steps
    r.saver.check()  # a background write that failed fails the run here
    ckpt_due = step % cfg.checkpoint_every == 0
    if step % cfg.eval_every == 0 or ckpt_due or last:
        val = _evaluate(r, state)
        if r.live is not None and r.live.after_validation(r.raw, step, val, r.log, r.main):
            ckpt_due = True  # the best evaluation so far gets a checkpoint, so that `best` can name it
    # no samples under FSDP: generation on rank 0 alone would wait for the other ranks' shards
    if r.main and not r.fsdp and r.sample is not None and cfg.sample_every and (step % cfg.sample_every == 0 or last):
        _sample(r, step)
    if ckpt_due:
        _save(r, state)


@contextlib.contextmanager
def _out_of_memory_as_failure(r: _Run, state: TrainState) -> Iterator[None]:
    try:
        yield
    except StageFailed:
        raise
    except Exception as e:
        if not is_oom(e):
            raise
        if r.device.type == "cuda":
            torch.cuda.empty_cache()
        mb = r.cfg.micro_batch_size
        raise StageFailed(f"out of memory on {r.device} at step {state.step + 1} with train.micro_batch_size = "
                          f"{mb}: try a smaller train.micro_batch_size (e.g. {max(1, mb // 2)}) and keep "
                          f"train.batch_tokens to accumulate gradients up to the same batch") from None


# ---------------------------------------------------------------------------------------- train

def train(model: torch.nn.Module, objective: Objective, train_batches: BatchSource,
          val_batches: Callable[[], Iterable[Any]] | None, cfg: TrainConfig, log: Logger, stop: threading.Event,
          run_dir: str | Path, *, total_steps: int, grad_accum: int = 1, tokenizer: TextTokenizer | None = None,
          sample: Sampler | None = None, checkpoint_kwargs: dict | None = None, resume: bool = True,
          dist: Dist | None = None, device: torch.device | None = None, live: LiveEval | None = None) -> LoopResult:
    """Train `model` for `total_steps` optimizer steps (or until `stop`), resuming from the newest
    committed checkpoint in `run_dir` when there is one. Returns what happened.

    Each optimizer step consumes `grad_accum * world_size` micro-batches from `train_batches`:
    every rank draws the same sequence and keeps its share (micro-batch i goes to rank
    i % world_size), so the global batch, the data position and thus a checkpoint are the same
    at any world size. `val_batches()` returns a fresh iterable of validation batches;
    `sample(model, step)` returns (prompt, text); `live` adds downstream evaluations at every
    validation and may stop the run early (core.train.live_eval). Raises StageFailed on a non-finite loss or
    gradient norm (before the optimizer step), out of memory, or a failed checkpoint write.
    """
    run_dir, t_start = Path(run_dir), time.perf_counter()
    r = _setup(model, cfg, dist, device, log, objective=objective, batches=train_batches, val_batches=val_batches,
               sample=sample, run_dir=run_dir, stop=stop, total_steps=total_steps, grad_accum=grad_accum, live=live,
               checkpoint_kwargs={"tokenizer": tokenizer, "keep_last": cfg.keep_last, **(checkpoint_kwargs or {})})
    if r.main:  # what a killed process left half-written goes first: it also frees the space
        ckpt_io.remove_stale(run_dir / "checkpoints")
    state = TrainState()
    if resume:
        _resume(r, state, tokenizer)
    n_params = sum(p.numel() for p in r.raw.parameters())
    _wrap(r)
    r.log.log({"kind": "log", "level": "info",
               "message": f"training {total_steps} steps on {r.device.type}"
                          + (f" x {r.world} processes ({'FSDP' if r.fsdp else 'DDP'})" if r.world > 1 else "")
                          + f" ({str(r.dtype).removeprefix('torch.')}, {n_params:,} parameters, "
                          f"{grad_accum * r.world} micro-batches per step)"})
    try:
        return _loop(r, state, t_start)
    finally:
        with contextlib.suppress(Exception):  # a write in progress lands (its error is not this one)
            r.saver.wait()


def _loop(r: _Run, state: TrainState, t_start: float) -> LoopResult:
    cfg, total_steps, live = r.cfg, r.total_steps, r.live
    timer, stopped = _Timer(), False
    r.model.train()
    with _out_of_memory_as_failure(r, state):
        while state.step < total_steps:
            if _stop_requested(r):
                stopped = True
                break
            if cfg.max_tokens and state.tokens >= cfg.max_tokens:
                break
            t0 = time.perf_counter()
            lr = lr_at(state.step, cfg, total_steps)
            out = _step(r, state, lr)
            step_s = time.perf_counter() - t0
            timer.add(step_s, out.tokens)
            state.train_s += step_s
            if r.main and (state.step % cfg.log_every == 0 or state.step == total_steps or state.step == 1):
                _log_train(r, state, out, lr, timer)
            _after_step(r, state)
            if live is not None and live.stopped_at is not None:
                break
    return _finish(r, state, stopped, timer, t_start)


def _finish(r: _Run, state: TrainState, stopped: bool, timer: _Timer, t_start: float) -> LoopResult:
    """The last validation and checkpoint (a stop or max_tokens can end between them), and the result."""
    if not stopped and state.step > 0 and state.val_step != state.step:
        _evaluate(r, state)  # ended by max_tokens between evaluations
    if state.saved_step != state.step and state.step > 0:
        _save(r, state)
    r.saver.wait()
    if stopped:
        saved = state.checkpoint.name if state.checkpoint else "nothing"
        r.log.log({"kind": "log", "level": "info", "message": f"stopped at step {state.step}; saved {saved}"})
    return LoopResult(step=state.step, tokens=state.tokens, val_loss=state.val_loss,
                      best_val_loss=state.best_val_loss, stopped=stopped, checkpoint=state.checkpoint,
                      train_s=timer.total_s,
                      tokens_per_s=timer.total_tokens / timer.total_s if timer.total_s > 0 else 0.0,
                      resumed_from=state.resumed_from, wall_s=time.perf_counter() - t_start,
                      eval_s=r.live.eval_s if r.live else 0.0, early_stopped_at=r.live.stopped_at if r.live else None,
                      best_step=r.live.early.best_step if r.live and r.live.early else None)
