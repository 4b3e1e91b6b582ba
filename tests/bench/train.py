"""Training tokens/s on CPU: our GPT against transformers' GPT2LMHeadModel of identical shape.

Same AdamW hyperparameters, same batch, steps interleaved (ours, theirs, ours, ...) so a machine
shared with other work slows both alike; the median step time of each is compared. Ours uses its
own optimizer setup (core.train.optim.build_optimizer: decay on matrices, fused on CUDA); theirs the plain
torch.optim.AdamW a transformers user gets. Shapes: the tiny preset, and GPT-2 small with a short
context. Run: python tests/bench/train.py [--threads N] [--steps N] [--compile] [--plain-head] [--only SHAPE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from core.config import ModelConfig, TrainConfig, load  # noqa: E402
from core.model.gpt import GPT  # noqa: E402
from core.train.optim import build_optimizer  # noqa: E402


def shapes() -> list[tuple[str, ModelConfig, int]]:
    tiny = load("tiny").model
    tiny_cfg = ModelConfig(n_layer=tiny.n_layer, n_head=tiny.n_head, n_embd=tiny.n_embd,
                           context_length=tiny.context_length, vocab_size=2048)
    # the issue's CPU shape: 4 layers of 256, GPT-2's vocabulary padded to 50,304, batch 8 x 256
    cpu = ModelConfig(n_layer=4, n_head=4, n_embd=256, context_length=256, vocab_size=50304)
    small = ModelConfig(n_layer=12, n_head=12, n_embd=768, context_length=128, vocab_size=50257)
    return [("tiny", tiny_cfg, 16), ("4x256-v50304", cpu, 8), ("gpt2-124m-T128", small, 4)]


def hf_model(cfg: ModelConfig):
    from transformers import GPT2Config, GPT2LMHeadModel

    hc = GPT2Config(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, n_positions=cfg.context_length,
                    vocab_size=cfg.vocab_size, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                    bos_token_id=0, eos_token_id=0)
    hc._attn_implementation = "sdpa"
    return GPT2LMHeadModel(hc)


def bench(name: str, cfg: ModelConfig, batch: int, steps: int, compile_ours: bool, plain_head: bool) -> dict:
    torch.manual_seed(0)
    ours = GPT(cfg).train()
    theirs = hf_model(cfg).train()
    opt_ours = build_optimizer(ours, TrainConfig(weight_decay=0.1, lr=3e-4), "cpu")
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    fwd_ours = torch.compile(ours) if compile_ours else ours
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.context_length + 1))
    inp, tgt = x[:, :-1], x[:, 1:]

    def step_ours() -> float:
        # as the pretraining objective calls it (head + loss fused), or the plain head: logits, then the loss
        _, loss = fwd_ours(inp, tgt, logits=plain_head)
        loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)
        return loss.item()

    def step_theirs() -> float:
        # labels shift inside the model: pass the full window so both predict the same tokens
        loss = theirs(input_ids=x[:, :-1], labels=x[:, :-1]).loss
        loss.backward()
        opt_theirs.step()
        opt_theirs.zero_grad(set_to_none=True)
        return loss.item()

    # wall and CPU time per step: with one torch thread, CPU time is what other processes on a
    # shared machine cannot stretch, so the ratio is taken on it (on wall time with more threads)
    wall: dict[str, list[float]] = {"ours": [], "transformers": []}
    cpu: dict[str, list[float]] = {"ours": [], "transformers": []}
    for i in range(steps + 2):  # two warm-up rounds
        for who, fn in (("ours", step_ours), ("transformers", step_theirs)):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            if i >= 2:
                wall[who].append(time.perf_counter() - t0)
                cpu[who].append(time.process_time() - c0)
    tokens = batch * cfg.context_length
    w = {k: statistics.median(v) for k, v in wall.items()}
    c = {k: statistics.median(v) for k, v in cpu.items()}
    ref = c if torch.get_num_threads() == 1 else w
    return {"shape": name, "params": ours.num_params(), "batch": batch, "context": cfg.context_length,
            "ours_tokens_per_s": tokens / w["ours"], "transformers_tokens_per_s": tokens / w["transformers"],
            "ours_tokens_per_cpu_s": tokens / c["ours"], "transformers_tokens_per_cpu_s": tokens / c["transformers"],
            "speedup": ref["transformers"] / ref["ours"], "speedup_clock": "cpu" if ref is c else "wall"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (2 only when nothing else runs)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per model and shape")
    ap.add_argument("--compile", action="store_true", help="torch.compile our model")
    ap.add_argument("--plain-head", action="store_true", help="ours without the fused head + loss (the before)")
    ap.add_argument("--only", default="", help="run one shape: tiny, 4x256-v50304 or gpt2-124m-T128")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench(n, c, b, args.steps, args.compile, args.plain_head) for n, c, b in shapes() if not args.only or n == args.only]
    print(f"{'shape':<16}{'params':>12}{'B x T':>10}{'ours tok/s':>12}{'hf tok/s':>10}"
          f"{'ours tok/cpu-s':>16}{'hf tok/cpu-s':>14}{'speedup':>9}")
    for r in rows:
        print(f"{r['shape']:<16}{r['params']:>12,}{str(r['batch']) + ' x ' + str(r['context']):>10}"
              f"{r['ours_tokens_per_s']:>12,.0f}{r['transformers_tokens_per_s']:>10,.0f}"
              f"{r['ours_tokens_per_cpu_s']:>16,.0f}{r['transformers_tokens_per_cpu_s']:>14,.0f}"
              f"{r['speedup']:>8.2f}x ({r['speedup_clock']})")
    print(json.dumps({"bench": "train", "threads": args.threads, "compile": args.compile, "plain_head": args.plain_head,
                      "rows": rows}))


if __name__ == "__main__":
    main()
