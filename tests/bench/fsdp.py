"""Benchmark: FSDP2 against DDP, two processes (gloo on CPU, NCCL on GPUs): step time and peak memory
of rank 0, the real stage (core.stages.pretrain.run with train.nproc = 2) for both, one after the other.

    python tests/bench/fsdp.py [--layers 4] [--width 512] [--steps 12] [--device cpu]

The tiny preset's data and tokenizer; the model widened so parameters and optimizer state dominate
memory. Figures come from the runs' own train events (the first window, with warm-up, dropped):
step_ms, and mem_bytes (peak RSS of rank 0 on CPU, peak allocated on a GPU). Table + last JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core import config  # noqa: E402
from core.runs import NullLogger  # noqa: E402
from core.stages import pretrain  # noqa: E402


def run(parallel: str, args: argparse.Namespace, home: Path) -> dict:
    preset = config.load("tiny", [f"train.parallel={parallel}", "train.nproc=2", f"train.device={args.device}",
                                  f"model.n_layer={args.layers}", f"model.n_embd={args.width}", "model.n_head=8",
                                  f"train.max_steps={args.steps}", "train.log_every=2", "train.sample_every=0",
                                  f"train.eval_every={10**6}", "train.eval_batches=1",
                                  f"train.checkpoint_every={10**6}", "train.micro_batch_size=4",
                                  "train.batch_tokens=2048"])
    run_dir = home / f"run-{parallel}"
    run_dir.mkdir(parents=True)
    pretrain.run(preset, run_dir, NullLogger(), threading.Event())
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    train = [e for e in events if e["kind"] == "train" and e["step"] > 2]
    return {"step_ms": sum(e["step_ms"] for e in train) / len(train), "mem_bytes": max(e["mem_bytes"] for e in train),
            "loss": train[-1]["loss"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LLMLAB_HOME"] = tmp
        res = {p: run(p, args, Path(tmp)) for p in ("ddp", "fsdp")}
    print(f"tiny data, {args.layers} x {args.width}, 2 processes on {args.device}, {args.steps} steps")
    print(f"{'parallel':<9} {'step ms':>9} {'rank-0 peak MiB':>16} {'last loss':>10}")
    for p, r in res.items():
        print(f"{p:<9} {r['step_ms']:>9.1f} {r['mem_bytes'] / 2**20:>16.0f} {r['loss']:>10.4f}")
    print(json.dumps({"bench": "fsdp", "device": args.device, "layers": args.layers, "width": args.width,
                      **res,
                      "fsdp_vs_ddp_step": res["fsdp"]["step_ms"] / res["ddp"]["step_ms"],
                      "fsdp_vs_ddp_mem": res["fsdp"]["mem_bytes"] / res["ddp"]["mem_bytes"]}))


if __name__ == "__main__":
    main()
