"""What live downstream evaluations cost: `pretrain tiny` with train.eval_tasks = ["choice"] every
200 steps against none, in one run of this script (the same machine state for both).

Both runs validate every 200 steps, so the difference is the multiple-choice evaluation alone
(the default budget, train.eval_budget_s). Reported per run: training tokens/s (steps only),
tokens per second of the whole loop, the seconds in live evaluation and their share of the loop's
time (target: at most 5%). Run: python tests/bench/live_eval.py [--steps 400] [--every 200]
(400 steps: two evaluations per run, which is what the share needs, and both runs end in about 20
minutes on the shared 2-core machine; `tiny`'s own 1,000 steps took over an hour there under load).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from core import config  # noqa: E402


class Quiet:
    def log(self, event: dict) -> None:
        pass

    def close(self) -> None:
        pass


def one(name: str, overrides: list[str], home: Path) -> dict:
    from core.stages import pretrain

    run_dir = home / name
    run_dir.mkdir()
    pretrain.run(config.load("tiny", overrides), run_dir, Quiet(), threading.Event())
    r = json.loads((run_dir / "report.json").read_text())
    loop_s = r["loop_s"]
    return {"run": name, "steps": r["steps"], "val_loss": round(r["val_loss"], 4),
            "train_tokens_per_s": r["tokens_per_s"],
            "loop_tokens_per_s": round(r["tokens"] / loop_s, 1), "loop_s": loop_s,
            "eval_s": r["eval_s"], "eval_share": r.get("eval_share")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--every", type=int, default=200)
    a = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-live-eval-"))
    os.environ["LLMLAB_HOME"] = str(home)
    base = [f"train.max_steps={a.steps}", f"train.eval_every={a.every}", "train.sample_every=0"]
    # the first run also builds the tokenizer and shards (setup is outside the loop's time)
    rows = [one("none", base, home),
            one("choice", base + ['train.eval_tasks=["choice"]'], home)]
    print(f"{'run':<8} {'steps':>6} {'val loss':>9} {'train tok/s':>12} {'loop tok/s':>11} {'eval s':>7} {'eval share':>11}")
    for r in rows:
        share = f"{100 * r['eval_share']:.2f}%" if r["eval_share"] is not None else "-"
        print(f"{r['run']:<8} {r['steps']:>6} {r['val_loss']:>9} {r['train_tokens_per_s']:>12} "
              f"{r['loop_tokens_per_s']:>11} {r['eval_s']:>7} {share:>11}")
    print(json.dumps({"bench": "live_eval", "steps": a.steps, "every": a.every,
                      "budget_s": config.load("tiny").train.eval_budget_s, "runs": rows}))


if __name__ == "__main__":
    main()
