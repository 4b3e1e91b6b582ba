"""Architecture numbers for the architecture screen, computed from a ModelConfig alone.

Parameters (total, non-embedding, per component, tied and untied), memory for training
(weights, gradients, AdamW state, activations), KV-cache bytes per token, FLOPs per token and MFU
against a table of GPU peaks or a measured CPU peak, and the layer tree with tensor shapes.
Everything here is plain data and instant: no model is built and torch is imported only by the
CPU probe, so the TUI can call it on every keystroke.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.config import FinetuneConfig, ModelConfig

DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "int8": 1}

# Dense (no sparsity) bf16 tensor-core peaks in FLOP/s from the vendors' data sheets; GPUs without
# bf16 (T4, V100) list their fp16 tensor peak. Matched by substring against the device name, first
# match wins, so more specific names come first.
PEAK_FLOPS: list[tuple[str, float]] = [
    ("GB200", 2500e12),
    ("B200", 2250e12),
    ("H200", 989.5e12),
    ("GH200", 989.5e12),
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989.5e12),  # SXM
    ("H800", 989.5e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("A6000", 154.8e12),
    ("RTX 6000 Ada", 364.2e12),
    ("RTX 5090", 209.5e12),
    ("RTX 4090", 165.2e12),
    ("RTX 4080", 97.5e12),
    ("RTX 3090", 71e12),
    ("RTX 3080", 59.5e12),
    ("T4", 65e12),
    ("V100", 125e12),
    ("MI300X", 1307.4e12),
    ("MI250X", 383e12),
]


def dtype_bytes(dtype: str) -> int:
    try:
        return DTYPE_BYTES[dtype.removeprefix("torch.")]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_BYTES)}") from None


# ------------------------------------------------------------------------------ derived shapes

def kv_heads(cfg: ModelConfig) -> int:
    return cfg.n_kv_head or cfg.n_head


def head_dim(cfg: ModelConfig) -> int:
    return cfg.head_dim or cfg.n_embd // cfg.n_head


def mlp_hidden_size(cfg: ModelConfig) -> int:
    """Feed-forward width: mlp_hidden, else 4C (GELU) or 8C/3 rounded up to a multiple of 64 (SwiGLU)."""
    if cfg.mlp_hidden:
        return cfg.mlp_hidden
    if cfg.mlp == "swiglu":
        return 64 * math.ceil(8 * cfg.n_embd / 3 / 64)
    return 4 * cfg.n_embd


# -------------------------------------------------------------------------------- layer tree

@dataclass
class Node:
    """One module of the layer tree; a leaf is a tensor with its shape (names as in the state dict)."""

    name: str
    params: int = 0
    shape: tuple[int, ...] | None = None
    note: str = ""
    children: list[Node] = field(default_factory=list)

    def leaves(self) -> list[Node]:
        return [self] if self.shape is not None else [x for c in self.children for x in c.leaves()]


def _module(name: str, tensors: Sequence[tuple[str, tuple[int, ...]]], note: str = "") -> Node:
    kids = [Node(f"{name}.{t}", math.prod(s), s) for t, s in tensors]
    return Node(name, sum(k.params for k in kids), None, note, kids)


def _norm(cfg: ModelConfig, name: str) -> Node:
    C = cfg.n_embd
    if cfg.norm == "rmsnorm":
        return _module(name, [("weight", (C,))], "RMSNorm")
    return _module(name, [("weight", (C,))] + ([("bias", (C,))] if cfg.bias else []), "LayerNorm")


def _linear(cfg: ModelConfig, name: str, n_in: int, n_out: int, note: str = "", bias: bool = False) -> Node:
    return _module(name, [("weight", (n_out, n_in))] + ([("bias", (n_out,))] if cfg.bias or bias else []), note)


def layer_tree(cfg: ModelConfig) -> Node:
    """The model as a tree of modules with tensor shapes and parameter counts, from the config alone."""
    C, V, hd, nh, nkv = cfg.n_embd, cfg.vocab_size, head_dim(cfg), cfg.n_head, kv_heads(cfg)
    H = mlp_hidden_size(cfg)
    swiglu = cfg.mlp == "swiglu"
    top = [_module("wte", [("weight", (V, C))], "token embedding")]
    if cfg.position == "learned":
        top.append(_module("wpe", [("weight", (cfg.context_length, C))], "learned positions"))
    blocks = []
    for i in range(cfg.n_layer):
        p = f"blocks.{i}"
        qkv_note = f"q, k, v: {nh} + 2 x {nkv} heads of {hd}"
        attn = Node(f"{p}.attn", note="causal self-attention" + (" (RoPE)" if cfg.position == "rope" else ""),
                    children=[_linear(cfg, f"{p}.attn.c_attn", C, (nh + 2 * nkv) * hd, qkv_note, cfg.qkv_bias),
                              _linear(cfg, f"{p}.attn.c_proj", nh * hd, C, "output projection")])
        if cfg.qk_norm:
            attn.children += [_module(f"{p}.attn.{n}", [("weight", (hd,))], "RMSNorm per head") for n in ("q_norm", "k_norm")]
        mlp = Node(f"{p}.mlp", note="SwiGLU" if swiglu else "GELU",
                   children=[_linear(cfg, f"{p}.mlp.c_fc", C, 2 * H if swiglu else H, "gate | up" if swiglu else "up"),
                             _linear(cfg, f"{p}.mlp.c_proj", H, C, "down")])
        kids = [_norm(cfg, f"{p}.ln_1"), attn, _norm(cfg, f"{p}.ln_2"), mlp]
        for k in (attn, mlp):
            k.params = sum(c.params for c in k.children)
        blocks.append(Node(p, sum(k.params for k in kids), None, "block", kids))
    top.append(Node("blocks", sum(b.params for b in blocks), None, f"{cfg.n_layer} blocks", blocks))
    top.append(_norm(cfg, "ln_f"))
    if cfg.tie_embeddings:
        top.append(Node("lm_head", 0, None, "tied to wte.weight", [Node("lm_head.weight", 0, (V, C), "= wte.weight")]))
    else:
        top.append(_module("lm_head", [("weight", (V, C))], "output head"))
    return Node("model", sum(n.params for n in top), None, "GPT", top)


# -------------------------------------------------------------------------------- parameters

@dataclass
class ParamCounts:
    embeddings: int  # token embedding (wte)
    positions: int  # learned position embedding (wpe); 0 with RoPE
    attention: int
    mlp: int
    norms: int
    head: int  # untied output head; 0 when tied
    total: int
    non_embedding: int  # total without wte, wpe and an untied head (Kaplan et al.)
    total_tied: int
    total_untied: int


def param_counts(cfg: ModelConfig) -> ParamCounts:
    tree = layer_tree(cfg)
    by = {n.name: n.params for n in tree.children}
    attn = mlp = norms = 0
    for b in next(n for n in tree.children if n.name == "blocks").children:
        for k in b.children:
            if k.name.endswith(".attn"):
                attn += k.params
            elif k.name.endswith(".mlp"):
                mlp += k.params
            else:
                norms += k.params
    norms += by["ln_f"]
    emb, pos, head = by["wte"], by.get("wpe", 0), by["lm_head"]
    total = emb + pos + attn + mlp + norms + head
    core = attn + mlp + norms
    return ParamCounts(emb, pos, attn, mlp, norms, head, total, core,
                       total_tied=emb + pos + core, total_untied=emb + pos + core + cfg.vocab_size * cfg.n_embd)


# -------------------------------------------------------------------------------------- FLOPs

def flops_per_token(cfg: ModelConfig, context_length: int | None = None) -> float:
    """Training FLOPs per token: 6 N + 12 L C T (PaLM appendix B; nanoGPT's estimate_mfu).

    N counts the matrices a token multiplies through: every non-embedding parameter plus the
    output head (V x C, tied or not); the lookup tables cost nothing. The attention term uses
    the full context T as nanoGPT does.
    """
    T = context_length or cfg.context_length
    pc = param_counts(cfg)
    n = pc.non_embedding + cfg.vocab_size * cfg.n_embd
    return 6 * n + 12 * cfg.n_layer * cfg.n_head * head_dim(cfg) * T


def peak_flops(device_name: str) -> float | None:
    """bf16 dense peak of a GPU by its name (torch.cuda.get_device_name), or None when unknown."""
    low = device_name.lower()
    for key, flops in PEAK_FLOPS:
        if key.lower() in low:
            return flops
    return None


@functools.cache
def cpu_peak_flops(size: int = 512, seconds: float = 0.3) -> float:
    """Measured fp32 matmul FLOP/s of this CPU with torch's current thread count (cached per process)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm up
    best, n, t_end = 0.0, 0, time.perf_counter() + seconds
    while time.perf_counter() < t_end or n < 3:
        t0 = time.perf_counter()
        a @ b
        dt = time.perf_counter() - t0
        best = max(best, 2 * size**3 / dt)
        n += 1
    return best


def device_peak_flops(device: str) -> float:
    """Peak FLOP/s for MFU on a torch device string: the GPU table, else the measured CPU peak."""
    if device.startswith("cuda"):
        import torch

        name = torch.cuda.get_device_name(torch.device(device))
        peak = peak_flops(name)
        if peak is not None:
            return peak
    return cpu_peak_flops()


def mfu(tokens_per_s: float, cfg: ModelConfig, peak: float, context_length: int | None = None) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s over the peak (0..1)."""
    return tokens_per_s * flops_per_token(cfg, context_length) / peak if peak > 0 else 0.0


# ------------------------------------------------------------------------------------- memory

@dataclass
class Memory:
    weights: int
    grads: int
    optimizer: int  # AdamW: two moments per parameter
    activations: int
    total: int


def activation_bytes(cfg: ModelConfig, batch_size: int, context_length: int | None = None,
                     dtype: str = "bfloat16") -> int:
    """Estimate of the tensors autograd keeps for one forward at (batch_size, context), with
    SDPA attention (no T x T matrix) and no recomputation; logits and the fp32 cross entropy
    copies included. Per block and token: norm inputs/outputs 4C, q k v, attention output C,
    MLP input/hidden/activated."""
    T = context_length or cfg.context_length
    C, b = cfg.n_embd, dtype_bytes(dtype)
    H = mlp_hidden_size(cfg)
    qkv = (cfg.n_head + 2 * kv_heads(cfg)) * head_dim(cfg)
    per_block = 4 * C + qkv + C + (2 * H if cfg.mlp == "swiglu" else H) + H
    if cfg.dropout > 0:
        per_block += 2 * C  # masks of the two residual dropouts (one byte each, counted loosely)
    per_token = cfg.n_layer * per_block * b + 3 * C * b + cfg.vocab_size * (b + 8)
    return batch_size * T * per_token


def memory(cfg: ModelConfig, batch_size: int, context_length: int | None = None, dtype: str = "bfloat16",
           param_dtype: str = "float32") -> Memory:
    """Training memory in bytes: fp32 master weights, grads and AdamW moments, activations in `dtype`."""
    n = param_counts(cfg).total
    pb = dtype_bytes(param_dtype)
    w, g, o = n * pb, n * pb, 2 * n * 4
    a = activation_bytes(cfg, batch_size, context_length, dtype)
    return Memory(w, g, o, a, w + g + o + a)


def kv_cache_bytes_per_token(cfg: ModelConfig, dtype: str = "bfloat16") -> int:
    """Keys and values of every layer for one token."""
    return 2 * cfg.n_layer * kv_heads(cfg) * head_dim(cfg) * dtype_bytes(dtype)


def summary(cfg: ModelConfig, batch_size: int = 1, context_length: int | None = None,
            dtype: str = "bfloat16") -> dict:
    """Everything the architecture screen shows, as a plain dict."""
    pc = param_counts(cfg)
    return {
        "params": pc.__dict__,
        "memory": memory(cfg, batch_size, context_length, dtype).__dict__,
        "kv_cache_bytes_per_token": kv_cache_bytes_per_token(cfg, dtype),
        "flops_per_token": flops_per_token(cfg, context_length),
        "head_dim": head_dim(cfg),
        "kv_heads": kv_heads(cfg),
        "mlp_hidden": mlp_hidden_size(cfg),
    }


# ------------------------------------------------------------------------- finetuning

def trainable_params(cfg: ModelConfig, ft: FinetuneConfig) -> dict[str, int]:
    """Parameters that train in each finetuning mode (head, last_blocks, all, lora) of a base of shape
    `cfg` under `ft`, and the total: what the finetuning wizard shows before any weights load
    (close, not exact, for LoRA: layouts vary by layer)."""
    pc = param_counts(cfg)
    E, L = cfg.n_embd, cfg.n_layer
    classify = ft.method == "classify"
    head = (E * ft.num_classes + ft.num_classes) if classify else (pc.embeddings if cfg.tie_embeddings else pc.head)
    per_block = (pc.attention + pc.mlp + pc.norms - 2 * E) / max(1, L)  # norms include ln_f (weight + bias)
    all_params = pc.embeddings + pc.positions + pc.attention + pc.mlp + pc.norms + (head if classify else pc.head)
    last = int(per_block * min(ft.last_blocks, L) + 2 * E + head)
    r = ft.lora.rank
    hd = E // cfg.n_head
    kv = cfg.n_kv_head or cfg.n_head
    H = mlp_hidden_size(cfg) * (2 if cfg.mlp == "swiglu" else 1)
    lora = 0
    if "attn" in ft.lora.targets:
        lora += L * r * ((E + (cfg.n_head + 2 * kv) * hd) + (E + E))
    if "mlp" in ft.lora.targets:
        lora += L * r * ((E + H) + (H // (2 if cfg.mlp == "swiglu" else 1) + E))
    if "head" in ft.lora.targets and not classify:
        lora += r * (E + cfg.vocab_size)
    if classify:
        lora += head
    return {"head": head, "last_blocks": last, "all": all_params, "lora": lora, "total": all_params}
