"""The model card's data: a model followed along its lineage, with every evaluation of it.

Every evaluation run writes `report.json` (the scores of each task with its settings, the model it
measured, hardware, wall time). `model_card(spec)` starts at a checkpoint and walks back through
the `lineage.base` of each checkpoint's model.json (finetuning -> pretraining), collecting for every
stage its preset, data, tokens seen, wall time, hardware, final losses, loss curves and samples, and
every evaluation whose report names one of those checkpoints: data only; core.eval.render draws it.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import socket
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.runs import REPORT, json_safe, read_report, write_report  # noqa: F401 (re-exported)

MAX_CURVE_POINTS = 400


# ------------------------------------------------------------------------------- report.json

def hardware(device: Any = "cpu") -> dict:
    """Where a run ran: host, OS, Python, torch, and the accelerator's name."""
    info: dict[str, Any] = {"host": socket.gethostname(), "platform": platform.platform(terse=True),
                            "python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch"] = torch.__version__
        dev = torch.device(device)
        info["device"] = str(dev)
        if dev.type == "cuda" and torch.cuda.is_available():
            info["device_name"] = torch.cuda.get_device_name(dev)
            info["device_count"] = torch.cuda.device_count()
        elif dev.type == "cpu":
            info["device_name"] = platform.processor() or platform.machine()
    except ImportError:  # pragma: no cover - core always has torch
        pass
    return info


# ---------------------------------------------------------------------------------- lineage

def _meta(ckpt: Path) -> dict:
    from core.checkpoint import verify

    return verify(ckpt, hashes=False)


def _run_of(ckpt: Path) -> Path | None:
    """The run folder holding a checkpoint (runs/<run>/checkpoints/step-N), if it is one."""
    run = ckpt.parent.parent
    return run if ckpt.parent.name == "checkpoints" and (run / "status.json").exists() else None


def _base_of(meta: dict) -> str | None:
    lin = meta.get("lineage") or {}
    fork = lin.get("fork")
    if isinstance(fork, dict) and isinstance(fork.get("parent"), str) and isinstance(fork.get("step"), int):
        from core.lookup import step_name
        from core.runs import runs_root

        return str(runs_root() / fork["parent"] / "checkpoints" / step_name(fork["step"]))  # the branch point
    for key in ("base", "init"):
        v = lin.get(key)
        if v and v not in ("random", "scratch") and not str(v).startswith("gpt2"):
            return str(v)
    return None


def lineage(spec: str | Path, root: Path | None = None) -> list[tuple[Path, dict]]:
    """(checkpoint, model.json) from the model named by spec back to its first ancestor found, newest first."""
    from core.lookup import resolve_checkpoint

    out: list[tuple[Path, dict]] = []
    seen: set[str] = set()
    ckpt: Path | None = resolve_checkpoint(spec, root=root)
    while ckpt is not None and str(ckpt.resolve()) not in seen:
        seen.add(str(ckpt.resolve()))
        meta = _meta(ckpt)
        out.append((ckpt, meta))
        base = _base_of(meta)
        if base is None:
            break
        try:
            ckpt = resolve_checkpoint(base, root=root)
        except UserError:
            out.append((Path(base), {"missing": True, "lineage": {}}))  # moved or deleted: say so, stop there
            break
    return out


def _thin(points: list[list[float]], n: int = MAX_CURVE_POINTS) -> list[list[float]]:
    if len(points) <= n:
        return points
    step = len(points) / n
    return [points[int(i * step)] for i in range(n - 1)] + [points[-1]]


def stage_summary(ckpt: Path, meta: dict) -> dict:
    """One lineage stage: what the checkpoint is, and what its run did (when it came from a run)."""
    from core.runs import Run

    s: dict[str, Any] = {"checkpoint": str(ckpt), "step": meta.get("step"),
                         "stage": (meta.get("lineage") or {}).get("stage"),
                         "lineage": meta.get("lineage") or {}, "missing": bool(meta.get("missing"))}
    if meta.get("architecture"):
        s["architecture"] = meta["architecture"]
        s["tokenizer"] = meta.get("tokenizer")
        s["head"] = meta.get("head")
    run_dir = _run_of(ckpt) if not s["missing"] else None
    if run_dir is None:
        return s
    run = Run(run_dir)
    st = run.raw_status()
    s.update(run=run.name, run_path=str(run_dir), stage=st.get("stage") or s["stage"], preset_name=st.get("preset"),
             state=st.get("state"), started=st.get("started"), ended=st.get("ended"), host=st.get("host"))
    if st.get("started") and st.get("ended"):
        s["wall_s"] = round(st["ended"] - st["started"], 2)
    try:
        from core import config

        preset = config.load(str(run.preset_path))
        s["preset"] = config.to_dict(preset)
    except (UserError, OSError):
        s["preset"] = None
    events = run.events()
    train = [e for e in events if e.get("kind") == "train" and isinstance(e.get("loss"), (int, float))]
    val = [e for e in events if e.get("kind") == "val" and isinstance(e.get("val_loss"), (int, float))]
    s["curves"] = {"train": _thin([[e["step"], e["loss"]] for e in train]),
                   "val": _thin([[e["step"], e["val_loss"]] for e in val])}
    s["final_train_loss"] = train[-1]["loss"] if train else None
    s["final_val_loss"] = val[-1]["val_loss"] if val else None
    s["tokens_seen"] = next((e["tokens"] for e in reversed(train) if e.get("tokens")), None)
    s["samples"] = [{"step": e.get("step"), "prompt": e.get("prompt"), "text": e.get("text")}
                    for e in events if e.get("kind") == "sample"][-3:]
    tests = [e for e in events if e.get("kind") == "test"]
    if tests:
        s["held_out"] = {k: v for k, v in tests[-1].items() if k not in ("t", "kind")}
    report = read_report(run_dir) or {}
    s["report"] = report
    s["tokens_seen"] = report.get("tokens") or s["tokens_seen"]
    s["best_val_loss"] = report.get("best_val_loss")
    hw = report.get("hardware")
    if not hw:
        # the training loop says where it trains in a log line ("training N steps on cpu (float32, ...)")
        msg = next((e.get("message", "") for e in events if e.get("kind") == "log"
                    and re.match(r"training \d+ steps on ", str(e.get("message", "")))), "")
        m = re.match(r"training \d+ steps on (\S+) \((\w+)", msg)
        hw = {"host": st.get("host"), **({"device": m.group(1), "dtype": m.group(2)} if m else {})}
    s["hardware"] = hw
    return s


def evaluations(checkpoints: list[Path], root: Path | None = None) -> list[dict]:
    """Reports of finished or stopped eval runs that measured one of these checkpoints, oldest first."""
    from core.runs import list_runs

    wanted = {str(Path(c).resolve()) for c in checkpoints}
    out = []
    for run in reversed(list_runs(root)):
        if run.stage != "eval":
            continue
        rep = read_report(run.path)
        ck = ((rep or {}).get("model") or {}).get("checkpoint")
        if rep and ck and str(Path(ck).resolve()) in wanted:
            out.append({"run": run.name, "state": run.raw_status().get("state"), **rep})
    return out


def model_card(spec: str | Path, root: Path | None = None) -> dict:
    """Everything known about a model: its stages oldest first, each with its evaluations."""
    chain = lineage(spec, root)
    stages = [stage_summary(ck, meta) for ck, meta in reversed(chain)]
    evals = evaluations([ck for ck, meta in chain if not meta.get("missing")], root)
    for st in stages:
        here = str(Path(st["checkpoint"]).resolve())
        st["evaluations"] = [e for e in evals if str(Path(e["model"]["checkpoint"]).resolve()) == here]
    head_ckpt, head_meta = chain[0]
    return json_safe({"model": str(spec), "checkpoint": str(head_ckpt), "architecture": head_meta.get("architecture"),
                   "tokenizer": head_meta.get("tokenizer"), "head": head_meta.get("head"),
                   "lineage": stages, "evaluations": evals,
                   "generated": datetime.datetime.now().isoformat(timespec="seconds")})
