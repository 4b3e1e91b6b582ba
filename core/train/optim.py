"""Optimisation pieces the training loop composes: AdamW (or Muon + AdamW), the learning-rate schedule,
the step plan.

AdamW decays matrices and embeddings (parameters with two or more dimensions) and leaves biases
and norm gains alone; it uses the fused kernel on CUDA and the multi-tensor (foreach) path
elsewhere. The schedule is a linear warmup to `lr` followed by a cosine decay to `min_lr` at the
last step. `train.optimizer = "muon"` gives core.train.muon's pair instead. `plan_steps` turns the preset's stopping rules (steps, tokens, epochs) into one count.
"""

from __future__ import annotations

import math

import torch

from core.config import TrainConfig
from core.train.muon import MuonAdamW

Optimizer = torch.optim.Optimizer | MuonAdamW


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device_type: str) -> Optimizer:
    """AdamW over the trainable parameters; weight decay on tensors of rank >= 2 only. With
    `cfg.optimizer == "muon"`: Muon on the blocks' matrices, this AdamW on the rest."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    # fused: one kernel for all parameters on CUDA; foreach: a few vectorised ops per group elsewhere
    kind = {"fused": True} if device_type == "cuda" else {"foreach": True}
    if cfg.optimizer == "muon":
        return MuonAdamW(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), kind)
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **kind)


def lr_at(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup, then cosine to min_lr.

    The warmup starts at lr / warmup_steps (never 0, which would waste a step) and reaches lr at
    step warmup_steps - 1; the cosine ends at min_lr on the last step.
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = total_steps - cfg.warmup_steps
    if decay_steps <= 1:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / (decay_steps - 1))
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def set_lr(optimizer: Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def plan_steps(cfg: TrainConfig, tokens_per_step: int, epoch_tokens: int | None) -> int:
    """Optimizer steps the run will take: the first of max_steps, max_tokens and epochs to be reached.

    `epoch_tokens` is the number of training tokens in one pass over the data (None when unknown,
    e.g. a streamed set; then epochs cannot bound the run).
    """
    limits = []
    if cfg.max_steps:
        limits.append(cfg.max_steps)
    if cfg.max_tokens:
        limits.append(math.ceil(cfg.max_tokens / tokens_per_step))
    if cfg.epochs and epoch_tokens:
        limits.append(math.ceil(cfg.epochs * epoch_tokens / tokens_per_step))
    if not limits:
        raise ValueError("no stopping rule: set train.max_steps, train.max_tokens or train.epochs")
    return max(1, min(limits))
