"""FSDP2 (`train.parallel = "fsdp"`): parameters, gradients and optimizer state sharded over the ranks.

Each transformer block and then the whole model go through `torch.distributed.fsdp.fully_shard`
(bf16 parameters with fp32 gradient reduction under bf16 autocast; parameters and optimizer
state offloaded to host memory with `train.fsdp_offload`). Launched like DDP (core.train.ddp); it
runs on CPU with gloo as well as on GPUs with NCCL. A checkpoint gathers the full weights and the
full optimizer state (keyed by parameter name) to rank 0, which commits it as usual: it loads in
one process (export, generate) and resumes an FSDP run at any world size. Used by core.train.loop.
"""

from __future__ import annotations

from typing import Any

import torch

from core.config import TrainConfig
from core.errors import UserError
from core.train.device import Dist
from core.train.state import INCOMPATIBLE


def check(model: torch.nn.Module, cfg: TrainConfig, dist: Dist | None) -> None:
    """What FSDP refuses: one process, Muon (it orthogonalises whole matrices, not shards), and any
    model but a pretraining GPT whose parameters all train."""
    if dist is None or dist.world_size < 2:
        raise UserError("train.parallel: fsdp shards the model over several processes, and this run has one; "
                        "set train.nproc (or --nproc) to 2 or more, or use train.parallel = \"ddp\"")
    if cfg.optimizer == "muon":
        raise UserError("train.optimizer: muon does not run under train.parallel = \"fsdp\" (it needs whole "
                        "matrices, FSDP holds shards); use adamw, or train.parallel = \"ddp\"")
    from core.model.gpt import GPT

    frozen = any(not p.requires_grad for p in model.parameters())
    if type(model) is not GPT or model.head_kind != "lm" or frozen:
        raise UserError("train.parallel: fsdp is for pretraining (every parameter of a GPT trains); "
                        "finetune with train.parallel = \"ddp\"")


def shard(model: torch.nn.Module, cfg: TrainConfig, device: torch.device, dtype: torch.dtype, world: int) -> None:
    """fully_shard each block, then the root (embeddings, final norm, head), in place."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    mesh = init_device_mesh(device.type, (world,))
    mp = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) if dtype != torch.float32 \
        else MixedPrecisionPolicy()
    offload = CPUOffloadPolicy() if cfg.fsdp_offload and device.type == "cuda" else OffloadPolicy()
    for block in model.blocks:  # type: ignore[union-attr]
        fully_shard(block, mesh=mesh, mp_policy=mp, offload_policy=offload)
    fully_shard(model, mesh=mesh, mp_policy=mp, offload_policy=offload)


def optimizer_device(cfg: TrainConfig, device: torch.device) -> str:
    """Where the optimizer steps: the host when the parameters are offloaded there."""
    return "cpu" if cfg.fsdp_offload else device.type


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's whole value (a collective), or the tensor itself."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def _options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def gather(model: torch.nn.Module, optimizer: Any, main: bool) -> tuple[torch.nn.Module | None, dict | None]:
    """(a full copy of the model on the host, the full optimizer state) on rank 0; (None, None) on the
    others. Every rank must call it (collectives)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    weights = get_model_state_dict(model, options=_options())
    opt_state = get_optimizer_state_dict(model, optimizer, options=_options())
    if not main:
        return None, None
    from core.model.gpt import GPT

    copy = GPT(model.config)  # type: ignore[arg-type]  # check() admitted GPTs only
    copy.load_weights({k: v for k, v in weights.items() if isinstance(v, torch.Tensor)})
    return copy, opt_state


def load_optimizer(model: torch.nn.Module, optimizer: Any, saved: dict, where: str) -> None:
    """Put a gathered optimizer state back into the sharded optimizer (any world size)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    try:
        set_optimizer_state_dict(model, optimizer, saved, options=StateDictOptions(full_state_dict=True))
    except (ValueError, KeyError, RuntimeError, AssertionError) as e:  # torch asserts on some malformed states
        raise UserError(f"{where}: {INCOMPATIBLE} the checkpoint: its optimizer "
                        f"state is not an FSDP run's ({type(e).__name__}); resume with the train.parallel "
                        f"it was saved with, or start a new run") from None
