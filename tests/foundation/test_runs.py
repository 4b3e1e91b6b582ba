"""Run directories on real processes running the real pretraining stage (a very small preset):
events readable while written, detached runs outlive their parent, killed runs show as crashed,
stops are cooperative and save a checkpoint, one writer per run, user stages through the plugin hook."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from core import config, lookup, runs
from core.errors import UserError


def wait_for(cond, timeout=30.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


SMALL = {
    "name": "small", "data.synthetic_mb": 0.05, "data.workers": 1, "tokenizer.vocab_size": 300,
    "model.n_layer": 1, "model.n_head": 2, "model.n_embd": 32, "model.context_length": 32,
    "train.micro_batch_size": 4, "train.warmup_steps": 2, "train.log_every": 1, "train.eval_every": 1000,
    "train.eval_batches": 2, "train.sample_every": 0, "train.checkpoint_every": 1000, "train.device": "cpu",
}


def small_preset(steps):
    return config.load("tiny", {**SMALL, "train.max_steps": steps})


def train_steps(run):
    return [e["step"] for e in run.events() if e["kind"] == "train"]


def test_create_run_never_overwrites(workspace):
    a = runs.create_run("p", "data", "x = 1\n")
    b = runs.create_run("p", "data", "x = 2\n")
    assert a.path != b.path
    assert a.preset_path.read_text() == "x = 1\n"
    assert a.status()["state"] == "created" and a.stage == "data"
    assert [r.name for r in runs.list_runs()] == sorted([a.name, b.name], reverse=True)


def test_event_reader_never_sees_a_torn_line(workspace):
    """A writer process appends big events as fast as it can while we read concurrently."""
    path = workspace / "events.jsonl"
    code = textwrap.dedent(f"""
        from core.runs import EventLog
        log = EventLog({str(path)!r})
        for i in range(3000):
            log.log({{"kind": "train", "step": i, "pad": "x" * (i % 700)}})
        log.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(runs.__file__).parent.parent)
    seen, offset = [], 0
    while True:
        done = proc.poll() is not None
        evs, offset = runs.read_events(path, offset)
        seen += [e["step"] for e in evs]
        if done and not evs:
            break
    assert proc.returncode == 0
    assert seen == list(range(3000))


def test_launch_tail_and_finish(workspace):
    h = runs.launch("pretrain", small_preset(10))
    steps = [e["step"] for e in runs.tail(h.run) if e["kind"] == "train"]
    assert steps == list(range(1, 11))
    assert h.wait(30) == 0
    st = h.run.status()
    assert st["state"] == "finished" and st["ended"] >= st["started"]
    assert json.loads((h.run.path / "report.json").read_text())["steps"] == 10
    assert lookup.resolve_checkpoint(h.run.path).name == "step-00000010"
    kinds = [e["kind"] for e in h.run.events()]
    assert kinds[0] == "status" and kinds[-1] == "status"


def test_user_stage_through_the_plugin_hook(counting_stage):
    h = runs.launch("count", config.load("tiny", {"name": "count", "train.max_steps": 5}))
    assert [e["step"] for e in runs.tail(h.run) if e["kind"] == "train"] == [1, 2, 3, 4, 5]
    assert h.wait(10) == 0 and h.run.status()["state"] == "finished"
    assert json.loads((h.run.path / "report.json").read_text()) == {"steps": 5}


def test_cooperative_stop_saves_a_checkpoint(workspace):
    h = runs.launch("pretrain", small_preset(100_000))
    wait_for(lambda: train_steps(h.run), timeout=60, what="first step")
    runs.stop(h.run)
    assert h.wait(30) == 0
    assert h.run.status()["state"] == "stopped"
    last = train_steps(h.run)[-1]
    assert 1 <= last < 100_000
    assert lookup.resolve_checkpoint(f"{h.run.path}@latest").name == f"step-{last:08d}"


def test_sigterm_is_a_stop_request(workspace):
    h = runs.launch("pretrain", small_preset(100_000))
    wait_for(lambda: train_steps(h.run), timeout=60, what="first step")
    os.kill(h.pid, signal.SIGTERM)
    h.wait(30)
    assert h.run.status()["state"] == "stopped"


def test_killed_run_shows_crashed(workspace):
    h = runs.launch("pretrain", small_preset(100_000))
    wait_for(lambda: h.run.raw_status().get("state") == "running", what="running")
    assert h.run.status()["state"] == "running"
    os.kill(h.pid, signal.SIGKILL)
    h.wait(10)
    assert h.run.raw_status()["state"] == "running"  # the process had no chance to write
    assert h.run.status()["state"] == "crashed"
    assert [r.state for r in runs.list_runs()] == ["crashed"]


def test_detached_run_survives_its_parent_group(workspace, tmp_path):
    """A launcher process (in its own process group, like a terminal's job) starts a run and is killed
    with its whole group; the run goes on and finishes."""
    out = tmp_path / "launched.txt"
    code = textwrap.dedent(f"""
        import time
        from core import config, runs
        h = runs.launch("pretrain", config.load("tiny", {{**{SMALL!r}, "train.max_steps": 40}}))
        open({str(out)!r}, "w").write(str(h.run.path))
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                              cwd=Path(runs.__file__).parent.parent)
    wait_for(lambda: out.exists() and out.read_text(), what="launch")
    run = runs.Run(Path(out.read_text()))
    wait_for(lambda: train_steps(run), timeout=60, what="training")
    os.killpg(parent.pid, signal.SIGKILL)  # the terminal and everything in its job goes away
    parent.wait(10)
    wait_for(lambda: run.raw_status().get("state") == "finished", timeout=90, what="the orphaned run to finish")
    assert train_steps(run)[-1] == 40


def test_second_writer_is_refused(workspace):
    run = runs.create_run("small", "pretrain", config.dump(small_preset(3)))
    lock = runs.RunLock(run)
    try:
        with pytest.raises(UserError, match="another process is writing this run"):
            runs.execute(run, "pretrain", small_preset(3))
    finally:
        lock.release()
    assert runs.execute(run, "pretrain", small_preset(3)) == "finished"


def test_open_run_by_part_of_name(workspace):
    a = runs.create_run("alpha", "data", "")
    runs.create_run("beta", "data", "")
    assert runs.open_run("alpha").path == a.path
    with pytest.raises(UserError, match="ambiguous"):
        runs.open_run("data")
    with pytest.raises(UserError, match="no such run"):
        runs.open_run("gamma")


def test_tail_stops_following_on_event(workspace):
    h = runs.launch("pretrain", small_preset(100_000))
    stop = threading.Event()
    got = []
    for ev in runs.tail(h.run, stop=stop):
        got.append(ev)
        if ev["kind"] == "train":
            stop.set()
    runs.stop(h.run)
    h.wait(30)
    assert any(e["kind"] == "train" for e in got)
