"""Architecture numbers from the config alone, checked against instantiated models."""

import subprocess
import sys

import pytest
import torch

from core.config import ModelConfig
from core.model import stats
from core.model.gpt import GPT, KVCache

GPT2_124M = ModelConfig(n_layer=12, n_head=12, n_embd=768, context_length=1024, vocab_size=50257)
LLAMA = ModelConfig(n_layer=3, n_head=4, n_kv_head=2, n_embd=64, context_length=32, vocab_size=100, norm="rmsnorm",
                    position="rope", mlp="swiglu", bias=False, tie_embeddings=False)


def test_gpt2_124m_counts():
    pc = stats.param_counts(GPT2_124M)
    assert pc.total == pc.total_tied == 124_439_808
    assert pc.total_untied == 124_439_808 + 50257 * 768
    assert pc.embeddings == 50257 * 768 and pc.positions == 1024 * 768 and pc.head == 0
    assert pc.attention == 12 * (768 * 2304 + 2304 + 768 * 768 + 768)
    assert pc.mlp == 12 * (2 * 768 * 3072 + 3072 + 768)
    assert pc.norms == 25 * 2 * 768
    assert pc.non_embedding == 85_056_000


@pytest.mark.parametrize("cfg", [LLAMA, ModelConfig(n_layer=2, n_head=2, n_embd=32, context_length=8, vocab_size=50,
                                                    dropout=0.1, bias=False)])
def test_tree_and_counts_match_an_instantiated_model(cfg):
    m = GPT(cfg)
    tree = stats.layer_tree(cfg)
    shapes = {n: tuple(p.shape) for n, p in m.state_dict().items()}
    assert {leaf.name: leaf.shape for leaf in tree.leaves()} == shapes
    assert tree.params == stats.param_counts(cfg).total == m.num_params()
    assert stats.param_counts(cfg).non_embedding == m.num_params(non_embedding=True)


def test_llama_shapes_gqa_and_swiglu_width():
    assert stats.mlp_hidden_size(LLAMA) == 192  # 8/3 * 64 = 170.7 -> next multiple of 64
    assert stats.mlp_hidden_size(ModelConfig(n_embd=4096, mlp="swiglu", mlp_hidden=11008)) == 11008
    # 3 layers x (k + v) x 2 kv heads x 16 dims x 2 bytes
    assert stats.kv_cache_bytes_per_token(LLAMA, "bfloat16") == 3 * 2 * 2 * 16 * 2


def test_kv_cache_bytes_match_the_real_cache():
    m = GPT(LLAMA).eval()
    cache = KVCache.for_model(m)
    with torch.no_grad():
        m(torch.zeros(1, 4, dtype=torch.long), cache=cache)
    per_token = (cache.k.numel() + cache.v.numel()) * cache.k.element_size() // LLAMA.context_length
    assert per_token == stats.kv_cache_bytes_per_token(LLAMA, "float32")


def test_flops_and_mfu():
    # nanoGPT: 6N + 12 L C T with N = params without wpe
    n = 124_439_808 - 1024 * 768
    assert stats.flops_per_token(GPT2_124M) == 6 * n + 12 * 12 * 768 * 1024
    assert stats.mfu(1e5, GPT2_124M, 1e15) == pytest.approx(1e5 * stats.flops_per_token(GPT2_124M) / 1e15)
    assert stats.peak_flops("NVIDIA H100 80GB HBM3") == 989.5e12
    assert stats.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert stats.peak_flops("NVIDIA A10G") == 70e12 and stats.peak_flops("NVIDIA L4") == 121e12
    assert stats.peak_flops("NVIDIA GeForce RTX 4090") == 165.2e12
    assert stats.peak_flops("Some Future GPU") is None


def test_memory_parts():
    mem = stats.memory(GPT2_124M, batch_size=4, dtype="bfloat16")
    assert mem.weights == mem.grads == 124_439_808 * 4 and mem.optimizer == 2 * mem.weights
    assert mem.activations == 2 * stats.activation_bytes(GPT2_124M, 2, dtype="bfloat16")
    assert mem.total == mem.weights + mem.grads + mem.optimizer + mem.activations
    assert stats.activation_bytes(GPT2_124M, 1, dtype="float32") > stats.activation_bytes(GPT2_124M, 1)


def test_cpu_peak_is_measured_and_cached():
    a = stats.cpu_peak_flops()
    assert a > 1e8 and stats.cpu_peak_flops() is a


def test_stats_module_does_not_import_torch():
    code = "import sys, core.model.stats as s; s.summary(s.ModelConfig(vocab_size=10)); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
