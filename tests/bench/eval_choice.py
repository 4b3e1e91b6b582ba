"""Benchmark: the embedded multiple-choice set on a trained model against chance and an untrained twin.

    python tests/bench/eval_choice.py [MODEL] [--limit N] [--shots 0,3]

MODEL is anything `llmlab eval` accepts (a checkpoint, a run folder, run:PRESET:STAGE; default
run:tiny:pretrain in $LLMLAB_HOME). Scores acc and acc_norm (lm-evaluation-harness definitions) on
the test split of embedded:tinyworld-choice for each few-shot count, next to chance (0.25) and to a
randomly initialised model of the same architecture and tokenizer, plus throughput in questions
per second. Per question kind (activity, feeling, pronoun, thing) the acc is listed as well.
Prints a table and a last JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from core.checkpoint import load_model  # noqa: E402
from core.eval.choice import evaluate, load_task  # noqa: E402
from core.model.gpt import GPT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="run:tiny:pretrain")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--shots", default="0,3")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tok, meta = load_model(args.model)
    torch.manual_seed(0)
    untrained = GPT(model.config).eval()
    test = load_task("embedded:tinyworld-choice", "test", limit=args.limit)
    pool = load_task("embedded:tinyworld-choice", "train")
    rows = []
    for name, m in (("trained", model), ("untrained", untrained)):
        for k in (int(s) for s in args.shots.split(",")):
            t0 = time.perf_counter()
            r = evaluate(m, tok, test, num_fewshot=k, fewshot_pool=pool, batch_size=32)
            dt = time.perf_counter() - t0
            rows.append({"model": name, "shots": k, "acc": r["acc"], "acc_stderr": r["acc_stderr"],
                         "acc_norm": r["acc_norm"], "acc_norm_stderr": r["acc_norm_stderr"], "chance": r["chance"],
                         "n": r["n"], "questions_per_s": r["n"] / dt,
                         "by_kind": {kk: round(v["acc"], 3) for kk, v in r.get("by_kind", {}).items()}})
    print(f"model {meta['path']} (step {meta.get('step')}), {rows[0]['n']} test questions, chance {rows[0]['chance']:.2f}")
    print(f"{'model':<10} {'shots':>5} {'acc':>14} {'acc_norm':>14} {'q/s':>7}  by kind (acc)")
    for r in rows:
        print(f"{r['model']:<10} {r['shots']:>5} {r['acc']:>7.3f} ± {r['acc_stderr']:.3f} "
              f"{r['acc_norm']:>7.3f} ± {r['acc_norm_stderr']:.3f} {r['questions_per_s']:>7.1f}  {r['by_kind']}")
    print(json.dumps({"bench": "eval_choice", "model": meta["path"], "step": meta.get("step"), "rows": rows}))


if __name__ == "__main__":
    main()
