"""GGUF out: a checkpoint as one file that llama.cpp, Ollama and LM Studio load.

`export_gguf(checkpoint, out, gguf_type)` writes the architecture keys llama.cpp expects (arch
`gpt2` or `llama`), the weights in f32/f16/bf16/q8_0/q4_0 (quantized with `gguf.quants`), the
byte-level BPE (tokens, merges, token types, BOS/EOS/EOT, the llama.cpp pre-tokenizer that splits
text as ours does) and the chat template as Jinja. Tensor names come from the gguf package's own
tables. core.model.gguf_import reads such a file back, dequantized, into our GPT, which is how the
export measures the perplexity a quantization costs. The file is written to a temporary sibling
and renamed, after core.safety has checked the target.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gguf
import numpy as np
import torch

from core.config import GPT4_SPLIT_PATTERN, ModelConfig
from core.errors import UserError
from core.model.gpt import GPT
from core.model.hf_tokenizer import BpeVocab, bpe_vocab, chat_template_jinja, hf_tokenizer_folder, read_hf_vocab
from core.model.stats import head_dim, kv_heads, mlp_hidden_size

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0")
Q = gguf.GGMLQuantizationType
FILE_TYPE = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
             "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}
MATRIX_TYPE = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0}
# under q4_0 the embeddings and the output head stay q8_0, as llama.cpp's own quantizer keeps the
# head at a higher precision: they are the tensors whose error the model cannot average out
EMBEDDINGS = (gguf.MODEL_TENSOR.TOKEN_EMBD, gguf.MODEL_TENSOR.POS_EMBD, gguf.MODEL_TENSOR.OUTPUT)

# split regexes (as tiktoken and tokenizer.json write them) -> llama.cpp's pre-tokenizer with the
# same splitting. Ours is Llama-3's (= cl100k's) regex in other words: possessive quantifiers and
# `\s*[\r\n]` instead of `\s*[\r\n]+` match the same pieces. tiktoken's cl100k_base and o200k_base
# add `\s++$`, which splits trailing whitespace differently, so they have no entry.
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")
GPT2_TIKTOKEN_REGEX = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"
PRE_TOKENIZERS = {GPT4_SPLIT_PATTERN: "llama-bpe", LLAMA3_REGEX: "llama-bpe", QWEN2_REGEX: "qwen2",
                  GPT2_TIKTOKEN_REGEX: "gpt-2"}


@dataclass
class GgufExport:
    """What an export wrote and measured (the CLI prints it)."""

    path: Path
    gguf_type: str
    arch: str
    n_tensors: int
    bytes: int
    seconds: float
    pre_tokenizer: str
    chat_template: bool
    merged_adapter: str | None = None  # the base a LoRA checkpoint was merged into
    perplexity: dict | None = None  # {"before", "after", "tokens"} on held-out text (quantized types)
    modelfile: Path | None = None
    note: str | None = None  # what was not done, and why


# --------------------------------------------------------------------------------- tokenizer

def _pre_tokenizer(v: BpeVocab) -> str:
    """llama.cpp's pre-tokenizer name for this vocabulary's splitting, or UserError saying why none fits."""
    if v.pattern is not None:
        pre = PRE_TOKENIZERS.get(v.pattern)
        if pre is None:
            raise UserError(f"tokenizer pattern {v.pattern!r} has no llama.cpp pre-tokenizer that splits text the same "
                            f"way (known: GPT-2's, Llama-3's and this project's default); llama.cpp would tokenize "
                            f"prompts differently from training, so the export is refused")
        return pre
    return _hf_pre_tokenizer(v.pre_tokenizer or {})


def _hf_pre_tokenizer(p: dict) -> str:
    """The same for a tokenizer.json pre_tokenizer: GPT-2's ByteLevel, SmolLM's digits + ByteLevel,
    or a Split regex of the table followed by a ByteLevel without its own regex."""
    steps = p.get("pretokenizers", [p]) if p.get("type") == "Sequence" else [p]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        pre = PRE_TOKENIZERS.get((steps[0].get("pattern") or {}).get("Regex", ""))
        if pre is not None:
            return pre
    raise UserError(f"tokenizer.json: pre_tokenizer {kinds} has no llama.cpp pre-tokenizer known to split the same "
                    f"way; the export is refused rather than tokenizing prompts differently")


def _add_tokenizer(w: gguf.GGUFWriter, v: BpeVocab, n_vocab: int, jinja: str | None, bos: int | None,
                   eos: int | None, eot: int | None, add_bos: bool) -> None:
    if len(v.tokens) > n_vocab:
        raise UserError(f"the tokenizer has {len(v.tokens)} ids but the model only {n_vocab} embedding rows")
    tokens, types = [], []
    special_ids = set(v.specials.values())
    for i in range(n_vocab):
        t = v.tokens[i] if i < len(v.tokens) else None
        if t is None:  # a padding row of the embedding, or a hole in the ids
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(t)
            types.append(gguf.TokenType.CONTROL if i in special_ids else gguf.TokenType.NORMAL)
    w.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    w.add_tokenizer_pre(_pre_tokenizer(v))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([f"{a} {b}" for a, b in v.merges])
    for add, tid in ((w.add_bos_token_id, bos), (w.add_eos_token_id, eos), (w.add_eot_token_id, eot)):
        if tid is not None:
            add(tid)
    w.add_add_bos_token(add_bos)
    w.add_add_eos_token(False)
    if jinja:
        w.add_chat_template(jinja)


@dataclass
class TokenizerInfo:
    vocab: BpeVocab
    jinja: str | None
    bos: int | None
    eos: int | None
    eot: int | None
    add_bos: bool


def tokenizer_info(ckpt: Path, meta: dict, tokenizer: TextTokenizer | None) -> TokenizerInfo:
    """Vocabulary, chat template and special ids of a checkpoint: ours, or an imported HF tokenizer."""
    folder = hf_tokenizer_folder(ckpt, meta)
    if folder is not None:
        from core.model.hf_tokenizer import special_id

        v = read_hf_vocab(folder)
        jinja = v.config.get("chat_template")
        if (folder / "chat_template.jinja").is_file():  # where transformers 5 saves it (a GGUF import's)
            jinja = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        if isinstance(jinja, list):  # named templates: the default one
            jinja = next((t.get("template") for t in jinja if t.get("name") == "default"), None)
        eos = special_id(v, "eos_token")
        eot = next((v.specials[t] for t in ("<|eot_id|>", "<|im_end|>") if t in v.specials), eos)
        add_bos = bool(v.config.get("add_bos_token", _post_processor_adds_bos(folder)))
        return TokenizerInfo(v, jinja, special_id(v, "bos_token"), eos, eot, add_bos)
    if tokenizer is None:
        raise UserError(f"{ckpt}: has no tokenizer; a GGUF file carries its tokenizer, so the model cannot be exported")
    from core.tokenizer.encodings import Tokenizer

    assert isinstance(tokenizer, Tokenizer)  # a Hugging Face tokenizer (kind "hf") took the branch above
    specials = tokenizer.special_tokens
    eot = specials.get("<|im_end|>", tokenizer.eot_id)
    # our prompts start without a BOS (generate encodes the text as it is); the chat template adds it
    return TokenizerInfo(bpe_vocab(tokenizer), chat_template_jinja(tokenizer), tokenizer.eot_id, tokenizer.eot_id,
                         eot, False)


def _post_processor_adds_bos(folder: Path) -> bool:
    import json

    post = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8")).get("post_processor") or {}
    steps = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    return any(s.get("type") == "TemplateProcessing" and "SpecialToken" in (s.get("single") or [{}])[0]
               for s in steps)


# ----------------------------------------------------------------------------------- weights

def _name(t: gguf.MODEL_TENSOR, suffix: str, bid: int | None = None) -> str:
    return gguf.TENSOR_NAMES[t].format(bid=bid) + "." + suffix


def _rope_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF's rotate-half layout -> llama.cpp's interleaved pairs (convert_hf_to_gguf's permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(model: GPT, arch: str) -> Iterator[tuple[str, gguf.MODEL_TENSOR, torch.Tensor]]:
    """(GGUF name, tensor kind, fp32 tensor) for every weight, in llama.cpp's layout."""
    T, cfg, w = gguf.MODEL_TENSOR, model.config, model.weights()
    top = [("wte", T.TOKEN_EMBD), ("wpe", T.POS_EMBD), ("ln_f", T.OUTPUT_NORM), ("lm_head", T.OUTPUT)]
    for ours, kind in top:
        for suffix in ("weight", "bias"):
            if f"{ours}.{suffix}" in w:
                yield _name(kind, suffix), kind, w[f"{ours}.{suffix}"].float()
    nh, nkv, hd, H = cfg.n_head, kv_heads(cfg), head_dim(cfg), mlp_hidden_size(cfg)
    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        for suffix in ("weight", "bias"):
            def get(k: str) -> torch.Tensor | None:
                t = w.get(p + k + "." + suffix)
                return None if t is None else t.float()
            parts: list[tuple[gguf.MODEL_TENSOR, torch.Tensor | None]] = [
                (T.ATTN_NORM, get("ln_1")), (T.FFN_NORM, get("ln_2")), (T.ATTN_OUT, get("attn.c_proj")),
                (T.FFN_DOWN, get("mlp.c_proj"))]
            qkv, fc = get("attn.c_attn"), get("mlp.c_fc")
            if arch == "gpt2":
                parts += [(T.ATTN_QKV, qkv), (T.FFN_UP, fc)]
            elif qkv is not None:
                q, k, v = qkv.split([nh * hd, nkv * hd, nkv * hd])
                assert fc is not None  # a Llama block always has its MLP input
                gate, up = fc.split([H, H])
                parts += [(T.ATTN_Q, _rope_permute(q, nh)), (T.ATTN_K, _rope_permute(k, nkv)), (T.ATTN_V, v),
                          (T.FFN_GATE, gate), (T.FFN_UP, up)]
            for kind, t in parts:
                if t is not None:
                    yield _name(kind, suffix, i), kind, t


def _encode(t: torch.Tensor, kind: gguf.MODEL_TENSOR, gguf_type: str) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    """The tensor as stored: 1-D tensors always f32, matrices in the export's type (f16 where a
    row does not fill whole quantization blocks, as convert_hf_to_gguf does)."""
    data = t.detach().contiguous().numpy().astype(np.float32)
    if data.ndim == 1 or gguf_type == "f32":
        return data, Q.F32
    qtype = Q.Q8_0 if gguf_type == "q4_0" and kind in EMBEDDINGS else MATRIX_TYPE[gguf_type]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if data.shape[-1] % block:
        qtype = Q.F16
    if qtype == Q.F16:
        return data.astype(np.float16), Q.F16
    return gguf.quants.quantize(data, qtype), qtype


def _arch_keys(w: gguf.GGUFWriter, cfg: ModelConfig, arch: str) -> None:
    w.add_context_length(cfg.context_length)
    w.add_embedding_length(cfg.n_embd)
    w.add_block_count(cfg.n_layer)
    w.add_feed_forward_length(mlp_hidden_size(cfg))
    w.add_head_count(cfg.n_head)
    w.add_head_count_kv(kv_heads(cfg))
    w.add_vocab_size(cfg.vocab_size)
    if arch == "gpt2":
        w.add_layer_norm_eps(cfg.norm_eps)
    else:
        w.add_layer_norm_rms_eps(cfg.norm_eps)
        w.add_rope_freq_base(cfg.rope_theta)
        w.add_rope_dimension_count(head_dim(cfg))
        w.add_key_length(head_dim(cfg))
        w.add_value_length(head_dim(cfg))


def write_gguf(path: Path, model: GPT, arch: str, gguf_type: str, tok: TokenizerInfo, name: str) -> int:
    """Write the GGUF file at `path`; returns the number of tensors."""
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_file_type(FILE_TYPE[gguf_type])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _arch_keys(w, model.config, arch)
    _add_tokenizer(w, tok.vocab, model.config.vocab_size, tok.jinja, tok.bos, tok.eos, tok.eot, tok.add_bos)
    n = 0
    for tname, kind, t in gguf_tensors(model, arch):
        data, qtype = _encode(t, kind, gguf_type)
        w.add_tensor(tname, data, raw_dtype=qtype if qtype not in (Q.F32, Q.F16) else None)
        n += 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return n


# ------------------------------------------------------------------------------------- export

def held_out_texts(eval_text: Path | None) -> list[str]:
    """The text quantization is measured on: a UTF-8 file, else 8 KB of embedded stories whose
    seed no preset trains on."""
    if eval_text is None:
        from core.data.synthetic import iter_stories

        return list(iter_stories(seed=424242, max_bytes=8_000))
    try:
        text = Path(eval_text).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{eval_text}: cannot read it as UTF-8 text ({type(e).__name__}: {e})") from None
    if not text.strip():
        raise UserError(f"{eval_text}: is empty; give held-out text to measure the perplexity on")
    return [text]


def quantization_perplexity(model: GPT, path: Path, tokenizer: TextTokenizer, texts: list[str]) -> dict:
    """Perplexity of the model and of the GGUF's dequantized weights on the same held-out tokens."""
    from core.eval.perplexity import evaluate_texts
    from core.model.gguf_import import read_gguf

    before = evaluate_texts(model, tokenizer, texts)
    after = evaluate_texts(read_gguf(path, model.config)[0], tokenizer, texts)
    return {"before": before["perplexity"], "after": after["perplexity"], "tokens": before["tokens"]}


def export_gguf(checkpoint: str | Path, out: str | Path, gguf_type: str = "f16", *, force: bool = False,
                eval_text: Path | None = None, measure: bool | None = None, ollama: bool = False) -> GgufExport:
    """Write `checkpoint` as a GGUF file at `out` (and with `ollama` a Modelfile beside it).
    Quantized types (and any type when `measure`) report the perplexity on held-out text before
    and after; refuses what llama.cpp cannot run, before anything is written."""
    from core.checkpoint import load_model, resolve_checkpoint, verify
    from core.model.hf import model_family
    from core.safety import model_inputs, refuse_unsafe_target, write_replacing

    if gguf_type not in GGUF_TYPES:
        raise UserError(f"--type: {gguf_type!r} is not one of {', '.join(GGUF_TYPES)}")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out}: is a folder; export-gguf writes one file, e.g. {out / 'model.gguf'}")
    ckpt = resolve_checkpoint(checkpoint)
    refuse_unsafe_target(out, model_inputs(ckpt), force, file=True)
    if ollama:
        from core.model.ollama import MODELFILE

        refuse_unsafe_target(out.with_name(MODELFILE), model_inputs(ckpt), force, file=True)
    meta = verify(ckpt, hashes=False)
    head = (meta.get("head") or {}).get("kind", "lm")
    if head != "lm":
        raise UserError(f"{checkpoint}: is a {head} checkpoint (its head predicts classes, not tokens); GGUF "
                        f"runtimes need a language-model head, so export the base model instead")
    t0 = time.perf_counter()
    model, tokenizer, meta = load_model(ckpt)  # a LoRA checkpoint comes back merged into its base
    arch = model_family(model.config)
    tok = tokenizer_info(ckpt, meta, tokenizer)
    run_name = ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else ckpt.name
    name = (meta.get("lineage") or {}).get("imported_from") or run_name
    pre = _pre_tokenizer(tok.vocab)  # refused here, before anything is written
    modelfile = _modelfile(out, tok, ckpt, model.config.context_length) if ollama else None
    texts, note = None, None
    if measure or (measure is None and gguf_type.startswith("q")):
        if tokenizer is None:  # a Hugging Face tokenizer that load_model does not build (yet)
            note = "perplexity not measured: this model's Hugging Face tokenizer cannot encode text in llmlab yet"
        else:
            texts = held_out_texts(eval_text)  # read before writing: a bad file leaves nothing behind
    box: dict[str, int] = {}
    write_replacing(out, lambda tmp: box.update(n=write_gguf(tmp, model, arch, gguf_type, tok, str(name))))
    report = GgufExport(out, gguf_type, arch, box["n"], out.stat().st_size, time.perf_counter() - t0,
                        pre, tok.jinja is not None,
                        merged_adapter=(meta.get("adapter") or {}).get("base") if meta.get("merged_from_adapter") else None)
    report.note = note
    if texts is not None and tokenizer is not None:
        report.perplexity = quantization_perplexity(model, out, tokenizer, texts)
    if modelfile is not None:
        from core.model.ollama import write_modelfile

        report.modelfile = write_modelfile(out, modelfile)
    return report


def _modelfile(out: Path, tok: TokenizerInfo, ckpt: Path, context_length: int) -> str:
    """The Modelfile's text (built before the GGUF is written, so a template Ollama cannot take is
    refused first)."""
    from core.model.ollama import modelfile_text

    if not tok.jinja:
        raise UserError(f"{ckpt}: has no chat template, so an Ollama Modelfile would have no TEMPLATE; "
                        f"export without --ollama")
    texts = [tok.vocab.tokens[i] for i in (tok.eot, tok.eos) if i is not None]
    starts_with_bos = tok.jinja.lstrip("{- ").startswith("bos_token")
    bos = tok.vocab.tokens[tok.bos] if starts_with_bos and not tok.add_bos and tok.bos is not None else ""
    return modelfile_text(out.name, tok.jinja, [t for t in texts if t], ckpt, context_length, bos or "")
