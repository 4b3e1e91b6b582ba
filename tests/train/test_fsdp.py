"""train.parallel = "fsdp": FSDP2 over gloo processes on this CPU (torch 2.13 runs fully_shard there),
checked against one process; its checkpoints load in one process and resume at another world size."""

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

from train_helpers import ListLog, tiny_preset

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


@pytest.mark.slow
def test_two_fsdp_processes_match_one_and_resume_on_three(workspace):
    one = ListLog()
    pretrain.run(tiny_preset(*EXTRA), workspace / "one", one, threading.Event())
    a = {e["step"]: e["loss"] for e in one.kind("train")}
    two_dir = workspace / "two"
    two_dir.mkdir()
    pretrain.run(tiny_preset(*EXTRA, "train.nproc=2", "train.parallel=fsdp"), two_dir, ListLog(), threading.Event())
    b = _train_events(two_dir)
    assert sorted(b) == list(range(1, 9))
    for s in a:  # the same numbers, summed in another order (reduce-scatter): ~1e-6 measured
        assert b[s] == pytest.approx(a[s], abs=1e-4), f"step {s}"

    # the gathered checkpoint is an ordinary one: it loads in one process, with the weights trained
    ckpt = ckpt_io.committed_checkpoints(two_dir)[-1]
    model, tok, _ = ckpt_io.load_model(ckpt)
    x = torch.tensor([tok.encode("Once upon a time")])
    assert torch.isfinite(model(x)[0]).all()

    # and it resumes on three processes: drop step 8 as if the job died after step 4's commit
    shutil.rmtree(two_dir / "checkpoints" / "step-00000008")
    (two_dir / "checkpoints" / "latest").write_text("step-00000004\n")
    pretrain.run(tiny_preset(*EXTRA, "train.nproc=3", "train.parallel=fsdp"), two_dir, ListLog(), threading.Event())
    c = {s: v for s, v in _train_events(two_dir).items()}
    events = [json.loads(line) for line in (two_dir / "events.jsonl").read_text().splitlines()]
    resumed = [e for e in events if e.get("resumed_step") == 4]
    assert resumed, "the three-process run did not resume from step 4"
    after = [e for e in events[events.index(resumed[0]):] if e["kind"] == "train"]
    assert [e["step"] for e in after] == [5, 6, 7, 8]
    assert all(e["loss"] == pytest.approx(a[e["step"]], abs=1e-4) for e in after), (after, a, c)

    # and in one process: the optimizer state is keyed by parameter name, in the optimizer's order
    shutil.rmtree(two_dir / "checkpoints" / "step-00000008")
    (two_dir / "checkpoints" / "latest").write_text("step-00000004\n")
    single = ListLog()
    pretrain.run(tiny_preset(*EXTRA), two_dir, single, threading.Event())
    d = {e["step"]: e["loss"] for e in single.kind("train")}
    assert sorted(d) == [5, 6, 7, 8] and all(d[s] == pytest.approx(a[s], abs=1e-4) for s in d)


def test_a_plain_optimizer_state_is_refused_by_the_sharded_loader():
    from core.config import ModelConfig, TrainConfig
    from core.model.gpt import GPT
    from core.train.fsdp import load_optimizer
    from core.train.optim import build_optimizer

    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, context_length=8, vocab_size=32))
    opt = build_optimizer(model, TrainConfig(), "cpu")
    x = torch.randint(0, 32, (2, 8))
    model(x, x)[1].backward()
    opt.step()
    with pytest.raises(UserError, match="cannot resume.*not an FSDP run's"):
        load_optimizer(model, build_optimizer(model, TrainConfig(), "cpu"), opt.state_dict(), "ckpt")
