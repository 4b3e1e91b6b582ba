"""The tiny preset's first losses, pinned (as torchtune pins its recipes' losses): a change that alters
training numerics (initialisation, data order, the optimizer, the schedule, the loss) shows up here.

The tiny preset's model, optimizer and schedule on a 0.5 MB corpus with micro-batches of 2, so the
test takes seconds; steps 1-50 are the warmup, whose learning rates do not depend on the run's length.
One thread (tests/conftest.py), CPU, float32. A deliberate change of numerics updates PINNED with the
values the failure prints, and says why in its commit."""

import threading

import pytest
import torch

from core import config
from core.stages import pretrain
from train_helpers import ListLog

PINNED = {1: 6.654994964599609, 10: 6.081126689910889, 50: 3.2148618698120117}


def test_tiny_preset_losses_at_steps_1_10_50(workspace):
    assert torch.get_num_threads() == 1
    preset = config.load("tiny", ["data.synthetic_mb=0.5", "data.workers=1", "train.micro_batch_size=2",
                                  "train.max_steps=50", "train.eval_every=50", "train.checkpoint_every=50",
                                  "train.sample_every=0", "train.device=cpu"])
    log = ListLog()
    pretrain.fit(preset, workspace / "run", log, threading.Event())
    losses = {e["step"]: e["loss"] for e in log.kind("train") if e["step"] in PINNED}
    assert losses == pytest.approx(PINNED, abs=1e-5), f"losses now: {losses}"
