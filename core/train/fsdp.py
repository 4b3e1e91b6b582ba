"""FSDP2 (`train.parallel = "fsdp"`): parameters, gradients and optimizer state sharded over the ranks.

Each transformer block and then the whole model go through `torch.distributed.fsdp.fully_shard`
(bf16 parameters with fp32 gradient reduction under bf16 autocast; parameters and optimizer
state offloaded to host memory with `train.fsdp_offload`). Launched like DDP (core.train.ddp); it
runs on CPU with gloo as well as on GPUs with NCCL. A checkpoint is sharded: every rank writes its
shards of the weights and of the optimizer state with torch.distributed.checkpoint into the
checkpoint's temporary folder, and after a barrier rank 0 adds model.json, tokenizer and
trainer.pt and commits the folder (COMMITTED last, core.checkpoint). Nothing is gathered to one
rank; the checkpoint loads in one process (export, generate: core.checkpoint reads the layout) and
resumes at any world size, FSDP or not (the shards are resharded on load). Used by core.train.loop.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from core import checkpoint as ckpt_io
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


def save_sharded(model: torch.nn.Module, optimizer: Any, final: Path, main: bool) -> None:
    """Every rank writes its shards of the weights and the optimizer state into the temporary folder
    of checkpoint `final` (rank 0 names it), then waits for all; rank 0 commits it afterwards."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    box: list[str | None] = [None]
    if main:
        tmp = ckpt_io.temp_folder(final)
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / ckpt_io.SHARDS).mkdir(parents=True)
        box = [str(tmp)]
    dist.broadcast_object_list(box, src=0)
    weights = get_model_state_dict(model)
    if getattr(model, "tied", False):
        weights.pop("lm_head.weight", None)  # stored once, as wte.weight
    state = {"model": weights, "optim": get_optimizer_state_dict(model, optimizer)}
    writer = dcp.FileSystemWriter(str(Path(str(box[0])) / ckpt_io.SHARDS), single_file_per_rank=True,
                                  sync_files=True, thread_count=1)
    dcp.save(state, storage_writer=writer)
    dist.barrier()  # every rank's shard is on disk before rank 0 writes COMMITTED


def load_sharded_optimizer(model: torch.nn.Module, optimizer: Any, ckpt: Path) -> None:
    """Read a sharded checkpoint's optimizer state into `optimizer` (FSDP at any world size, or one
    process); under torchrun every rank calls it."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    try:
        state = get_optimizer_state_dict(model, optimizer)
        ckpt_io.read_shards(ckpt, {"optim": state})
        set_optimizer_state_dict(model, optimizer, state)
    except (ValueError, KeyError, RuntimeError, AssertionError, AttributeError, TypeError) as e:
        raise UserError(f"{ckpt / ckpt_io.SHARDS}: {INCOMPATIBLE} the checkpoint: its optimizer state does not "
                        f"fit this run's optimizer ({type(e).__name__}: {e}); restore train.optimizer, "
                        f"or start a new run") from None


def load_optimizer(model: torch.nn.Module, optimizer: Any, saved: dict, where: str) -> None:
    """Put a gathered optimizer state back into the sharded optimizer (any world size)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    try:
        set_optimizer_state_dict(model, optimizer, saved, options=StateDictOptions(full_state_dict=True))
    except (ValueError, KeyError, RuntimeError, AssertionError) as e:  # torch asserts on some malformed states
        raise UserError(f"{where}: {INCOMPATIBLE} the checkpoint: its optimizer "
                        f"state is not an FSDP run's ({type(e).__name__}); resume with the train.parallel "
                        f"it was saved with, or start a new run") from None
