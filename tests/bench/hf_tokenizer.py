"""Benchmark: encoding throughput of a real model's tokenizer through llmlab against transformers' fast tokenizer.

    python tests/bench/hf_tokenizer.py [--gguf PATH] [--mb 1] [--vocab 32000] [--repeat 5]

The tokenizer is SmolLM2-135M-Instruct's (49,152 ids, from its GGUF file through transformers,
saved as the tokenizer.json + tokenizer_config.json a checkpoint keeps) when --gguf names the file
(tests/smollm2_fixture.py fetches it), else a byte-level BPE of --vocab ids trained with
`tokenizers` on the zipf corpus of tests/bench/tokenizer.py. Both sides encode the same documents
without special tokens: single (one call per document: `HFTokenizer.encode` against
`PreTrainedTokenizerFast.encode(add_special_tokens=False)`) and batch (`encode_batch` against
`tokenizer(docs)["input_ids"]`). The ids are checked equal first. Target: llmlab >= 1.0x both.
Prints a table and a last JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tokenizer import zipf_corpus  # noqa: E402  (tests/bench/tokenizer.py)

from core.tokenizer import load_tokenizer  # noqa: E402


def folder_from_gguf(gguf: Path, out: Path) -> Path:
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(out))
    return out


def folder_trained(docs: list[str], vocab: int, out: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(docs, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                      show_progress=False))
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast",
                                                           "eos_token": "<|endoftext|>"}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", type=Path, default=None, help="SmolLM2-135M-Instruct.Q4_1.gguf (else a trained BPE)")
    ap.add_argument("--mb", type=float, default=1.0, help="MB of text to encode")
    ap.add_argument("--vocab", type=int, default=32000, help="vocabulary of the trained BPE (without --gguf)")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved repetitions; the best of each counts")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    docs = zipf_corpus(int(args.mb * 1e6))
    n_bytes = sum(len(d.encode()) for d in docs)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folder = (folder_from_gguf(args.gguf, Path(tmp) / "tok") if args.gguf
                  else folder_trained(docs, args.vocab, Path(tmp) / "tok"))
        setup_s = time.perf_counter() - t0
        ours, hf = load_tokenizer(folder), AutoTokenizer.from_pretrained(str(folder))
    sample = docs[:200]
    assert [ours.encode(d) for d in sample] == [hf.encode(d, add_special_tokens=False) for d in sample]
    assert ours.encode_batch(sample) == hf(sample, add_special_tokens=False)["input_ids"]

    rows = {
        ("llmlab", "single"): lambda ds: sum(len(ours.encode(d)) for d in ds),
        ("transformers", "single"): lambda ds: sum(len(hf.encode(d, add_special_tokens=False)) for d in ds),
        ("llmlab", "batch"): lambda ds: sum(map(len, ours.encode_batch(ds))),
        ("transformers", "batch"): lambda ds: sum(map(len, hf(ds, add_special_tokens=False)["input_ids"])),
    }
    best = {k: float("inf") for k in rows}
    for _ in range(args.repeat):  # interleaved, best of each: a busy machine slows both sides alike
        for k, f in rows.items():
            t0 = time.perf_counter()
            f(docs)
            best[k] = min(best[k], time.perf_counter() - t0)
    mbs = {k: n_bytes / s / 1e6 for k, s in best.items()}
    ratio = {mode: mbs[("llmlab", mode)] / mbs[("transformers", mode)] for mode in ("single", "batch")}
    name = f"SmolLM2-135M ({ours.n_vocab} ids)" if args.gguf else f"trained byte-level BPE ({ours.n_vocab} ids)"
    print(f"tokenizer: {name}, set up in {setup_s:.1f} s; {n_bytes / 1e6:.1f} MB of zipf text; {os.cpu_count()} CPUs; "
          f"TOKENIZERS_PARALLELISM={os.environ.get('TOKENIZERS_PARALLELISM', '(unset)')}")
    print(f"{'mode':<8} {'llmlab MB/s':>12} {'transformers MB/s':>18} {'ratio':>7}")
    for mode in ("single", "batch"):
        print(f"{mode:<8} {mbs[('llmlab', mode)]:>12.2f} {mbs[('transformers', mode)]:>18.2f} {ratio[mode]:>7.2f}")
    print(f"llmlab / transformers: {ratio['single']:.2f}x single, {ratio['batch']:.2f}x batch; target >= 1.0x")
    print(json.dumps({"bench": "hf_tokenizer", "tokenizer": name, "n_vocab": ours.n_vocab,
                      "encode_mb": round(n_bytes / 1e6, 2),
                      "mb_per_s": {f"{who}_{mode}": round(v, 3) for (who, mode), v in mbs.items()},
                      "ratio_single": round(ratio["single"], 3), "ratio_batch": round(ratio["batch"], 3),
                      "target_met": min(ratio.values()) >= 1.0}))


if __name__ == "__main__":
    main()
