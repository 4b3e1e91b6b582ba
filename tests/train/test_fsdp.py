"""train.parallel = "fsdp": FSDP2 over gloo processes on this CPU (torch 2.13 runs fully_shard there),
checked against one process; its sharded checkpoints load in one process and resume at another
world size (2 -> 3 -> 1), falling back past a damaged one."""

from __future__ import annotations

import json
import shutil
import threading

import pytest
import torch

from core import checkpoint as ckpt_io
from core.errors import UserError
from core.stages import pretrain
from core.train.device import Dist

from train_helpers import ListLog, stepped_model, tiny_preset

# 6 micro-batches of 4 x 32 a step: accumulated by 1 process, 3 each on 2, 2 each on 3
EXTRA = ("train.batch_tokens=768", "train.max_steps=8")


def test_fsdp_on_one_process_is_refused(workspace):
    with pytest.raises(UserError, match="train.parallel: fsdp shards the model over several processes"):
        pretrain.run(tiny_preset(*EXTRA, "train.parallel=fsdp"), workspace / "run", ListLog(), threading.Event())


def test_a_world_size_that_does_not_divide_the_global_batch_is_refused(workspace):
    # 768 tokens = 6 micro-batches of 128: 4 processes would need 8
    with pytest.raises(UserError, match="train.batch_tokens: 768 is not a whole number of micro-batches over 4"):
        pretrain.fit(tiny_preset(*EXTRA), workspace / "run", ListLog(), threading.Event(), Dist(0, 4, 0))


def _train_events(run_dir) -> dict[int, float]:
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return {e["step"]: e["loss"] for e in events if e["kind"] == "train"}


def _resumed_losses(run_dir, step: int) -> dict[int, float]:
    """The losses logged after the run's resume from `step` (and that it did resume from it)."""
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    resumed = [i for i, e in enumerate(events) if e.get("resumed_step") == step]
    assert resumed, f"the run did not resume from step {step}"
    return {e["step"]: e["loss"] for e in events[resumed[-1]:] if e["kind"] == "train"}


def _step_dir(run_dir, step: int):
    return run_dir / "checkpoints" / ckpt_io.step_name(step)


@pytest.mark.slow
def test_two_fsdp_processes_match_one_and_resume_on_three_then_one(workspace, capsys):
    every = ("train.checkpoint_every=2", "train.eval_every=2", "train.keep_last=4")
    one = ListLog()
    pretrain.run(tiny_preset(*EXTRA, *every), workspace / "one", one, threading.Event())
    a = {e["step"]: e["loss"] for e in one.kind("train")}
    two_dir = workspace / "two"
    two_dir.mkdir()
    pretrain.run(tiny_preset(*EXTRA, *every, "train.nproc=2", "train.parallel=fsdp"), two_dir, ListLog(),
                 threading.Event())
    b = _train_events(two_dir)
    assert sorted(b) == list(range(1, 9))
    for s in a:  # the same numbers, summed in another order (reduce-scatter): ~1e-6 measured
        assert b[s] == pytest.approx(a[s], abs=1e-4), f"step {s}"

    # sharded: each rank wrote its shard, nothing was gathered; COMMITTED lists every shard
    ckpt = _step_dir(two_dir, 8)
    manifest = json.loads((ckpt / "COMMITTED").read_text())["files"]
    assert {"shards/__0_0.distcp", "shards/__1_0.distcp", "shards/.metadata"} <= set(manifest)
    assert not (ckpt / "model.safetensors").exists()
    # it loads in one process (generate, export-hf) with the trained weights
    model, tok, _ = ckpt_io.load_model(ckpt)
    x = torch.tensor([tok.encode("Once upon a time")])
    from core.model.hf import export_hf
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(export_hf(ckpt, workspace / "hf"))
    assert torch.allclose(hf(x).logits, model(x)[0], atol=1e-4)

    # a missing rank file: a clear message naming it, exit 2
    broken = workspace / "broken" / ckpt.name
    shutil.copytree(ckpt, broken)
    (broken / "shards" / "__1_0.distcp").unlink()
    from core import cli

    capsys.readouterr()
    assert cli.main(["export-hf", str(broken), str(workspace / "hf2")]) == 2
    assert "__1_0.distcp" in capsys.readouterr().err

    # resume on three processes: step 8 damaged (a rank's shard changed) and step 6 gone, so the run
    # falls back past 8 to 4; a killed writer's temporary folder is removed
    with open(ckpt / "shards" / "__1_0.distcp", "r+b") as f:
        f.seek(100)
        f.write(b"\xff\x00\xff")
    shutil.rmtree(_step_dir(two_dir, 6))
    stale = two_dir / "checkpoints" / ".tmp-step-00000006-999999"
    (stale / "shards").mkdir(parents=True)
    pretrain.run(tiny_preset(*EXTRA, *every, "train.nproc=3", "train.parallel=fsdp"), two_dir, ListLog(),
                 threading.Event())
    c = _resumed_losses(two_dir, 4)
    assert sorted(c) == [5, 6, 7, 8] and all(c[s] == pytest.approx(a[s], abs=1e-4) for s in c), (c, a)
    assert not stale.exists()
    assert "shards/__2_0.distcp" in json.loads((_step_dir(two_dir, 6) / "COMMITTED").read_text())["files"]

    # and in one process from step 6 (written by three ranks): the optimizer state is resharded
    shutil.rmtree(_step_dir(two_dir, 8))
    (two_dir / "checkpoints" / "latest").write_text("step-00000006\n")
    single = ListLog()  # in this process: the events go to this logger
    pretrain.run(tiny_preset(*EXTRA, *every), two_dir, single, threading.Event())
    assert [e["resumed_step"] for e in single.events if "resumed_step" in e] == [6]
    d = {e["step"]: e["loss"] for e in single.kind("train")}
    assert sorted(d) == [7, 8] and all(d[s] == pytest.approx(a[s], abs=1e-4) for s in d), (d, a)


def test_a_plain_optimizer_state_is_refused_by_the_sharded_loader():
    from core.config import TrainConfig
    from core.train.fsdp import load_optimizer
    from core.train.optim import build_optimizer

    model, opt, _ = stepped_model()
    with pytest.raises(UserError, match="cannot resume.*not an FSDP run's"):
        load_optimizer(model, build_optimizer(model, TrainConfig(), "cpu"), opt.state_dict(), "ckpt")
