"""GGUF export of a SmolLM2-135M-shaped model: seconds and size per type, and the perplexity change.

The model is a *random* Llama of SmolLM2-135M's shape (30 layers, width 576, 9 heads / 3 KV
heads, SwiGLU 1536, vocab 49,152, tied head) built by transformers, saved and imported with
`llmlab import-hf`; its tokenizer is a 768-id BPE (as the tiny preset's) trained on the embedded stories (the rest of
the vocabulary is padding). The real SmolLM2 weights come with the GGUF import of another branch;
rerun this then. Perplexity is on 8 KB of held-out embedded stories, through our dequantized
reading of each file. Run: python tests/bench/export.py [--threads N] [--types f32,f16,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from core.data.synthetic import iter_stories  # noqa: E402
from core.model.gguf_export import GGUF_TYPES, export_gguf  # noqa: E402
from core.model.hf import import_hf  # noqa: E402
from core.tokenizer.train import train_bpe  # noqa: E402

SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)


def build(tmp: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).save_pretrained(tmp / "hf")
    tok = train_bpe(list(iter_stories(7, 2_000_000)), 768, name="bench-bpe")
    return import_hf(tmp / "hf", tmp / "ckpt", tokenizer=tok)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--types", default=",".join(GGUF_TYPES))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        ckpt = build(tmp)
        print(f"built and imported the model in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        for t in args.types.split(","):
            r = export_gguf(ckpt, tmp / f"model-{t}.gguf", t, measure=t.startswith("q"))
            p = r.perplexity or {}
            change = 100 * (p["after"] / p["before"] - 1) if p else None
            rows.append({"type": t, "export_s": round(r.seconds, 2), "mb": round(r.bytes / 1e6, 1),
                         "ppl_before": p.get("before"), "ppl_after": p.get("after"),
                         "ppl_change_pct": None if change is None else round(change, 3)})
            (tmp / f"model-{t}.gguf").unlink()
    print(f"{'type':6} {'export s':>9} {'MB':>8} {'ppl before':>11} {'ppl after':>10} {'change':>8}")
    for r in rows:
        ppl = (f"{r['ppl_before']:11.1f} {r['ppl_after']:10.1f} {r['ppl_change_pct']:+7.3f}%"
               if r["ppl_before"] else f"{'':11} {'':10} {'':8}")
        print(f"{r['type']:6} {r['export_s']:9.2f} {r['mb']:8.1f} {ppl}")
    print(json.dumps({"bench": "export", "model": "random SmolLM2-135M shape", "threads": args.threads,
                      "rows": rows}))


if __name__ == "__main__":
    main()
