"""Fault tests of pretraining against real processes: SIGKILL at random moments and during checkpoint
writes, corrupted checkpoints, a full disk, two writers of one run, and a diverging run.

Every run is a detached `core.runs.launch` process and every resume is `python -m core.cli pretrain
tiny --set ... --resume RUN --detach`, as a user types it. After each fault: the process is gone,
every committed checkpoint verifies against its manifest, and the resume starts from the newest
committed one; at the end the weights equal those of an uninterrupted run of the same preset.
LLMLAB_FAULT_KILLS sets the number of kills (3 by default; the full run uses 20).
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from core import checkpoint as ckpt_io
from core import config, runs
from core.errors import UserError

from faultkit import (stderr_of, FAULT_KILLS, alive, assert_same_weights, cli, committed_steps, events_size,
                      expected_resume, final_weights, kill, resume_detached, resumed_from, set_args,
                      time_window_s, tiny_overrides, tmp_checkpoints, verify_committed, wait_exit,
                      wait_for_checkpoint_write, wait_for_event, wait_for_train_step)

pytestmark = pytest.mark.fault

MAX_STEPS = max(24, 4 * FAULT_KILLS)  # room for every kill to land before the run ends
OVERRIDES = tiny_overrides(f"train.max_steps={MAX_STEPS}")
SEED = int(os.environ.get("LLMLAB_FAULT_SEED", "20240611"))


def launch(home: Path | None = None) -> runs.Handle:
    extra = {"LLMLAB_HOME": str(home)} if home else None
    return runs.launch("pretrain", config.load("tiny", OVERRIDES), root=(home / "runs") if home else None,
                       extra_env=extra)


def finish(run: runs.Run) -> subprocess.CompletedProcess:
    """`llmlab pretrain tiny --set ... --resume RUN` in the foreground, to the end."""
    r = cli("pretrain", "tiny", *set_args(OVERRIDES), "--resume", run.name, timeout_s=300)
    assert r.returncode == 0, f"final resume exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> SimpleNamespace:
    """An uninterrupted run of the same preset, in a workspace of its own."""
    home = tmp_path_factory.mktemp("reference")
    t0 = time.monotonic()
    h = launch(home)
    h.wait(timeout=300)
    st = h.run.status()
    assert st["state"] == "finished", (st, stderr_of(h.run))
    assert committed_steps(h.run.path)[-1] == MAX_STEPS
    return SimpleNamespace(run=h.run, weights=final_weights(h.run.path), wall_s=time.monotonic() - t0,
                           time_window_s=time_window_s(h.run, FAULT_KILLS))


def check_after_kill(run: runs.Run, pid: int) -> tuple[list[int], str | None]:
    assert not alive(pid)
    steps = verify_committed(run.path)  # a kill never leaves a committed checkpoint that fails to verify
    newest = f"step-{steps[-1]:08d}" if steps else None
    return steps, newest


def check_resumes(run: runs.Run, expected: list[tuple[str | None, str | None]]) -> None:
    """Each 'resumed from' names the newest committed checkpoint at that resume (or what `latest`
    named, when the kill fell between a commit and the pointer update)."""
    allowed = {name for pair in expected for name in pair if name}
    got = resumed_from(run)
    assert set(got) <= allowed, (got, expected)
    newest, by_pointer = expected[-1]
    if newest is not None:  # the final resume ran to the end, so it logged where it started
        assert got and got[-1] in (newest, by_pointer), (got, expected)


def test_sigkill_at_random_moments_then_resume_gives_the_same_weights(reference, workspace):
    rng = random.Random(SEED)
    h = launch()
    run, pid, proc = h.run, h.pid, h.process
    kills, where, expected = 0, [], []
    for i in range(FAULT_KILLS):
        offset = events_size(run) if i else 0
        # the first kills cover each kind of moment, the rest are drawn at random
        mode = ["setup", "step", "checkpoint", "time"][i] if i < 4 else rng.choice(["time", "step", "checkpoint"])
        done_before = committed_steps(run.path)
        if mode == "setup":  # while the tokenizer trains or the shards are written (a fresh workspace)
            landed = wait_for_event(run, lambda e: e.get("kind") == "progress", pid, offset)
            time.sleep(rng.uniform(0.0, 0.3))
            landed = landed and alive(pid)
        elif mode == "time":  # anywhere: interpreter start, tokenizer and shards (first run), training
            deadline = time.monotonic() + rng.uniform(0.0, reference.time_window_s)
            while time.monotonic() < deadline and alive(pid):
                time.sleep(0.005)
            landed = alive(pid)
        elif mode == "step":  # a few steps past the last checkpoint, part way into a step
            target = (done_before[-1] if done_before else 0) + rng.randint(1, 5)
            landed = wait_for_train_step(run, min(target, MAX_STEPS - 2), pid, offset)
            time.sleep(rng.uniform(0.0, 0.02))
        else:  # the moment a checkpoint write starts
            landed = wait_for_checkpoint_write(run.path, pid)
        if not landed:
            break  # the run finished before this kill
        kill(pid, proc)
        kills += 1
        steps, newest = check_after_kill(run, pid)
        where.append((mode, steps[-1] if steps else None, bool(tmp_checkpoints(run.path))))
        expected.append((newest, expected_resume(run.path)))
        pid, proc = resume_detached("pretrain", "tiny", OVERRIDES, run), None
    wait_exit(pid, 300)
    if run.status()["state"] != "finished":  # the last kill left it to resume once more
        expected.append((f"step-{committed_steps(run.path)[-1]:08d}" if committed_steps(run.path) else None,
                         expected_resume(run.path)))
        finish(run)
    st = run.status()
    assert st["state"] == "finished", (st, stderr_of(run))
    assert kills == FAULT_KILLS, f"only {kills} of {FAULT_KILLS} kills landed before the run ended: {where}"
    check_resumes(run, expected)
    assert json.loads((run.path / "report.json").read_text())["steps"] == MAX_STEPS
    assert committed_steps(run.path)[-1] == MAX_STEPS
    assert_same_weights(final_weights(run.path), reference.weights)
    print(f"kills (mode, last committed step, interrupted write): {where}")


def test_sigkill_during_checkpoint_writes(reference, workspace):
    """Kill as soon as a checkpoint's temporary folder appears, until at least one kill interrupted a
    write: the half-written folder is never taken for a checkpoint, and is cleaned up later."""
    h = launch()
    run, pid, proc = h.run, h.pid, h.process
    interrupted, attempts, expected = 0, 0, []
    while attempts < max(3, FAULT_KILLS) and (interrupted == 0 or attempts < FAULT_KILLS):
        if not wait_for_checkpoint_write(run.path, pid):
            break
        kill(pid, proc)
        attempts += 1
        left = tmp_checkpoints(run.path)
        interrupted += bool(left)
        steps, newest = check_after_kill(run, pid)
        for name in left:  # the interrupted step is not among the committed ones
            assert int(name.split("-")[2]) not in steps or (run.path / "checkpoints" / name.split("-", 1)[1]).exists()
        expected.append((newest, expected_resume(run.path)))
        pid, proc = resume_detached("pretrain", "tiny", OVERRIDES, run), None
    wait_exit(pid, 300)
    assert interrupted >= 1, f"no kill of {attempts} landed inside a checkpoint write"
    assert run.status()["state"] == "finished", (run.status(), stderr_of(run))
    check_resumes(run, expected)
    assert tmp_checkpoints(run.path) == [], "interrupted writes were not cleaned up"
    assert_same_weights(final_weights(run.path), reference.weights)


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:  # flip one byte in the middle: same size, different contents
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:])


@pytest.mark.parametrize("target,how", [("model.safetensors", "truncate"), ("trainer.pt", "flip")])
def test_corrupt_checkpoint_is_refused_and_resume_falls_back(reference, workspace, target, how):
    h = launch()
    assert wait_for_train_step(h.run, 9, h.pid)  # checkpoints of steps 6 and 8 are committed
    kill(h.pid, h.process)
    verify_committed(h.run.path)
    # the newest a resume considers: a kill between a commit and the pointer update leaves `latest`
    # one behind, and the resume starts from what `latest` names
    candidates = ckpt_io.resume_candidates(h.run.path)
    assert len(candidates) >= 2, candidates
    newest, previous = candidates[0], candidates[1].name
    _damage(newest / target, how)
    with pytest.raises(UserError, match="corrupt"):
        ckpt_io.verify(newest)
    if target == "model.safetensors":
        with pytest.raises(UserError, match=r"model\.safetensors.*corrupt"):
            ckpt_io.load_model(newest)
    finish(h.run)
    assert h.run.status()["state"] == "finished"
    messages = [e.get("message", "") for e in h.run.events() if e.get("kind") == "log"]
    assert any(m.startswith(f"skipping checkpoint {newest.name}") and target in m for m in messages), messages
    assert resumed_from(h.run)[-1] == previous
    assert_same_weights(final_weights(h.run.path), reference.weights)


@pytest.mark.parametrize("damage", ["COMMITTED truncated", "COMMITTED removed", "safetensors header garbage",
                                    "tokenizer file removed", "model.json not JSON"])
def test_every_kind_of_damage_is_refused_with_a_message(reference, tmp_path, damage):
    """In-process, on a copy of the reference run: each damage to the newest checkpoint is refused
    by the loader with a message naming the file, and resume picks the previous checkpoint."""
    from core.checkpoint import resume_candidates

    run_dir = tmp_path / "run"
    shutil.copytree(reference.run.path, run_dir)
    ck = run_dir / "checkpoints" / f"step-{MAX_STEPS:08d}"
    if damage == "COMMITTED truncated":
        _damage(ck / "COMMITTED", "truncate")
    elif damage == "COMMITTED removed":
        (ck / "COMMITTED").unlink()
    elif damage == "safetensors header garbage":
        data = (ck / "model.safetensors").read_bytes()
        (ck / "model.safetensors").write_bytes(b"\xff" * 16 + data[16:])
    elif damage == "tokenizer file removed":
        (ck / "tokenizer" / "tokenizer.tiktoken").unlink()
    else:
        (ck / "model.json").write_text("{not json")
    with pytest.raises(UserError) as e:
        ckpt_io.load_model(ck)
    assert str(ck) in str(e.value)
    candidates = resume_candidates(run_dir)
    usable = next(c for c in candidates if _verifies(c))
    assert usable.name == f"step-{MAX_STEPS - 2:08d}"


def test_a_kill_while_old_checkpoints_are_removed_leaves_no_broken_checkpoint(reference, tmp_path, monkeypatch):
    """Rotation deletes old checkpoints; a process killed half way through a deletion (found by the
    20-kill run: a 'committed' step folder with model.json gone) must leave only checkpoints that
    verify. The kill is simulated by a deletion that stops after one file."""
    run_dir = tmp_path / "run"
    shutil.copytree(reference.run.path, run_dir)
    root = run_dir / "checkpoints"
    newest = ckpt_io.committed_checkpoints(root)[-1]
    ckpt_io.write_text_atomic(root / "best", newest.name + "\n")
    real_rmtree = shutil.rmtree

    def killed_after_one_file(path, ignore_errors=False, onerror=None, **kw):
        path = Path(path)
        if path.exists():
            (path / "model.json").unlink()
            raise SystemExit("killed while deleting")

    monkeypatch.setattr(shutil, "rmtree", killed_after_one_file)
    with pytest.raises(SystemExit):
        ckpt_io.rotate(root, keep_last=1)
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    left = ckpt_io.committed_checkpoints(root)
    assert left and all(_verifies(c) for c in left), [(c.name, _verifies(c)) for c in left]
    assert newest in left


def _verifies(ck: Path) -> bool:
    try:
        ckpt_io.verify(ck)
        return True
    except UserError:
        return False


# ------------------------------------------------------------------------------------ full disk

def _can_mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount") or os.environ.get("LLMLAB_FAULT_NO_TMPFS"):
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True)
    return r.returncode == 0


@pytest.mark.parametrize("fails_at", ["model.safetensors", "trainer.pt"])
def test_full_disk_during_a_checkpoint_write(reference, tmp_path, monkeypatch, fails_at):
    """The workspace lives on a 4 MB tmpfs (as root; else the test uses RLIMIT_FSIZE, under which
    writes past the limit fail with EFBIG). A run commits checkpoints and is killed; the disk is then
    filled so that the next checkpoint cannot be written; the resumed run stops at that checkpoint
    with a clear error and state failed, the previous checkpoint stays committed, and after space is
    freed a resume finishes with the reference weights."""
    home = tmp_path / "disk"
    home.mkdir()
    tmpfs = _can_mount_tmpfs(home)
    if not tmpfs and fails_at == "model.safetensors":
        pytest.skip("a per-file size limit small enough to stop the weights would stop the event log too; "
                    "this case needs a tmpfs (root)")
    monkeypatch.setenv("LLMLAB_HOME", str(home))
    try:
        h = launch()
        assert wait_for_train_step(h.run, 9, h.pid)
        kill(h.pid, h.process)
        before = verify_committed(h.run.path)
        start = expected_resume(h.run.path)
        assert start is not None
        ballast = home / "ballast"
        if tmpfs:
            # what the kill left of a checkpoint write goes first (the resume would remove it, and
            # the space it freed would hold the checkpoint; other tests cover that removal)
            for n in tmp_checkpoints(h.run.path):
                shutil.rmtree(h.run.path / "checkpoints" / n)
            free = os.statvfs(home).f_bavail * os.statvfs(home).f_frsize
            # room (in 4 KB blocks) for the events and status of a few steps and, with 48 KB, for the
            # weights (35 KB) but not the trainer state (95 KB); with 24 KB for neither
            room = 24 * 1024 if fails_at == "model.safetensors" else 48 * 1024
            with open(ballast, "wb") as f:
                f.write(b"\0" * max(0, free - room))
            pid = resume_detached("pretrain", "tiny", OVERRIDES, h.run)
        else:
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))  # inherited by the resumed run
            try:
                pid = resume_detached("pretrain", "tiny", OVERRIDES, h.run)
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        wait_exit(pid, 300)
        st = h.run.status()
        assert st["state"] == "failed", (st, stderr_of(h.run))
        err = st.get("error") or ""
        step = int(start.split("-")[1]) + 2  # the resume's first checkpoint (`latest` may lag the newest)
        if tmpfs:
            assert f"disk full while writing the checkpoint of step {step}" in err, err
        else:
            assert f"the checkpoint of step {step}" in err and ("file size limit" in err or "File too large" in err), err
        assert f"step-{before[-1]:08d} stays the last committed checkpoint" in err, err
        assert verify_committed(h.run.path) == before  # nothing lost, nothing half-written committed
        assert tmp_checkpoints(h.run.path) == []
        ballast.unlink(missing_ok=True)
        finish(h.run)
        assert h.run.status()["state"] == "finished"
        assert_same_weights(final_weights(h.run.path), reference.weights)
        print(f"full disk simulated with {'a 4 MB tmpfs' if tmpfs else 'RLIMIT_FSIZE (EFBIG)'}")
    finally:
        if tmpfs:
            subprocess.run(["umount", "-l", str(home)], capture_output=True)


# ----------------------------------------------------------------------------------- two writers

def test_a_second_writer_of_a_run_is_refused(workspace):
    # a run long enough to outlive the checks; it is stopped (cooperatively) at the end
    long = tiny_overrides("train.max_steps=1000000", "train.checkpoint_every=50", "train.eval_every=50")
    h = runs.launch("pretrain", config.load("tiny", long))
    try:
        assert wait_for_train_step(h.run, 1, h.pid)
        before = h.run.raw_status()
        assert before["state"] == "running" and before["pid"] == h.pid
        # a second process executing the same run directory
        r = cli("_execute", str(h.run.path))
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
        assert "another process is writing this run" in r.stderr
        # the refused writer leaves the live run's status alone
        now = h.run.raw_status()
        assert now["state"] == "running" and now["pid"] == h.pid and not now.get("error"), now
        # --resume of a running run is refused before anything is touched
        r = cli("pretrain", "tiny", *set_args(long), "--resume", h.run.name, "--detach")
        assert r.returncode == 2 and "is still running" in r.stderr, (r.returncode, r.stderr)
        with pytest.raises(UserError, match="another process is writing this run"):
            runs.RunLock(h.run)
        assert h.run.raw_status()["pid"] == h.pid
        assert alive(h.pid), "the run ended during the checks: they prove nothing"
    finally:
        runs.stop(h.run)
        h.wait(timeout=300)
    assert h.run.status()["state"] == "stopped", stderr_of(h.run)
    verify_committed(h.run.path)  # the stop saved a checkpoint first
    assert committed_steps(h.run.path)


# ------------------------------------------------------------------------------- non-finite guard

DIVERGE = ["train.lr=100", "train.min_lr=1", "train.warmup_steps=20", "train.grad_clip=0"]


def test_a_diverging_run_fails_at_the_step_and_commits_no_nan(workspace):
    """lr 100 with clipping off diverges on the tiny model within a few steps (lr 10 with the default
    clipping does not): the non-finite guard stops the run at that step, before the optimizer step."""
    overrides = tiny_overrides("train.max_steps=40", *DIVERGE)
    r = cli("pretrain", "tiny", *set_args(overrides), timeout_s=300)
    assert r.returncode == 1, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    run = runs.latest_run("tiny", "pretrain", state=None)
    st = run.status()
    assert st["state"] == "failed"
    err = st["error"]
    assert err.startswith("non-finite "), err
    step = int(err.split(" at step ")[1].split()[0])
    train = [e for e in run.events() if e.get("kind") == "train"]
    assert train[-1]["step"] == step
    # the step's loss or norm, or (when its update made the weights non-finite) its validation
    assert not (math.isfinite(train[-1]["loss"]) and math.isfinite(train[-1]["grad_norm"])) \
        or err.startswith(f"non-finite validation loss at step {step}"), err
    assert all(math.isfinite(e["loss"]) and math.isfinite(e["grad_norm"]) for e in train[:-1])
    steps = verify_committed(run.path)
    assert steps and all(s < step for s in steps), (steps, step)  # some were committed before it diverged
    assert f"step-{steps[-1]:08d} is the last good checkpoint" in err
    for s in steps:
        ck = run.path / "checkpoints" / f"step-{s:08d}"
        for name, t in load_file(ck / "model.safetensors").items():
            assert torch.isfinite(t).all(), f"{ck.name}: {name} holds non-finite values"
        state = ckpt_io.load_trainer_state(ck)
        for group in state["optimizer"]["state"].values():
            for name, t in group.items():
                if isinstance(t, torch.Tensor):
                    assert torch.isfinite(t).all(), f"{ck.name}: optimizer {name} holds non-finite values"
