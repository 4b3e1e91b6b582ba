"""Generation tokens/s on CPU: core.generate against transformers' generate on the same weights (greedy).

--model gpt2 (default): a GPT-2-124M-shaped model (random weights) exported to GPT2LMHeadModel;
our generator runs with its KV cache and, for the cache's speedup, without one.
--model smollm2: the real SmolLM2-135M-Instruct (the GGUF fixture of tests/smollm2_fixture.py, Q4_1
dequantized to fp32), ours through core.model.gguf_import, transformers with gguf_file=.
Each makes --new-tokens greedy tokens after the same prompt; the cached runs interleave twice and
the better of each counts; the greedy outputs are compared. Run:
python tests/bench/generate.py [--model gpt2|smollm2] [--threads N] [--new-tokens 256] [--no-cache-tokens N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from core.config import ModelConfig  # noqa: E402
from core.generate import generate  # noqa: E402
from core.model.gpt import GPT  # noqa: E402

GPT2_CFG = ModelConfig(n_layer=12, n_head=12, n_embd=768, context_length=1024, vocab_size=50257)
CHAT_PROMPT = ("<|im_start|>user\nWrite a short story about a robot who learns to paint.<|im_end|>\n"
               "<|im_start|>assistant\n")
# (what the table calls the model, target of ours vs transformers per CPU-second)
MODELS = {"gpt2": ("GPT-2-124M shape, random weights", 1.0), "smollm2": ("SmolLM2-135M-Instruct (Q4_1 GGUF -> fp32)", 1.3)}


def gpt2_pair(prompt_tokens: int) -> tuple[GPT, object, list[int]]:
    from transformers import GPT2Config, GPT2LMHeadModel

    from core.model.hf import _gpt2_export
    from core.model.hf_config import hf_config_from_model

    torch.manual_seed(0)
    model = GPT(GPT2_CFG).eval()
    config, sd = hf_config_from_model(model.config, model.tied, None), _gpt2_export(model)
    keys = ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size", "n_inner", "layer_norm_epsilon")
    hf = GPT2LMHeadModel(GPT2Config(**{k: config[k] for k in keys}, bos_token_id=None, eos_token_id=None))
    hf.load_state_dict(sd, strict=False)
    hf.tie_weights()
    return model, hf.eval(), torch.randint(0, GPT2_CFG.vocab_size, (prompt_tokens,)).tolist()


def smollm2_pair() -> tuple[GPT, object, list[int]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.model.gguf_import import read_gguf
    from tests.smollm2_fixture import smollm2_gguf

    path, why = smollm2_gguf()
    if path is None:
        sys.exit(f"no fixture: {why}")
    model, _ = read_gguf(path)
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    return model.eval(), hf, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).encode(CHAT_PROMPT)


def timed(fn: Callable[[], list[int]]) -> tuple[list[int], float, float]:
    """Output, wall seconds and this process's CPU seconds (the fairer clock on a shared machine
    when torch runs one thread)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def run(model: GPT, hf, prompt: list[int], n: int, n_slow: int) -> dict[str, dict]:
    """Rows of tokens, seconds and outputs: ours and transformers interleaved twice (the better of
    each), then ours without a cache for n_slow tokens when n_slow > 0."""
    def ours(use_cache: bool, k: int) -> Callable[[], list[int]]:
        return lambda: list(generate(model, prompt, max_new_tokens=k, temperature=0, use_cache=use_cache))

    def theirs() -> list[int]:
        with torch.inference_mode():
            out = hf.generate(torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                              use_cache=True, pad_token_id=0)
        return out[0, len(prompt):].tolist()

    list(generate(model, prompt, max_new_tokens=4, temperature=0))  # warm up both
    hf.generate(torch.tensor([prompt]), max_new_tokens=4, do_sample=False, pad_token_id=0)
    rows: dict[str, dict] = {}
    for _ in range(2):  # interleaved, the better of each (a shared machine)
        for name, fn in (("ours (KV cache)", ours(True, n)), ("transformers generate", theirs)):
            out, dt, cpu = timed(fn)
            if name not in rows or cpu < rows[name]["cpu_seconds"]:
                rows[name] = {"tokens": len(out), "seconds": dt, "cpu_seconds": cpu, "out": out}
    if n_slow:
        out, dt, cpu = timed(ours(False, n_slow))
        rows["ours (no cache)"] = {"tokens": len(out), "seconds": dt, "cpu_seconds": cpu, "out": out}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=tuple(MODELS), default="gpt2")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (2 only when nothing else runs)")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--no-cache-tokens", type=int, default=-1,
                    help="new tokens for the slow no-cache run (default: --new-tokens for gpt2, none for smollm2)")
    ap.add_argument("--prompt-tokens", type=int, default=16, help="random prompt length (gpt2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, hf, prompt = gpt2_pair(args.prompt_tokens) if args.model == "gpt2" else smollm2_pair()
    n = args.new_tokens
    n_slow = args.no_cache_tokens if args.no_cache_tokens >= 0 else (n if args.model == "gpt2" else 0)
    rows = run(model, hf, prompt, n, n_slow)
    a, b = rows["ours (KV cache)"]["out"], rows["transformers generate"]["out"]
    agree = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    same_nc = a[:n_slow] == rows["ours (no cache)"]["out"] if n_slow else None
    for r in rows.values():
        r["tokens_per_s"] = r["tokens"] / r["seconds"]
        r["tokens_per_cpu_s"] = r["tokens"] / r["cpu_seconds"]
        del r["out"]
    # ratios on CPU time: other processes on the machine stretch wall time, not CPU time
    clock = "tokens_per_cpu_s" if args.threads == 1 else "tokens_per_s"
    cached = rows["ours (KV cache)"][clock]
    label, target = MODELS[args.model]
    print(f"{label}, {len(prompt)} prompt tokens, {n} new tokens, {args.threads} thread(s)")
    print(f"{'generator':<24}{'tokens':>8}{'wall s':>9}{'cpu s':>9}{'tokens/s':>10}{'tok/cpu-s':>11}")
    for name, r in rows.items():
        print(f"{name:<24}{r['tokens']:>8}{r['seconds']:>9.2f}{r['cpu_seconds']:>9.2f}{r['tokens_per_s']:>10.1f}"
              f"{r['tokens_per_cpu_s']:>11.1f}")
    speed_vs_hf = cached / rows["transformers generate"][clock]
    speed_vs_nc = cached / rows["ours (no cache)"][clock] if n_slow else None
    print(f"vs transformers: {speed_vs_hf:.2f}x (target {target}x)   greedy tokens equal for the first {agree} of {n}"
          + (f"   cache vs no cache: {speed_vs_nc:.2f}x (target 5x), equal: {same_nc}" if n_slow else ""))
    print(json.dumps({"bench": "generate", "model": args.model, "threads": args.threads, "ratio_clock": clock,
                      "prompt_tokens": len(prompt), "rows": rows, "vs_transformers": speed_vs_hf,
                      "greedy_equal_tokens": agree, "cache_speedup": speed_vs_nc, "greedy_equal_no_cache": same_nc}))


if __name__ == "__main__":
    main()
