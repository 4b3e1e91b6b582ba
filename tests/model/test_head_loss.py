"""The fused head + cross-entropy (core.model.head_loss) equals the plain path up to float rounding:
the loss, the gradients of the hidden states and of the (tied) head, with ignored targets, over
several row chunks; and a GPT's forward uses it only where asked."""

import torch
import torch.nn.functional as F

from core.config import ModelConfig
from core.model import head_loss
from core.model.gpt import GPT


def test_fused_loss_and_gradients_equal_the_plain_path(monkeypatch):
    monkeypatch.setattr(head_loss, "CHUNK_ELEMENTS", 64 * 1000)  # 64 rows a chunk: 5 chunks, the last short
    torch.manual_seed(0)
    x = torch.randn(300, 32, requires_grad=True)
    w = torch.randn(1000, 32, requires_grad=True)
    t = torch.randint(0, 1000, (300,))
    t[::7] = -100
    plain = F.cross_entropy(x @ w.t(), t, ignore_index=-100)
    gx, gw = torch.autograd.grad(plain, (x, w))
    fused = head_loss.linear_cross_entropy(x, w, t)
    fx, fw = torch.autograd.grad(3 * fused, (x, w))  # backward scales by the incoming gradient
    assert abs(fused.item() - plain.item()) < 1e-5
    assert torch.allclose(fx, 3 * gx, atol=1e-6) and torch.allclose(fw, 3 * gw, atol=1e-6)
    with torch.no_grad():
        assert abs(head_loss.linear_cross_entropy(x, w, t).item() - plain.item()) < 1e-5


def test_all_targets_ignored_gives_zero_loss_and_gradient():
    x = torch.randn(4, 8, requires_grad=True)
    w = torch.randn(16, 8, requires_grad=True)
    loss = head_loss.linear_cross_entropy(x, w, torch.full((4,), -100))
    loss.backward()
    assert loss.item() == 0.0 and x.grad is not None and not x.grad.any() and w.grad is not None and not w.grad.any()


def test_gpt_forward_without_logits_matches_the_plain_loss():
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=32, context_length=16, vocab_size=300))
    x = torch.randint(0, 300, (3, 16))
    logits, plain = model(x, x)
    g_plain = torch.autograd.grad(plain, model.wte.weight)[0]  # tied: the head's and the embedding's gradient
    none, fused = model(x, x, logits=False)
    g_fused = torch.autograd.grad(fused, model.wte.weight)[0]
    assert logits is not None and logits.shape == (3, 16, 300) and none is None
    assert abs(fused.item() - plain.item()) < 1e-5 and torch.allclose(g_fused, g_plain, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast keeps the plain path (bfloat16 logits)
        assert not head_loss.applies(model.hidden_states(x), model.lm_head.weight)
