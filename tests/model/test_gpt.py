"""The GPT family: shapes, pinned seeded losses, KV cache equivalence, tying, optimizer groups."""

import math

import pytest
import torch

from core.config import ModelConfig, TrainConfig
from core.model.gpt import GPT, KVCache
from core.train.optim import build_optimizer

GPT2_STYLE = dict(n_layer=2, n_head=4, n_embd=32, context_length=16, vocab_size=64)
LLAMA_STYLE = dict(GPT2_STYLE, norm="rmsnorm", position="rope", mlp="swiglu", bias=False,
                   tie_embeddings=False, n_kv_head=2)


def build(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(**kw))


@pytest.mark.parametrize("style,expected", [(GPT2_STYLE, 4.167424), (LLAMA_STYLE, 4.128629)])
def test_seeded_loss_is_pinned_and_near_uniform(style, expected):
    m = build(**style).eval()
    torch.manual_seed(0)
    idx, tgt = torch.randint(0, 64, (2, 12)), torch.randint(0, 64, (2, 12))
    logits, loss = m(idx, tgt)
    assert logits.shape == (2, 12, 64)
    assert loss.item() == pytest.approx(expected, abs=1e-4)
    assert abs(loss.item() - math.log(64)) < 0.1  # GPT-2 init: near-uniform predictions


@pytest.mark.parametrize("style", [GPT2_STYLE, LLAMA_STYLE])
def test_cache_prefill_chunks_and_steps_equal_full_forward(style):
    m = build(**style).eval()
    idx = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    full, _ = m(idx)
    cache = KVCache.for_model(m)
    outs = [m(idx[:, :5], cache=cache)[0], m(idx[:, 5:8], cache=cache)[0]]  # prefill, then a chunk at pos 5
    outs += [m(idx[:, t:t + 1], cache=cache)[0] for t in range(8, 12)]  # one token per step
    assert cache.pos == 12
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=0)
    last, _ = m(idx, last_only=True)
    assert last.shape == (2, 1, 64)
    torch.testing.assert_close(last[:, 0], full[:, -1])


def test_hidden_states_are_the_trunk_and_head_maps_them_to_logits():
    m = build(**GPT2_STYLE).eval()
    idx = torch.randint(0, 64, (1, 7))
    h = m.hidden_states(idx)
    assert h.shape == (1, 7, 32)
    torch.testing.assert_close(m.lm_head(h), m(idx)[0])


def test_tied_head_is_one_tensor_saved_once_and_reloads():
    m = build(**GPT2_STYLE)
    assert m.tied and m.lm_head.weight.data_ptr() == m.wte.weight.data_ptr()
    w = m.weights()
    assert "lm_head.weight" not in w and "wte.weight" in w
    m2 = build(seed=5, **GPT2_STYLE)
    m2.load_weights(w)
    assert m2.tied
    idx = torch.randint(0, 64, (1, 9))
    torch.testing.assert_close(m2.eval()(idx)[0], m.eval()(idx)[0])
    untied = build(**LLAMA_STYLE)
    assert not untied.tied and "lm_head.weight" in untied.weights()
    with pytest.raises(ValueError, match="missing"):
        build(**LLAMA_STYLE).load_weights({k: v for k, v in untied.weights().items() if k != "lm_head.weight"})


def test_gpt2_small_parameter_count():
    cfg = ModelConfig(n_layer=12, n_head=12, n_embd=768, context_length=1024, vocab_size=50257)
    with torch.device("meta"):  # shapes only: no 124M random numbers to draw
        m = GPT(cfg)
    assert m.num_params() == 124_439_808
    assert m.num_params(non_embedding=True) == 124_439_808 - 50257 * 768 - 1024 * 768


def test_residual_projections_use_scaled_init():
    m = build(**dict(GPT2_STYLE, n_layer=8, n_embd=256, n_head=4))
    std = m.blocks[0].mlp.c_proj.weight.std().item()
    assert std == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert m.blocks[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_optimizer_decays_matrices_only():
    m = build(**LLAMA_STYLE)
    opt = build_optimizer(m, TrainConfig(weight_decay=0.1, lr=1e-3), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))


def test_a_few_steps_learn_a_repeating_sequence():
    m = build(**GPT2_STYLE)
    opt = build_optimizer(m, TrainConfig(weight_decay=0.0, lr=3e-3), "cpu")
    seq = torch.arange(16).remainder(8).unsqueeze(0)  # 0..7 0..7
    x, y = seq[:, :-1], seq[:, 1:]
    losses = []
    for _ in range(30):
        _, loss = m(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_ignore_index_masks_targets():
    m = build(**GPT2_STYLE).eval()
    idx = torch.randint(0, 64, (1, 8))
    tgt = idx.clone()
    tgt[:, :4] = -100
    logits, loss = m(idx, tgt)
    ref = torch.nn.functional.cross_entropy(logits[0, 4:], idx[0, 4:])
    assert loss.item() == pytest.approx(ref.item(), abs=1e-6)


def test_dropout_only_in_training_and_too_long_input_refused():
    m = build(**dict(GPT2_STYLE, dropout=0.5))
    idx = torch.randint(0, 64, (1, 8))
    assert not torch.equal(m.train()(idx)[0], m(idx)[0])
    m.eval()
    torch.testing.assert_close(m(idx)[0], m(idx)[0])
    with pytest.raises(ValueError, match="longer than the context"):
        m(torch.zeros(1, 17, dtype=torch.long))


def test_set_head_replaces_and_unties():
    m = build(**GPT2_STYLE)
    head = m.set_head(3)
    assert not m.tied and m.head_kind == "classify" and head.out_features == 3
    assert m(torch.zeros(1, 4, dtype=torch.long))[0].shape == (1, 4, 3)
