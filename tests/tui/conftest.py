"""Fixtures for the workbench tests: a workspace with small presets, a fixed clock, the app factory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

FIXED_NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC: "started" columns in snapshots stay put

# a preset small enough for screens and end-to-end runs on a shared CPU
SMALL = """
name = "small"
description = "a very small model on a small synthetic corpus, for tests"

[data]
source = "embedded:tinyworld"
synthetic_mb = 0.3
val_fraction = 0.02

[data.filters]
min_chars = 20

[tokenizer]
vocab_size = 300

[model]
n_layer = 1
n_head = 2
n_embd = 32
context_length = 64

[train]
lr = 2e-3
min_lr = 2e-4
micro_batch_size = 4
sample_prompt = "Once upon a time"
max_steps = 30
warmup_steps = 2
log_every = 2
eval_every = 10
eval_batches = 2
sample_every = 10
checkpoint_every = 10
"""

GPT2 = """
name = "gpt2tok"

[model]
n_layer = 4
n_head = 4
n_embd = 128
context_length = 256

[tokenizer]
kind = "tiktoken"
encoding = "gpt2"

[data]
synthetic_mb = 0.3
"""


@pytest.fixture
def lab(workspace, monkeypatch):
    """The workspace with small.toml and gpt2tok.toml in it, as the working directory."""
    (workspace / "small.toml").write_text(SMALL)
    (workspace / "gpt2tok.toml").write_text(GPT2)
    monkeypatch.chdir(workspace)
    return workspace


@pytest.fixture
def make(lab):
    """make(**kw) -> the app built for the lab workspace (runs under lab/runs, fixed clock)."""
    from tui.app import make_app

    def build(preset: str = "small.toml", mode: str = "data", **kw):
        kw.setdefault("runs_root", lab / "runs")
        kw.setdefault("workdir", lab)
        kw.setdefault("clock", lambda: FIXED_NOW)
        kw.setdefault("poll_s", 0.1)
        return make_app(preset=str(lab / preset) if preset.endswith(".toml") else preset, mode=mode, **kw)

    return build


async def settle(pilot, seconds: float = 0.2) -> None:
    """Let workers finish and the screen catch up (an exclusive worker that a newer one replaced is
    cancelled, which is how it should end: not a failure)."""
    from textual.worker import WorkerCancelled

    while True:
        try:
            await pilot.app.workers.wait_for_complete()
            break
        except WorkerCancelled:
            continue
    await pilot.pause(seconds)


async def wait_for(pilot, predicate, timeout: float = 20.0, step: float = 0.1, msg: str = "") -> None:
    import time

    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"condition not reached in time {msg}")
        await pilot.pause(step)
