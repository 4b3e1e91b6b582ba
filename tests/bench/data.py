"""Benchmark: shard preparation throughput with 1, 2 and all cores' workers, and peak memory at two corpus sizes.

    python tests/bench/data.py [--small-mb 20] [--large-mb 80] [--workers 1,2,0]   (0 = os.cpu_count())

The corpus has the FineWeb-Edu shape: a jsonl of records with a `text` field (and id, url, score,
...), read as a stream, line by line; the documents are the embedded tinyworld stories, ~10 to a
record (FineWeb-Edu's documents average a few thousand characters). The small file is the first
`small-mb` MB of the large one. Rows:
  * baseline: one process, tiktoken gpt2 over the same texts (`encode_ordinary` in a loop, the
    fastest single-threaded way, and `encode_ordinary_batch` with 8 threads for reference);
  * prepare_shards with N workers on the small file (default filters): MB/s of text and the peak
    RSS of the main process and of the largest worker, each in a fresh subprocess (ru_maxrss);
  * with the length, word, non-letter and repeated-line rules on, at the fewest and most workers;
  * with exact dedup on, at the small and the large size: the peak memory growth with corpus size.
Each row also reports the CPU-seconds of the main process and of the workers: on a loaded machine
wall time says little, but the main process's CPU per MB bounds what free cores can reach.
This machine may be shared: the load average is printed beside the numbers. Prints a table and a
last JSON line.
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
src, workers, dedup, home, rules = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], sys.argv[5] == "1"
filters = {"dedup_exact": dedup, **({"max_non_letter_frac": 0.3, "max_repeated_line_frac": 0.5, "min_words": 5} if rules else {})}
p = from_dict({"data": {"source": src, "workers": workers, "val_fraction": 0.01, "filters": filters},
               "tokenizer": {"kind": "tiktoken", "encoding": "gpt2"}})
tok = get_tokenizer("gpt2")
def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime
cpu0 = cpu(resource.RUSAGE_SELF)
t = time.time()
folder = prepare_shards(p, tok)
dt = time.time() - t
meta = read_meta(folder)
print(json.dumps({"seconds": dt, "bytes": meta["chars"], "tokens": meta["train_tokens"] + meta["val_tokens"],
                  "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "cpu_main_s": cpu(resource.RUSAGE_SELF) - cpu0, "cpu_workers_s": cpu(resource.RUSAGE_CHILDREN)}))
"""


def write_corpus(path: Path, mb: float, seed: int = 1337) -> Path:
    """FineWeb-Edu-shaped records (text, id, dump, url, language, language_score, token_count, score)."""
    if path.exists() and path.stat().st_size >= mb * 1e6 * 0.99:
        return path
    from core.data.synthetic import iter_stories

    tmp = path.with_suffix(".tmp")
    group: list[str] = []
    n = 0
    with open(tmp, "w") as f:
        for story in iter_stories(seed, int(mb * 1_000_000)):
            group.append(story)
            if len(group) == 10:
                text = "\n\n".join(group)
                f.write(json.dumps({"text": text, "id": f"<urn:uuid:{n:08d}>", "dump": "CC-MAIN-2024-10",
                                    "url": f"https://example.org/{n}", "language": "en", "language_score": 0.97,
                                    "token_count": len(text) // 4, "score": 3.1, "int_score": 3}) + "\n")
                group, n = [], n + 1
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
    """Plain tiktoken over the same texts: read records, encode in batches of 1024 (threads = 0: a
    loop of encode_ordinary, the fastest single-threaded way)."""
    import tiktoken

    enc = tiktoken.get_encoding("gpt2")
    t = time.time()
    tokens, chars = 0, 0
    batch: list[str] = []

    def encode(batch: list[str]) -> int:
        if threads == 0:
            return sum(len(enc.encode_ordinary(x)) for x in batch)
        return sum(map(len, enc.encode_ordinary_batch(batch, num_threads=threads)))

    with open(path, encoding="utf-8") as f:
        for line in f:
            batch.append(json.loads(line)["text"])
            chars += len(batch[-1])
            if len(batch) == 1024:
                tokens += encode(batch)
                batch = []
    if batch:
        tokens += encode(batch)
    return {"seconds": time.time() - t, "bytes": chars, "tokens": tokens}


def shards(path: Path, workers: int, dedup: bool, home: Path, rules: bool = False) -> dict:
    env = {**os.environ, "LLMLAB_HOME": str(home), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(workers), "1" if dedup else "0", str(home),
                          "1" if rules else "0"],
                         capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small-mb", type=float, default=20)
    ap.add_argument("--large-mb", type=float, default=80)
    ap.add_argument("--workers", default="1,2,0", help="worker counts to measure (0 = os.cpu_count())")
    ap.add_argument("--dir", default="/tmp/llmlab-bench-data")
    args = ap.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    t = time.time()
    large = write_corpus(d / f"fineweb-shape-{args.large_mb:g}mb.jsonl", args.large_mb)
    small = prefix(large, d / f"fineweb-shape-{args.small_mb:g}mb.jsonl", args.small_mb)
    gen_s = time.time() - t
    counts = sorted({int(w) or (os.cpu_count() or 1) for w in args.workers.split(",")})
    rows = []

    def add(name: str, r: dict) -> dict:
        r = {"name": name, **r, "mb_per_s": r["bytes"] / 1e6 / r["seconds"], "load": round(os.getloadavg()[0], 1)}
        rows.append(r)
        return r

    import shutil

    homes = d / "homes"
    shutil.rmtree(homes, ignore_errors=True)
    loop = add("tiktoken encode_ordinary loop, 1 thread", baseline(small, 0))
    add("tiktoken encode_ordinary_batch, 8 threads", baseline(small, 8))
    by_workers = {w: add(f"prepare_shards workers={w} ({args.small_mb:g} MB)", shards(small, w, False, homes / f"w{w}"))
                  for w in counts}
    rules = {w: add(f"+ rules, workers={w} ({args.small_mb:g} MB)", shards(small, w, True, homes / f"r{w}", True))
             for w in (counts[0], counts[-1])}
    w_mem = max(counts)
    d_small = add(f"+ dedup_exact, workers={w_mem} ({args.small_mb:g} MB)", shards(small, w_mem, True, homes / "ds"))
    d_large = add(f"+ dedup_exact, workers={w_mem} ({args.large_mb:g} MB)", shards(large, w_mem, True, homes / "dl"))
    shutil.rmtree(homes, ignore_errors=True)

    print(f"corpus: {large} ({large.stat().st_size / 1e6:.0f} MB; generated/cached in {gen_s:.0f} s), "
          f"cpus: {os.cpu_count()}; shared machine: `load` is the 1-minute load average at the end of each row")
    print("CPU main / wkr: CPU-seconds of the main process / of all workers; on free cores the main process's "
          "CPU per MB bounds the throughput (`ceiling`)")
    print(f"{'run':<46} {'MB':>6} {'s':>7} {'MB/s':>6} {'tokens':>11} {'RSS main':>9} {'RSS wkr':>8} "
          f"{'CPU main':>9} {'CPU wkr':>8} {'load':>5}")
    nan = float("nan")
    for r in rows:
        print(f"{r['name']:<46} {r['bytes'] / 1e6:>6.0f} {r['seconds']:>7.1f} {r['mb_per_s']:>6.2f} {r['tokens']:>11,} "
              f"{r.get('rss_main_mb', nan):>9.0f} {r.get('rss_worker_mb', nan):>8.0f} {r.get('cpu_main_s', nan):>9.2f} "
              f"{r.get('cpu_workers_s', nan):>8.2f} {r['load']:>5}")
    one = by_workers[counts[0]]
    print(json.dumps({
        "bench": "data",
        "cpus": os.cpu_count(),
        "encode_ordinary_loop_mb_per_s": round(loop["mb_per_s"], 3),
        "mb_per_s_by_workers": {str(w): round(r["mb_per_s"], 3) for w, r in by_workers.items()},
        "speedup_by_workers": {str(w): round(r["mb_per_s"] / one["mb_per_s"], 3) for w, r in by_workers.items()},
        "cpu_main_s_by_workers": {str(w): round(r["cpu_main_s"], 2) for w, r in by_workers.items()},
        "cpu_workers_s_by_workers": {str(w): round(r["cpu_workers_s"], 2) for w, r in by_workers.items()},
        "ceiling_mb_per_s_by_workers": {str(w): round(r["bytes"] / 1e6 / r["cpu_main_s"], 2) for w, r in by_workers.items()},
        "rules_cpu_main_s_by_workers": {str(w): round(r["cpu_main_s"], 2) for w, r in rules.items()},
        "rules_mb_per_s_by_workers": {str(w): round(r["mb_per_s"], 3) for w, r in rules.items()},
        "rss_main_mb_by_workers": {str(w): round(r["rss_main_mb"]) for w, r in by_workers.items()},
        "rss_worker_mb_by_workers": {str(w): round(r["rss_worker_mb"]) for w, r in by_workers.items()},
        "rss_main_mb_dedup": {f"{args.small_mb:g}": round(d_small["rss_main_mb"]),
                              f"{args.large_mb:g}": round(d_large["rss_main_mb"])},
        "rss_growth_dedup_exact": round(d_large["rss_main_mb"] / d_small["rss_main_mb"] - 1, 4),
        "load_avg": [r["load"] for r in rows],
    }))


if __name__ == "__main__":
    main()
