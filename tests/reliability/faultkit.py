"""Shared tools of the reliability tests: tiny presets, real detached runs, kills and weight comparison.

Runs are driven the way users drive them: `core.runs.launch` starts a detached `_execute` process,
`python -m core.cli pretrain PRESET --set ... --resume RUN --detach` continues one. Counts come from
the environment so CI runs a reduced set and the full run raises them (see README_SECTION.md):

    LLMLAB_FAULT_KILLS     SIGKILLs per kill/resume test (default 3; the full run uses 20)
    LLMLAB_FUZZ_EXAMPLES   hypothesis examples per fuzz test (default 100; the full run uses 2000)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from core import config, runs

REPO = Path(__file__).resolve().parents[2]
FAULT_KILLS = int(os.environ.get("LLMLAB_FAULT_KILLS", "3"))
FUZZ_EXAMPLES = int(os.environ.get("LLMLAB_FUZZ_EXAMPLES", "100"))

# A model of a few thousand parameters on a 50 KB synthetic corpus with a 300-id BPE: a run of
# 24 steps with a checkpoint every 2 takes a few seconds, most of it the interpreter starting.
TINY = [
    "data.synthetic_mb=0.05", "data.workers=1",
    "tokenizer.vocab_size=300",
    "model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.context_length=16",
    "train.micro_batch_size=4", "train.lr=3e-3", "train.min_lr=3e-4", "train.warmup_steps=2",
    "train.max_steps=24", "train.log_every=1", "train.eval_every=4", "train.eval_batches=1",
    "train.checkpoint_every=2", "train.sample_every=0", "train.keep_last=2", "train.device=cpu",
    # pinned so that a change of the tiny preset cannot make these runs slow or inexact
    "train.batch_tokens=0", "train.dtype=float32", "train.compile=false", "model.dropout=0.0",
    "model.init_from=\"\"",
]


def tiny_overrides(*extra: str) -> list[str]:
    return TINY + list(extra)


def tiny_preset(*extra: str, name: str = "tiny") -> config.Preset:
    return config.load(name, tiny_overrides(*extra))


def child_env() -> dict[str, str]:
    """The environment of a launched run: one thread, offline hub, the repository importable."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""))
    return env


def alive(pid: int) -> bool:
    return runs.process_alive(pid)


def wait_exit(pid: int, timeout_s: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until a run's process is gone (reaped by us when it is our child, else by init)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return
        if proc is None and not alive(pid):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still running after {timeout_s}s")


def kill(pid: int, proc: subprocess.Popen | None = None) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_exit(pid, 30, proc)


def cli(*args: str, timeout_s: float = 180.0, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m core.cli ARGS` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True,
                          timeout=timeout_s, env=env or child_env(), cwd=REPO)


def set_args(overrides: list[str]) -> list[str]:
    out = []
    for o in overrides:
        out += ["--set", o]
    return out


def resume_detached(stage: str, preset_name: str, overrides: list[str], run: runs.Run) -> int:
    """`llmlab STAGE PRESET --set ... --resume RUN --detach`; returns the pid of the resumed run."""
    r = cli(stage, preset_name, *set_args(overrides), "--resume", run.name, "--detach")
    assert r.returncode == 0, f"--resume failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    pid = run.raw_status().get("pid")
    assert isinstance(pid, int), run.raw_status()
    return pid


def committed_steps(run_dir: Path) -> list[int]:
    ck = Path(run_dir) / "checkpoints"
    if not ck.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in ck.glob("step-*") if (p / "COMMITTED").is_file())


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The weights of a run's newest committed checkpoint."""
    steps = committed_steps(run_dir)
    assert steps, f"{run_dir}: no committed checkpoint"
    return load_file(Path(run_dir) / "checkpoints" / f"step-{steps[-1]:08d}" / "model.safetensors")


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> float:
    """Equal tensor names and values within `atol`; returns the largest absolute difference."""
    assert sorted(a) == sorted(b)
    worst = 0.0
    for k in a:
        assert a[k].shape == b[k].shape, k
        worst = max(worst, (a[k].float() - b[k].float()).abs().max().item())
    assert worst <= atol, f"weights differ by up to {worst}"
    return worst


def resumed_from(run: runs.Run) -> list[str]:
    """The checkpoint names of every 'resumed from step-...' log line, in order."""
    out = []
    for ev in run.events():
        msg = ev.get("message", "") if ev.get("kind") == "log" else ""
        if msg.startswith("resumed from "):
            out.append(msg.split()[2])
    return out


def events_size(run: runs.Run) -> int:
    try:
        return run.events_path.stat().st_size
    except FileNotFoundError:
        return 0


def stderr_of(run: runs.Run) -> str:
    """The tail of a launched run's stderr.log, for an assertion's message."""
    p = run.path / "stderr.log"
    return p.read_text(errors="replace")[-3000:] if p.exists() else ""


def wait_for_event(run: runs.Run, pred, pid: int, offset: int = 0, timeout_s: float = 120.0) -> bool:
    """Wait until an event for which `pred(event)` holds is logged after byte `offset` of the
    events; False when the process ended first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events, offset = runs.read_events(run.events_path, offset)
        if any(pred(e) for e in events):
            return True
        if not alive(pid):
            return False
        time.sleep(0.003)
    raise AssertionError(f"{run.name}: the awaited event did not come in {timeout_s}s")


def wait_for_train_step(run: runs.Run, step: int, pid: int, offset: int = 0, timeout_s: float = 120.0) -> bool:
    """Wait until a train event of `step` or later is logged after byte `offset` of the events."""
    return wait_for_event(run, lambda e: e.get("kind") == "train" and e.get("step", 0) >= step, pid, offset, timeout_s)


def tmp_checkpoints(run_dir: Path) -> list[str]:
    """Folders of checkpoint writes in progress (or interrupted): .tmp-step-NNNNNNNN-PID."""
    try:
        return [n for n in os.listdir(Path(run_dir) / "checkpoints") if n.startswith(".tmp-")]
    except FileNotFoundError:
        return []


def wait_for_checkpoint_write(run_dir: Path, pid: int, timeout_s: float = 120.0) -> bool:
    """Spin until a checkpoint write is in progress (its temporary folder exists); False when the
    process ended first. Polls as fast as it can: a tiny checkpoint is written in milliseconds."""
    ck = Path(run_dir) / "checkpoints"
    deadline = time.monotonic() + timeout_s
    n = 0
    while time.monotonic() < deadline:
        try:
            if any(name.startswith(".tmp-") for name in os.listdir(ck)):
                return True
        except FileNotFoundError:
            pass
        n += 1
        if n % 200 == 0 and not alive(pid):
            return False
    raise AssertionError(f"{run_dir}: no checkpoint write seen in {timeout_s}s")


def verify_committed(run_dir: Path) -> list[int]:
    """Every committed checkpoint of the run verifies against its manifest (sizes and sha256)."""
    from core import checkpoint as ckpt_io

    steps = committed_steps(run_dir)
    for s in steps:
        ckpt_io.verify(Path(run_dir) / "checkpoints" / f"step-{s:08d}")
    return steps


def expected_resume(run_dir: Path) -> str | None:
    """The checkpoint a resume should start from: the newest committed one `latest` does not
    predate (a kill between the commit and the pointer update leaves `latest` one behind)."""
    from core import checkpoint as ckpt_io

    found = ckpt_io.resume_candidates(run_dir)
    return found[0].name if found else None


def time_window_s(run: runs.Run, kills: int) -> float:
    """How long after a start a 'random time' kill may come: the interpreter start and setup, plus a
    share of the training time that leaves room for all `kills` before the run ends."""
    st = run.raw_status()
    startup = st["started"] - st["created"]
    training = st["ended"] - st["started"]
    return startup + training * min(1.0, 2.0 / max(1, kills))
