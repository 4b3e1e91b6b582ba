"""Shared fixtures of the export tests: a trained byte-level BPE, checkpoints of our models, and a
checkpoint whose tokenizer is a Hugging Face tokenizer.json (as the import of real models writes it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
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


def llama_cpp_model(path: Path, **kw):
    """`llama_cpp.Llama` on llama.cpp's plain CPU kernels, weight repacking (llama-cli's `--no-repack`)
    off: llama.cpp's AMX kernels crash the process on quantized models on this machine (README, GGUF)."""
    import llama_cpp
    import llama_cpp.llama as api

    default = api.llama_cpp.llama_model_default_params

    def no_repack():
        p = default()
        p.use_extra_bufts = False
        return p

    api.llama_cpp.llama_model_default_params = no_repack
    try:
        return llama_cpp.Llama(model_path=str(path), verbose=False, **kw)
    finally:
        api.llama_cpp.llama_model_default_params = default


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


class HFTokens:
    """What core.eval.perplexity needs of a tokenizer, over a `tokenizers` tokenizer."""

    def __init__(self, tok, specials: set[int], eot: int):
        from core.model.hf_tokenizer import bytes_to_unicode

        self.tok, self.specials, self.eot_id, self.n_vocab = tok, specials, eot, tok.get_vocab_size()
        self.u2b = {u: b for b, u in bytes_to_unicode().items()}

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def is_special(self, i: int) -> bool:
        return i in self.specials

    def token_bytes(self, i: int) -> bytes:
        return bytes(self.u2b[c] for c in self.tok.id_to_token(i))


def smollm2_checkpoint(tmp: Path, gguf_path: Path):
    """(checkpoint, model, tokenizer) of the real SmolLM2 weights with their tokenizer as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from core.model.gguf_import import read_gguf

    r = gguf.GGUFReader(str(gguf_path))
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("tokenizer.ggml.token_type")}
    cfg = ModelConfig(n_layer=30, n_head=9, n_kv_head=3, n_embd=576, context_length=8192, vocab_size=49152,
                      norm="rmsnorm", norm_eps=1e-5, position="rope", rope_theta=100000.0, mlp="swiglu",
                      mlp_hidden=1536, bias=False, tie_embeddings=True)
    model, _ = read_gguf(gguf_path, cfg)
    tokens, types = f["tokenizer.ggml.tokens"], r.fields["tokenizer.ggml.token_type"].contents()
    specials = {i for i, t in enumerate(types) if t == 3}
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                               merges=[tuple(m.split(" ", 1)) for m in f["tokenizer.ggml.merges"]]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([tokens[i] for i in sorted(specials)])
    meta = {"tokenizer": {"name": "SmolLM2", "folder": "tokenizer", "kind": "hf"},
            "lineage": {"imported_from": str(gguf_path)}}
    ckpt = write_checkpoint(tmp / "ckpt", 0, model, extra=meta)
    (ckpt / "tokenizer").mkdir()
    tok.save(str(ckpt / "tokenizer" / "tokenizer.json"))
    config = {"bos_token": tokens[f["tokenizer.ggml.bos_token_id"]], "eos_token": tokens[f["tokenizer.ggml.eos_token_id"]],
              "chat_template": f["tokenizer.chat_template"], "add_bos_token": False}
    (ckpt / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(config))
    return ckpt, model, HFTokens(tok, specials, tokens.index("<|endoftext|>"))
