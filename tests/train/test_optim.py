"""The schedule, the step plan and the optimizer's parameter groups."""

from __future__ import annotations

import math

import pytest
import torch

from core.config import TrainConfig
from core.train.optim import build_optimizer, lr_at, plan_steps


def test_warmup_then_cosine_to_min_lr():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10)
    lrs = [lr_at(s, cfg, 110) for s in range(110)]
    assert lrs[0] == pytest.approx(1e-4)            # lr / warmup, never 0
    assert lrs[9] == pytest.approx(1e-3)            # warmup ends at the peak
    assert lrs[10] == pytest.approx(1e-3)           # cosine starts at the peak
    assert lrs[59] == pytest.approx(1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 49 / 99)))
    assert lrs[-1] == pytest.approx(1e-4)           # and ends at min_lr on the last step
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_no_warmup_and_one_step_runs():
    cfg = TrainConfig(lr=2e-3, min_lr=0.0, warmup_steps=0)
    assert lr_at(0, cfg, 1) == 2e-3
    assert lr_at(0, cfg, 100) == 2e-3
    assert lr_at(99, cfg, 100) == pytest.approx(0.0)


def test_first_stopping_rule_wins():
    # 1,000 tokens per step, 50,000 tokens per epoch
    assert plan_steps(TrainConfig(max_steps=30), 1000, 50_000) == 30
    assert plan_steps(TrainConfig(max_steps=100, max_tokens=20_500), 1000, 50_000) == 21
    assert plan_steps(TrainConfig(max_steps=0, epochs=0.5), 1000, 50_000) == 25
    assert plan_steps(TrainConfig(max_steps=10, epochs=2.0), 1000, 50_000) == 10
    with pytest.raises(ValueError):
        plan_steps(TrainConfig(max_steps=0, max_tokens=0, epochs=2.0), 1000, None)


def test_decay_on_matrices_only():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1), "cpu")
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and {p.dim() for p in decayed["params"]} == {2}
    assert plain["weight_decay"] == 0.0 and {p.dim() for p in plain["params"]} == {1}
    assert len(decayed["params"]) == 2 and len(plain["params"]) == 3


def test_activation_checkpointing_gives_the_same_gradients_with_dropout():
    from core.config import ModelConfig
    from core.model.gpt import GPT
    from core.train.device import checkpoint_activations

    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=32, context_length=16, vocab_size=64, dropout=0.1)
    x = torch.randint(0, 64, (3, 16))
    grads, saved = [], []
    for recompute in (False, True):
        torch.manual_seed(0)
        model = GPT(cfg).train()
        if recompute:
            checkpoint_activations(model)
        torch.manual_seed(1)
        count = [0]

        def pack(t):
            count[0] += 1
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _, loss = model(x, x)
        saved.append(count[0])
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        names = set(model.weights())
    assert saved[1] < saved[0] / 2, saved  # the blocks' insides are recomputed, not kept
    assert grads[0].keys() == grads[1].keys() and "blocks.0.attn.c_attn.weight" in names  # names unchanged
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-6), n
