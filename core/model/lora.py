"""LoRA: low-rank adapters on the linear layers of a GPT, for cheap finetuning.

`apply_lora(model, cfg)` swaps the targeted `nn.Linear` layers (attention, MLP, head) for
`LoRALinear`, which keeps the frozen base weight under the same name and adds `lora_A` (r, in)
and `lora_B` (out, r): y = x W^T + b + (alpha / r) * dropout(x) A^T B^T. B starts at zero, so the
adapted model starts equal to the base. Only the adapters (and whatever else the caller leaves
trainable, such as a new classification head) are trained and saved; `merge_lora` folds them into
the base weights for export, giving back plain `nn.Linear` layers and an ordinary checkpoint.

Used by finetuning (`trainable = "lora"`) in every method: classification, instruction, DPO.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

# which linear layers each preset target names (paths relative to the model)
TARGETS = {
    "attn": ("attn.c_attn", "attn.c_proj"),
    "mlp": ("mlp.c_fc", "mlp.c_proj"),
}


class LoRALinear(nn.Linear):
    """A linear layer with a frozen base weight and a trainable low-rank update.

    The base `weight` and `bias` are the very Parameter objects of the layer it replaces (a tied
    head stays tied to the embedding), so base state-dict names do not change.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        nn.Module.__init__(self)  # not nn.Linear.__init__: the base parameters are re-used, not allocated
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.rank, self.alpha = rank, alpha
        self.scale = alpha / rank
        dev, dt = base.weight.device, base.weight.dtype
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, device=dev, dtype=dt))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=dev, dtype=dt))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear (and the LoRA paper's code)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)  # (..., out)
        if not self.enabled:
            return y
        # (..., in) -> (..., r) -> (..., out): never materialise the (out, in) update in the forward pass
        return y + F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B) * self.scale

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scale  # (out, in)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha:g}"


# ------------------------------------------------------------------------------------- apply

def target_paths(model: nn.Module, targets: list[str] | tuple[str, ...]) -> list[str]:
    """Module paths (e.g. blocks.0.attn.c_attn) of the linear layers the targets name."""
    bad = [t for t in targets if t not in (*TARGETS, "head")]
    if bad:
        raise ValueError(f"unknown LoRA target(s) {bad}; choose from attn, mlp, head")
    paths = []
    for i in range(len(model.blocks)):
        for t in targets:
            paths += [f"blocks.{i}.{p}" for p in TARGETS.get(t, ())]
    if "head" in targets:
        paths.append("lm_head")
    return paths


def _set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def apply_lora(model: nn.Module, rank: int, alpha: float, dropout: float = 0.0,
               targets: list[str] | tuple[str, ...] = ("attn", "mlp"), *, freeze: bool = True) -> list[str]:
    """Put adapters on the targeted layers (in place) and, with `freeze`, make every other
    parameter non-trainable; returns the adapted module paths. Seed torch first for a fixed init."""
    paths = target_paths(model, targets)
    if freeze:
        for p in model.parameters():
            p.requires_grad_(False)
    for path in paths:
        layer = model.get_submodule(path)
        if isinstance(layer, LoRALinear):
            raise ValueError(f"{path} already has a LoRA adapter")
        _set_module(model, path, LoRALinear(layer, rank, alpha, dropout))
    return paths


def apply_lora_config(model: nn.Module, cfg: Any, *, freeze: bool = True) -> list[str]:
    """`apply_lora` with the settings of a preset's `finetune.lora` (core.config.LoraConfig)."""
    return apply_lora(model, cfg.rank, cfg.alpha, cfg.dropout, list(cfg.targets), freeze=freeze)


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    for name, m in model.named_modules():
        if isinstance(m, LoRALinear):
            yield name, m


def has_lora(model: nn.Module) -> bool:
    return any(True for _ in lora_layers(model))


@contextlib.contextmanager
def lora_disabled(model: nn.Module) -> Iterator[None]:
    """The base model inside the block (adapters bypassed): DPO's reference without a second copy."""
    layers = [m for _, m in lora_layers(model)]
    prev = [m.enabled for m in layers]
    for m in layers:
        m.enabled = False
    try:
        yield
    finally:
        for m, e in zip(layers, prev):
            m.enabled = e


# ----------------------------------------------------------------------------- save / restore

def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a LoRA checkpoint stores: every trainable parameter (adapters, and a new head
    where the method has one), detached and contiguous."""
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    """Load what `trainable_state` saved into a model with the same adapters; raises ValueError on a mismatch."""
    params = dict(model.named_parameters())
    missing = [k for k in sd if k not in params]
    wrong = [k for k in sd if k in params and params[k].shape != sd[k].shape]
    expected = [n for n in params if "lora_" in n and n not in sd]
    if missing or wrong or expected:
        raise ValueError(f"adapter weights do not match the model: unknown {missing[:5]}, "
                         f"wrong shape {wrong[:5]}, not in the file {expected[:5]}")
    with torch.no_grad():
        for k, v in sd.items():
            params[k].copy_(v)


# ------------------------------------------------------------------------------------- merge

@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put back plain `nn.Linear` layers (in place).

    A head adapter on a tied head cannot be folded into the shared embedding, so the head is
    untied first (a copy of the embedding plus the update) and `config.tie_embeddings` becomes
    False, which is what the saved checkpoint then describes.
    """
    for path, layer in list(lora_layers(model)):
        weight = layer.weight
        if path == "lm_head" and getattr(model, "tied", False):
            weight = nn.Parameter(weight.detach().clone())
            model.config = dataclasses.replace(model.config, tie_embeddings=False)
        weight.add_(layer.delta_weight().to(weight.dtype))
        plain = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                          device=weight.device, dtype=weight.dtype)
        plain.weight = weight
        if layer.bias is not None:
            plain.bias = layer.bias
        _set_module(model, path, plain)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, each tensor counted once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# ------------------------------------------------------------------------------ checkpoints

class AdapterModel(nn.Module):
    """A GPT with adapters whose checkpoints hold only the trainable tensors.

    The shared loop and `core.checkpoint.save_checkpoint` call `weights()` / `load_weights()`;
    here they mean the adapters (and a new head), so a LoRA checkpoint of GPT-2 355M is a few MB.
    `adapter_meta()` goes into model.json: the base checkpoint and the adapter settings, which is
    what `load_adapter_model` needs to rebuild the finetuned model.
    """

    def __init__(self, gpt: nn.Module, base: str, rank: int, alpha: float, dropout: float, targets: list[str]):
        super().__init__()
        self.gpt = gpt  # not `module`: checkpoint code unwraps DDP's `.module` and would save the full GPT
        self.base, self.rank, self.alpha, self.dropout, self.targets = base, rank, alpha, dropout, list(targets)

    @property
    def config(self) -> Any:
        return self.gpt.config

    @property
    def head_kind(self) -> str:
        return self.gpt.head_kind

    @property
    def lm_head(self) -> nn.Module:
        return self.gpt.lm_head

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.gpt(*args, **kwargs)

    def hidden_states(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.gpt.hidden_states(*args, **kwargs)

    def weights(self) -> dict[str, torch.Tensor]:
        return trainable_state(self.gpt)

    def load_weights(self, sd: dict[str, torch.Tensor]) -> None:
        load_trainable_state(self.gpt, sd)

    def adapter_meta(self) -> dict:
        return {"base": self.base, "rank": self.rank, "alpha": self.alpha, "dropout": self.dropout,
                "targets": self.targets, "tensors": sorted(trainable_state(self.gpt))}


def load_adapter_model(ckpt: Any, meta: dict, *, device: Any = "cpu", dtype: torch.dtype | None = None,
                       verify_hashes: bool = True) -> tuple[nn.Module, Any, dict]:
    """(model, tokenizer, meta) of a LoRA checkpoint: its base with the adapters merged in.

    Called by `core.checkpoint.load_model` for a model.json with an "adapter" entry; the base is
    loaded the same way (it may itself be a LoRA checkpoint)."""
    from pathlib import Path

    from safetensors.torch import load_file

    from core import checkpoint as ckpt_io
    from core.errors import UserError

    ckpt = Path(ckpt)
    info = meta["adapter"]
    base = info.get("base", "")
    if not base or not Path(base).exists():
        raise UserError(f"{ckpt}: a LoRA checkpoint of base {base!r}, which no longer exists; restore the base "
                        f"checkpoint (or export this adapter with its base merged while both exist)")
    model, base_tok, _ = ckpt_io.load_model(base, verify_hashes=verify_hashes)
    head = meta.get("head") or {"kind": "lm"}
    if head["kind"] != "lm" and model.head_kind != head["kind"]:
        model.set_head(head["out_features"], bias=head.get("bias", False), kind=head["kind"])
    apply_lora(model, info["rank"], info["alpha"], info.get("dropout", 0.0), info["targets"])
    try:
        load_trainable_state(model, load_file(ckpt / ckpt_io.WEIGHTS))
    except (ValueError, RuntimeError, OSError) as e:
        raise UserError(f"{ckpt / ckpt_io.WEIGHTS}: the adapter does not fit its base {base} ({e})") from None
    merge_lora(model)
    model.to(device=device, dtype=dtype)
    model.eval()
    tokenizer = ckpt_io.checkpoint_tokenizer(ckpt, meta) or base_tok
    meta = {**meta, "path": str(ckpt), "merged_from_adapter": True}
    return model, tokenizer, meta


def export_merged(ckpt: Any, out: Any) -> Any:
    """Write a LoRA checkpoint as an ordinary full checkpoint (base + merged adapters) into `out`
    (a run-like folder: out/checkpoints/step-N); returns the new checkpoint folder."""
    from pathlib import Path

    from core import checkpoint as ckpt_io

    model, tokenizer, meta = ckpt_io.load_model(ckpt)
    extra = {k: v for k, v in meta.items() if k in ("finetune",)}
    lineage = {**(meta.get("lineage") or {}), "merged_from": str(ckpt)}
    return ckpt_io.save_checkpoint(Path(out), int(meta.get("step", 0)), model, tokenizer=tokenizer,
                                   val_loss=meta.get("val_loss"), chat_template=meta.get("chat_template"),
                                   lineage=lineage, extra=extra)
