"""`llmlab pretrain` end to end through the CLI (real detached processes), and DDP with torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import pytest
from train_helpers import TINY, ListLog, tiny_preset

from core import checkpoint as ckpt_io
from core.runs import list_runs
from core.stages import pretrain


def _cli(workspace, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMLAB_HOME": str(workspace), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_llmlab_pretrain_then_resume(workspace):
    sets = [a for s in TINY + ["train.log_every=4", "train.sample_every=12"] for a in ("--set", s)]
    done = _cli(workspace, "pretrain", "tiny", *sets)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = list_runs(workspace / "runs")
    assert run.status()["state"] == "finished"
    events = run.events()
    kinds = {e["kind"] for e in events}
    assert {"progress", "train", "val", "sample", "checkpoint", "status"} <= kinds
    assert json.loads((run.path / "report.json").read_text())["steps"] == 12

    # --resume re-executes the run in its folder; a longer schedule continues from step 12
    more = _cli(workspace, "pretrain", "tiny", *sets, "--set", "train.max_steps=16", "--resume")
    assert more.returncode == 0, more.stdout + more.stderr
    assert [r.name for r in list_runs(workspace / "runs")] == [run.name]
    events = run.events()
    assert any("resumed from step-00000012" in e.get("message", "") for e in events)
    steps = [e["step"] for e in events if e["kind"] == "train"]
    assert steps[-1] == 16 and steps.count(12) == 1
    assert ckpt_io.committed_checkpoints(run.path)[-1].name == "step-00000016"


@pytest.mark.slow
def test_two_gloo_processes_match_one_and_resume_at_another_world_size(workspace):
    # the same global batch: 4 micro-batches per step, accumulated by 1 process or split over 2
    extra = ("train.batch_tokens=512", "train.max_steps=8")
    one_dir, two_dir = workspace / "one", workspace / "two"
    one_dir.mkdir(), two_dir.mkdir()
    one = ListLog()
    pretrain.run(tiny_preset(*extra), one_dir, one, threading.Event())
    two = ListLog()
    pretrain.run(tiny_preset(*extra, "train.nproc=2"), two_dir, two, threading.Event())

    # rank 0 wrote the events straight into the run's event log
    events = [json.loads(line) for line in (two_dir / "events.jsonl").read_text().splitlines()]
    a = {e["step"]: e["loss"] for e in one.kind("train")}
    b = {e["step"]: e["loss"] for e in events if e["kind"] == "train"}
    assert sorted(b) == list(range(1, 9))
    for s in a:
        assert b[s] == pytest.approx(a[s], abs=1e-4), f"step {s}"  # float sums in another order: ~1e-6
    assert [e["step"] for e in events if e["kind"] == "checkpoint"] == [4, 8]

    # a DDP checkpoint continues in one process: drop step 8 as if the job died after step 4's commit
    shutil.rmtree(two_dir / "checkpoints" / "step-00000008")
    (two_dir / "checkpoints" / "latest").write_text("step-00000004\n")
    resumed = ListLog()
    pretrain.run(tiny_preset(*extra), two_dir, resumed, threading.Event())
    c = {e["step"]: e["loss"] for e in resumed.kind("train")}
    assert sorted(c) == [5, 6, 7, 8]
    assert all(c[s] == pytest.approx(a[s], abs=1e-4) for s in c)


@pytest.mark.slow
def test_a_stop_request_reaches_every_rank(workspace):
    run_dir = workspace / "ddp"
    run_dir.mkdir()
    stop = threading.Event()

    def stop_after_step_3():
        import time

        while not stop.is_set():
            text = (run_dir / "events.jsonl").read_text() if (run_dir / "events.jsonl").exists() else ""
            if any(json.loads(line).get("step", 0) >= 3 for line in text.splitlines() if '"train"' in line):
                stop.set()
            time.sleep(0.05)

    threading.Thread(target=stop_after_step_3, daemon=True).start()
    pretrain.run(tiny_preset("train.nproc=2", "train.max_steps=400"), run_dir, ListLog(), stop)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    last = [e["step"] for e in events if e["kind"] == "train"][-1]
    assert 3 <= last < 400
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == ckpt_io.step_name(last)
    assert json.loads((run_dir / "report.json").read_text())["stopped"] is True
