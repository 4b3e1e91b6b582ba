"""Forking a run at a step (core.fork): the fork continues the parent exactly when nothing changed,
starts the optimizer afresh when the batch changed, records its parent, and bad forks exit 2."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from train_helpers import TINY, ListLog, tiny_preset

from core import config, runs
from core.fork import parent_events, plan_fork
from core.stages import pretrain


def _run(preset: config.Preset) -> tuple[runs.Run, ListLog]:
    run = runs.create_run(preset.name, "pretrain", config.dump(preset))
    log = ListLog()
    pretrain.run(preset, run.path, runs.EventLog(run.events_path, echo=log), threading.Event())
    run.write_status(state="finished")
    return run, log


def _tree_hash(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(path).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def parent(workspace):
    return _run(tiny_preset())


def _losses(log: ListLog, after: int) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in log.kind("train") if e["step"] > after}


def test_an_unchanged_fork_continues_the_parent_exactly_and_records_it(parent):
    run, log = parent
    fork, flog = _run(tiny_preset(f"train.fork_from={run.name}@8"))
    assert _losses(flog, 8) == pytest.approx(_losses(log, 8), abs=1e-6)
    assert min(e["step"] for e in flog.kind("train")) == 9
    st = fork.raw_status()
    assert (st["parent"], st["fork_step"]) == (run.name, 8)
    note = next(e for e in flog.events if "fork" in e)
    assert note["fork"]["optimizer"] == "kept" and note["fork"]["data"] == "kept"
    meta = json.loads((fork.path / "checkpoints" / "step-00000012" / "model.json").read_text())
    assert meta["lineage"]["fork"] == {"parent": run.name, "step": 8}
    parent_s = next(e["train_s"] for e in log.kind("train") if e["step"] == 8)
    assert min(e["train_s"] for e in flog.kind("train")) > parent_s  # training time continues the parent's
    before = parent_events(fork)
    assert {e["step"] for e in before if e["kind"] == "train"} == set(range(1, 9))
    assert all(e["parent"] == run.name for e in before)


def test_a_new_batch_size_starts_the_optimizer_afresh(parent):
    run, log = parent
    preset = tiny_preset(f"train.fork_from={run.name}", "train.micro_batch_size=2", "train.lr=1e-3")
    plan = plan_fork(preset, "pretrain")
    assert plan.step == 12 and not plan.keep_optimizer and plan.keep_data
    assert set(plan.changed) == {"train.micro_batch_size", "train.lr"}
    keep = plan_fork(tiny_preset(f"train.fork_from={run.name}", "train.lr=1e-3", "train.max_steps=16"), "pretrain")
    assert keep.keep_optimizer
    fork, flog = _run(tiny_preset(f"train.fork_from={run.name}", "train.micro_batch_size=2", "train.max_steps=16"))
    note = next(e for e in flog.events if "fork" in e)
    assert note["fork"]["optimizer"] == "fresh"
    assert [e["step"] for e in flog.kind("train")][-1] == 16


def _cli(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMLAB_HOME": str(workspace)}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=120)


def test_bad_forks_exit_2_with_the_reason_and_leave_the_parent_untouched(parent, workspace):
    run, _ = parent
    sets = [a for s in TINY for a in ("--set", s)]
    before = _tree_hash(run.path)
    cases = {f"{run.name}@4": "no committed checkpoint at step 4 (rotated away",
             f"{run.name}@x": "expected RUN or RUN@STEP",
             "nosuchrun": "no such run"}
    for spec, reason in cases.items():
        done = _cli(workspace, "pretrain", "tiny", *sets, "--fork", spec, "--detach")
        assert done.returncode == 2 and reason in done.stderr, (spec, done.stderr)
    arch = _cli(workspace, "pretrain", "tiny", *sets, "--set", "model.n_layer=3", "--fork", run.name, "--detach")
    assert arch.returncode == 2 and "model.n_layer is 2 in the parent, 3 here" in arch.stderr
    (run.path / "preset.toml").write_text("[train\nlr = ")
    corrupt = _cli(workspace, "pretrain", "tiny", *sets, "--fork", run.name, "--detach")
    assert corrupt.returncode == 2 and "preset.toml" in corrupt.stderr and "\n" not in corrupt.stderr.strip()[:20]
    (run.path / "preset.toml").unlink()
    assert len(runs.list_runs()) == 1
    empty = runs.create_run("tiny", "pretrain", "")
    none = _cli(workspace, "pretrain", "tiny", *sets, "--fork", empty.name, "--detach")
    assert none.returncode == 2 and "has no committed checkpoint to fork from" in none.stderr


def test_the_lineage_shows_the_branch(parent):
    from core.eval.report import lineage
    from tui.widgets.lineage import chain_text, lineage_chain

    run, _ = parent
    fork, _ = _run(tiny_preset(f"train.fork_from={run.name}@8"))
    chain = lineage(str(fork.path))
    assert [c.name for c, _ in chain] == ["step-00000012", "step-00000008"]
    assert chain[1][0].parent.parent == run.path
    text = chain_text(lineage_chain(str(fork.path)))
    assert "pretrain fork at step 8" in text and run.name in text
