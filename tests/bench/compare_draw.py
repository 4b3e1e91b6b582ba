"""How long the Compare screen takes to show 20 runs of 1,000 logged steps each (target < 1 s).

Writes 20 run folders (a train event per step, a validation every 50) and measures, in one run of
this script: reading them through core.compare_runs (summaries and every metric's points), the
plotext drawing of the overlaid chart, and the whole screen from opening to drawn in a headless
Textual app at 160x48. Run: python tests/bench/compare_draw.py [--runs 20] [--steps 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core import compare_runs as cmp, config, runs  # noqa: E402


def write_runs(root: Path, n: int, steps: int) -> list[Path]:
    toml = config.dump(config.load("tiny"))
    out = []
    for i in range(n):
        run = runs.create_run(f"bench{i:02d}", "pretrain", toml.replace("lr = 0.001", f"lr = {0.001 * (1 + i / 10):g}"),
                              root=root)
        lines = []
        for s in range(1, steps + 1):
            loss = 0.5 + 6 * math.exp(-s / (150 + 10 * i))
            lines.append(json.dumps({"t": s, "kind": "train", "step": s, "loss": loss, "lr": 1e-3, "grad_norm": 1.0,
                                     "tokens": 4096 * s, "tokens_per_s": 1e4, "step_ms": 40.0, "train_s": 0.04 * s}))
            if s % 50 == 0:
                lines.append(json.dumps({"t": s, "kind": "val", "step": s, "val_loss": loss + 0.05, "val_ppl": 2.0}))
        run.events_path.write_text("\n".join(lines) + "\n")
        run.write_status(state="finished")
        out.append(run.path)
    return out


async def screen_time(paths: list[Path]) -> float:
    from textual.app import App

    from tui.screens.compare import CompareScreen

    class Host(App[None]):
        pass

    app = Host()
    async with app.run_test(size=(160, 48)) as pilot:
        t0 = time.perf_counter()
        screen = CompareScreen(paths)
        await app.push_screen(screen)
        while not screen.sums:
            await pilot.pause(0.005)
        await pilot.pause()  # the frame after the data arrived: the chart is drawn
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=1000)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    os.environ["LLMLAB_HOME"] = str(root)
    paths = write_runs(root / "runs", a.runs, a.steps)
    t0, c0 = time.perf_counter(), time.process_time()
    sums = [cmp.summarize(runs.Run(p)) for p in paths]
    pts = {s.name: s.points for s in sums}
    read_s, read_cpu = time.perf_counter() - t0, time.process_time() - c0

    import plotext

    from tui.widgets.compare_chart import thin
    t1, c1 = time.perf_counter(), time.process_time()
    plotext.clear_figure()
    plotext.plotsize(160, 30)
    for name, m in pts.items():
        xs, ys = thin(*cmp.xy(m["loss"], "step"))
        plotext.plot(xs, ys, label=name, marker="braille")
    plotext.build()
    draw_s, draw_cpu = time.perf_counter() - t1, time.process_time() - c1
    c2 = time.process_time()
    total_s = asyncio.run(screen_time(paths))
    total_cpu = time.process_time() - c2  # the app's own start-up included
    # wall time on a shared machine is the machine's load as much as ours: CPU seconds beside it
    print(f"{'what':<34} {'wall s':>8} {'CPU s':>8}")
    print(f"{'read 20 runs (core.compare_runs)':<34} {read_s:>8.3f} {read_cpu:>8.3f}")
    print(f"{'draw 20 curves (plotext, thinned)':<34} {draw_s:>8.3f} {draw_cpu:>8.3f}")
    print(f"{'Compare screen, open to drawn':<34} {total_s:>8.3f} {total_cpu:>8.3f}")
    print(json.dumps({"bench": "compare_draw", "runs": a.runs, "steps": a.steps, "read_s": round(read_s, 3),
                      "read_cpu_s": round(read_cpu, 3), "draw_s": round(draw_s, 3), "draw_cpu_s": round(draw_cpu, 3),
                      "screen_s": round(total_s, 3), "screen_cpu_s": round(total_cpu, 3), "target_s": 1.0,
                      "summaries": len(sums)}))


if __name__ == "__main__":
    main()
