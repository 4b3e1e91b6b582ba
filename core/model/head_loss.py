"""The LM head and cross-entropy in one pass over row chunks, without materialising the logits.

At a small model's shape the head dominates a CPU training step (4 layers of 256 with a vocabulary
of 50,304: the head's three matmuls are ~80% of the FLOPs), and the plain path adds passes over a
(B*T, V) float32 tensor: the logits, log-softmax's output kept for backward, its gradient. Here
each chunk of rows computes its logits (into one reused buffer), log-sum-exp, loss and, in place,
the gradient of the logits (softmax minus one-hot), then folds it into the gradients of the hidden
states and of the head's weight (the 1/count row scale applied on the narrow side); backward only
scales them. At this vocabulary a chunk is 333 rows (2,048 rows x 256 -> 50,304, head alone, one
thread: 1.59 s with 256 or 1,024 rows a chunk, 1.75 s with 83, the plain path 1.85 s). The loss is
`F.cross_entropy(x @ w.T, targets, ignore_index=-100)` up to float rounding (sums in another order).
Used by core.model.gpt on float32 training steps outside autocast.
"""

from __future__ import annotations

from typing import Any

import torch

IGNORE = -100
CHUNK_ELEMENTS = 1 << 24  # logits per chunk (64 MiB in float32, one buffer reused): rows = this // vocab


def _rows(vocab: int) -> int:
    return max(1, CHUNK_ELEMENTS // vocab)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        valid = targets != IGNORE
        scale = valid.to(x.dtype) / valid.sum().clamp(min=1)  # per row: 1/count, 0 for an ignored target
        safe = torch.where(valid, targets, 0)[:, None]
        total = torch.zeros((), dtype=torch.float32, device=x.device)
        grad_x = torch.empty_like(x)
        grad_w = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        step = _rows(weight.shape[0])
        buf = torch.empty(min(step, x.shape[0]), weight.shape[0], dtype=x.dtype, device=x.device)  # reused
        for s in range(0, x.shape[0], step):
            xc, tc, sc = x[s:s + step], safe[s:s + step], scale[s:s + step, None]
            logits = torch.mm(xc, weight.t(), out=buf[:xc.shape[0]])  # (rows, V)
            lse = torch.logsumexp(logits, dim=1, keepdim=True)
            total += ((lse - logits.gather(1, tc)) * sc).sum()
            grad = logits.sub_(lse).exp_()  # softmax, in place
            grad.scatter_add_(1, tc, torch.full_like(lse, -1.0))  # minus the one-hot (ignored rows: scaled to 0)
            torch.mm(grad, weight, out=grad_x[s:s + step]).mul_(sc)  # the row scale on (rows, C), not (rows, V)
            if grad_w is not None:
                grad_w.addmm_(grad.t(), xc * sc)
        ctx.save_for_backward(grad_x, grad_w if grad_w is not None else torch.empty(0))
        ctx.has_grad_w = grad_w is not None
        return total

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
    """Whether the fused path computes this loss: float32 outside autocast (autocast's bfloat16 logits
    keep the plain path's numerics). Under torch.compile too: the 4x256 step compiled with it ran
    969 tokens per CPU second, with the plain path 797 (tests/bench/train.py --compile)."""
    return (x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled(x.device.type))


def linear_cross_entropy(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of `x @ weight.T` (x: (N, C), weight: (V, C), targets: (N,), -100 ignored)."""
    if not torch.is_grad_enabled() or not (x.requires_grad or weight.requires_grad):
        return _loss_only(x, weight, targets)
    out: torch.Tensor = _LinearCrossEntropy.apply(x, weight, targets)
    return out
