"""Serving on CPU: requests/s and time to first token for 1, 4 and 16 concurrent streamed clients, and
the server's overhead against calling core.generate in-process (target: at most 10% on tokens/s).

Two models with random weights (seeded): the tiny preset's shape (4 x 128, 768-token BPE) and
SmolLM2-135M's shape (a Llama: 30 x 576, 9 heads, 3 KV heads, SwiGLU 1536, 49,152 ids, tied; the
GPT-2 encoding stands in for its tokenizer, which decodes every id below 49,152). Each is saved as a
checkpoint and served by a real `llmlab serve` process (the same torch threads as the in-process
run); clients are openai-client threads in this process, /v1/completions, greedy, streamed.
The server answers one request at a time (no batching), so requests/s stays flat with clients
and the time to first token grows with the queue. Run:
python tests/bench/serve.py [--threads 1] [--new-tokens 64] [--clients 1,4,16] [--models tiny,smollm2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from core.config import ModelConfig  # noqa: E402

PROMPT = "Once upon a time, a little girl named Amy lived in a house by the hill. One day"
SHAPES = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, context_length=256),
    "smollm2": dict(n_layer=30, n_head=9, n_kv_head=3, n_embd=576, context_length=2048, vocab_size=49152,
                    norm="rmsnorm", position="rope", rope_theta=100000.0, mlp="swiglu", mlp_hidden=1536,
                    bias=False, tie_embeddings=True),
}


def build(name: str, root: Path):
    """(checkpoint, model, tokenizer) of a seeded random model of that shape."""
    from core.checkpoint import save_checkpoint
    from core.data.synthetic import iter_stories
    from core.model.gpt import GPT
    from core.tokenizer import get_tokenizer, train_bpe

    tok = train_bpe(list(iter_stories(1, 400_000)), 768, name="bench-bpe") if name == "tiny" else get_tokenizer("gpt2")
    shape = {"vocab_size": tok.n_vocab, **SHAPES[name]}
    torch.manual_seed(0)
    model = GPT(ModelConfig(**shape)).eval()
    return save_checkpoint(root / f"{name}-run", 0, model, tokenizer=tok), model, tok


def start_server(ckpt: Path, home: Path, threads: int) -> tuple[subprocess.Popen, str, Path]:
    """`llmlab serve CKPT --port 0` in the foreground of a child process; (process, base URL, run dir)."""
    env = {**os.environ, "LLMLAB_HOME": str(home), "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    before = set((home / "runs").glob("*")) if (home / "runs").is_dir() else set()
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "serve", str(ckpt), "--port", "0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    from core.serve import server_url

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        new = set((home / "runs").glob("*")) - before if (home / "runs").is_dir() else set()
        url = server_url(next(iter(new))) if new else None
        if url:
            return proc, url, next(iter(new))
        time.sleep(0.2)
    raise RuntimeError("the server did not start")


def stop_server(run_dir: Path) -> None:
    from core import runs

    run = runs.Run(run_dir)
    runs.stop(run)
    deadline = time.monotonic() + 60
    while run.state == "running" and time.monotonic() < deadline:
        time.sleep(0.2)


def make_client(url: str):
    from openai import OpenAI

    return OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)


def one_request(client, model_id: str, new_tokens: int) -> dict:
    t0 = time.perf_counter()
    first, tokens = 0.0, 0
    for chunk in client.completions.create(model=model_id, prompt=PROMPT, max_tokens=new_tokens, temperature=0,
                                           stream=True, stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].text and not first:
            first = time.perf_counter() - t0
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return {"ttft_s": first, "seconds": time.perf_counter() - t0, "tokens": tokens}


def load(url: str, model_id: str, clients: int, per_client: int, new_tokens: int) -> dict:
    results: list[dict] = []
    lock = threading.Lock()

    def client_loop() -> None:
        client = make_client(url)
        for _ in range(per_client):
            r = one_request(client, model_id, new_tokens)
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttft = sorted(r["ttft_s"] for r in results)
    return {"clients": clients, "requests": len(results), "requests_per_s": len(results) / wall,
            "tokens_per_s": sum(r["tokens"] for r in results) / wall, "ttft_median_s": ttft[len(ttft) // 2],
            "ttft_max_s": ttft[-1]}


def cpu_s(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def served_request(client, model_id: str, new_tokens: int, pid: int) -> dict:
    """One request with the server process's CPU seconds for it (the fair clock on a shared machine)."""
    c0 = cpu_s(pid)
    r = one_request(client, model_id, new_tokens)
    return {**r, "cpu_s": cpu_s(pid) - c0}


def in_process(model, tok, new_tokens: int) -> dict:
    from core.generate import generate_pieces

    c0 = time.process_time()
    t0 = time.perf_counter()
    first, tokens = 0.0, 0
    ids = tok.encode(PROMPT, allowed_special="all")
    for piece in generate_pieces(model, tok, ids, max_new_tokens=new_tokens, temperature=0):
        first = first or (time.perf_counter() - t0 if piece.text else 0.0)
        tokens += len(piece.ids)
    return {"ttft_s": first, "seconds": time.perf_counter() - t0, "tokens": tokens,
            "cpu_s": time.process_time() - c0}


def bench_model(name: str, root: Path, args: argparse.Namespace) -> dict:
    ckpt, model, tok = build(name, root)
    in_process(model, tok, 4)  # warm up
    proc, url, run_dir = start_server(ckpt, root / "home", args.threads)
    try:
        client = make_client(url)
        one_request(client, str(ckpt), 4)  # warm up
        # single client against in-process, interleaved, best of 3 each (a shared machine)
        pid = int(json.loads((run_dir / "status.json").read_text())["pid"])
        single, local = [], []
        for _ in range(3):
            single.append(served_request(client, str(ckpt), args.new_tokens, pid))
            local.append(in_process(model, tok, args.new_tokens))
        best_srv = max(single, key=lambda r: r["tokens"] / r["seconds"])
        best_loc = max(local, key=lambda r: r["tokens"] / r["seconds"])
        srv_tps, loc_tps = best_srv["tokens"] / best_srv["seconds"], best_loc["tokens"] / best_loc["seconds"]
        srv_cpu = min(r["cpu_s"] / r["tokens"] for r in single)
        loc_cpu = min(r["cpu_s"] / r["tokens"] for r in local)
        rows = [load(url, str(ckpt), c, 2 if c < 16 else 1, args.new_tokens) for c in args.clients]
    finally:
        stop_server(run_dir)
        proc.wait(60)
    return {"model": name, "parameters": sum(p.numel() for p in model.parameters()),
            "in_process_tokens_per_s": loc_tps, "server_tokens_per_s": srv_tps,
            "overhead": 1 - srv_tps / loc_tps, "in_process_tokens_per_cpu_s": 1 / loc_cpu,
            "server_tokens_per_cpu_s": 1 / srv_cpu, "overhead_cpu": 1 - loc_cpu / srv_cpu, "in_process_ttft_s": best_loc["ttft_s"],
            "server_ttft_s": best_srv["ttft_s"], "tokens": best_srv["tokens"], "load": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads, in-process and in the server")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--models", default="tiny,smollm2")
    args = ap.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            results.append(bench_model(name, Path(tmp), args))
    print(f"{'model':<9}{'clients':>8}{'requests':>9}{'req/s':>8}{'tok/s':>8}{'ttft med s':>11}{'ttft max s':>11}")
    for r in results:
        for row in r["load"]:
            print(f"{r['model']:<9}{row['clients']:>8}{row['requests']:>9}{row['requests_per_s']:>8.2f}"
                  f"{row['tokens_per_s']:>8.1f}{row['ttft_median_s']:>11.3f}{row['ttft_max_s']:>11.3f}")
    print(f"\n{'model':<9}{'params':>12}{'tok/s local':>12}{'server':>8}{'overhead':>9}{'tok/cpu-s local':>16}"
          f"{'server':>8}{'overhead':>9}{'ttft local':>11}{'server':>8}")
    for r in results:
        print(f"{r['model']:<9}{r['parameters']:>12,}{r['in_process_tokens_per_s']:>12.1f}{r['server_tokens_per_s']:>8.1f}"
              f"{r['overhead']:>9.1%}{r['in_process_tokens_per_cpu_s']:>16.1f}{r['server_tokens_per_cpu_s']:>8.1f}"
              f"{r['overhead_cpu']:>9.1%}{r['in_process_ttft_s']:>11.3f}{r['server_ttft_s']:>8.3f}")
    print("target: server overhead <= 10% of single-client tokens/s (the CPU-second columns are the fair clock "
          "when other work shares the machine; the server's CPU excludes the client's)")
    print(json.dumps({"bench": "serve", "threads": args.threads, "new_tokens": args.new_tokens, "batching": False,
                      "results": results}))


if __name__ == "__main__":
    main()
