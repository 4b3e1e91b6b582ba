"""Benchmark: is the workbench responsive while a chat reply streams?

Builds a tiny checkpoint (seeded GPT with the GPT-2 tokenizer) in a temporary LLMLAB_HOME, opens
the Chat screen headless (App.run_test, 100x30), starts a long reply (temperature 1, thousands of
tokens) and types characters into the message field while it streams. For each key: the time from
the key event's creation to the Input's Changed message being handled (Textual's clock), i.e. the
key was handled and the field updated. The same keys typed with no reply streaming give the
baseline. Target: keys handled within 100 ms while streaming.

    python tests/bench/chat_responsiveness.py [--keys 80] [--layers 2] [--width 64]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken-cache"))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def build_checkpoint(home: Path, layers: int, width: int) -> Path:
    import torch

    from core.checkpoint import save_checkpoint
    from core.config import ModelConfig
    from core.model.gpt import GPT
    from core.runs import create_run
    from core.tokenizer import get_tokenizer

    torch.set_num_threads(1)
    tok = get_tokenizer("gpt2")
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=layers, n_head=4, n_embd=width, context_length=256, vocab_size=tok.n_vocab))
    run = create_run("bench", "pretrain", "", home / "runs")
    run.write_status(state="finished")
    return save_checkpoint(run.path, 1, model, tokenizer=tok, lineage={"stage": "pretrain", "init": "random"})


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


async def measure(home: Path, ckpt: Path, n_keys: int, streaming: bool) -> dict:
    from textual import events
    from textual._time import get_time
    from textual.widgets import Input

    from tui.app import make_app
    from tui.screens.chat import ChatScreen

    app = make_app(runs_root=home / "runs", workdir=home, mode="chat", preset="tiny")
    created: dict[int, float] = {}
    latencies: list[float] = []
    pending: list[float] = []
    streamed = [0]

    def hook(message) -> None:
        if isinstance(message, events.Key) and message.character == "x" and id(message) not in created:
            created[id(message)] = message.time
            pending.append(message.time)
        elif isinstance(message, Input.Changed) and message.input.id == "chat-input" and pending:
            latencies.append(get_time() - pending.pop(0))
        elif isinstance(message, ChatScreen.ReplyStreamed):
            streamed[0] += 1

    async with app.run_test(size=(100, 30), message_hook=hook) as pilot:
        screen = app.screen
        end = time.monotonic() + 60
        while screen.panes["a"].conv is None and time.monotonic() < end:
            await pilot.pause(0.05)
        screen.load_model("a", str(ckpt)) if screen.panes["a"].conv is None else None
        while screen.panes["a"].conv is None:
            await pilot.pause(0.05)
        screen.query_one("#chat-max_new_tokens").value = "100000"
        screen.query_one("#chat-temperature").value = "1.0"
        screen.query_one("#chat-input").focus()
        tokens_before = 0
        t0 = time.perf_counter()
        if streaming:
            assert screen.send("Tell me a very long story.")
            while screen.panes["a"].tokens < 20:
                await pilot.pause(0.01)
            tokens_before = screen.panes["a"].tokens
            t0 = time.perf_counter()
        rng = random.Random(0)
        for _ in range(n_keys):
            await pilot.press("x")
            await asyncio.sleep(rng.uniform(0.02, 0.08))
        elapsed = time.perf_counter() - t0
        tokens = screen.panes["a"].tokens - tokens_before if streaming else 0
        still = screen.panes["a"].streaming
        screen.action_stop()
        while screen.panes["a"].streaming:
            await pilot.pause(0.05)
    return {"streaming": streaming, "keys": len(latencies), "ms": [1000 * x for x in latencies],
            "tokens_per_s": tokens / elapsed if streaming else 0.0, "ui_updates_per_s": streamed[0] / elapsed,
            "still_streaming_at_end": still}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keys", type=int, default=80)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--width", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        os.environ["LLMLAB_HOME"] = str(home)
        ckpt = build_checkpoint(home, args.layers, args.width)
        idle = asyncio.run(measure(home, ckpt, args.keys, streaming=False))
        busy = asyncio.run(measure(home, ckpt, args.keys, streaming=True))
    rows = []
    for r in (idle, busy):
        ms = r["ms"]
        rows.append({"case": "reply streaming" if r["streaming"] else "idle", "keys": r["keys"],
                     "p50_ms": round(statistics.median(ms), 1), "p90_ms": round(pct(ms, 0.9), 1),
                     "p99_ms": round(pct(ms, 0.99), 1), "max_ms": round(max(ms), 1),
                     "within_100ms": round(sum(x <= 100 for x in ms) / len(ms), 3),
                     "tokens_per_s": round(r["tokens_per_s"], 1), "ui_updates_per_s": round(r["ui_updates_per_s"], 1),
                     "still_streaming_at_end": r["still_streaming_at_end"]})
    print(f"{'case':<16} {'keys':>5} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'<=100ms':>8} "
          f"{'tok/s':>7} {'UI upd/s':>9}")
    for r in rows:
        print(f"{r['case']:<16} {r['keys']:>5} {r['p50_ms']:>7} {r['p90_ms']:>7} {r['p99_ms']:>7} {r['max_ms']:>7} "
              f"{r['within_100ms']:>8} {r['tokens_per_s']:>7} {r['ui_updates_per_s']:>9}")
    busy_row = rows[1]
    print(json.dumps({"bench": "chat_responsiveness", "model": f"{args.layers}x{args.width} gpt2-vocab",
                      "idle": rows[0], "streaming": busy_row,
                      "target_met": busy_row["p99_ms"] <= 100 and busy_row["still_streaming_at_end"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
