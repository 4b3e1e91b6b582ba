"""Finetuning on two gloo processes (torchrun) gives the losses of one process with the same global batch:
data parallelism serves every stage that trains, not pretraining alone."""

from __future__ import annotations

import json
import threading

import pytest

from core.stages import finetune

from ft_helpers import Recorder, make_preset


@pytest.mark.slow
def test_two_processes_finetune_like_one(tmp_path, base_ckpt, data_files):
    def preset(nproc: int):
        p = make_preset("instruct", base_ckpt, data_files["instruct"], train__max_steps=4, train__eval_every=2,
                        train__checkpoint_every=2, train__nproc=nproc)
        p.train.batch_tokens = 2 * p.train.micro_batch_size * p.model.context_length  # 2 micro-batches a step
        return p

    one = Recorder()
    (tmp_path / "one").mkdir()
    finetune.run(preset(1), tmp_path / "one", one, threading.Event())
    two_dir = tmp_path / "two"
    two_dir.mkdir()
    finetune.run(preset(2), two_dir, Recorder(), threading.Event())
    events = [json.loads(line) for line in (two_dir / "events.jsonl").read_text().splitlines()]
    a = {e["step"]: e["loss"] for e in one.of("train")}
    b = {e["step"]: e["loss"] for e in events if e["kind"] == "train"}
    assert sorted(b) == [1, 2, 3, 4]
    assert all(b[s] == pytest.approx(a[s], abs=1e-4) for s in a), (a, b)
    report = json.loads((two_dir / "report.json").read_text())
    assert report["world_size"] == 2 and report["steps"] == 4 and "test" in report
