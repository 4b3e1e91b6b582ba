"""Benchmark: BPE training time and encoding throughput against tiktoken's gpt2.

    python tests/bench/tokenizer.py [--mb 50] [--vocab 8192] [--corpus zipf|embedded]

Trains a `vocab`-sized BPE (rustbpe, as `core.tokenizer.train_bpe` does) on `mb` MB of text, then
encodes the same text with the trained tokenizer and with tiktoken's gpt2, single-threaded
(`encode_ordinary` per document) and batched (`encode_ordinary_batch`, 8 threads). Target: the
trained tokenizer within 10% of gpt2's throughput. Prints a table and a last JSON line.

Corpora: `embedded` is core.data.synthetic's tinyworld stories, whose small world allows only ~700
merges (every word becomes one token), so vocab 8192 cannot be reached on it; `zipf` (default) is a
procedural English-like text over 60,000 made-up words with Zipf-distributed frequencies,
punctuation, numbers and capitals, which has the merge depth of real text.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
_cache = Path(__file__).resolve().parents[3] / "shared" / "tiktoken-cache"
if _cache.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_cache))

import tiktoken  # noqa: E402

from core.tokenizer import train_bpe  # noqa: E402
from core.tokenizer.encodings import load_builtin  # noqa: E402

_ONSETS = ["", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "st", "tr", "ch",
           "sh", "th", "pl", "gr", "br", "cl", "fr"]
_VOWELS = ["a", "e", "i", "o", "u", "ea", "ou", "ai", "ee", "oo", "y"]
_CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck", "rt", "ll", "ss"]
_SUFFIXES = ["", "", "", "s", "ed", "ing", "ly", "er", "ion", "ness", "able"]


def zipf_corpus(n_bytes: int, seed: int = 0, n_words: int = 60_000) -> list[str]:
    """Paragraphs of made-up English-like words: Zipf frequencies, sentences, numbers, quotes."""
    rng = random.Random(seed)
    words = []
    for _ in range(n_words):
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                    for _ in range(rng.choice((1, 1, 2, 2, 2, 3, 3, 4))))
        words.append(w + rng.choice(_SUFFIXES))
    cum, acc = [], 0.0
    for i in range(n_words):  # cumulative weights once: rng.choices(weights=) re-sums them per call
        acc += 1.0 / (i + 1)
        cum.append(acc)
    docs, total = [], 0
    while total < n_bytes:
        sentences = []
        for _ in range(rng.randint(3, 12)):
            ws = rng.choices(words, cum_weights=cum, k=rng.randint(4, 20))
            if rng.random() < 0.2:
                ws.insert(rng.randrange(len(ws)), str(rng.randint(0, 9999)))
            if rng.random() < 0.3:
                i = rng.randrange(len(ws))
                ws[i] = ws[i] + ","
            s = " ".join(ws)
            s = s[0].upper() + s[1:] + rng.choice((".", ".", ".", "?", "!"))
            if rng.random() < 0.1:
                s = f'"{s}"'
            sentences.append(s)
        doc = " ".join(sentences) + rng.choice(("\n", "\n\n"))
        docs.append(doc)
        total += len(doc.encode())
    return docs


def embedded_corpus(n_bytes: int) -> list[str]:
    from core.data.synthetic import iter_stories
    return list(iter_stories(seed=1337, max_bytes=n_bytes))


def throughput(encode_docs, docs: list[str], n_bytes: int, repeat: int = 3) -> tuple[float, int]:
    """Best of `repeat` runs, in MB/s, and the token count."""
    best, n_tokens = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n_tokens = encode_docs(docs)
        best = min(best, time.perf_counter() - t0)
    return n_bytes / best / 1e6, n_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=50.0, help="MB of text to train and encode on")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--corpus", choices=("zipf", "embedded"), default="zipf")
    ap.add_argument("--encode-mb", type=float, default=10.0, help="MB of that text to measure encoding on")
    args = ap.parse_args()

    n_bytes = int(args.mb * 1e6)
    t0 = time.perf_counter()
    docs = zipf_corpus(n_bytes) if args.corpus == "zipf" else embedded_corpus(n_bytes)
    gen_s = time.perf_counter() - t0
    n_bytes = sum(len(d.encode()) for d in docs)

    t0 = time.perf_counter()
    tok = train_bpe(docs, args.vocab, name=f"bench{args.vocab}")
    train_s = time.perf_counter() - t0

    enc_docs, enc_bytes = [], 0
    for d in docs:
        if enc_bytes >= args.encode_mb * 1e6:
            break
        enc_docs.append(d)
        enc_bytes += len(d.encode())
    gpt2 = load_builtin("gpt2")
    assert isinstance(gpt2, tiktoken.Encoding)
    ours = tok.enc

    def single(enc):
        return lambda ds: sum(len(enc.encode_ordinary(d)) for d in ds)

    def batched(enc):
        return lambda ds: sum(len(x) for x in enc.encode_ordinary_batch(ds, num_threads=8))

    results = {}
    for label, enc in (("trained", ours), ("gpt2", gpt2)):
        mbs1, n_tok = throughput(single(enc), enc_docs, enc_bytes)
        mbs8, _ = throughput(batched(enc), enc_docs, enc_bytes)
        results[label] = {"mb_per_s_1thread": mbs1, "mb_per_s_batch8": mbs8, "tokens": n_tok,
                          "bytes_per_token": enc_bytes / n_tok}
    ratio1 = results["trained"]["mb_per_s_1thread"] / results["gpt2"]["mb_per_s_1thread"]
    ratio8 = results["trained"]["mb_per_s_batch8"] / results["gpt2"]["mb_per_s_batch8"]

    print(f"corpus: {args.corpus}, {n_bytes / 1e6:.1f} MB generated in {gen_s:.1f} s; {os.cpu_count()} CPUs")
    print(f"training: vocab {args.vocab} on {n_bytes / 1e6:.1f} MB in {train_s:.1f} s "
          f"({n_bytes / 1e6 / train_s:.2f} MB/s)")
    print(f"encoding {enc_bytes / 1e6:.1f} MB (best of 3):")
    print(f"{'tokenizer':<10} {'n_vocab':>8} {'MB/s 1 thread':>14} {'MB/s batch':>11} {'bytes/token':>12}")
    for label, enc in (("trained", ours), ("gpt2", gpt2)):
        r = results[label]
        print(f"{label:<10} {enc.n_vocab:>8} {r['mb_per_s_1thread']:>14.2f} {r['mb_per_s_batch8']:>11.2f} "
              f"{r['bytes_per_token']:>12.3f}")
    print(f"trained / gpt2 throughput: {ratio1:.3f} (1 thread), {ratio8:.3f} (batch); target >= 0.90")
    print(json.dumps({"bench": "tokenizer", "corpus": args.corpus, "train_mb": round(n_bytes / 1e6, 2),
                      "vocab": args.vocab, "train_s": round(train_s, 2), "encode_mb": round(enc_bytes / 1e6, 2),
                      "trained": {k: round(v, 3) for k, v in results["trained"].items()},
                      "gpt2": {k: round(v, 3) for k, v in results["gpt2"].items()},
                      "throughput_ratio_1thread": round(ratio1, 3), "throughput_ratio_batch": round(ratio8, 3),
                      "within_10pct": ratio1 >= 0.9}))


if __name__ == "__main__":
    main()
