"""A training run's state (`TrainState`): resuming it from the run's checkpoints, and committing them.

Resume starts at the newest loadable committed checkpoint of the run; a commit fails with a clear
message when the disk is full. trainer.pt holds the optimizer, the grad scaler, the RNG states and the data position, so a
resumed run's losses equal an uninterrupted run's. Used by core.train.loop.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from core import checkpoint as ckpt_io
from core.errors import StageFailed, UserError
from core.runs import Logger
from core.schemas import check_trainer_state
from core.train.optim import Optimizer

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer

TRAINER_STATE_VERSION = 1
INCOMPATIBLE = "cannot resume, the preset no longer matches"


@dataclass
class TrainState:
    """What the loop carries from step to step (and a checkpoint keeps)."""

    step: int = 0                       # optimizer steps done, including those before a resume
    tokens: int = 0                     # training tokens seen, all ranks together
    val_loss: float | None = None       # the last validation loss ...
    val_step: int = -1                  # ... and the step it was measured at
    best_val_loss: float | None = None
    resumed_from: int | None = None
    checkpoint: Path | None = None      # the last committed checkpoint
    saved_step: int = -1                # the step of the last checkpoint this run wrote or resumed from
    train_s: float = 0.0                # seconds in training steps, across resumes (and from a fork's parent)

    def record_val(self, loss: float) -> None:
        self.val_loss, self.val_step = loss, self.step
        if self.best_val_loss is None or loss < self.best_val_loss:
            self.best_val_loss = loss

    def fresh_val(self) -> float | None:
        """The validation loss of this very step, or None."""
        return self.val_loss if self.val_step == self.step else None


# ------------------------------------------------------------------------------------- resume

def check_compatible(meta: dict, model: torch.nn.Module, tokenizer: TextTokenizer | None, where: Path) -> None:
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
        raise UserError(f"{where}: {INCOMPATIBLE} the checkpoint:\n  " + "\n  ".join(problems)
                        + "\nrestore those preset values, or start a new run instead of --resume")


def _read_checkpoint(ckpt: Path, model: torch.nn.Module, tokenizer: TextTokenizer | None) -> tuple[dict | None, dict]:
    """(weights, trainer state) of one candidate, or a UserError saying why it cannot be used; the
    weights are None for a sharded checkpoint (read into the model by `load_resume_state`)."""
    meta = ckpt_io.verify(ckpt)
    check_compatible(meta, model, tokenizer, ckpt)
    try:
        sd = None if meta.get("sharded") else load_file(ckpt / ckpt_io.WEIGHTS)
        state = ckpt_io.load_trainer_state(ckpt)
    except (SafetensorError, OSError) as e:
        raise UserError(f"{ckpt}: cannot read ({e}); the checkpoint is corrupt") from None
    if state.get("version") != TRAINER_STATE_VERSION or "optimizer" not in state:
        raise UserError(f"{ckpt / ckpt_io.TRAINER}: not a trainer state of this version")
    check_trainer_state(state, ckpt / ckpt_io.TRAINER)
    return sd, state


def load_resume_state(run_dir: Path, model: Any, tokenizer: TextTokenizer | None, log: Logger) -> tuple[Path, dict] | None:
    """Load the newest loadable committed checkpoint of `run_dir` into `model`; returns (folder,
    trainer state), or None for a run without checkpoints. A corrupt checkpoint is skipped with a
    warning (the previous one is used); an incompatible one is refused."""
    candidates = ckpt_io.resume_candidates(run_dir)
    if not candidates:
        return None
    raw: Any = ckpt_io._unwrap(model)
    problems = []
    for ckpt in candidates:
        try:
            sd, state = _read_checkpoint(ckpt, raw, tokenizer)
        except UserError as e:
            if INCOMPATIBLE in str(e):
                raise
            problems.append(str(e))
            log.log({"kind": "log", "level": "warning", "message": f"skipping checkpoint {ckpt.name}: {e}"})
            continue
        if sd is None:  # sharded: every rank reads the whole weights (a collective under torchrun)
            ckpt_io.load_sharded_weights(ckpt, raw)
            return ckpt, state
        try:
            raw.load_weights(sd) if hasattr(raw, "load_weights") else raw.load_state_dict(sd)
        except (ValueError, RuntimeError) as e:
            raise UserError(f"{ckpt / ckpt_io.WEIGHTS}: does not fit the model ({e})") from None
        return ckpt, state
    raise UserError(f"{run_dir}: has checkpoints but none can be resumed:\n  " + "\n  ".join(problems)
                    + f"\nmove {Path(run_dir) / 'checkpoints'} away to start this run from scratch")


def restore(state: TrainState, saved: dict, ckpt: Path, optimizer: Optimizer | None,
            scaler: torch.amp.GradScaler | None, batches: Any) -> None:
    """Put a loaded trainer state back: optimizer (unless None: FSDP loads it after sharding, and a
    sharded checkpoint's is in its shards: `core.train.fsdp.load_sharded_optimizer`), scaler,
    counters, data position and RNG states."""
    try:
        if optimizer is not None and not is_sharded(saved):
            optimizer.load_state_dict(saved["optimizer"])
    except (ValueError, KeyError) as e:
        raise UserError(f"{ckpt / ckpt_io.TRAINER}: {INCOMPATIBLE} the checkpoint: its optimizer state does not "
                        f"fit this run's optimizer ({e}); restore train.optimizer, or start a new run") from None
    if scaler is not None and saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    state.step, state.tokens = int(saved["step"]), int(saved["tokens"])
    state.train_s = float(saved.get("train_s") or 0.0)
    state.best_val_loss = saved.get("best_val_loss")
    state.val_loss = saved.get("val_loss")
    state.val_step = state.step if state.val_loss is not None else -1
    if saved.get("data") is not None and hasattr(batches, "load_state_dict"):
        batches.load_state_dict(saved["data"])
    ckpt_io.restore_rng_state(saved["rng"])
    state.resumed_from = state.saved_step = state.step
    state.checkpoint = ckpt


def is_sharded(saved: dict) -> bool:
    """Whether a trainer state's optimizer lives in the checkpoint's shards (an FSDP run's)."""
    return saved["optimizer"].get("sharded") == ckpt_io.SHARDS


# --------------------------------------------------------------------------------------- save

def trainer_state(state: TrainState, optimizer_state: dict, scaler: torch.amp.GradScaler | None,
                  batches: Any, total_steps: int, world_size: int) -> dict:
    """trainer.pt's contents: tensors and plain containers only (it is loaded with weights_only=True)."""
    return {
        "version": TRAINER_STATE_VERSION,
        "step": state.step,
        "tokens": state.tokens,
        "train_s": state.train_s,
        "optimizer": optimizer_state,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": ckpt_io.capture_rng_state(),
        "data": batches.state_dict() if hasattr(batches, "state_dict") else None,
        "best_val_loss": state.best_val_loss,
        "val_loss": state.fresh_val(),
        "total_steps": total_steps,
        "world_size": world_size,
    }


def os_errno(e: BaseException) -> int | None:
    """The OS error number of an OSError, or of a safetensors error (which carries it in its text)."""
    if isinstance(e, OSError):
        return e.errno
    m = re.search(r"os error (\d+)", str(e))
    return int(m.group(1)) if m else None


def commit(run_dir: Path, model: torch.nn.Module, state: TrainState, trainer: dict, **checkpoint_kwargs: Any) -> Path:
    """Save and commit the checkpoint of `state.step`; a failed write is a StageFailed that names the
    checkpoint which stays the last good one (and says what to do about a full disk)."""
    step = state.step
    try:
        return ckpt_io.save_checkpoint(run_dir, step, model, trainer_state=trainer, val_loss=state.fresh_val(),
                                       **checkpoint_kwargs)
    except (OSError, SafetensorError) as e:
        shutil.rmtree(run_dir / "checkpoints" / f".tmp-{ckpt_io.step_name(step)}-{os.getpid()}", ignore_errors=True)
        prev = ckpt_io.committed_checkpoints(run_dir)
        kept = f"; {prev[-1].name} stays the last committed checkpoint" if prev else ""
        code = os_errno(e)
        if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            what = "disk full" if code != errno.EFBIG else "file size limit reached"
            raise StageFailed(f"{what} while writing the checkpoint of step {step} in "
                              f"{run_dir / 'checkpoints'}{kept}. Free space (or lower train.keep_last) "
                              f"and continue with --resume") from None
        raise StageFailed(f"cannot write the checkpoint of step {step}: {e}{kept}") from None
