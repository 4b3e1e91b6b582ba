"""Weights in and out: Hugging Face model folders <-> our checkpoints.

`import_hf(source, out_dir)` reads a hub name or a local folder (single or sharded safetensors) of
GPT-2, Llama, Mistral, Qwen2/3 or SmolLM2/3 (config.json through core.model.hf_config) and writes
a committed checkpoint of ours with the folder's tokenizer files. `export_hf(checkpoint, out_dir)`
writes config.json, model.safetensors and, where the tokenizer allows, tokenizer.json, so
`transformers` loads the folder with its own class. Neither direction needs transformers itself;
the tests use it to check logits.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from core.config import ModelConfig
from core.errors import UserError
from core.model.gpt import GPT
from core.model.hf_config import hf_config_from_model, model_config_from_hf
from core.model.tokenizer_files import HF_TOKENIZER_FILES, HFTokenizerFiles
from core.model.stats import head_dim, kv_heads, mlp_hidden_size

GPT2_HUB = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}
GPT2_VOCAB = 50257


# ------------------------------------------------------------------------------------ reading

HUB_FILES = ["config.json", "model.safetensors", "model.safetensors.index.json", "model-*.safetensors",
             "generation_config.json", *HF_TOKENIZER_FILES]


def is_hub_name(source: str) -> bool:
    """`owner/name` (or a bare GPT-2 name) that is not a local path."""
    return source in GPT2_HUB or bool(re.fullmatch(r"[\w.-]+/[\w.-]+", source)) and not Path(source).exists()


def hub_folder(name: str) -> Path:
    """Download (or find in the HF cache) a hub model's config, safetensors weights and tokenizer files."""
    repo = GPT2_HUB.get(name, name)
    hint = (f"on a machine with network run `hf download {repo} --local-dir DIR` (or `huggingface-cli download ...`), "
            f"copy DIR here and run `llmlab import DIR NAME`")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(f"{name}: huggingface_hub is not installed; {hint}") from None
    try:
        path = snapshot_download(repo, allow_patterns=HUB_FILES)
    except Exception as e:  # offline, no such repo, no network: all end the same way for the user
        raise UserError(f"{name}: cannot get {repo} from the Hugging Face hub ({type(e).__name__}); {hint}") from None
    return Path(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not readable JSON ({e})") from None


def _read_folder(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """config.json and every tensor of the safetensors weights (single file or sharded)."""
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{folder}: no config.json; a Hugging Face model folder holds config.json and model.safetensors")
    config = _read_json(cfg_path)
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    elif index.is_file():
        doc = _read_json(index)
        weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise UserError(f"{index}: weight_map: expected an object of tensor name -> shard file")
        files = [folder / f for f in sorted(set(weight_map.values()))]
        for f in files:
            if f.resolve().parent != folder.resolve() or not f.is_file():
                raise UserError(f"{index}: weight_map names {f.name!r}, which is not a file in {folder}")
    else:
        extra = " (only PyTorch .bin weights: re-save them with save_pretrained(safe_serialization=True))" \
            if any(folder.glob("*.bin")) else ""
        raise UserError(f"{folder}: no model.safetensors{extra}")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            sd.update(load_file(f))
        except (SafetensorError, OSError) as e:
            raise UserError(f"{f}: not a readable safetensors file ({e})") from None
    return config, sd


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


def _llama_weights(sd: dict[str, torch.Tensor], cfg: ModelConfig, source: Path) -> dict[str, torch.Tensor]:
    """Llama-family names (Mistral, Qwen2/3 and SmolLM share them) -> ours: q, k, v fused into c_attn,
    gate and up into c_fc."""
    def get(name: str) -> torch.Tensor:
        if name not in sd:
            raise UserError(f"{source}: tensor {name} is missing from the weights")
        return sd[name]

    out = {"wte.weight": get("model.embed_tokens.weight"), "ln_f.weight": get("model.norm.weight")}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd.get("lm_head.weight", out["wte.weight"])
    for i in range(cfg.n_layer):
        p, q = f"model.layers.{i}.", f"blocks.{i}."
        a = p + "self_attn."
        out[q + "ln_1.weight"] = get(p + "input_layernorm.weight")
        out[q + "ln_2.weight"] = get(p + "post_attention_layernorm.weight")
        out[q + "attn.c_attn.weight"] = torch.cat([get(a + n + ".weight") for n in ("q_proj", "k_proj", "v_proj")])
        out[q + "attn.c_proj.weight"] = get(a + "o_proj.weight")
        out[q + "mlp.c_fc.weight"] = torch.cat([get(p + "mlp.gate_proj.weight"), get(p + "mlp.up_proj.weight")])
        out[q + "mlp.c_proj.weight"] = get(p + "mlp.down_proj.weight")
        if cfg.bias or cfg.qkv_bias:
            out[q + "attn.c_attn.bias"] = torch.cat([get(a + n + ".bias") for n in ("q_proj", "k_proj", "v_proj")])
        if cfg.bias:
            out[q + "attn.c_proj.bias"] = get(a + "o_proj.bias")
            out[q + "mlp.c_fc.bias"] = torch.cat([get(p + "mlp.gate_proj.bias"), get(p + "mlp.up_proj.bias")])
            out[q + "mlp.c_proj.bias"] = get(p + "mlp.down_proj.bias")
        if cfg.qk_norm:
            out[q + "attn.q_norm.weight"] = get(a + "q_norm.weight")
            out[q + "attn.k_norm.weight"] = get(a + "k_norm.weight")
    return {k: v.contiguous() for k, v in out.items()}


def build_model(cfg: ModelConfig, weights: dict[str, torch.Tensor], source: str | Path = "the weights") -> GPT:
    """A GPT holding `weights` (fp32), built on the meta device so no time goes into a random init."""
    with torch.device("meta"):
        model = GPT(cfg)
    expected = model.state_dict()
    for k, v in weights.items():
        if k in expected and tuple(v.shape) != tuple(expected[k].shape):
            raise UserError(f"{source}: tensor {k} has shape {tuple(v.shape)}, the config implies {tuple(expected[k].shape)}")
    weights = {k: v.float() for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(weights, strict=False, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.wte.weight
        missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise UserError(f"{source}: the weights do not match the config: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return model


def read_hf(source: str | Path) -> tuple[GPT, str, Path]:
    """A GPT from a hub name or a local HF folder, its family ('gpt2', 'llama', 'qwen3', ...) and the folder."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        if not is_hub_name(str(source)):
            raise UserError(f"{source}: not a local folder nor a hub name (owner/name, or {', '.join(GPT2_HUB)})")
        folder = hub_folder(str(source))
    config, sd = _read_folder(folder)
    cfg, family = model_config_from_hf(config, folder / "config.json")
    weights = _gpt2_weights(sd, cfg) if family == "gpt2" else _llama_weights(sd, cfg, folder)
    return build_model(cfg, weights, folder), family, folder


def import_hf(source: str | Path, out_dir: str | Path, *, tokenizer: Any = None) -> Path:
    """Write a committed checkpoint of ours at `out_dir` from a HF model; returns the folder.

    GPT-2 models get our `gpt2` tokenizer (and their embedding grows by the two chat tokens it
    adds, initialised to the mean embedding); others get `tokenizer` (a Tokenizer or a name for
    get_tokenizer) when given, else the folder's own Hugging Face tokenizer files when it has them.
    """
    from core.checkpoint import write_checkpoint

    model, family, folder = read_hf(source)
    if isinstance(tokenizer, (str, os.PathLike)):
        from core.tokenizer import get_tokenizer

        tokenizer = get_tokenizer(tokenizer)
    if tokenizer is None and family == "gpt2" and model.config.vocab_size == GPT2_VOCAB:
        from core.tokenizer import get_tokenizer

        tokenizer = get_tokenizer("gpt2")
    if tokenizer is None:
        tokenizer = HFTokenizerFiles.from_folder(folder, model.config.vocab_size)
    elif tokenizer.n_vocab > model.config.vocab_size:
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
    return build_model(cfg, sd)


# ------------------------------------------------------------------------------------ writing

def _gpt2_export(model: GPT) -> dict[str, torch.Tensor]:
    sd = {}
    for k, v in model.weights().items():
        if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            v = v.t()
        name = k if k == "lm_head.weight" else "transformer." + k.replace("blocks.", "h.", 1)
        sd[name] = v.contiguous()
    return sd


def _llama_export(model: GPT) -> dict[str, torch.Tensor]:
    cfg = model.config
    nh, nkv, hd = cfg.n_head, kv_heads(cfg), head_dim(cfg)
    w = model.weights()
    H = mlp_hidden_size(cfg)
    sd = {"model.embed_tokens.weight": w["wte.weight"], "model.norm.weight": w["ln_f.weight"]}
    if not model.tied:
        sd["lm_head.weight"] = w["lm_head.weight"]
    for i in range(cfg.n_layer):
        p, q = f"model.layers.{i}.", f"blocks.{i}."
        sd[p + "input_layernorm.weight"] = w[q + "ln_1.weight"]
        sd[p + "post_attention_layernorm.weight"] = w[q + "ln_2.weight"]
        for suffix in ("weight", "bias"):
            if f"{q}attn.c_attn.{suffix}" in w:
                qkv = w[f"{q}attn.c_attn.{suffix}"].split([nh * hd, nkv * hd, nkv * hd])
                for name, t in zip(("q_proj", "k_proj", "v_proj"), qkv):
                    sd[f"{p}self_attn.{name}.{suffix}"] = t
            if f"{q}attn.c_proj.{suffix}" in w:
                sd[f"{p}self_attn.o_proj.{suffix}"] = w[f"{q}attn.c_proj.{suffix}"]
                gate, up = w[f"{q}mlp.c_fc.{suffix}"].split([H, H])
                sd[f"{p}mlp.gate_proj.{suffix}"], sd[f"{p}mlp.up_proj.{suffix}"] = gate, up
                sd[f"{p}mlp.down_proj.{suffix}"] = w[f"{q}mlp.c_proj.{suffix}"]
        if cfg.qk_norm:
            sd[p + "self_attn.q_norm.weight"] = w[q + "attn.q_norm.weight"]
            sd[p + "self_attn.k_norm.weight"] = w[q + "attn.k_norm.weight"]
    return {k: v.contiguous() for k, v in sd.items()}


def export_hf(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write a transformers-loadable folder (GPT-2, Llama, Qwen2, Qwen3 or SmolLM3 class); returns it."""
    from core.checkpoint import load_model

    model, tokenizer, meta = load_model(checkpoint)
    if model.head_kind != "lm":
        raise UserError(f"{checkpoint}: has a {model.head_kind} head; only language models export to a causal-LM class")
    eos = tokenizer.eot_id if tokenizer is not None else None
    config = hf_config_from_model(model.config, model.tied, eos)
    sd = _gpt2_export(model) if config["model_type"] == "gpt2" else _llama_export(model)
    config["torch_dtype"] = config["dtype"] = "float32"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(sd, out / "model.safetensors", metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    gen = {"bos_token_id": eos, "eos_token_id": eos, "max_length": model.config.context_length}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    if tokenizer is not None:
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
