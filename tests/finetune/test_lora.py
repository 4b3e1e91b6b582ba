"""LoRA: only adapters train, the adapted model starts equal to the base, merging is exact."""

from __future__ import annotations

import pytest
import torch

from core.model.lora import (LoRALinear, apply_lora, count_parameters, load_trainable_state, lora_disabled,
                             merge_lora, trainable_state)


def _perturb(model):
    # B starts at zero (adapter = identity); give it values so merging has something to fold in
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("targets", [["attn"], ["attn", "mlp"], ["attn", "mlp", "head"]])
def test_merge_gives_the_same_logits(tiny_gpt, targets):
    model = tiny_gpt()
    x = torch.randint(0, 97, (3, 17), generator=torch.Generator().manual_seed(0))
    base_logits = model(x)[0]
    apply_lora(model, rank=4, alpha=8.0, targets=targets)
    assert torch.equal(model(x)[0], base_logits)  # B = 0: the adapted model starts as the base
    _perturb(model)
    model.eval()
    adapted = model(x)[0]
    assert (adapted - base_logits).abs().max() > 1e-3  # the adapters do change the output
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    merged = model(x)[0]
    assert (merged - adapted).abs().max() < 1e-5


def test_head_merge_unties_the_embedding(tiny_gpt):
    model = tiny_gpt()
    wte = model.wte.weight.detach().clone()
    apply_lora(model, rank=2, alpha=2.0, targets=["head"])
    assert model.tied  # the adapter wraps the shared tensor
    _perturb(model)
    merge_lora(model)
    assert not model.tied and model.config.tie_embeddings is False
    assert torch.equal(model.wte.weight, wte)  # the embedding itself is unchanged
    assert not torch.equal(model.lm_head.weight, wte)


def test_only_adapters_are_trainable(tiny_gpt):
    model = tiny_gpt()
    total_before = sum(p.numel() for p in model.parameters())
    paths = apply_lora(model, rank=4, alpha=8.0, targets=["attn", "mlp"])
    assert paths == [f"blocks.{i}.{m}" for i in range(2)
                     for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    trainable, total = count_parameters(model)
    # per block: c_attn 4*(32+96), c_proj 4*(32+32), c_fc 4*(32+128), c_proj 4*(128+32)
    assert trainable == 2 * 4 * ((32 + 96) + (32 + 32) + (32 + 128) + (128 + 32))
    assert total == total_before + trainable
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n for n in names)
    x = torch.randint(0, 97, (2, 9))
    _, loss = model(x, targets=x)
    loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)  # A gets none while B = 0


def test_trainable_state_round_trip_and_disable(tiny_gpt):
    a = tiny_gpt()
    apply_lora(a, rank=2, alpha=4.0, targets=["mlp"])
    _perturb(a)
    sd = trainable_state(a)
    assert set(sd) == {f"blocks.{i}.mlp.{m}.lora_{ab}" for i in range(2) for m in ("c_fc", "c_proj") for ab in "AB"}
    b = tiny_gpt()
    apply_lora(b, rank=2, alpha=4.0, targets=["mlp"])
    load_trainable_state(b, sd)
    x = torch.randint(0, 97, (2, 11))
    assert torch.equal(a(x)[0], b(x)[0])
    with lora_disabled(b):
        assert torch.equal(b(x)[0], tiny_gpt()(x)[0])
    with pytest.raises(ValueError, match="do not match"):
        c = tiny_gpt()
        apply_lora(c, rank=3, alpha=4.0, targets=["mlp"])
        load_trainable_state(c, sd)
