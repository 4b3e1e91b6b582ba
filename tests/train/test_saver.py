"""Checkpoints written in the background (core.train.saver): the copy is detached from the live
model and optimizer, one write runs at a time, a failed write is raised in the training thread,
and the loop's checkpoints land committed with the trainer state of their own step."""

import threading
import time

import pytest
import torch

from core import checkpoint as ckpt_io
from core.train.saver import BackgroundCommit, HostCopy, to_host
from train_helpers import ListLog, stepped_model, tiny_preset


def test_the_host_copy_does_not_follow_the_training_that_goes_on():
    model, opt, x = stepped_model()
    host, opt_host = HostCopy(model), to_host(opt.state_dict())
    before = {k: v.clone() for k, v in host.weights().items()}
    moment = next(iter(opt_host["state"].values()))["exp_avg"].clone()
    model(x, x)[1].backward()
    opt.step()  # updates the live weights and moments in place
    assert all(torch.equal(before[k], v) for k, v in host.weights().items())
    assert torch.equal(next(iter(opt_host["state"].values()))["exp_avg"], moment)
    assert not torch.equal(model.weights()["wte.weight"], before["wte.weight"])
    assert host.config == model.config and host.head_kind == "lm"


def test_a_second_write_waits_for_the_first_and_a_failure_reaches_the_trainer():
    saver, order = BackgroundCommit(), []
    release = threading.Event()

    def first() -> None:
        release.wait(5)
        order.append("first")

    saver.start(first)
    assert saver.busy()
    threading.Timer(0.2, release.set).start()
    t0 = time.perf_counter()
    saver.start(lambda: order.append("second"))  # returns once the first has ended
    assert order[0] == "first" and time.perf_counter() - t0 >= 0.15
    saver.wait()
    assert order == ["first", "second"]

    def full() -> None:
        raise OSError(28, "No space left on device")

    saver.start(full)
    while saver.busy():
        time.sleep(0.01)
    with pytest.raises(OSError, match="No space left"):
        saver.check()
    saver.check()  # raised once


def test_background_checkpoints_land_committed_with_their_own_step(workspace):
    import json

    from core.stages import pretrain

    log = ListLog()
    result = pretrain.fit(tiny_preset("train.max_steps=8", "train.checkpoint_every=2", "train.keep_last=8"),
                          workspace / "run", log, threading.Event())
    steps = [e["step"] for e in log.kind("checkpoint")]
    assert steps == [2, 4, 6, 8] and result.checkpoint is not None and result.checkpoint.name == "step-00000008"
    for s in steps:  # each holds the trainer state of its step, not of a later one the loop had reached
        ckpt = workspace / "run" / "checkpoints" / ckpt_io.step_name(s)
        assert json.loads((ckpt / "model.json").read_text())["step"] == s
        assert ckpt_io.load_trainer_state(ckpt)["step"] == s
