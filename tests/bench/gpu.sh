#!/usr/bin/env bash
# Training tokens/s and MFU of the gpt2-124m preset on one CUDA GPU: bf16 autocast, torch.compile,
# fused AdamW, random tokens (no data needed). Under 5 minutes; prints a table and a last JSON line.
# Usage: tests/bench/gpu.sh [micro_batch_size] [timed_steps]     (defaults: the preset's, 30)
set -euo pipefail
cd "$(dirname "$0")/../.."
export BENCH_BATCH="${1:-0}" BENCH_STEPS="${2:-30}"
exec timeout 290 python - <<'PY'
import json, os, time
import torch
from core.config import load
from core.model import stats
from core.model.gpt import GPT

assert torch.cuda.is_available(), "gpu.sh needs a CUDA GPU"
torch.manual_seed(0)
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
preset = load("gpt2-124m")
cfg, tc = preset.model, preset.train
B = int(os.environ["BENCH_BATCH"]) or tc.micro_batch_size
T, steps = cfg.context_length, int(os.environ["BENCH_STEPS"])
dev = "cuda"
model = GPT(cfg).to(dev)
opt = model.configure_optimizer(tc.weight_decay, tc.lr, (tc.beta1, tc.beta2), "cuda")
step_model = torch.compile(model)
x = torch.randint(0, cfg.vocab_size, (B, T + 1), device=dev)
inp, tgt = x[:, :-1].contiguous(), x[:, 1:].contiguous()

def step():
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, loss = step_model(inp, tgt)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss

t0 = time.perf_counter()
for _ in range(5):  # the first steps compile
    step()
torch.cuda.synchronize()
compile_s = time.perf_counter() - t0
t0 = time.perf_counter()
for _ in range(steps):
    loss = step()
torch.cuda.synchronize()
dt = (time.perf_counter() - t0) / steps
tok_s = B * T / dt
name = torch.cuda.get_device_name()
peak = stats.peak_flops(name)
mfu = stats.mfu(tok_s, cfg, peak) if peak else None
mem = torch.cuda.max_memory_allocated()
rows = [("device", name), ("params", f"{model.num_params():,}"), ("batch x context", f"{B} x {T}"),
        ("warm-up + compile", f"{compile_s:.1f} s"), ("step", f"{dt * 1000:.1f} ms"),
        ("tokens/s", f"{tok_s:,.0f}"), ("peak bf16", f"{peak / 1e12:.1f} TFLOP/s" if peak else "unknown GPU"),
        ("MFU", f"{mfu * 100:.1f} % (target 40 %)" if mfu is not None else "n/a"),
        ("max memory", f"{mem / 2**30:.1f} GiB"), ("loss", f"{loss.item():.3f}")]
for k, v in rows:
    print(f"{k:<20}{v}")
print(json.dumps({"bench": "gpu", "device": name, "batch": B, "context": T, "step_ms": dt * 1000,
                  "tokens_per_s": tok_s, "mfu": mfu, "max_memory_bytes": mem, "compile_s": compile_s}))
PY
