"""Weights in and out: Hugging Face GPT-2 and Llama folders <-> our checkpoints.

`import_hf(source, out_dir)` reads GPT-2 (a hub name such as gpt2-medium, or a local folder) or a
Llama-shaped model (a local folder) and writes a committed checkpoint of ours. `export_hf(checkpoint,
out_dir)` writes config.json, model.safetensors and, where the tokenizer allows, tokenizer.json, so
`transformers` loads the folder with GPT2LMHeadModel or LlamaForCausalLM. Neither direction needs
transformers itself; the tests use it to check logits.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from core.config import ModelConfig
from core.errors import UserError
from core.model.gpt import GPT
from core.model.stats import head_dim, kv_heads, mlp_hidden_size

GPT2_HUB = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
GPT2_VOCAB = 50257


# ------------------------------------------------------------------------------------ reading

def _hub_folder(name: str) -> Path:
    """Download (or find in the HF cache) a GPT-2 repository's config and safetensors weights."""
    repo = GPT2_HUB.get(name, name)
    hint = (f"get the weights on a machine with network: `hf download {repo} config.json model.safetensors "
            f"--local-dir DIR` (or `huggingface-cli download ...`), copy DIR here and run `llmlab import-hf DIR OUT`")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(f"{name}: huggingface_hub is not installed; {hint}") from None
    try:
        path = snapshot_download(repo, allow_patterns=["config.json", "model.safetensors", "model.safetensors.index.json",
                                                       "model-*.safetensors"])
    except Exception as e:  # offline, no such repo, no network: all end the same way for the user
        raise UserError(f"{name}: cannot get {repo} from the Hugging Face hub ({type(e).__name__}); {hint}") from None
    return Path(path)


def _read_folder(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """config.json and every tensor of the safetensors weights (single file or sharded)."""
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{folder}: no config.json; a Hugging Face model folder holds config.json and model.safetensors")
    config = json.loads(cfg_path.read_text())
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    elif index.is_file():
        files = [folder / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    else:
        extra = " (only PyTorch .bin weights: re-save them with save_pretrained(safe_serialization=True))" \
            if any(folder.glob("*.bin")) else ""
        raise UserError(f"{folder}: no model.safetensors{extra}")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(load_file(f))
    return config, sd


def _gpt2_config(c: dict) -> ModelConfig:
    if c.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise UserError(f"config.json: activation_function {c['activation_function']!r} is not supported (gelu_new)")
    n_embd = c["n_embd"]
    return ModelConfig(
        n_layer=c["n_layer"], n_head=c["n_head"], n_embd=n_embd, context_length=c["n_positions"],
        vocab_size=c["vocab_size"], norm="layernorm", norm_eps=c.get("layer_norm_epsilon", 1e-5), position="learned",
        mlp="gelu", mlp_hidden=c.get("n_inner") or 4 * n_embd, bias=True,
        tie_embeddings=c.get("tie_word_embeddings", True), dropout=0.0)


def _gpt2_weights(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("transformer.")
        if k.endswith((".attn.bias", ".attn.masked_bias")) and v.dim() != 1:
            continue  # causal-mask buffers of old checkpoints
        if k.startswith("h."):
            k = "blocks." + k[2:]
        if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            v = v.t()  # HF GPT-2 uses Conv1D: (in, out)
        out[k] = v.contiguous()
    if cfg.tie_embeddings:
        out.pop("lm_head.weight", None)
    return out


def _llama_config(c: dict) -> ModelConfig:
    rope = c.get("rope_parameters") or c.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise UserError(f"config.json: RoPE scaling {rope.get('rope_type', rope.get('type'))!r} is not supported "
                        f"(plain RoPE only)")
    if c.get("hidden_act", "silu") != "silu":
        raise UserError(f"config.json: hidden_act {c['hidden_act']!r} is not supported (silu)")
    n_embd, n_head = c["hidden_size"], c["num_attention_heads"]
    if c.get("head_dim") not in (None, n_embd // n_head):
        raise UserError(f"config.json: head_dim {c['head_dim']} differs from hidden_size / num_attention_heads")
    bias = bool(c.get("attention_bias", False))
    if bool(c.get("mlp_bias", False)) != bias:
        raise UserError("config.json: attention_bias and mlp_bias differ; this model family has one `bias` switch")
    return ModelConfig(
        n_layer=c["num_hidden_layers"], n_head=n_head, n_kv_head=c.get("num_key_value_heads") or n_head,
        n_embd=n_embd, context_length=c.get("max_position_embeddings", 2048), vocab_size=c["vocab_size"],
        norm="rmsnorm", norm_eps=c.get("rms_norm_eps", 1e-6), position="rope",
        rope_theta=float(rope.get("rope_theta", c.get("rope_theta", 10000.0))), mlp="swiglu",
        mlp_hidden=c["intermediate_size"], bias=bias, tie_embeddings=bool(c.get("tie_word_embeddings", False)),
        dropout=0.0)


def _llama_weights(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {"wte.weight": sd["model.embed_tokens.weight"], "ln_f.weight": sd["model.norm.weight"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.n_layer):
        p, q = f"model.layers.{i}.", f"blocks.{i}."
        a = p + "self_attn."
        out[q + "ln_1.weight"] = sd[p + "input_layernorm.weight"]
        out[q + "ln_2.weight"] = sd[p + "post_attention_layernorm.weight"]
        out[q + "attn.c_attn.weight"] = torch.cat([sd[a + n + ".weight"] for n in ("q_proj", "k_proj", "v_proj")])
        out[q + "attn.c_proj.weight"] = sd[a + "o_proj.weight"]
        out[q + "mlp.c_fc.weight"] = torch.cat([sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]])
        out[q + "mlp.c_proj.weight"] = sd[p + "mlp.down_proj.weight"]
        if cfg.bias:
            out[q + "attn.c_attn.bias"] = torch.cat([sd[a + n + ".bias"] for n in ("q_proj", "k_proj", "v_proj")])
            out[q + "attn.c_proj.bias"] = sd[a + "o_proj.bias"]
            out[q + "mlp.c_fc.bias"] = torch.cat([sd[p + "mlp.gate_proj.bias"], sd[p + "mlp.up_proj.bias"]])
            out[q + "mlp.c_proj.bias"] = sd[p + "mlp.down_proj.bias"]
    return {k: v.contiguous() for k, v in out.items()}


def _build(cfg: ModelConfig, weights: dict[str, torch.Tensor]) -> GPT:
    """A GPT holding `weights` (fp32), built on the meta device so no time goes into a random init."""
    with torch.device("meta"):
        model = GPT(cfg)
    weights = {k: v.float() for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(weights, strict=False, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.wte.weight
        missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise UserError(f"the weights do not match config.json: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return model


def read_hf(source: str | Path) -> tuple[GPT, str]:
    """A GPT from a hub name (GPT-2) or a local HF folder, and its family ('gpt2' or 'llama')."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        if str(source) in GPT2_HUB or str(source).startswith("openai-community/"):
            folder = _hub_folder(str(source))
        else:
            raise UserError(f"{source}: not a local folder nor a GPT-2 name ({', '.join(GPT2_HUB)})")
    config, sd = _read_folder(folder)
    kind = config.get("model_type")
    if kind == "gpt2":
        cfg = _gpt2_config(config)
        return _build(cfg, _gpt2_weights(sd, cfg)), "gpt2"
    if kind == "llama" or (kind == "mistral" and not config.get("sliding_window")):
        cfg = _llama_config(config)
        return _build(cfg, _llama_weights(sd, cfg)), "llama"
    raise UserError(f"{folder / 'config.json'}: model_type {kind!r} is not supported; GPT-2 and Llama-shaped models are")


def import_hf(source: str | Path, out_dir: str | Path, *, tokenizer: Any = None) -> Path:
    """Write a committed checkpoint of ours at `out_dir` from a HF model; returns the folder.

    GPT-2 models get our `gpt2` tokenizer (and their embedding grows by the two chat tokens it
    adds, initialised to the mean embedding); others get `tokenizer` (a Tokenizer or a name for
    get_tokenizer) when given, else none.
    """
    from core.checkpoint import write_checkpoint

    model, family = read_hf(source)
    if isinstance(tokenizer, (str, os.PathLike)):
        from core.tokenizer import get_tokenizer

        tokenizer = get_tokenizer(tokenizer)
    if tokenizer is None and family == "gpt2" and model.config.vocab_size == GPT2_VOCAB:
        from core.tokenizer import get_tokenizer

        tokenizer = get_tokenizer("gpt2")
    if tokenizer is not None and tokenizer.n_vocab > model.config.vocab_size:
        model = grow_vocab(model, tokenizer.n_vocab)
    lineage = {"imported_from": str(source), "family": family}
    return write_checkpoint(Path(out_dir), 0, model, tokenizer=tokenizer, lineage=lineage)


def grow_vocab(model: GPT, n_vocab: int) -> GPT:
    """A copy of `model` whose embedding (and head) has `n_vocab` rows; new rows are the mean row."""
    old = model.config.vocab_size
    cfg = dataclasses.replace(model.config, vocab_size=n_vocab)
    sd = model.weights()

    def grow(w: torch.Tensor) -> torch.Tensor:
        return torch.cat([w, w.mean(0, keepdim=True).expand(n_vocab - old, -1)])

    sd["wte.weight"] = grow(sd["wte.weight"])
    if "lm_head.weight" in sd:
        sd["lm_head.weight"] = grow(sd["lm_head.weight"])
    return _build(cfg, sd)


# ------------------------------------------------------------------------------------ writing

def _family(cfg: ModelConfig) -> str:
    gpt2 = dict(norm="layernorm", position="learned", mlp="gelu", bias=True)
    llama = dict(norm="rmsnorm", position="rope", mlp="swiglu")
    if all(getattr(cfg, k) == v for k, v in gpt2.items()) and kv_heads(cfg) == cfg.n_head:
        return "gpt2"
    if all(getattr(cfg, k) == v for k, v in llama.items()):
        return "llama"
    diffs = ", ".join(f"model.{k} = {getattr(cfg, k)!r}" for k in ("norm", "position", "mlp", "bias", "n_kv_head"))
    raise UserError(f"this architecture ({diffs}) is neither GPT-2-shaped (layernorm, learned, gelu, bias, no GQA) "
                    f"nor Llama-shaped (rmsnorm, rope, swiglu); it cannot be exported to a transformers class")


def _gpt2_export(model: GPT, eos: int | None) -> tuple[dict, dict[str, torch.Tensor]]:
    cfg = model.config
    config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd, "n_positions": cfg.context_length,
        "n_ctx": cfg.context_length, "vocab_size": cfg.vocab_size, "n_inner": mlp_hidden_size(cfg),
        "activation_function": "gelu_new", "layer_norm_epsilon": cfg.norm_eps,
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
        "tie_word_embeddings": model.tied, "bos_token_id": eos, "eos_token_id": eos,
    }
    sd = {}
    for k, v in model.weights().items():
        if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            v = v.t()
        name = k if k == "lm_head.weight" else "transformer." + k.replace("blocks.", "h.", 1)
        sd[name] = v.contiguous()
    return config, sd


def _llama_export(model: GPT, eos: int | None) -> tuple[dict, dict[str, torch.Tensor]]:
    cfg = model.config
    nh, nkv, hd = cfg.n_head, kv_heads(cfg), head_dim(cfg)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.n_embd, "intermediate_size": mlp_hidden_size(cfg),
        "num_hidden_layers": cfg.n_layer, "num_attention_heads": nh, "num_key_value_heads": nkv, "head_dim": hd,
        "max_position_embeddings": cfg.context_length, "rms_norm_eps": cfg.norm_eps, "hidden_act": "silu",
        # transformers 5 reads rope_parameters, 4.x reads rope_theta
        "rope_theta": cfg.rope_theta, "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": cfg.bias, "mlp_bias": cfg.bias, "tie_word_embeddings": model.tied,
        "attention_dropout": cfg.dropout, "bos_token_id": eos, "eos_token_id": eos,
    }
    w = model.weights()
    H = mlp_hidden_size(cfg)
    sd = {"model.embed_tokens.weight": w["wte.weight"], "model.norm.weight": w["ln_f.weight"]}
    if not model.tied:
        sd["lm_head.weight"] = w["lm_head.weight"]
    for i in range(cfg.n_layer):
        p, q = f"model.layers.{i}.", f"blocks.{i}."
        sd[p + "input_layernorm.weight"] = w[q + "ln_1.weight"]
        sd[p + "post_attention_layernorm.weight"] = w[q + "ln_2.weight"]
        for suffix in ("weight", "bias") if cfg.bias else ("weight",):
            qkv = w[f"{q}attn.c_attn.{suffix}"].split([nh * hd, nkv * hd, nkv * hd])
            for name, t in zip(("q_proj", "k_proj", "v_proj"), qkv):
                sd[f"{p}self_attn.{name}.{suffix}"] = t
            sd[f"{p}self_attn.o_proj.{suffix}"] = w[f"{q}attn.c_proj.{suffix}"]
            gate, up = w[f"{q}mlp.c_fc.{suffix}"].split([H, H])
            sd[f"{p}mlp.gate_proj.{suffix}"], sd[f"{p}mlp.up_proj.{suffix}"] = gate, up
            sd[f"{p}mlp.down_proj.{suffix}"] = w[f"{q}mlp.c_proj.{suffix}"]
    return config, {k: v.contiguous() for k, v in sd.items()}


def export_hf(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write a transformers-loadable folder for a GPT-2- or Llama-shaped checkpoint; returns it."""
    from core.checkpoint import load_model

    model, tokenizer, meta = load_model(checkpoint)
    if model.head_kind != "lm":
        raise UserError(f"{checkpoint}: has a {model.head_kind} head; only language models export to a causal-LM class")
    family = _family(model.config)
    eos = tokenizer.eot_id if tokenizer is not None else None
    config, sd = (_gpt2_export if family == "gpt2" else _llama_export)(model, eos)
    config["torch_dtype"] = config["dtype"] = "float32"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(sd, out / "model.safetensors", metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    gen = {"bos_token_id": eos, "eos_token_id": eos, "max_length": model.config.context_length}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    if getattr(tokenizer, "kind", None) == "hf":
        tokenizer.save(out)  # a real model's own files, as they were imported
    elif tokenizer is not None:
        write_hf_tokenizer(tokenizer, out, model_max_length=model.config.context_length)
    return out


# ---------------------------------------------------------------------------------- tokenizer

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _split(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """BPE of `token` with the merges ranked below `max_rank`: the two parts its last merge joined."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best, at = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < max_rank and (best is None or r < best):
                best, at = r, i
        if best is None:
            break
        parts[at:at + 2] = [parts[at] + parts[at + 1]]
    return parts


def write_hf_tokenizer(tokenizer: Any, out: Path, model_max_length: int) -> bool:
    """tokenizer.json + tokenizer_config.json (a fast byte-level BPE with our split pattern and
    special tokens, same ids as ours); False when the `tokenizers` package is missing."""
    try:
        from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        return False
    b2u = _bytes_to_unicode()

    def s(b: bytes) -> str:
        return "".join(b2u[x] for x in b)

    ranks = tokenizer.mergeable_ranks
    vocab = {s(tok): rank for tok, rank in ranks.items()}
    merges = []
    for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(tok) > 1:
            parts = _split(ranks, tok, rank)
            if len(parts) != 2:
                return False  # not a plain BPE (a token no merge produces): leave the tokenizer out
            merges.append((s(parts[0]), s(parts[1])))
    specials = tokenizer.special_tokens
    vocab.update(specials)
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(tokenizer.pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in sorted(specials, key=specials.get)])
    hf.save(str(out / "tokenizer.json"))
    eot = next((t for t, i in specials.items() if i == tokenizer.eot_id), None)
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model_max_length,
           "bos_token": eot, "eos_token": eot, "unk_token": None, "clean_up_tokenization_spaces": False}
    if {"<|im_start|>", "<|im_end|>"} <= set(specials):
        # ChatML as core.tokenizer.chat renders it: the end-of-text id first, then the turns
        cfg["chat_template"] = ("{{ bos_token }}{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
                                "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
                                "{{ '<|im_start|>assistant\\n' }}{% endif %}")
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return True
