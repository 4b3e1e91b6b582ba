"""Hugging Face config.json <-> ModelConfig, validated at the boundary.

`model_config_from_hf(config, path)` maps a config.json of GPT-2, Llama 1-3.2, Mistral, Qwen2/2.5,
Qwen3 or SmolLM2/3 onto our `ModelConfig` and returns the family name. Every field is checked for
type and bounds; a field that would change the maths and that we do not implement (a sliding
window shorter than the context, another RoPE scaling, logit softcapping, any field we do not
know) is refused by name, never approximated. `hf_config_from_model(cfg, tied, eos)` is the way
back for export: the transformers class whose maths equals the config's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.config import ModelConfig
from core.errors import UserError
from core.model.stats import head_dim, kv_heads, mlp_hidden_size

_REQUIRED = object()
LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3", "smollm3")
FAMILIES = ("gpt2", *LLAMA_LIKE)
ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                 "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "smollm3": "SmolLM3ForCausalLM"}
# fields that never change the forward pass: bookkeeping, token ids, init, training-only dropout
HARMLESS = {
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "_name_or_path",
    "bos_token_id", "eos_token_id", "pad_token_id", "use_cache", "initializer_range", "attention_dropout",
    "pretraining_tp", "is_llama_config", "transformers.js_config", "output_attentions", "output_hidden_states",
    "return_dict", "id2label", "label2id", "tokenizer_class", "max_length", "chunk_size_feed_forward",
    "problem_type", "task_specific_params", "unsloth_fixed", "unsloth_version", "resid_pdrop", "embd_pdrop",
    "attn_pdrop", "summary_activation", "summary_first_dropout", "summary_proj_to_labels", "summary_type",
    "summary_use_proj", "n_ctx", "reorder_and_upcast_attn", "max_window_layers", "no_rope_layer_interval",
}


class _Fields:
    """Typed reads of a config.json; remembers what was read so the rest can be checked."""

    def __init__(self, config: dict, path: Path):
        self.c, self.path, self.read = config, path, set(HARMLESS)

    def fail(self, key: str, message: str) -> UserError:
        return UserError(f"{self.path}: {key}: {message}")

    def get(self, key: str, tp: type | tuple[type, ...], default: Any = _REQUIRED, *, lo: float | None = None) -> Any:
        self.read.add(key)
        if key not in self.c or (self.c[key] is None and default is not _REQUIRED):
            if default is _REQUIRED:
                raise self.fail(key, "missing; a model config.json must give it")
            return default
        v = self.c[key]
        types = tp if isinstance(tp, tuple) else (tp,)
        ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
        if float in types and isinstance(v, int) and not isinstance(v, bool):
            v, ok = float(v), True
        if not ok:
            names = " or ".join(t.__name__ for t in types)
            raise self.fail(key, f"expected {names}, got {type(v).__name__} {v!r}")
        if lo is not None and v < lo:
            raise self.fail(key, f"{v} is below {lo}")
        return v

    def must_be(self, key: str, allowed: tuple, why: str) -> None:
        if key in self.c and self.c[key] not in allowed:
            raise self.fail(key, f"{self.c[key]!r} is not supported ({why}); llmlab refuses rather than approximate")
        self.read.add(key)

    def check_unknown(self, family: str) -> None:
        unknown = sorted(set(self.c) - self.read)
        if unknown:
            raise self.fail(unknown[0], f"a field llmlab does not know for model_type {family!r}; it may change "
                                        f"the maths, so the import stops (unknown: {', '.join(unknown)})")


def model_config_from_hf(config: Any, path: Path) -> tuple[ModelConfig, str]:
    """(ModelConfig, family) for a parsed config.json; UserError naming the file and field otherwise."""
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(config).__name__}")
    f = _Fields(config, path)
    family = f.get("model_type", str)
    if family not in FAMILIES:
        raise f.fail("model_type", f"{family!r} is not supported; llmlab imports {', '.join(FAMILIES)}")
    if "quantization_config" in config:
        raise f.fail("quantization_config", "quantized safetensors are not supported; use the full-precision weights "
                                            "or a .gguf file")
    cfg = _gpt2(f) if family == "gpt2" else _llama_like(f, family)
    f.check_unknown(family)
    return cfg, family


def _gpt2(f: _Fields) -> ModelConfig:
    f.must_be("activation_function", ("gelu_new", "gelu_pytorch_tanh"), "GPT-2's tanh GELU only")
    f.must_be("scale_attn_weights", (True,), "attention scaled by 1/sqrt(head_dim)")
    f.must_be("scale_attn_by_inverse_layer_idx", (False,), "no per-layer attention scaling")
    f.must_be("add_cross_attention", (False,), "decoder-only")
    n_embd = f.get("n_embd", int, lo=1)
    n_head = f.get("n_head", int, lo=1)
    if n_embd % n_head:
        raise f.fail("n_embd", f"{n_embd} is not divisible by n_head = {n_head}")
    return ModelConfig(
        n_layer=f.get("n_layer", int, lo=1), n_head=n_head, n_embd=n_embd, context_length=f.get("n_positions", int, lo=1),
        vocab_size=f.get("vocab_size", int, lo=1), norm="layernorm", norm_eps=f.get("layer_norm_epsilon", float, 1e-5),
        position="learned", mlp="gelu", mlp_hidden=f.get("n_inner", int, 4 * n_embd, lo=1), bias=True,
        tie_embeddings=f.get("tie_word_embeddings", bool, True), dropout=0.0)


def _rope(f: _Fields, context: int) -> dict[str, Any]:
    """RoPE fields of ModelConfig from rope_parameters (transformers 5) or rope_scaling + rope_theta (4.x)."""
    key = "rope_parameters" if f.c.get("rope_parameters") is not None else "rope_scaling"
    f.read |= {"rope_parameters", "rope_scaling"}
    rope = f.get(key, dict, {})
    theta = f.get("rope_theta", float, 10000.0, lo=1e-9)
    kind = rope.get("rope_type", rope.get("type", "default"))
    other = f.c.get("rope_scaling") if key == "rope_parameters" else None
    if isinstance(other, dict) and other.get("rope_type", other.get("type", "default")) != kind:
        raise f.fail("rope_scaling", f"says {other.get('rope_type', other.get('type'))!r}, rope_parameters {kind!r}")
    if kind not in ("default", "llama3"):
        raise f.fail(f"{key}.rope_type", f"{kind!r} is not supported (default, llama3); llmlab refuses rather than approximate")
    sub = _Fields(rope, Path(f"{f.path}: {key}"))
    sub.read |= {"rope_type", "type"}
    out: dict[str, Any] = {"rope_theta": sub.get("rope_theta", float, theta, lo=1e-9)}
    sub.must_be("partial_rotary_factor", (1, 1.0), "RoPE over the whole head")
    if kind == "llama3":
        out.update(rope_scaling="llama3", rope_factor=sub.get("factor", float, lo=1.0),
                   rope_low_freq_factor=sub.get("low_freq_factor", float, lo=1e-9),
                   rope_high_freq_factor=sub.get("high_freq_factor", float, lo=1e-9),
                   rope_original_context=sub.get("original_max_position_embeddings", int, lo=1))
        if out["rope_high_freq_factor"] <= out["rope_low_freq_factor"]:
            raise sub.fail("high_freq_factor", "must be above low_freq_factor")
    unknown = sorted(set(rope) - sub.read)
    if unknown:
        raise sub.fail(unknown[0], f"a RoPE field llmlab does not know ({', '.join(unknown)}); it may change the maths")
    return out


def _sliding_window(f: _Fields, family: str, context: int) -> None:
    """A sliding window is refused unless it never applies (window >= context, or switched off)."""
    use = f.get("use_sliding_window", bool, family in ("mistral",))
    window = f.get("sliding_window", int, None, lo=1)
    types = f.get("layer_types", list, None)
    if types is not None and any(t not in ("full_attention", "sliding_attention") for t in types):
        raise f.fail("layer_types", f"{sorted(set(types))}: only full attention is supported")
    sliding = use or (types is not None and "sliding_attention" in types)
    if sliding and window is not None and window < context:
        raise f.fail("sliding_window", f"{window} is shorter than the context ({context}); sliding-window "
                                       f"attention is not supported, llmlab refuses rather than approximate")


def _llama_like(f: _Fields, family: str) -> ModelConfig:
    f.must_be("hidden_act", ("silu",), "SwiGLU with SiLU")
    f.must_be("rope_interleaved", (False,), "the rotate-half RoPE layout")
    n_embd, n_head = f.get("hidden_size", int, lo=1), f.get("num_attention_heads", int, lo=1)
    n_kv = f.get("num_key_value_heads", int, n_head, lo=1)
    if n_head % n_kv:
        raise f.fail("num_key_value_heads", f"{n_kv} does not divide num_attention_heads = {n_head}")
    hd = f.get("head_dim", int, 0, lo=2)
    if not hd and n_embd % n_head:
        raise f.fail("hidden_size", f"{n_embd} is not divisible by num_attention_heads = {n_head}")
    if (hd or n_embd // n_head) % 2:
        raise f.fail("head_dim", f"RoPE needs an even head size, not {hd or n_embd // n_head}")
    context = f.get("max_position_embeddings", int, 2048, lo=1)
    _sliding_window(f, family, context)
    bias, qkv_bias = False, family == "qwen2"  # Qwen2: biases on q, k, v and nowhere else
    if family in ("llama", "smollm3"):
        bias = f.get("attention_bias", bool, False)
        if f.get("mlp_bias", bool, False) != bias:
            raise f.fail("mlp_bias", "differs from attention_bias; llmlab has biases on every linear layer or none")
    elif family == "qwen3":
        f.must_be("attention_bias", (False,), "Qwen3 without attention biases")
    nope: list[int] = []
    if family == "smollm3":
        n_layer = f.get("num_hidden_layers", int, lo=1)
        flags = f.get("no_rope_layers", list, None)
        interval = f.get("no_rope_layer_interval", int, 4, lo=1)
        flags = flags if flags is not None else [int((i + 1) % interval != 0) for i in range(n_layer)]
        if len(flags) != n_layer or any(x not in (0, 1) for x in flags):
            raise f.fail("no_rope_layers", f"expected {n_layer} flags of 0 or 1")
        nope = [i for i, x in enumerate(flags) if not x]
    hd_default = n_embd // n_head if not n_embd % n_head else 0
    return ModelConfig(
        n_layer=f.get("num_hidden_layers", int, lo=1), n_head=n_head, n_kv_head=n_kv, n_embd=n_embd,
        context_length=context, vocab_size=f.get("vocab_size", int, lo=1), norm="rmsnorm",
        norm_eps=f.get("rms_norm_eps", float, 1e-6, lo=0.0), position="rope", mlp="swiglu",
        mlp_hidden=f.get("intermediate_size", int, lo=1), bias=bias, qkv_bias=qkv_bias, qk_norm=family == "qwen3",
        head_dim=0 if hd == hd_default else hd, nope_layers=nope,
        tie_embeddings=f.get("tie_word_embeddings", bool, False), dropout=0.0, **_rope(f, context))


# ------------------------------------------------------------------------------------- export

def export_family(cfg: ModelConfig) -> str:
    """The transformers family whose maths equals `cfg`, or a UserError naming what does not fit."""
    gpt2 = dict(norm="layernorm", position="learned", mlp="gelu", bias=True, qk_norm=False, nope_layers=[],
                rope_scaling="none")
    if all(getattr(cfg, k) == v for k, v in gpt2.items()) and kv_heads(cfg) == cfg.n_head and not cfg.head_dim:
        return "gpt2"
    llama = dict(norm="rmsnorm", position="rope", mlp="swiglu")
    if all(getattr(cfg, k) == v for k, v in llama.items()):
        if cfg.qk_norm and not cfg.bias and not cfg.qkv_bias and not cfg.nope_layers:
            return "qwen3"
        if cfg.qkv_bias and not cfg.bias and not cfg.qk_norm and not cfg.nope_layers:
            return "qwen2"
        if not cfg.qk_norm and (cfg.bias or not cfg.qkv_bias):
            return "smollm3" if cfg.nope_layers else "llama"
    diffs = ", ".join(f"model.{k} = {getattr(cfg, k)!r}" for k in
                      ("norm", "position", "mlp", "bias", "qkv_bias", "qk_norm", "nope_layers", "n_kv_head"))
    raise UserError(f"this architecture ({diffs}) matches no transformers class (GPT-2, Llama, Qwen2, Qwen3, "
                    f"SmolLM3); it cannot be exported")


def hf_config_from_model(cfg: ModelConfig, tied: bool, eos: int | None) -> dict:
    """config.json for `cfg` in the family export_family picks."""
    family = export_family(cfg)
    common = {"architectures": [ARCHITECTURES[family]], "model_type": family, "vocab_size": cfg.vocab_size,
              "tie_word_embeddings": tied, "bos_token_id": eos, "eos_token_id": eos, "pad_token_id": None}
    if family == "gpt2":
        return {**common, "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
                "n_positions": cfg.context_length, "n_ctx": cfg.context_length, "n_inner": mlp_hidden_size(cfg),
                "activation_function": "gelu_new", "layer_norm_epsilon": cfg.norm_eps,
                "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout}
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.rope_scaling == "llama3":
        rope.update(rope_type="llama3", factor=cfg.rope_factor, low_freq_factor=cfg.rope_low_freq_factor,
                    high_freq_factor=cfg.rope_high_freq_factor, original_max_position_embeddings=cfg.rope_original_context)
    out = {**common, "hidden_size": cfg.n_embd, "intermediate_size": mlp_hidden_size(cfg),
           "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head, "num_key_value_heads": kv_heads(cfg),
           "head_dim": head_dim(cfg), "max_position_embeddings": cfg.context_length, "rms_norm_eps": cfg.norm_eps,
           "hidden_act": "silu", "attention_dropout": cfg.dropout,
           # transformers 5 reads rope_parameters, 4.x reads rope_theta and rope_scaling
           "rope_theta": cfg.rope_theta, "rope_parameters": rope,
           "rope_scaling": rope if cfg.rope_scaling != "none" else None}
    if family in ("llama", "smollm3"):
        out.update(attention_bias=cfg.bias, mlp_bias=cfg.bias)
    if family == "smollm3":
        out["no_rope_layers"] = [int(i not in cfg.nope_layers) for i in range(cfg.n_layer)]
    if family in ("qwen2", "qwen3"):
        out.update(use_sliding_window=False, sliding_window=None)
    return out

