"""Run comparison (core.compare_runs, `llmlab runs diff`): settings that differ, outcomes, time to
target, on run folders written as a run (or another machine) writes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from core import config, runs
from core.compare_runs import TargetHit, clean_events, common_target, metric_points, series, summarize


def _fake_run(name: str, overrides: list[str], losses: list[float], ms: float = 10.0) -> runs.Run:
    """A finished pretrain run folder: its preset and one train + val event per 10 steps."""
    preset = config.load("tiny", overrides)
    run = runs.create_run(name, "pretrain", config.dump(preset))
    log = runs.EventLog(run.events_path)
    for i, loss in enumerate(losses, 1):
        step = 10 * i
        log.log({"kind": "train", "step": step, "loss": loss + 0.1, "tokens": 1000 * step, "step_ms": ms,
                 "train_s": step * ms / 1000})
        log.log({"kind": "val", "step": step, "val_loss": loss, "val_ppl": 2.0})
    log.log({"kind": "eval", "step": 10 * len(losses), "task": "choice", "acc": 0.5, "n": 20, "seconds": 1.0})
    log.close()
    run.write_status(state="finished")
    return run


def test_time_to_target_and_the_best_and_final_metrics(workspace):
    fast = _fake_run("fast", ["train.lr=3e-3"], [3.2, 2.4, 1.9, 1.6])
    s = summarize(fast)
    assert s.time_to(2.5) == TargetHit(2.5, 20, 20_000, 0.2) and s.time_to(1.5) is None
    assert s.final["val_loss"] == 1.6 and s.best["val_loss"] == 1.6 and s.final["choice.acc"] == 0.5
    assert (s.steps, s.tokens) == (40, 40_000)
    slow = summarize(_fake_run("slow", [], [3.4, 2.9, 2.6, 2.4]))
    assert common_target([s, slow]) == 2.5
    assert series(fast, "val_loss", "time") == ([0.1, 0.2, 0.3, 0.4], [3.2, 2.4, 1.9, 1.6])


def test_events_a_killed_process_logged_twice_are_dropped():
    evs = [{"kind": "train", "step": s, "loss": 1.0} for s in (1, 2, 3)]
    evs += [{"kind": "log", "resumed_step": 2}, {"kind": "train", "step": 3, "loss": 0.5}]
    assert [p.value for p in metric_points(clean_events(evs))["loss"]] == [1.0, 1.0, 0.5]


def _cli(workspace, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMLAB_HOME": str(workspace), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=120)


def test_runs_diff_shows_only_what_differs_and_refuses_a_corrupt_preset(workspace):
    a = _fake_run("a", ["train.lr=3e-3"], [3.2, 2.4, 1.9])
    b = _fake_run("b", ["train.lr=1e-3", "model.n_layer=6"], [3.4, 2.9, 2.4])
    done = _cli(workspace, "runs", "diff", a.name, b.name)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    lr = next(line for line in lines if "train.lr" in line)
    assert "0.003" in lr and "0.001" in lr
    assert any("model.n_layer" in line for line in lines) and not any("train.seed" in line for line in lines)
    assert any("to val_loss <= 2.5" in line and "step 20" in line and "step 30" in line for line in lines)
    (b.path / "preset.toml").write_text("[train]\nlr = 'fast'\n")
    bad = _cli(workspace, "runs", "diff", a.name, b.name)
    assert bad.returncode == 2 and "preset.toml cannot be read" in bad.stderr and "train.lr" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    one = _cli(workspace, "runs", "diff", a.name)
    assert one.returncode == 2 and "two or more runs" in one.stderr
    shown = _cli(workspace, "runs", "show", a.name)
    assert "val_loss <= 2.5 at step 20" in shown.stdout
    assert json.loads((a.path / "status.json").read_text())["state"] == "finished"
