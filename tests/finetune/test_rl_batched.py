"""Several prompts in one rollout batch: left padding with a mask and per-row positions in the KV cache."""

from __future__ import annotations

import pytest
import torch

from core.config import ModelConfig
from core.generate import generate, generate_groups
from core.model.gpt import GPT, KVCache

GPT2 = dict(n_layer=2, n_head=4, n_embd=32, context_length=40, vocab_size=97, tie_embeddings=False)  # tied: it echoes
LLAMA = dict(GPT2, norm="rmsnorm", position="rope", mlp="swiglu", bias=False, tie_embeddings=False, n_kv_head=2)
PROMPTS = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9], [42], [9, 8, 7, 6, 5]]


def build(style: dict) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**style)).eval()


@pytest.mark.parametrize("style", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_each_row_of_a_padded_batch_equals_its_own_generation(style):
    model = build(style)
    free = list(generate(model, PROMPTS[0], max_new_tokens=16, temperature=0.0))
    stops = {free[4]}  # the first row stops after 4 tokens and leaves the batch while others decode on
    outs = generate_groups(model, PROMPTS, 2, max_new_tokens=16, temperature=0.0, stop_ids=stops)
    alone = [list(generate(model, p, max_new_tokens=16, temperature=0.0, stop_ids=stops)) for p in PROMPTS]
    assert outs == [a for a in alone for _ in range(2)]
    assert len({len(o) for o in outs}) > 1  # the rows ended at different steps


@pytest.mark.parametrize("style", [GPT2, LLAMA], ids=["gpt2", "llama"])
def test_padded_prefill_gives_each_row_its_unpadded_logits(style):
    model = build(style)
    cache = KVCache.for_model(model, 12)
    longest = max(map(len, PROMPTS))
    x = torch.tensor([[0] * (longest - len(p)) + p for p in PROMPTS])
    cache.pad = torch.tensor([longest - len(p) for p in PROMPTS])
    with torch.no_grad():
        padded, _ = model(x, cache=cache, last_only=True)  # (P, 1, V)
        for i, p in enumerate(PROMPTS):
            own, _ = model(torch.tensor([p]), last_only=True)
            torch.testing.assert_close(padded[i], own[0], rtol=1e-5, atol=1e-5)
    assert torch.isfinite(cache.k[:, :, :, :longest]).all()  # padding queries attend to themselves: no NaN


def test_sampled_groups_of_several_prompts_are_seeded_and_keep_their_stop():
    model = build(LLAMA)
    stops = set(range(0, 97, 5))
    kw = dict(max_new_tokens=10, temperature=1.2, stop_ids=stops, keep_stop=True)
    a = generate_groups(model, PROMPTS, 3, generator=torch.Generator().manual_seed(1), **kw)
    assert a == generate_groups(model, PROMPTS, 3, generator=torch.Generator().manual_seed(1), **kw)
    assert len(a) == 12 and len({tuple(o) for o in a}) > 6
    assert all(o[-1] in stops for o in a if len(o) < 10) and all(not set(o[:-1]) & stops for o in a)
