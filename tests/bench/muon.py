"""Benchmark: Muon against AdamW on the embedded default (`tiny`): steps and wall time to the
validation loss AdamW reaches at its last step, both runs in one process, one after the other.

    python tests/bench/muon.py [--steps 1000] [--eval-every 25] [--threads 2]

Each run is the real stage (core.stages.pretrain.fit) with the preset's own schedule, lr and data,
`train.optimizer` the only difference (`--steps` shortens both alike). Samples are off, the one
checkpoint is at the end; validation runs every `--eval-every` steps. Time is wall and CPU seconds from
the first training step (validation included alike). Prints a table and a last JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core import config  # noqa: E402
from core.stages import pretrain  # noqa: E402


class Events:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def log(self, event: dict) -> None:
        self.events.append({**event, "wall": time.perf_counter(), "cpu": time.process_time()})

    def close(self) -> None:
        pass


def run(optimizer: str, steps: int, eval_every: int, home: Path) -> list[tuple[int, float, float, float]]:
    """[(step, val_loss, wall seconds, CPU seconds since the first training step)] of one run (CPU
    seconds are what other work on a shared machine cannot stretch, with one thread)."""
    preset = config.load("tiny", [f"train.optimizer={optimizer}", f"train.max_steps={steps}",
                                  f"train.eval_every={eval_every}", "train.sample_every=0",
                                  f"train.checkpoint_every={steps}", "train.device=cpu"])
    log = Events()
    os.environ["LLMLAB_HOME"] = str(home)
    pretrain.fit(preset, home / f"run-{optimizer}", log, threading.Event())
    first = next(e for e in log.events if e["kind"] == "train")
    return [(e["step"], e["val_loss"], e["wall"] - first["wall"], e["cpu"] - first["cpu"])
            for e in log.events if e["kind"] == "val"]


def reach(curve: list[tuple[int, float, float, float]], target: float) -> tuple[int, float, float] | None:
    return next(((s, t, c) for s, v, t, c in curve if v <= target), None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        curves = {name: run(name, args.steps, args.eval_every, Path(tmp)) for name in ("adamw", "muon")}
    target = curves["adamw"][-1][1]
    print(f"tiny, {args.steps} steps, validation every {args.eval_every}; target = AdamW's last val_loss {target:.4f}")
    print(f"{'optimizer':<10} {'final val':>10} {'steps to target':>16} {'s to target':>12} {'cpu-s to target':>16} "
          f"{'total s':>9}")
    out: dict = {"bench": "muon", "steps": args.steps, "target_val_loss": target}
    for name, curve in curves.items():
        hit = reach(curve, target)
        print(f"{name:<10} {curve[-1][1]:>10.4f} {hit[0] if hit else '-':>16} "
              f"{f'{hit[1]:.1f}' if hit else '-':>12} {f'{hit[2]:.1f}' if hit else '-':>16} {curve[-1][2]:>9.1f}")
        out[name] = {"final_val_loss": curve[-1][1], "steps_to_target": hit[0] if hit else None,
                     "s_to_target": round(hit[1], 1) if hit else None,
                     "cpu_s_to_target": round(hit[2], 1) if hit else None, "total_s": round(curve[-1][2], 1)}
    a, m = out["adamw"], out["muon"]
    if m["steps_to_target"]:
        out["step_ratio"] = round(m["steps_to_target"] / a["steps_to_target"], 3)
        out["time_ratio"] = round(m["s_to_target"] / a["s_to_target"], 3)
        out["cpu_time_ratio"] = round(m["cpu_s_to_target"] / a["cpu_s_to_target"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
