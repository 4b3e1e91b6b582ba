"""The GPT family: one decoder-only transformer that expresses GPT-2 and Llama-style models.

GPT-2: LayerNorm, learned positions, GELU MLP, biases, tied embeddings.
Llama 1-3.2 / Mistral / SmolLM2: RMSNorm, RoPE (llama3 frequency scaling), SwiGLU, no biases,
grouped-query attention (`n_kv_head`), tied or untied head. Qwen2 adds biases on q, k, v only
(`qkv_bias`), Qwen3 an RMSNorm per head on q and k (`qk_norm`, with its own `head_dim`), SmolLM3
layers without RoPE (`nope_layers`).
The architecture is `core.config.ModelConfig`; pretraining, finetuning, generation and the HF
import/export all use this one module. Generation passes a `KVCache` (prefill, then one token
per step) and asks for the head at the last position only.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from core.config import ModelConfig
from core.model import head_loss
from core.model.stats import head_dim, kv_heads, mlp_hidden_size


DECODE_COPIES_MAX_PARAMS = 400_000_000  # up to GPT-2 medium: at most ~1.4 GB of extra memory while decoding


class KVCache:
    """Preallocated keys and values of every layer for one generation.

    The tensors are allocated on the first write (then their dtype and device follow the model,
    autocast included) with room for `max_len` positions; `pos` is the number of positions filled.
    Rows of different lengths are left-padded: `pad` (B,) counts each row's padding positions, which
    no query attends to and which shift the row's positions (see `positions`, `attn_mask`).
    """

    def __init__(self, n_layer: int, max_len: int, weight_copies: bool = True):
        self.n_layer = n_layer
        self.max_len = max_len
        self.pos = 0
        # (in, out) weight copies for one-token CPU decoding (see `linear`); they double the
        # weights' memory during a generation, so weight_copies=False turns them off
        self.weight_copies = weight_copies
        self.decode_weights: dict[int, torch.Tensor] = {}
        self.k: torch.Tensor | None = None  # (n_layer, B, n_kv_head, max_len, head_dim)
        self.v: torch.Tensor | None = None
        self.pad: torch.Tensor | None = None  # (B,) left-padding per row; None: no row is padded
        self.mask: torch.Tensor | None = None  # (B, 1, T, pos + T) of the forward pass under way, with pad

    @classmethod
    def for_model(cls, model: GPT, max_len: int | None = None, weight_copies: bool | None = None) -> KVCache:
        if weight_copies is None:  # the copies double weight memory while generating: small models only
            weight_copies = sum(p.numel() for p in model.parameters()) <= DECODE_COPIES_MAX_PARAMS
        return cls(model.config.n_layer, max_len or model.config.context_length, weight_copies)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, n_kv_head, T, head_dim) at `pos`; return all keys and values so far."""
        B, H, T, D = k.shape
        if self.k is None or self.v is None:
            shape = (self.n_layer, B, H, self.max_len, D)
            self.k = torch.empty(shape, dtype=k.dtype, device=k.device)
            self.v = torch.empty(shape, dtype=v.dtype, device=v.device)
        end = self.pos + T
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]  # (B, n_kv_head, end, head_dim)

    def positions(self, T: int, device: torch.device) -> torch.Tensor:
        """The token positions of the next T cache slots: (T,), or (B, T) counted from each row's first real token."""
        slots = torch.arange(self.pos, self.pos + T, device=device)
        return slots if self.pad is None else (slots[None, :] - self.pad[:, None]).clamp(min=0)

    def attn_mask(self, T: int, device: torch.device) -> torch.Tensor:
        """(B, 1, T, pos + T) True where the T new queries may attend: causal, never to a row's padding
        (a padding query attends to itself only, so every softmax row stays finite)."""
        assert self.pad is not None
        q = torch.arange(self.pos, self.pos + T, device=device)[:, None]  # (T, 1)
        key = torch.arange(self.pos + T, device=device)[None, :]  # (1, pos + T)
        real = key[None] >= self.pad[:, None, None]  # (B, 1, pos + T)
        return ((key <= q)[None] & (real | (key == q)[None]))[:, None]  # (B, 1, T, pos + T)

    def select(self, rows: torch.Tensor) -> None:
        """Keep these batch rows (an index tensor, repeats allowed: a prefilled prompt copied to its group)."""
        assert self.k is not None and self.v is not None
        self.k, self.v = self.k[:, rows], self.v[:, rows]
        if self.pad is not None:
            self.pad = self.pad[rows]

    def reset(self) -> None:
        """Start over (the weights may have changed since: drop the decode copies too)."""
        self.pos = 0
        self.decode_weights.clear()


def linear(layer: nn.Module, x: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
    """layer(x), except for one-token decoding on CPU, which multiplies by an (in, out) copy of
    the weight kept in the generation's cache: decoding is bound by reading weights, and MKL's
    matrix-vector product reads that layout about 1.4x faster than nn.Linear's (out, in). The
    copies live as long as the cache (one generation), so they never go stale."""
    if (cache is None or not cache.weight_copies or x.shape[-2] != 1 or x.device.type != "cpu"
            or torch.is_grad_enabled() or type(layer) is not nn.Linear):
        return layer(x)
    wt = cache.decode_weights.get(id(layer))
    if wt is None:
        wt = cache.decode_weights[id(layer)] = layer.weight.detach().t().contiguous()  # (in, out)
    y = x.reshape(-1, x.shape[-1])  # (B, in)
    y = torch.addmm(layer.bias, y, wt) if layer.bias is not None else y @ wt
    return y.view(*x.shape[:-1], -1)


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
    return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps, bias=cfg.bias)


def rope_inv_freq(cfg: ModelConfig, device: torch.device) -> torch.Tensor:
    """The (head_dim / 2,) rotation frequencies, with Llama 3.1's scaling when rope_scaling = llama3:
    wavelengths longer than original_context / low_freq_factor are slowed down by `rope_factor`,
    shorter than original_context / high_freq_factor kept, and those between interpolated."""
    hd = head_dim(cfg)
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, device=device, dtype=torch.float32) / hd))
    if cfg.rope_scaling != "llama3":
        return inv_freq
    old, factor = cfg.rope_original_context, cfg.rope_factor
    lo, hi = cfg.rope_low_freq_factor, cfg.rope_high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old / lo, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - lo) / (hi - lo)
    medium = (wavelen >= old / hi) & (wavelen <= old / lo)
    return torch.where(medium, (1 - smooth) * scaled / factor + smooth * scaled, scaled)


def rope_tables(cfg: ModelConfig, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (T, head_dim) for positions (T,), or (B, 1, T, head_dim) for per-row positions
    (B, T), computed in fp32 (as HF Llama)."""
    inv_freq = rope_inv_freq(cfg, positions.device)  # (head_dim / 2,)
    freqs = positions.to(torch.float32)[..., None] * inv_freq  # (..., T, head_dim / 2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (..., T, head_dim): the "rotate half" layout of HF Llama
    if emb.dim() == 3:
        emb = emb[:, None]  # (B, 1, T, head_dim): broadcast over the heads
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x (B, H, T, head_dim); rotate pairs (i, i + head_dim/2)
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head = cfg.n_head
        self.n_kv_head = kv_heads(cfg)
        self.head_dim = head_dim(cfg)
        self.dropout = cfg.dropout
        # queries, keys and values in one matmul: n_head + 2 * n_kv_head heads
        self.c_attn = nn.Linear(cfg.n_embd, (self.n_head + 2 * self.n_kv_head) * self.head_dim,
                                bias=cfg.bias or cfg.qkv_bias)
        self.c_proj = nn.Linear(self.n_head * self.head_dim, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        # Qwen3: one RMSNorm (weight of head_dim) over every query head, one over every key head
        self.q_norm = nn.RMSNorm(self.head_dim, eps=cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=cfg.norm_eps) if cfg.qk_norm else None

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                cache: KVCache | None) -> torch.Tensor:
        B, T, C = x.shape
        hd, nh, nkv = self.head_dim, self.n_head, self.n_kv_head
        q, k, v = linear(self.c_attn, x, cache).split([nh * hd, nkv * hd, nkv * hd], dim=2)
        q = q.view(B, T, nh, hd).transpose(1, 2)  # (B, n_head, T, head_dim)
        k = k.view(B, T, nkv, hd).transpose(1, 2)  # (B, n_kv_head, T, head_dim)
        v = v.view(B, T, nkv, hd).transpose(1, 2)  # (B, n_kv_head, T, head_dim)
        if self.q_norm is not None and self.k_norm is not None:  # both or neither (cfg.qk_norm)
            q, k = self.q_norm(q), self.k_norm(k)  # over head_dim, per head and position
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        mask, causal = None, True
        if cache is not None:
            start = cache.pos
            k, v = cache.update(self.layer_idx, k, v)  # (B, n_kv_head, start + T, head_dim)
            if cache.mask is not None:  # left-padded rows
                mask, causal = cache.mask, False
            elif T == 1:
                causal = False  # one new query sees every cached position
            elif start > 0:
                # T new queries at positions start..start+T-1 against start+T keys
                q_pos = torch.arange(start, start + T, device=x.device)[:, None]
                mask, causal = torch.arange(start + T, device=x.device)[None, :] <= q_pos, False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=nkv != nh)  # (B, n_head, T, head_dim)
        y = y.transpose(1, 2).contiguous().view(B, T, nh * hd)
        return self.resid_dropout(linear(self.c_proj, y, cache))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.swiglu = cfg.mlp == "swiglu"
        self.hidden = mlp_hidden_size(cfg)
        # SwiGLU: gate and up projections fused into one matmul (gate first, then up)
        self.c_fc = nn.Linear(cfg.n_embd, self.hidden * (2 if self.swiglu else 1), bias=cfg.bias)
        self.c_proj = nn.Linear(self.hidden, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        h = linear(self.c_fc, x, cache)  # (B, T, hidden) or (B, T, 2 * hidden)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")  # GPT-2's "gelu_new"
        return self.dropout(linear(self.c_proj, h, cache))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = make_norm(cfg)
        self.use_rope = layer_idx not in cfg.nope_layers
        self.attn = CausalSelfAttention(cfg, layer_idx)
        self.ln_2 = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                cache: KVCache | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope if self.use_rope else None, cache)
        return x + self.mlp(self.ln_2(x), cache)


class GPT(nn.Module):
    """Decoder-only transformer. `forward(idx, targets)` -> (logits, loss)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError("ModelConfig.vocab_size must be set (take it from the tokenizer) before building a GPT")
        self.config = config
        cfg = config
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.context_length, cfg.n_embd) if cfg.position == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head_kind = "lm"
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight  # one tensor; checkpoints store it once as wte.weight
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer), one per residual add
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ------------------------------------------------------------------ forward

    def hidden_states(self, idx: torch.Tensor, *, cache: KVCache | None = None) -> torch.Tensor:
        """The trunk: token ids (B, T) -> hidden states (B, T, C) after the final norm."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.config.context_length:
            raise ValueError(f"sequence of {start + T} tokens is longer than the context ({self.config.context_length})")
        x = self.wte(idx)  # (B, T, C)
        rope = None
        # (T,), or (B, T) for left-padded rows in a cache
        pos = cache.positions(T, idx.device) if cache is not None else torch.arange(T, device=idx.device)
        if self.wpe is not None:
            x = x + self.wpe(pos)  # (T, C) broadcast over B, or (B, T, C)
        else:
            rope = rope_tables(self.config, pos)
        if cache is not None and cache.pad is not None:
            cache.mask = cache.attn_mask(T, idx.device)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, rope, cache)
        if cache is not None:
            cache.pos += T
            cache.mask = None
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                cache: KVCache | None = None, last_only: bool = False,
                logits: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """idx (B, T) -> logits (B, T, V), or (B, 1, V) with last_only; loss when targets (B, T) are given.

        Targets equal to -100 are ignored (prompt and padding positions in finetuning). With targets
        and `logits=False` the caller needs the loss only: in float32 (outside autocast) it comes from
        the head and the cross-entropy fused over row chunks (core.model.head_loss), which never holds
        all the logits, and the logits returned are None.
        """
        x = self.hidden_states(idx, cache=cache)  # (B, T, C)
        if targets is not None and not logits and type(self.lm_head) is nn.Linear and self.lm_head.bias is None \
                and head_loss.applies(x, self.lm_head.weight):
            C = x.shape[-1]
            return None, head_loss.linear_cross_entropy(x.reshape(-1, C), self.lm_head.weight, targets.reshape(-1))
        if targets is not None:
            out = self.lm_head(x)  # (B, T, V)
            loss = F.cross_entropy(out.view(-1, out.size(-1)).float(), targets.reshape(-1), ignore_index=-100)
            return out, loss
        if last_only:
            x = x[:, -1:, :]  # generation needs the next token only: skip the head elsewhere
        return linear(self.lm_head, x, cache), None

    # ------------------------------------------------------------------ helpers

    @property
    def tied(self) -> bool:
        return self.lm_head.weight is self.wte.weight

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters counted once (a tied head is the embedding); non_embedding drops wte, wpe and an untied head."""
        n = sum(p.numel() for p in self.parameters())  # parameters() de-duplicates tied tensors
        if non_embedding:
            n -= self.wte.weight.numel()
            if self.wpe is not None:
                n -= self.wpe.weight.numel()
            if not self.tied and self.head_kind == "lm":
                n -= self.lm_head.weight.numel()
        return n

    def set_head(self, out_features: int, *, bias: bool = False, kind: str = "classify") -> nn.Linear:
        """Replace the output head (e.g. a classifier over `out_features` classes); unties it."""
        head = nn.Linear(self.config.n_embd, out_features, bias=bias)
        self._init_weights(head)
        self.lm_head = head.to(device=self.wte.weight.device, dtype=self.wte.weight.dtype)
        self.head_kind = kind
        return self.lm_head

    def weights(self) -> dict[str, torch.Tensor]:
        """State dict for saving: each tensor once (a tied head is not repeated), contiguous."""
        sd = self.state_dict()
        if self.tied:
            sd.pop("lm_head.weight")
        return {k: v.detach().contiguous() for k, v in sd.items()}

    def load_weights(self, sd: dict[str, torch.Tensor]) -> None:
        """Load what `weights()` produced; a tied head follows wte.weight. Raises ValueError on a mismatch."""
        missing, unexpected = self.load_state_dict(sd, strict=False)
        if self.tied:
            missing = [k for k in missing if k != "lm_head.weight"]
        if missing or unexpected:
            raise ValueError(f"weights do not match the architecture: missing {missing[:5]}, unexpected {unexpected[:5]}")
