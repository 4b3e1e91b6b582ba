"""RL rollouts on CPU: completions one by one, G per batch (one prompt), and P x G per batch.

The tiny preset's architecture (random weights): P prompts of 24..48 tokens (different lengths,
so the P x G batch is left-padded), G completions of N tokens each, sampled at temperature 1 with
no stop id, so every way produces the same number of tokens. "one by one" is core.generate.generate
called P x G times; "per prompt" is core.generate.generate_group once per prompt (the prompt
prefilled once, its KV cache shared by the G rows); "all prompts" is core.generate.generate_groups
with every prompt in one batch. Run:
python tests/bench/rollouts.py [--threads N] [--prompts 4] [--group 8] [--new-tokens 64] [--repeats 3]
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
from core.generate import generate, generate_group, generate_groups  # noqa: E402
from core.model.gpt import GPT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load("tiny").model
    torch.manual_seed(0)
    model = GPT(type(cfg)(**{**cfg.__dict__, "vocab_size": 768})).eval()
    P, G, n = args.prompts, args.group, args.new_tokens
    prompts = [torch.randint(0, 768, (24 + 24 * i // max(1, P - 1),)).tolist() for i in range(P)]
    opts = dict(max_new_tokens=n, temperature=1.0)

    def one_by_one() -> int:
        return sum(len(list(generate(model, p, seed=1 + i, **opts))) for p in prompts for i in range(G))

    def per_prompt() -> int:
        g = torch.Generator().manual_seed(1)
        return sum(len(c) for p in prompts for c in generate_group(model, p, G, generator=g, **opts))

    def all_prompts() -> int:
        return sum(map(len, generate_groups(model, prompts, G, generator=torch.Generator().manual_seed(1), **opts)))

    rows = {}
    for name, fn in (("one by one", one_by_one), ("per prompt", per_prompt), ("all prompts", all_prompts)):
        fn()  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            tokens = fn()
            best = min(best, time.perf_counter() - t0)
        rows[name] = {"tokens": tokens, "s": round(best, 4), "tokens_per_s": round(tokens / best, 1)}
    base = rows["one by one"]["tokens_per_s"]
    print(f"{P} prompts x {G} completions x {n} tokens, {args.threads} thread(s)")
    print(f"{'way':<12} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'vs 1 by 1':>9}")
    for name, r in rows.items():
        print(f"{name:<12} {r['tokens']:>7} {r['s']:>8.3f} {r['tokens_per_s']:>9.0f} {r['tokens_per_s'] / base:>8.2f}x")
    print("target: G per batch >= 3x one by one")
    print(json.dumps({"bench": "rollouts", "prompts": P, "group": G, "new_tokens": n, "threads": args.threads,
                      **{k.replace(" ", "_"): v for k, v in rows.items()},
                      "speedup_group": round(rows["per prompt"]["tokens_per_s"] / base, 2),
                      "speedup_all": round(rows["all prompts"]["tokens_per_s"] / base, 2)}))


if __name__ == "__main__":
    main()
