"""Benchmark: token-shard writing throughput and peak memory against plain tiktoken.

    python tests/bench/data.py [--small-mb 100] [--large-mb 400] [--num-proc 2]

The embedded tinyworld corpus is written once to a text file (one story per line, the first
`small-mb` MB of the large one), then:
  * baseline: one process, tiktoken gpt2 `encode_ordinary_batch` over the same lines, single-threaded
    (and with its default 8 threads, for reference), reading the file the same way; and a plain loop
    of `encode_ordinary`, which is faster single-threaded than the batch call (no thread hand-off per
    document), so `ratio_vs_loop` is the stricter comparison;
  * prepare_shards with `num-proc` tokenizer processes on the small and the large file, each in a
    fresh subprocess that reports its own peak RSS (ru_maxrss) and the largest worker's;
  * the same with exact deduplication on, whose hash set grows with the number of documents.
Targets (issue 3): shards >= 1.6x the single-process baseline with 2 processes on 2 cores; peak RSS
at the large size within 10% of the small size. Prints a table and a last JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
_cache = ROOT.parent / "shared" / "tiktoken-cache"
if _cache.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_cache))

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from core.config import from_dict
from core.data import prepare_shards, read_meta
from core.tokenizer.encodings import get_tokenizer
src, num_proc, dedup, home = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
p = from_dict({"data": {"source": src, "txt_mode": "line", "num_proc": num_proc, "val_fraction": 0.01,
                        "filters": {"dedup_exact": dedup}},
               "tokenizer": {"kind": "tiktoken", "encoding": "gpt2"}})
tok = get_tokenizer("gpt2")
t = time.time()
folder = prepare_shards(p, tok)
dt = time.time() - t
meta = read_meta(folder)
print(json.dumps({"seconds": dt, "bytes": Path(src).stat().st_size, "tokens": meta["train_tokens"] + meta["val_tokens"],
                  "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def write_corpus(path: Path, mb: float, seed: int = 1337) -> Path:
    if path.exists() and path.stat().st_size >= mb * 1e6 * 0.99:
        return path
    from core.data.synthetic import iter_stories

    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for story in iter_stories(seed, int(mb * 1_000_000)):
            f.write(story + "\n")
    tmp.replace(path)
    return path


def prefix(src: Path, dst: Path, mb: float) -> Path:
    if dst.exists():
        return dst
    limit = int(mb * 1_000_000)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        n = 0
        for line in fin:
            if n >= limit:
                break
            fout.write(line)
            n += len(line)
    return dst


def baseline(path: Path, threads: int) -> dict:
    """Plain tiktoken over the same documents: read lines, encode_ordinary_batch in batches of 4096
    (threads = 0: a loop of encode_ordinary, the fastest single-threaded way)."""
    import tiktoken

    enc = tiktoken.get_encoding("gpt2")
    t = time.time()
    tokens = 0
    batch: list[str] = []

    def encode(batch: list[str]) -> int:
        if threads == 0:
            return sum(len(enc.encode_ordinary(x)) for x in batch)
        return sum(map(len, enc.encode_ordinary_batch(batch, num_threads=threads)))

    with open(path, encoding="utf-8") as f:
        for line in f:
            batch.append(line.rstrip("\n"))
            if len(batch) == 4096:
                tokens += encode(batch)
                batch = []
    if batch:
        tokens += encode(batch)
    dt = time.time() - t
    return {"seconds": dt, "bytes": path.stat().st_size, "tokens": tokens}


def shards(path: Path, num_proc: int, dedup: bool, home: Path) -> dict:
    env = {**os.environ, "LLMLAB_HOME": str(home), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(num_proc), "1" if dedup else "0", str(home)],
                         capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small-mb", type=float, default=100)
    ap.add_argument("--large-mb", type=float, default=400)
    ap.add_argument("--num-proc", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/llmlab-bench-data")
    ap.add_argument("--no-dedup-rows", action="store_true", help="skip the runs with exact dedup on")
    args = ap.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    t = time.time()
    large = write_corpus(d / f"tinyworld-{args.large_mb:g}mb.txt", args.large_mb)
    small = prefix(large, d / f"tinyworld-{args.small_mb:g}mb.txt", args.small_mb)
    gen_s = time.time() - t

    rows = []

    def add(name: str, r: dict) -> dict:
        r = {"name": name, **r, "mb_per_s": r["bytes"] / 1e6 / r["seconds"]}
        rows.append(r)
        return r

    base = add("tiktoken encode_ordinary_batch, 1 thread", baseline(small, 1))
    add("tiktoken encode_ordinary_batch, 8 threads", baseline(small, 8))
    loop = add("tiktoken encode_ordinary loop, 1 thread", baseline(small, 0))
    import shutil

    homes = d / "homes"
    shutil.rmtree(homes, ignore_errors=True)
    s_small = add(f"prepare_shards num_proc={args.num_proc} ({args.small_mb:g} MB)",
                  shards(small, args.num_proc, False, homes / "a"))
    s_large = add(f"prepare_shards num_proc={args.num_proc} ({args.large_mb:g} MB)",
                  shards(large, args.num_proc, False, homes / "b"))
    s_one = add(f"prepare_shards num_proc=1 ({args.small_mb:g} MB)", shards(small, 1, False, homes / "c"))
    if not args.no_dedup_rows:
        d_small = add(f"+ dedup_exact ({args.small_mb:g} MB)", shards(small, args.num_proc, True, homes / "d"))
        d_large = add(f"+ dedup_exact ({args.large_mb:g} MB)", shards(large, args.num_proc, True, homes / "e"))
    shutil.rmtree(homes, ignore_errors=True)

    print(f"corpus: {large} ({large.stat().st_size / 1e6:.0f} MB; generated/cached in {gen_s:.0f} s), cpus: {os.cpu_count()}")
    print(f"{'run':<46} {'MB':>7} {'s':>7} {'MB/s':>7} {'tokens':>12} {'RSS main':>9} {'RSS wkr':>8}")
    for r in rows:
        print(f"{r['name']:<46} {r['bytes'] / 1e6:>7.0f} {r['seconds']:>7.1f} {r['mb_per_s']:>7.2f} {r['tokens']:>12,} "
              f"{r.get('rss_main_mb', float('nan')):>9.0f} {r.get('rss_worker_mb', float('nan')):>8.0f}")
    result = {
        "bench": "data",
        "baseline_mb_per_s": round(base["mb_per_s"], 3),
        "shards_mb_per_s": round(s_small["mb_per_s"], 3),
        "shards_1proc_mb_per_s": round(s_one["mb_per_s"], 3),
        "ratio": round(s_small["mb_per_s"] / base["mb_per_s"], 3),
        "encode_ordinary_loop_mb_per_s": round(loop["mb_per_s"], 3),
        "ratio_vs_loop": round(s_small["mb_per_s"] / loop["mb_per_s"], 3),
        "num_proc": args.num_proc,
        "rss_main_mb": {f"{args.small_mb:g}": round(s_small["rss_main_mb"]), f"{args.large_mb:g}": round(s_large["rss_main_mb"])},
        "rss_growth": round(s_large["rss_main_mb"] / s_small["rss_main_mb"] - 1, 4),
        "rss_worker_mb": {f"{args.small_mb:g}": round(s_small["rss_worker_mb"]), f"{args.large_mb:g}": round(s_large["rss_worker_mb"])},
    }
    if not args.no_dedup_rows:
        result["rss_growth_dedup_exact"] = round(d_large["rss_main_mb"] / d_small["rss_main_mb"] - 1, 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
