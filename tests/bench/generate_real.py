"""Generation tokens/s on CPU of the real SmolLM2-135M (fp32, greedy): core.generate vs transformers.

Both load the same GGUF fixture (tests/model/smollm2_fixture.py: SmolLM2-135M-Instruct Q4_1,
dequantized to fp32): ours through core.model.gguf_import, transformers with gguf_file=. Each
makes --new-tokens greedy tokens after the same prompt, with its KV cache; the runs interleave
twice and the better of each counts. Target: ours >= 1.3x. Run:
python tests/bench/generate_real.py [--threads N] [--new-tokens 256]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from core.generate import generate  # noqa: E402
from core.model.gguf_import import read_gguf  # noqa: E402
from tests.smollm2_fixture import smollm2_gguf  # noqa: E402

PROMPT = "<|im_start|>user\nWrite a short story about a robot who learns to paint.<|im_end|>\n<|im_start|>assistant\n"


def timed(fn) -> tuple[list[int], float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (2 only when nothing else runs)")
    ap.add_argument("--new-tokens", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path, why = smollm2_gguf()
    if path is None:
        sys.exit(f"no fixture: {why}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, _ = read_gguf(path)
    model.eval()
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    prompt = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).encode(PROMPT)
    n = args.new_tokens

    def ours() -> list[int]:
        return list(generate(model, prompt, max_new_tokens=n, temperature=0))

    def theirs() -> list[int]:
        with torch.inference_mode():
            out = hf.generate(torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                              use_cache=True, pad_token_id=0)
        return out[0, len(prompt):].tolist()

    list(generate(model, prompt, max_new_tokens=4, temperature=0))  # warm up both
    hf.generate(torch.tensor([prompt]), max_new_tokens=4, do_sample=False, pad_token_id=0)
    rows: dict[str, dict] = {}
    for _ in range(2):
        for name, fn in (("ours (core.generate)", ours), ("transformers generate", theirs)):
            out, dt, cpu = timed(fn)
            if name not in rows or cpu < rows[name]["cpu_seconds"]:
                rows[name] = {"tokens": len(out), "seconds": dt, "cpu_seconds": cpu, "out": out}
    a, b = rows["ours (core.generate)"]["out"], rows["transformers generate"]["out"]
    agree = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    for r in rows.values():
        r["tokens_per_s"] = r["tokens"] / r["seconds"]
        r["tokens_per_cpu_s"] = r["tokens"] / r["cpu_seconds"]
        del r["out"]
    clock = "tokens_per_cpu_s" if args.threads == 1 else "tokens_per_s"
    ratio = rows["ours (core.generate)"][clock] / rows["transformers generate"][clock]
    print(f"SmolLM2-135M fp32, {len(prompt)} prompt tokens, {n} new tokens, {args.threads} thread(s)")
    print(f"{'generator':<24}{'tokens':>8}{'wall s':>9}{'cpu s':>9}{'tokens/s':>10}{'tok/cpu-s':>11}")
    for name, r in rows.items():
        print(f"{name:<24}{r['tokens']:>8}{r['seconds']:>9.2f}{r['cpu_seconds']:>9.2f}{r['tokens_per_s']:>10.1f}"
              f"{r['tokens_per_cpu_s']:>11.1f}")
    print(f"ours vs transformers: {ratio:.2f}x (target 1.3x)   greedy tokens equal for the first {agree} of {n}")
    print(json.dumps({"bench": "generate_real", "model": "SmolLM2-135M-Instruct (Q4_1 GGUF -> fp32)",
                      "threads": args.threads, "ratio_clock": clock, "prompt_tokens": len(prompt), "rows": rows,
                      "vs_transformers": ratio, "greedy_equal_tokens": agree}))


if __name__ == "__main__":
    main()
