"""Benchmark: training tokens/s with the workbench attached against headless, in one run.

One pretraining run of the tiny preset (its own process, as always) alternates phases: nobody
watching, then a workbench (a headless Textual app, the real one, on the Pretrain screen,
following the run's events and drawing the chart) attached, and so on. Tokens/s is the median of
the run's own `tokens_per_s` events inside each phase (the first seconds of a phase skipped).
Target: attached at most 3% slower. Prints a table and a last JSON line.

    python tests/bench/tui_overhead.py [--phase-s 20] [--cycles 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))


def wait_first_train(run, timeout: float = 600) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if any(e.get("kind") == "train" for e in run.events()):
            return
        if run.state not in ("running", "created"):
            raise SystemExit(f"run ended early: {run.status()}")
        time.sleep(0.5)
    raise SystemExit("no training step in time")


async def attached(seconds: float, runs_root: Path) -> int:
    from tui.app import make_app
    from tui.widgets.loss_chart import LossChart

    app = make_app(runs_root=runs_root, mode="pretrain")
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.sleep(seconds)
        return len(app.screen.query_one(LossChart).train)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase-s", type=float, default=20.0)
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--skip-s", type=float, default=3.0)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="llmlab-bench-"))
    os.environ["LLMLAB_HOME"] = str(home)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cache = ROOT.parent / "shared" / "tiktoken-cache"
    if cache.is_dir():
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
    from core import config
    from core import runs as core_runs

    preset = config.load("tiny", ["data.synthetic_mb=1.0", "train.max_steps=100000", "train.log_every=1", "train.micro_batch_size=8",
                                  "train.eval_every=100000", "train.sample_every=0", "train.checkpoint_every=100000"])
    handle = core_runs.launch("pretrain", preset, root=home / "runs")
    run = handle.run
    phases: list[tuple[str, float, float, int]] = []
    try:
        wait_first_train(run)
        for _ in range(args.cycles):
            t0 = time.time()
            time.sleep(args.phase_s)
            phases.append(("headless", t0, time.time(), 0))
            t0 = time.time()
            points = asyncio.run(attached(args.phase_s, home / "runs"))
            phases.append(("attached", t0, time.time(), points))
    finally:
        core_runs.stop(run)
        handle.wait(60)

    events = [e for e in run.events() if e.get("kind") == "train" and e.get("tokens_per_s")]
    rows = []
    for name, a, b, points in phases:
        rates = [e["tokens_per_s"] for e in events if a + args.skip_s <= e["t"] <= b]
        rows.append((name, a, b, points, statistics.median(rates) if rates else float("nan"), len(rates)))
    by = {k: statistics.median([r[4] for r in rows if r[0] == k]) for k in ("headless", "attached")}
    slowdown = 1 - by["attached"] / by["headless"]

    print(f"{'phase':<10} {'seconds':>8} {'steps logged':>13} {'chart points':>13} {'tokens/s (median)':>18}")
    for name, a, b, points, rate, n in rows:
        print(f"{name:<10} {b - a:>8.1f} {n:>13} {points if name == 'attached' else '-':>13} {rate:>18,.0f}")
    print(f"attached vs headless: {by['attached']:,.0f} vs {by['headless']:,.0f} tokens/s = {slowdown:+.1%} slower "
          f"(target <= 3%); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(json.dumps({"bench": "tui_overhead", "headless_tokens_per_s": round(by["headless"], 1),
                      "attached_tokens_per_s": round(by["attached"], 1), "slowdown": round(slowdown, 4),
                      "target": 0.03, "met": slowdown <= 0.03, "phase_s": args.phase_s, "cycles": args.cycles,
                      "loadavg": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
