"""Benchmark: the embedded finetuning chain after `llmlab pretrain tiny`, against the issue's targets.

    LLMLAB_HOME=DIR python tests/bench/finetune_chain.py [--only tiny-sft] [--set train.epochs=1 ...]

Runs `llmlab finetune tiny-classify`, `tiny-sft` and `tiny-dpo` in turn (each a real detached run,
as a user starts it; DPO starts from the SFT run just made) in the workspace that holds a finished
tiny pretrain run, then reads each run's report.json. Targets (issue 7), each within 10 minutes on
a 2-core CPU: classification test accuracy >= 0.9; instruction exact match on held-out
instructions >= 0.5 where the pretrained model scores almost none; DPO reward accuracy on
held-out pairs >= 0.7. Prints a table and a last JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CHAIN = ("tiny-classify", "tiny-sft", "tiny-dpo")


def run_one(name: str, overrides: list[str]) -> dict:
    from core import config, runs

    preset = config.load(name, overrides)
    t0 = time.time()
    handle = runs.launch("finetune", preset)
    rc = handle.wait()
    wall = time.time() - t0
    report_path = handle.run.path / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return {"preset": name, "rc": rc, "state": handle.run.state, "wall_s": round(wall, 1), "run": handle.run.name,
            "report": report}


def headline(r: dict) -> tuple[str, float | None, str, float | None, bool | None]:
    rep, test, base = r["report"], r["report"].get("test", {}), r["report"].get("baseline") or {}
    if r["preset"] == "tiny-classify":
        v = test.get("accuracy")
        return "test accuracy", v, "", None, v is not None and v >= 0.9
    if r["preset"] == "tiny-sft":
        v = test.get("exact_match")
        return "exact match", v, "pretrained", base.get("exact_match"), v is not None and v >= 0.5
    v = test.get("reward_accuracy")
    return "reward accuracy", v, "sft logp acc", base.get("logp_accuracy"), v is not None and v >= 0.7


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    results = []
    for name in args.only or CHAIN:
        r = run_one(name, args.set)
        results.append(r)
        print(f"{name}: {r['state']} in {r['wall_s']}s ({r['run']})", flush=True)
    print(f"\n{'preset':<15}{'state':<10}{'wall s':>8}{'train s':>9}  {'metric':<16}{'value':>7}  {'before':<13}{'value':>7}  target")
    rows = []
    for r in results:
        metric, v, bname, b, ok = headline(r)
        fmt = lambda x: f"{x:.3f}" if isinstance(x, float) else "-"  # noqa: E731
        print(f"{r['preset']:<15}{r['state']:<10}{r['wall_s']:>8}{r['report'].get('train_s', 0):>9}  {metric:<16}"
              f"{fmt(v):>7}  {bname:<13}{fmt(b):>7}  {'met' if ok else 'MISSED'}")
        rows.append({"preset": r["preset"], "state": r["state"], "wall_s": r["wall_s"], "metric": metric, "value": v,
                     "before": b, "target_met": ok, "steps": r["report"].get("steps")})
        if r["preset"] == "tiny-dpo":  # the policy's own log-prob preference after DPO, beside the SFT model's
            rows[-1]["logp_accuracy_after"] = r["report"].get("test", {}).get("logp_accuracy")
            print(f"{'':<15}{'':<10}{'':>8}{'':>9}  {'logp acc after':<16}{fmt(rows[-1]['logp_accuracy_after']):>7}")
    print(json.dumps({"bench": "finetune_chain", "results": rows}))


if __name__ == "__main__":
    main()
