"""Shared fixtures of the export tests: a trained byte-level BPE, checkpoints of our models, and a
checkpoint whose tokenizer is a Hugging Face tokenizer.json (as the import of real models writes it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from core.checkpoint import write_checkpoint
from core.config import ModelConfig
from core.data.synthetic import iter_stories
from core.model.gpt import GPT
from core.tokenizer.train import train_bpe

GPT2_STYLE: dict = {}
LLAMA_STYLE = dict(norm="rmsnorm", position="rope", mlp="swiglu", bias=False, tie_embeddings=False, n_kv_head=2)

_TOKENIZER = None


def trained_bpe():
    """A 320-id BPE of the GPT-4 split pattern, trained once per session on synthetic stories."""
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = train_bpe(list(iter_stories(11, 60_000)), 320, name="export-bpe")
    return _TOKENIZER


def sharp_model(vocab: int, seed: int = 0, std: float = 0.3, **style) -> GPT:
    """A tiny random GPT with large weights, so greedy choices have wide margins (no ties by rounding)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(n_layer=2, n_head=4, n_embd=64, context_length=64, vocab_size=vocab, **style)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(1.0 if p.dim() == 1 else 0.0, std)
    return model.eval()


def our_checkpoint(tmp: Path, style: dict, tokenizer=None, name: str = "ckpt", **kw) -> Path:
    tok = tokenizer or trained_bpe()
    return write_checkpoint(tmp / name, 3, sharp_model(tok.n_vocab, **style, **kw), tokenizer=tok)


def hf_kind_checkpoint(tmp: Path, hf_folder: Path, model: GPT) -> Path:
    """A checkpoint whose model.json says tokenizer kind "hf", with tokenizer/{tokenizer.json, ...}."""
    meta = {"tokenizer": {"name": "hf", "folder": "tokenizer", "kind": "hf"}}
    ckpt = write_checkpoint(tmp / "hf-ckpt", 1, model, extra=meta)
    (ckpt / "tokenizer").mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(hf_folder / f, ckpt / "tokenizer" / f)
    return ckpt


def hf_tokenizer_folder(tmp: Path, chat_template: str) -> Path:
    """A byte-level BPE tokenizer.json trained with `tokenizers`, with Llama-3-style specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(iter_stories(5, 40_000)), trainer)
    out = tmp / "hf-tok"
    out.mkdir()
    tok.save(str(out / "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
           "eos_token": "<|eot_id|>", "chat_template": chat_template}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg))
    return out


LLAMA3_JINJA = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n'"
                " + m['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
                "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

MESSAGES = [{"role": "system", "content": "You are kind."}, {"role": "user", "content": "Where is Sam?"},
            {"role": "assistant", "content": "Sam is at the beach."}, {"role": "user", "content": "And Amy?"}]
