"""Tiny pretraining setups shared by the training tests: a 0.1 MB synthetic corpus, a 512-id BPE
and a 2-layer, 32-wide GPT on CPU; an in-memory logger; a stop event set at a given step; a
one-layer GPT and its AdamW after one step."""

from __future__ import annotations

import json
import threading
from typing import Any

import torch

from core import config

TINY = [
    "data.synthetic_mb=0.1", "data.workers=1",
    "tokenizer.vocab_size=512",
    "model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.context_length=32",
    "train.micro_batch_size=4", "train.lr=3e-3", "train.min_lr=3e-4", "train.warmup_steps=2",
    "train.max_steps=12", "train.log_every=1", "train.eval_every=4", "train.eval_batches=2",
    "train.checkpoint_every=4", "train.sample_every=0", "train.keep_last=2", "train.device=cpu",
]


def tiny_preset(*extra: str) -> config.Preset:
    return config.load("tiny", TINY + list(extra))


class ListLog:
    """An in-memory logger; `on` runs for every event (e.g. to set the stop event at a step)."""

    def __init__(self, on=None):
        self.events: list[dict] = []
        self.on = on

    def log(self, event: dict) -> None:
        json.dumps(event)  # what the real EventLog must be able to write
        self.events.append(event)
        if self.on is not None:
            self.on(event)

    def close(self) -> None:
        pass

    def kind(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["kind"] == kind]


def stop_at(step: int) -> tuple[threading.Event, ListLog]:
    """A stop event that is set when step `step`'s train event is logged (log_every = 1)."""
    stop = threading.Event()

    def on(ev: dict) -> None:
        if ev["kind"] == "train" and ev["step"] == step:
            stop.set()

    return stop, ListLog(on)


def stepped_model() -> tuple[Any, Any, torch.Tensor]:
    """(model, optimizer, batch): a 1-layer, 16-wide GPT (vocab 32) and its AdamW after one step on
    the (2, 8) batch, so that the optimizer holds moments."""
    from core.config import ModelConfig, TrainConfig
    from core.model.gpt import GPT
    from core.train.optim import build_optimizer

    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, context_length=8, vocab_size=32))
    opt = build_optimizer(model, TrainConfig(), "cpu")
    x = torch.randint(0, 32, (2, 8))
    model(x, x)[1].backward()
    opt.step()
    return model, opt, x
