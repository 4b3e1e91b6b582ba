#!/usr/bin/env bash
# The real stage on one GPU: `llmlab pretrain gpt2-124m` on synthetic shards prepared on the spot
# (the embedded corpus through the GPT-2 tokenizer), events on, no checkpoint (the run is killed
# after its last timed step, which the stage survives by design), against a bare loop of the same
# model, batch, bf16 autocast, compile and fused AdamW on random tokens. Tokens/s and MFU of the
# stage come from its own train events (warm-up windows dropped). Shapes: 124M at context 1,024,
# and a 1.5B shape (GPT-2 XL: 48 x 1600, 25 heads). Under 5 minutes; a part that would not fit
# in the time left is skipped and says so. Prints a table and a last JSON line.
#
# Usage: tests/bench/gpu.sh [--steps N] [--only 124m|1.5b]
#        tests/bench/gpu.sh --device cpu --tiny     (dry run of the whole flow on CPU, a small shape)
set -euo pipefail
cd "$(dirname "$0")/../.."
exec timeout 295 python - "$@" <<'PY'
import argparse, json, os, signal, subprocess, sys, tempfile, time
from pathlib import Path

T_START = time.time()
BUDGET_S = 285
ap = argparse.ArgumentParser(prog="gpu.sh")
ap.add_argument("--device", default="cuda")
ap.add_argument("--tiny", action="store_true", help="a small shape, few steps, no compile (a dry run)")
ap.add_argument("--steps", type=int, default=0, help="timed steps per part (default 30; --tiny 4)")
ap.add_argument("--only", choices=("124m", "1.5b"))
args = ap.parse_args()

import torch
from core.config import load
from core.model import stats
from core.model.gpt import GPT
from core.train.optim import build_optimizer

cuda = args.device.startswith("cuda")
if cuda and not torch.cuda.is_available():
    sys.exit("gpu.sh needs a CUDA GPU (or --device cpu --tiny for a dry run)")
WARM = 2 if args.tiny else 10          # steps dropped from the figures: compile, allocator warm-up
STEPS = args.steps or (4 if args.tiny else 30)
LOG_EVERY = 2 if args.tiny else 5
big_gpu = cuda and torch.cuda.get_device_properties(0).total_memory > 100 * 2**30
SHAPES = {  # name: (model overrides, micro-batch)
    "124m": ([], 32),
    "1.5b": (["model.n_layer=48", "model.n_head=25", "model.n_embd=1600"], 16 if big_gpu else 8),
}
if args.tiny:
    SHAPES = {"124m": (["model.n_layer=2", "model.n_head=2", "model.n_embd=64", "model.context_length=64"], 4)}
compile_ = not args.tiny
dtype = "bfloat16" if cuda else "float32"


def overrides(shape: list[str], batch: int, steps: int) -> list[str]:
    cfg = load("gpt2-124m", shape).model
    return shape + [
        "data.source=embedded:tinyworld", "data.streaming=false", f"data.synthetic_mb={0.3 if args.tiny else 8}",
        f"data.workers={min(8, os.cpu_count() or 1)}",
        f"train.device={args.device}", f"train.dtype={dtype}", f"train.compile={str(compile_).lower()}",
        f"train.micro_batch_size={batch}", f"train.batch_tokens={batch * cfg.context_length}",
        f"train.max_steps={steps}", f"train.warmup_steps={steps}", f"train.log_every={LOG_EVERY}",
        f"train.eval_every={10**6}", "train.eval_batches=1", "train.sample_every=0",
        f"train.checkpoint_every={10**6}"]


def stage(shape: list[str], batch: int, home: Path) -> dict:
    """`llmlab pretrain gpt2-124m` detached; its train events after the warm-up; killed after the last."""
    steps = WARM + STEPS
    env = {**os.environ, "LLMLAB_HOME": str(home)}
    sets = [a for o in overrides(shape, batch, steps) for a in ("--set", o)]
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "core.cli", "pretrain", "gpt2-124m", "--detach", *sets],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    run = next((home / "runs").iterdir())
    events, status = run / "events.jsonl", run / "status.json"
    train: list[dict] = []
    while time.time() - T_START < BUDGET_S:
        lines = events.read_text().splitlines() if events.exists() else []
        evs = [json.loads(x) for x in lines if x.strip()]
        train = [e for e in evs if e["kind"] == "train"]
        st = json.loads(status.read_text()) if status.exists() else {}
        if train and train[-1]["step"] >= steps or st.get("state") in ("failed", "finished", "stopped"):
            break
        time.sleep(0.5)
    st = json.loads(status.read_text()) if status.exists() else {}
    if st.get("pid") and st.get("state") == "running":
        try:
            os.kill(int(st["pid"]), signal.SIGKILL)  # before the final validation and checkpoint
        except ProcessLookupError:
            pass
    timed = [e for e in train if e["step"] > WARM]
    if not timed:
        return {"error": st.get("error") or f"no train event past step {WARM} (see {events})"}
    # each event's window covers the steps since the previous event: weight by those
    prev = {b["step"]: a["step"] for a, b in zip(train, train[1:])}
    w = [e["step"] - prev[e["step"]] for e in timed]
    tps = sum(wi * e["tokens_per_s"] for wi, e in zip(w, timed)) / sum(w)
    mfu = [e["mfu"] for e in timed if e.get("mfu") is not None]
    return {"tokens_per_s": tps, "mfu": sum(wi * m for wi, m in zip(w, mfu)) / sum(w) if mfu else None,
            "step_ms": sum(wi * e["step_ms"] for wi, e in zip(w, timed)) / sum(w),
            "mem_bytes": max(e["mem_bytes"] for e in timed), "wall_s": time.time() - t0,
            "events": len(train), "last_step": train[-1]["step"]}


def bare(shape: list[str], batch: int) -> dict:
    """The same model and step in a hand-written loop on random tokens: what the stage should reach."""
    cfg = load("gpt2-124m", shape).model
    preset_train = load("gpt2-124m").train
    dev = torch.device(args.device)
    torch.manual_seed(0)
    if cuda:
        torch.set_float32_matmul_precision("high")
    model = GPT(cfg).to(dev)
    opt = build_optimizer(model, preset_train, dev.type)
    fwd = torch.compile(model) if compile_ else model
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.context_length + 1), device=dev)
    inp, tgt = x[:, :-1].contiguous(), x[:, 1:].contiguous()
    ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if cuda else torch.autocast(dev.type, enabled=False)

    def step() -> torch.Tensor:
        with ctx:
            _, loss = fwd(inp, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), preset_train.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t0 = time.perf_counter()
    for _ in range(WARM):
        step()
    sync()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(STEPS):
        step()
    sync()
    dt = (time.perf_counter() - t0) / STEPS
    tps = batch * cfg.context_length / dt
    peak = stats.device_peak_flops(str(dev))
    mem = torch.cuda.max_memory_allocated() if cuda else 0
    del model, opt, fwd
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return {"tokens_per_s": tps, "mfu": stats.mfu(tps, cfg, peak), "step_ms": dt * 1000, "mem_bytes": mem,
            "warm_s": warm_s}


name = torch.cuda.get_device_name() if cuda else "cpu"
results: dict = {}
with tempfile.TemporaryDirectory() as tmp:
    for i, (key, (shape, batch)) in enumerate(SHAPES.items()):
        if args.only and key != args.only:
            continue
        left = BUDGET_S - (time.time() - T_START)
        if i and left < 120:
            results[key] = {"skipped": f"{left:.0f} s left of {BUDGET_S}"}
            continue
        home = Path(tmp) / key
        home.mkdir()
        r = {"batch": batch, "context": load("gpt2-124m", shape).model.context_length,
             "stage": stage(shape, batch, home), "bare": bare(shape, batch)}
        s, b = r["stage"], r["bare"]
        if "tokens_per_s" in s:
            r["stage_vs_bare"] = s["tokens_per_s"] / b["tokens_per_s"]
        results[key] = r

print(f"device: {name}; dtype {dtype}; compile {compile_}; {STEPS} timed steps after {WARM} warm-up steps")
print(f"{'shape':<8} {'run':<6} {'batch x T':>10} {'tokens/s':>12} {'MFU %':>7} {'step ms':>9} {'mem GiB':>8}")
for key, r in results.items():
    if "skipped" in r:
        print(f"{key:<8} skipped: {r['skipped']}")
        continue
    for kind in ("stage", "bare"):
        x = r[kind]
        if "error" in x:
            print(f"{key:<8} {kind:<6} failed: {x['error']}")
            continue
        mfu = f"{100 * x['mfu']:.1f}" if x.get("mfu") is not None else "n/a"
        print(f"{key:<8} {kind:<6} {r['batch']:>4} x {r['context']:<4} {x['tokens_per_s']:>12,.0f} {mfu:>7} "
              f"{x['step_ms']:>9.1f} {x['mem_bytes'] / 2**30:>8.1f}")
    if "stage_vs_bare" in r:
        print(f"{key:<8} stage / bare tokens/s = {r['stage_vs_bare']:.3f} (target >= 0.97); MFU target 50 %")
print(json.dumps({"bench": "gpu", "device": name, "dtype": dtype, "compile": compile_, "steps": STEPS,
                  "warmup_steps": WARM, "results": results, "wall_s": round(time.time() - T_START, 1)}))
PY
