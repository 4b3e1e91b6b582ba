"""GGUF files in: llama.cpp's format read with the `gguf` package into a GPT of ours.

`read_gguf(path)` validates the header and metadata (types, bounds, and every tensor's shape and
byte range against the file size, before anything is allocated), dequantizes each tensor to fp32
(F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K through gguf.quants), undoes llama.cpp's
permutation of the q/k rows for Llama-architecture files, and maps the tensors through the
`gguf` package's own name table. Llama 3.1/3.2's `rope_freqs` tensor becomes rope_scaling llama3
when it matches that rule exactly, else it is refused. Architectures: llama (Llama, Mistral, SmolLM2),
qwen2, qwen3 (and gpt2 with a known config: how the GGUF export reads its own files back).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.config import ModelConfig
from core.errors import UserError
from core.model.gpt import GPT

ARCHS = ("llama", "qwen2", "qwen3")
ROPE_FREQS = "rope_freqs.weight"  # Llama 3.1/3.2: per-frequency RoPE divisors (read into ModelConfig's rope_scaling)
QUANTS = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K")
# metadata under "{arch}." that does not change the forward pass, or that read_config reads
ARCH_KEYS = {
    "block_count", "context_length", "embedding_length", "feed_forward_length", "attention.head_count",
    "attention.head_count_kv", "rope.freq_base", "attention.layer_norm_rms_epsilon", "vocab_size",
    "rope.dimension_count", "attention.key_length", "attention.value_length", "rope.scaling.type",
    "attention.sliding_window", "rope.scaling.factor",
}
# our ModelConfig field -> the GGUF metadata key (under "{arch}.") it comes from
GGUF_KEY_OF = {
    "n_layer": "block_count", "context_length": "context_length", "n_embd": "embedding_length",
    "n_head": "attention.head_count", "n_kv_head": "attention.head_count_kv", "vocab_size": "vocab_size",
    "mlp_hidden": "feed_forward_length", "norm_eps": "attention.layer_norm_rms_epsilon",
    "rope_theta": "rope.freq_base", "head_dim": "attention.key_length",
}


def _open(path: Path) -> Any:
    import gguf

    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # the reader fails with ValueError, IndexError, struct/numpy errors on bad bytes
        raise UserError(f"{path}: not a readable GGUF file, truncated or corrupt ({type(e).__name__}: {e})") from None
    size = path.stat().st_size
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size:
            raise UserError(f"{path}: tensor {t.name} ends at byte {t.data_offset + t.n_bytes}, past the end of "
                            f"the file ({size} bytes); the file is truncated")
    return reader


def _meta(reader: Any, path: Path, key: str, tp: type, default: Any = None, lo: float | None = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise UserError(f"{path}: metadata {key}: missing")
        return default
    try:
        v = field.contents()
    except Exception:
        raise UserError(f"{path}: metadata {key}: unreadable") from None
    if tp is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, tp) or (isinstance(v, bool) and tp is not bool):
        raise UserError(f"{path}: metadata {key}: expected {tp.__name__}, got {type(v).__name__} {v!r}")
    if lo is not None and isinstance(v, (int, float)) and v < lo:
        raise UserError(f"{path}: metadata {key}: {v} is below {lo}")
    return v


def read_config(reader: Any, path: Path) -> tuple[ModelConfig, str]:
    """ModelConfig and architecture from the metadata; refuses what it cannot honour by key."""
    arch = _meta(reader, path, "general.architecture", str)
    if arch not in ARCHS:
        raise UserError(f"{path}: metadata general.architecture: {arch!r} is not supported; llmlab imports {', '.join(ARCHS)}")
    unknown = sorted(k for k in reader.fields if k.startswith(arch + ".") and k[len(arch) + 1:] not in ARCH_KEYS)
    if unknown:
        raise UserError(f"{path}: metadata {unknown[0]}: a key llmlab does not know; it may change the maths, "
                        f"so the import stops")

    def get(key: str, tp: type, default: Any = None, lo: float | None = None) -> Any:
        return _meta(reader, path, f"{arch}.{key}", tp, default, lo)

    n_embd, n_head = get("embedding_length", int, lo=1), get("attention.head_count", int, lo=1)
    n_kv = get("attention.head_count_kv", int, n_head, lo=1)
    hd = get("attention.key_length", int, n_embd // n_head, lo=2)
    if get("attention.value_length", int, hd) != hd or get("rope.dimension_count", int, hd) != hd or hd % 2 or n_head % n_kv:
        raise UserError(f"{path}: metadata {arch}.attention.*: head sizes (key, value, rope) differ or do not divide; "
                        f"only full RoPE over equal key and value heads is supported")
    context = get("context_length", int, lo=1)
    if get("rope.scaling.type", str, "none") not in ("none",):
        raise UserError(f"{path}: metadata {arch}.rope.scaling.type: {get('rope.scaling.type', str)!r} is not supported")
    window = get("attention.sliding_window", int, 0)
    if window and window < context:
        raise UserError(f"{path}: metadata {arch}.attention.sliding_window: {window} is shorter than the context ({context})")
    embd = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embd is None:
        raise UserError(f"{path}: tensor token_embd.weight: missing")
    vocab = get("vocab_size", int, int(embd.shape[1]), lo=1)
    cfg = ModelConfig(
        n_layer=get("block_count", int, lo=1), n_head=n_head, n_kv_head=n_kv, n_embd=n_embd, context_length=context,
        vocab_size=vocab, norm="rmsnorm", norm_eps=get("attention.layer_norm_rms_epsilon", float, lo=0.0),
        position="rope", rope_theta=get("rope.freq_base", float, 10000.0, lo=1e-9), mlp="swiglu",
        mlp_hidden=get("feed_forward_length", int, lo=1), bias=False, qkv_bias=arch == "qwen2",
        qk_norm=arch == "qwen3", head_dim=hd if hd != n_embd // n_head or n_embd % n_head else 0,
        tie_embeddings=not any(t.name == "output.weight" for t in reader.tensors), dropout=0.0)
    freqs = next((t for t in reader.tensors if t.name == ROPE_FREQS), None)
    if freqs is not None:
        cfg = dataclasses.replace(cfg, **llama3_rope_from_factors(cfg, _dequantize(freqs, path).double(), path))
    _check_config(cfg, reader, path, arch)
    return cfg, arch


def _check_config(cfg: ModelConfig, reader: Any, path: Path, arch: str) -> None:
    """The bounds and cross-field checks of a checkpoint's architecture (one definition: core.schemas), and
    the block count against the tensors, before any model is built from the metadata."""
    from core.schemas import FileFormatError, model_config_of

    try:
        model_config_of({"architecture": dataclasses.asdict(cfg)}, path)
    except FileFormatError as e:
        field = e.key.removeprefix("architecture.")
        raise UserError(f"{path}: metadata {arch}.{GGUF_KEY_OF.get(field, '*')}: {field} "
                        f"{str(e).removeprefix(f'{e.file}: {e.key}: ')}") from None
    blocks = {int(t.name.split(".")[1]) for t in reader.tensors
              if t.name.startswith("blk.") and t.name.split(".")[1].isdigit()}
    if blocks and max(blocks) + 1 != cfg.n_layer:
        raise UserError(f"{path}: metadata {arch}.block_count: {cfg.n_layer}, but the tensors are of "
                        f"{max(blocks) + 1} blocks")


def llama3_rope_from_factors(cfg: ModelConfig, factors: torch.Tensor, path: Path) -> dict[str, Any]:
    """ModelConfig rope fields whose frequencies are base / `factors` (the rope_freqs tensor llama.cpp's
    converter writes for Llama 3.1/3.2's rope_scaling), recovered exactly or refused.

    Per frequency: 1 where the wavelength is short, `factor` where it is long, and between them
    1 / ((1 - s) / factor + s) with s linear in 1 / wavelength. Only the ratios original_context /
    low_freq_factor and / high_freq_factor change the maths, so low_freq_factor is taken as 1 (all
    Llama 3.x checkpoints use 1); the recovered fields must reproduce every factor to 1e-5."""
    from core.model.gpt import rope_inv_freq

    where = f"{path}: tensor {ROPE_FREQS}"
    base = rope_inv_freq(dataclasses.replace(cfg, rope_scaling="none"), torch.device("cpu")).double()
    if tuple(factors.shape) != tuple(base.shape) or not bool(torch.isfinite(factors).all()) or factors.min() < 1 - 1e-6:
        raise UserError(f"{where}: {tuple(factors.shape)} values, not the {len(base)} factors >= 1 of llama3 RoPE scaling")
    if bool(torch.allclose(factors, torch.ones_like(factors), rtol=0, atol=1e-6)):
        return {"rope_scaling": "none"}
    factor = float(factors.max())
    mid = (factors > 1 + 1e-5) & (factors < factor * (1 - 1e-5))
    if int(mid.sum()) < 2:
        raise UserError(f"{where}: fewer than two interpolated frequencies, so the llama3 scaling parameters cannot "
                        f"be recovered exactly; the import stops rather than approximate")
    # s = A / wavelength + B between the bands, A = original_context / (high - low), B = -low / (high - low)
    s = (1 / factors[mid] - 1 / factor) / (1 - 1 / factor)
    inv_w = (base / (2 * math.pi))[mid]
    A = float((s[-1] - s[0]) / (inv_w[-1] - inv_w[0]))
    B = float(s[0] - A * inv_w[0])
    fields: dict[str, Any] = {"rope_scaling": "none"}
    if A > 0 and B < 0:
        context = round(-A / B)
        fields = {"rope_scaling": "llama3", "rope_factor": factor, "rope_low_freq_factor": 1.0,
                  "rope_high_freq_factor": 1.0 + context / A, "rope_original_context": context}
    got = base / rope_inv_freq(dataclasses.replace(cfg, **fields), torch.device("cpu")).double()
    if not bool(torch.allclose(got, factors, rtol=1e-5, atol=0)):
        raise UserError(f"{where}: the factors do not follow Llama 3.1's rope_scaling (llama3), the only "
                        f"per-frequency scaling llmlab implements; the import stops rather than approximate")
    return fields


def _name_table(n_layer: int, arch: str) -> dict[str, tuple[str, int]]:
    """GGUF tensor name -> (our tensor, part): part 0-2 of a fused q|k|v or 0-1 of gate|up, else -1.
    (gpt2, which only our export writes, keeps q|k|v and the MLP input whole and has positions.)"""
    from gguf.constants import MODEL_TENSOR as T, TENSOR_NAMES as N

    top = {T.TOKEN_EMBD: "wte", T.OUTPUT_NORM: "ln_f", T.OUTPUT: "lm_head"}
    per_block = {T.ATTN_NORM: ("ln_1", -1), T.FFN_NORM: ("ln_2", -1), T.ATTN_Q: ("attn.c_attn", 0),
                 T.ATTN_K: ("attn.c_attn", 1), T.ATTN_V: ("attn.c_attn", 2), T.ATTN_OUT: ("attn.c_proj", -1),
                 T.ATTN_Q_NORM: ("attn.q_norm", -1), T.ATTN_K_NORM: ("attn.k_norm", -1),
                 T.FFN_GATE: ("mlp.c_fc", 0), T.FFN_UP: ("mlp.c_fc", 1), T.FFN_DOWN: ("mlp.c_proj", -1)}
    if arch == "gpt2":
        top[T.POS_EMBD] = "wpe"
        per_block = {T.ATTN_NORM: ("ln_1", -1), T.FFN_NORM: ("ln_2", -1), T.ATTN_QKV: ("attn.c_attn", -1),
                     T.ATTN_OUT: ("attn.c_proj", -1), T.FFN_UP: ("mlp.c_fc", -1), T.FFN_DOWN: ("mlp.c_proj", -1)}
    table = {f"{N[t]}.{suffix}": (f"{ours}.{suffix}", -1) for t, ours in top.items() for suffix in ("weight", "bias")}
    for i in range(n_layer):
        for t, (ours, part) in per_block.items():
            for suffix in ("weight", "bias"):
                table[f"{N[t].format(bid=i)}.{suffix}"] = (f"blocks.{i}.{ours}.{suffix}", part)
    return table


def _unpermute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo llama.cpp's convert_hf_to_gguf permute of q/k rows (interleaved RoPE pairs -> rotate-half)."""
    rest = w.shape[1:]
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *rest).transpose(1, 2).reshape(w.shape)


def _dequantize(t: Any, path: Path) -> torch.Tensor:
    """One tensor as fp32 (out, in), or (n,) for a vector."""
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import dequantize

    kind = Q(t.tensor_type).name
    if kind not in QUANTS:
        raise UserError(f"{path}: tensor {t.name}: quantization type {kind} cannot be dequantized "
                        f"(supported: {', '.join(QUANTS)})")
    shape = tuple(int(x) for x in reversed(t.shape))  # GGUF lists ne0 (the fast axis) first
    w = np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)  # a copy: the file is a read-only map
    return torch.from_numpy(w.reshape(shape))


def read_weights(reader: Any, path: Path, cfg: ModelConfig, arch: str) -> dict[str, torch.Tensor]:
    """Our state dict from the file's tensors, each shape checked against `cfg` before it is dequantized."""
    with torch.device("meta"):
        expected = GPT(cfg).state_dict()
    table = _name_table(cfg.n_layer, arch)
    parts: dict[str, list[torch.Tensor | None]] = {}
    out: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        if t.name == ROPE_FREQS:
            continue  # read into the config by read_config
        if t.name not in table:
            raise UserError(f"{path}: tensor {t.name}: not one llmlab knows for {arch}; it may change the maths, "
                            f"so the import stops")
        ours, part = table[t.name]
        if ours not in expected:
            raise UserError(f"{path}: tensor {t.name}: unexpected for this architecture (it maps to {ours})")
        shape = tuple(int(x) for x in reversed(t.shape))
        want = tuple(expected[ours].shape)
        if part >= 0:
            sizes = _split_sizes(cfg, ours)
            want = (sizes[part], *want[1:])
        if shape != want:
            raise UserError(f"{path}: tensor {t.name}: shape {shape}, the metadata implies {want}")
        w = _dequantize(t, path)
        if arch == "llama" and part in (0, 1) and ours.endswith("c_attn.weight"):
            w = _unpermute(w, cfg.n_head if part == 0 else (cfg.n_kv_head or cfg.n_head))
        if part < 0:
            out[ours] = w
        else:
            parts.setdefault(ours, [None] * len(_split_sizes(cfg, ours)))[part] = w
    for ours, ws in parts.items():
        if any(w is None for w in ws):
            raise UserError(f"{path}: {ours}: the file lacks one of its parts (q, k, v or gate, up)")
        out[ours] = torch.cat(ws)  # type: ignore[arg-type]
    return out


def _split_sizes(cfg: ModelConfig, ours: str) -> list[int]:
    from core.model.stats import head_dim, kv_heads, mlp_hidden_size

    if ".c_attn." in ours:
        hd = head_dim(cfg)
        return [cfg.n_head * hd, kv_heads(cfg) * hd, kv_heads(cfg) * hd]
    return [mlp_hidden_size(cfg)] * 2


def read_gguf(path: str | Path, cfg: ModelConfig | None = None) -> tuple[GPT, str]:
    """(model, architecture) of a .gguf file. With `cfg` the architecture is the one given (the
    export reads back what it wrote, gpt2 included) rather than read from the metadata; the tensors
    are checked against it all the same."""
    from core.model.hf import build_model

    path = Path(path)
    reader = _open(path)
    if cfg is None:
        cfg, arch = read_config(reader, path)
    else:
        cfg = dataclasses.replace(cfg, dropout=0.0)  # as read_config gives: a file's model is for inference
        arch = _meta(reader, path, "general.architecture", str)
        if arch not in (*ARCHS, "gpt2"):
            raise UserError(f"{path}: metadata general.architecture: {arch!r} is not supported")
    return build_model(cfg, read_weights(reader, path, cfg, arch), path), arch
