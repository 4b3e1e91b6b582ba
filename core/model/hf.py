"""Weights in and out: Hugging Face model folders <-> our checkpoints.

`import_hf(source, out_dir)` reads a hub name or a local folder (single or sharded safetensors) of
GPT-2, Llama, Mistral, Qwen2/3 or SmolLM2/3 (config.json through core.model.hf_config) and writes
a committed checkpoint of ours with the folder's tokenizer files. `export_hf(checkpoint, out_dir)`
writes config.json, model.safetensors and the tokenizer files (core.model.hf_tokenizer), so
`transformers` loads the folder with its own class. Neither direction needs transformers itself;
the tests use it to check logits, ids and chat templates.
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
from core.lookup import GPT2_MODELS
from core.model.gpt import GPT
from core.model.hf_config import hf_config_from_model, model_config_from_hf
from core.model.hf_tokenizer import HFTokenizerFiles, chat_template_jinja
from core.model.stats import head_dim, kv_heads, mlp_hidden_size
from core.tokenizer.hf import HF_FILES

GPT2_HUB = {name: m.hub for name, m in GPT2_MODELS.items()}  # the table itself is core.lookup.GPT2_MODELS
GPT2_VOCAB = 50257


# ------------------------------------------------------------------------------------ reading

HUB_FILES = ["config.json", "model.safetensors", "model.safetensors.index.json", "model-*.safetensors",
             "generation_config.json", *HF_FILES]


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

        tokenizer = get_tokenizer(str(tokenizer))
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

# fields beyond the plain Llama shape, at their "off" values
LLAMA_ONLY = {"qkv_bias": False, "qk_norm": False, "rope_scaling": "none", "nope_layers": []}


def model_family(cfg: ModelConfig) -> str:
    """'gpt2' or 'llama': the transformers (and llama.cpp) family of an architecture, else UserError."""
    gpt2 = dict(norm="layernorm", position="learned", mlp="gelu", bias=True)
    llama = dict(norm="rmsnorm", position="rope", mlp="swiglu")
    if all(getattr(cfg, k) == v for k, v in gpt2.items()) and kv_heads(cfg) == cfg.n_head:
        return "gpt2"
    if all(getattr(cfg, k) == v for k, v in llama.items()):
        extra = [f"model.{k} = {getattr(cfg, k)!r}" for k, off in LLAMA_ONLY.items() if getattr(cfg, k) != off]
        if cfg.head_dim and cfg.head_dim * cfg.n_head != cfg.n_embd:
            extra.append(f"model.head_dim = {cfg.head_dim}")
        if extra:  # Qwen2/Qwen3/SmolLM3/Llama-3.1 maths that a plain llama export would drop
            raise UserError(f"this architecture ({', '.join(extra)}) goes beyond the Llama shape that GGUF "
                            f"export writes; export it with export-hf instead")
        return "llama"
    diffs = ", ".join(f"model.{k} = {getattr(cfg, k)!r}" for k in ("norm", "position", "mlp", "bias", "n_kv_head"))
    raise UserError(f"this architecture ({diffs}) is neither GPT-2-shaped (layernorm, learned, gelu, bias, no GQA) "
                    f"nor Llama-shaped (rmsnorm, rope, swiglu); it cannot be exported to a transformers class")


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


def export_hf(checkpoint: str | Path, out_dir: str | Path, *, force: bool = False) -> Path:
    """Write a transformers-loadable folder (GPT-2, Llama, Qwen2, Qwen3 or SmolLM3 class); returns it.

    The folder holds config.json, model.safetensors, generation_config.json and the tokenizer files
    (core.model.hf_tokenizer). It is written into a temporary sibling and renamed into place, after
    `refuse_unsafe_target` has made sure `out_dir` is neither the checkpoint nor a run, nor an
    existing folder (unless `force`)."""
    from core.checkpoint import load_model, resolve_checkpoint
    from core.model.hf_tokenizer import copy_hf_tokenizer, hf_tokenizer_folder, write_hf_tokenizer
    from core.safety import model_inputs, refuse_unsafe_target, write_replacing
    from core.tokenizer.encodings import Tokenizer

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; export-hf writes a folder, so give a folder path")
    ckpt = resolve_checkpoint(checkpoint)
    refuse_unsafe_target(out, model_inputs(ckpt), force)
    model, tokenizer, meta = load_model(ckpt)
    if model.head_kind != "lm":
        raise UserError(f"{checkpoint}: has a {model.head_kind} head; only language models export to a causal-LM class")
    hf_tok = hf_tokenizer_folder(ckpt, meta)
    bos, eos, stops, pad = _special_ids(hf_tok, tokenizer)
    config = hf_config_from_model(model.config, model.tied, eos)
    config["bos_token_id"], config["pad_token_id"] = bos, pad
    sd = _gpt2_export(model) if config["model_type"] == "gpt2" else _llama_export(model)
    config["torch_dtype"] = config["dtype"] = "float32"

    def write(tmp: Path) -> None:
        tmp.mkdir()
        save_file(sd, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        gen = {"bos_token_id": bos, "eos_token_id": stops if len(stops) > 1 else eos, "pad_token_id": pad,
               "max_length": model.config.context_length}
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
        if hf_tok is not None:
            copy_hf_tokenizer(hf_tok, tmp)
        elif tokenizer is not None:
            assert isinstance(tokenizer, Tokenizer)  # a Hugging Face tokenizer has its folder (hf_tok)
            write_hf_tokenizer(tokenizer, tmp, model_max_length=model.config.context_length)

    return write_replacing(out, write)


def _special_ids(hf_tok: Path | None, tokenizer: Any) -> tuple[int | None, int | None, list[int], int | None]:
    """(bos, eos, the ids generation stops at, pad) as transformers reads them.

    Ours: the end-of-text id precedes every pretraining document (core.data.shards) and so ends the
    one before, which makes it BOS and EOS at once, as in GPT-2; generation also stops at ChatML's
    <|im_end|> (the end of a chat turn, where llmlab's chat stops), and padding uses end-of-text
    (masked). An imported tokenizer keeps its own tokens."""
    if hf_tok is None:
        if tokenizer is None:
            return None, None, [], None
        eot = tokenizer.eot_id
        im_end = tokenizer.special_tokens.get("<|im_end|>") if chat_template_jinja(tokenizer) else None
        return eot, eot, [eot] + ([im_end] if im_end is not None else []), eot
    from core.model.hf_tokenizer import read_hf_vocab, special_id

    v = read_hf_vocab(hf_tok)
    eos = special_id(v, "eos_token")
    return special_id(v, "bos_token"), eos, [] if eos is None else [eos], special_id(v, "pad_token")

