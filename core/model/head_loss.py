"""The LM head and cross-entropy in one pass over row chunks, without materialising the logits.

At a small model's shape the head dominates a CPU training step (4 layers of 256 with a vocabulary
of 50,304: the head's three matmuls are ~80% of the FLOPs), and the plain path adds passes over a
(B*T, V) float32 tensor: the logits, log-softmax's output kept for backward, its gradient. Here
each chunk of rows computes its logits, log-softmax, loss and the gradient of the logits at once
(softmax minus one-hot, over the count of counted targets), then folds that gradient into the
gradients of the hidden states and of the head's weight; backward only scales them. The loss is
`F.cross_entropy(x @ w.T, targets, ignore_index=-100)` up to float rounding (sums in another order).
Used by core.model.gpt on float32 training steps outside autocast and compile.
"""

from __future__ import annotations

from typing import Any

import torch

IGNORE = -100
CHUNK_ELEMENTS = 1 << 22  # logits per chunk (16 MiB in float32): rows = this // vocab


def _rows(vocab: int) -> int:
    return max(1, CHUNK_ELEMENTS // vocab)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        valid = targets != IGNORE
        count = valid.sum().clamp(min=1).to(torch.float32)
        safe = torch.where(valid, targets, 0)
        total = torch.zeros((), dtype=torch.float32, device=x.device)
        grad_x = torch.empty_like(x)
        grad_w = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        step = _rows(weight.shape[0])
        for s in range(0, x.shape[0], step):
            xc, tc, vc = x[s:s + step], safe[s:s + step], valid[s:s + step]
            logp = torch.log_softmax(xc @ weight.t(), dim=-1)  # (rows, V)
            picked = logp.gather(1, tc[:, None]).squeeze(1)
            total -= torch.where(vc, picked, 0.0).sum()
            grad = logp.exp_()  # softmax, in place
            grad.scatter_add_(1, tc[:, None], -vc[:, None].to(grad.dtype))  # minus the one-hot of counted rows
            grad.mul_((vc.to(grad.dtype) / count)[:, None])  # rows of ignored targets get no gradient
            torch.mm(grad, weight, out=grad_x[s:s + step])
            if grad_w is not None:
                grad_w.addmm_(grad.t(), xc)
        ctx.save_for_backward(grad_x, grad_w if grad_w is not None else torch.empty(0))
        ctx.has_grad_w = grad_w is not None
        return total / count

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_out, (grad_w * grad_out if ctx.has_grad_w else None), None


def _loss_only(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    valid = targets != IGNORE
    total = torch.zeros((), dtype=torch.float32, device=x.device)
    step = _rows(weight.shape[0])
    for s in range(0, x.shape[0], step):
        logits = x[s:s + step] @ weight.t()
        total += torch.nn.functional.cross_entropy(logits, targets[s:s + step], ignore_index=IGNORE, reduction="sum")
    return total / valid.sum().clamp(min=1)


def applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the fused path computes this loss: float32 outside autocast and torch.compile (which
    fuses the plain path itself; autocast's bfloat16 logits keep the plain path's numerics)."""
    return (x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled(x.device.type) and not torch.compiler.is_compiling())


def linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of `x @ weight.T` (x: (N, C), weight: (V, C), targets: (N,), -100 ignored)."""
    if not torch.is_grad_enabled() or not (x.requires_grad or weight.requires_grad):
        return _loss_only(x, weight, targets)
    out: torch.Tensor = _LinearCrossEntropy.apply(x, weight, targets)
    return out
