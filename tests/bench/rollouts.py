"""RL rollouts on CPU: G sampled completions of one prompt as one batch vs one by one.

The tiny preset's architecture (random weights): G = 8 completions of 64 tokens after a 48-token
prompt, sampled at temperature 1 with no stop id, so both ways produce the same number of tokens.
Batched is core.generate.generate_group (the prompt prefilled once, its KV cache shared by the G
rows); one by one is core.generate.generate called G times. Run:
python tests/bench/rollouts.py [--threads N] [--group 8] [--new-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from core.config import load  # noqa: E402
from core.generate import generate, generate_group  # noqa: E402
from core.model.gpt import GPT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load("tiny").model
    torch.manual_seed(0)
    model = GPT(type(cfg)(**{**cfg.__dict__, "vocab_size": 768})).eval()
    prompt = torch.randint(0, 768, (48,)).tolist()
    G, n = args.group, args.new_tokens

    def batched() -> int:
        g = torch.Generator().manual_seed(1)
        return sum(map(len, generate_group(model, prompt, G, max_new_tokens=n, temperature=1.0, generator=g)))

    def one_by_one() -> int:
        return sum(len(list(generate(model, prompt, max_new_tokens=n, temperature=1.0, seed=1 + i))) for i in range(G))

    rows = {}
    for name, fn in (("one by one", one_by_one), ("batched", batched)):
        fn()  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            tokens = fn()
            best = min(best, time.perf_counter() - t0)
        rows[name] = {"tokens": tokens, "s": round(best, 4), "tokens_per_s": round(tokens / best, 1)}
    speedup = rows["batched"]["tokens_per_s"] / rows["one by one"]["tokens_per_s"]
    print(f"{'way':<12} {'tokens':>7} {'seconds':>8} {'tokens/s':>9}")
    for name, r in rows.items():
        print(f"{name:<12} {r['tokens']:>7} {r['s']:>8.3f} {r['tokens_per_s']:>9.0f}")
    print(f"batched is {speedup:.2f}x one by one (target >= 3x)")
    print(json.dumps({"bench": "rollouts", "group": G, "new_tokens": n, "threads": args.threads, **{
        k.replace(" ", "_"): v for k, v in rows.items()}, "speedup": round(speedup, 2)}))


if __name__ == "__main__":
    main()
