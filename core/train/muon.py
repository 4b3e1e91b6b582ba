"""Muon for the blocks' matrices and AdamW for the rest, as one optimizer (`train.optimizer = "muon"`).

Muon (Keller Jordan; modded-nanogpt, nanochat, Moonshot's Moonlight) updates a 2-D weight with its
momentum orthogonalised by a few Newton-Schulz iterations; it suits hidden matrices only, so
embeddings, the output head and every vector (biases, norm gains) stay with AdamW. The update
uses torch.optim.Muon with `adjust_lr_fn="match_rms_adamw"`, which scales it to AdamW's RMS, so one
`train.lr` and schedule drive both halves. Built by core.train.optim.build_optimizer.
"""

from __future__ import annotations

from typing import Any

import torch

from core.errors import UserError


def hidden_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The trainable 2-D parameters inside the transformer blocks (`model.blocks`)."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, torch.nn.Module):
        return []
    return [p for p in blocks.parameters() if p.requires_grad and p.dim() == 2]


class MuonAdamW:
    """Two torch optimizers behind the one interface the loop uses: param_groups (the schedule sets
    every group's lr), step, zero_grad, state_dict and load_state_dict."""

    def __init__(self, model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                 adamw_kind: dict[str, bool]):
        matrices = hidden_matrices(model)
        if not matrices:
            raise UserError("train.optimizer: muon needs hidden matrices (2-D weights inside the model's "
                            "transformer blocks) and this model has none to train; use adamw")
        ids = {id(p) for p in matrices}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        self.muon = torch.optim.Muon(matrices, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
        groups = [{"params": [p for p in rest if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in rest if p.dim() < 2], "weight_decay": 0.0}]
        self.adamw = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas, **adamw_kind)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.muon.param_groups + self.adamw.param_groups

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none=set_to_none)
        self.adamw.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"muon", "adamw"}:
            raise ValueError("the checkpoint's optimizer state is not Muon + AdamW")
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])
