"""Generation: cache equals no cache, sampling controls, stop ids and stop strings, streaming text."""

import pytest
import torch

from core.config import ModelConfig, TrainConfig
from core.generate import _stop_prefix_len, generate, generate_text, sample_next
from core.model.gpt import GPT
from core.train.optim import build_optimizer

CFG = dict(n_layer=2, n_head=4, n_embd=32, context_length=24, vocab_size=64)
LLAMA = dict(CFG, norm="rmsnorm", position="rope", mlp="swiglu", bias=False, tie_embeddings=False, n_kv_head=2)


def build(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**kw))


@pytest.mark.parametrize("style", [CFG, LLAMA])
def test_greedy_with_cache_equals_without_even_past_the_context(style):
    m = build(**style)
    prompt = [1, 5, 9, 2]
    # 40 new tokens: the window slides past the 24-token context
    a = list(generate(m, prompt, max_new_tokens=40, temperature=0))
    b = list(generate(m, prompt, max_new_tokens=40, temperature=0, use_cache=False))
    assert a == b and len(a) == 40
    assert m.training  # mode restored


def test_seeded_sampling_is_reproducible_and_cache_independent():
    m = build(**CFG)
    kw = dict(max_new_tokens=20, temperature=1.0, top_k=10, seed=123)
    a = list(generate(m, [3], **kw))
    assert a == list(generate(m, [3], **kw)) == list(generate(m, [3], use_cache=False, **kw))
    assert a != list(generate(m, [3], **dict(kw, seed=124)))


def test_stop_ids_end_generation_without_yielding_the_stop():
    m = build(**CFG)
    free = list(generate(m, [1, 2], max_new_tokens=10, temperature=0))
    stop = free[3]
    first = free.index(stop)
    out = list(generate(m, [1, 2], max_new_tokens=10, temperature=0, stop_ids=[stop]))
    assert out == free[:first]


def test_top_k_and_top_p_restrict_the_choice():
    logits = torch.tensor([5.0, 4.0, 1.0, 0.0, -1.0])
    g = torch.Generator().manual_seed(0)
    picks = {sample_next(logits, 1.0, top_k=2, generator=g) for _ in range(200)}
    assert picks == {0, 1}
    # p(0) = 0.72, p(0)+p(1) = 0.99: top_p 0.5 keeps one token, 0.9 keeps two
    assert {sample_next(logits, 1.0, top_p=0.5, generator=g) for _ in range(100)} == {0}
    assert {sample_next(logits, 1.0, top_p=0.9, generator=g) for _ in range(300)} == {0, 1}
    assert sample_next(logits, 0.0) == 0


def test_stop_prefix_hold_back():
    assert _stop_prefix_len("hello wor", ["world"]) == 3
    assert _stop_prefix_len("hello", ["xyz"]) == 0
    assert _stop_prefix_len("ab\n", ["\n\n", "b\nc"]) == 2


class ByteTokenizer:
    """Token i is the byte i (ids >= 256 decode to nothing): enough to test the text layer."""

    eot_id = 0

    def encode(self, text, allowed_special=()):
        return list(text.encode())

    def token_bytes(self, i):
        return bytes([i])

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def test_generate_text_streams_utf8_and_stops_at_strings():
    m = build(**dict(CFG, vocab_size=256))
    tok = ByteTokenizer()
    ids = list(generate(m, tok.encode("hi"), max_new_tokens=30, temperature=0, stop_ids=[0]))
    full = tok.decode(ids)
    pieces = list(generate_text(m, tok, "hi", max_new_tokens=30, temperature=0))
    assert "".join(pieces) == full
    # cut at a stop string taken from the middle of the greedy text
    if len(full) >= 6:
        stop = full[3:5]
        cut = "".join(generate_text(m, tok, "hi", max_new_tokens=30, temperature=0, stop=[stop]))
        assert cut == full[: full.index(stop)]


def test_generate_text_joins_multibyte_characters():
    # a byte-level model taught "éàéà..." emits each character as two tokens, each invalid UTF-8 alone
    m = build(**dict(CFG, vocab_size=256))
    data = torch.tensor([list(("éà" * 6).encode())])  # 24 bytes
    opt = build_optimizer(m, TrainConfig(weight_decay=0.0, lr=1e-2), "cpu")
    for _ in range(100):
        opt.zero_grad()
        m(data[:, :-1], data[:, 1:])[1].backward()
        opt.step()
    pieces = list(generate_text(m, ByteTokenizer(), "é", max_new_tokens=8, temperature=0))
    assert pieces == ["à", "é", "à", "é"]


def test_decode_weight_copies_follow_training_updates():
    # one-token CPU decoding multiplies by cached (in, out) weight copies: they must follow the weights
    m = build(**CFG)
    before = list(generate(m, [1, 2, 3], max_new_tokens=12, temperature=0))
    opt = build_optimizer(m, TrainConfig(weight_decay=0.0, lr=5e-2), "cpu")
    x = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        opt.zero_grad()
        m(x[:, :-1], x[:, 1:])[1].backward()
        opt.step()
    after = list(generate(m, [1, 2, 3], max_new_tokens=12, temperature=0))
    assert after == list(generate(m, [1, 2, 3], max_new_tokens=12, temperature=0, use_cache=False))
    assert after != before


def test_decode_weight_copies_only_for_models_that_can_afford_them(monkeypatch):
    import torch

    from core.config import ModelConfig
    from core.model import gpt

    torch.manual_seed(0)
    model = gpt.GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, context_length=16, vocab_size=64))
    assert gpt.KVCache.for_model(model).weight_copies
    assert not gpt.KVCache.for_model(model, weight_copies=False).weight_copies
    monkeypatch.setattr(gpt, "DECODE_COPIES_MAX_PARAMS", 100)
    assert not gpt.KVCache.for_model(model).weight_copies


def test_a_group_of_completions_is_one_batch_that_stops_each_row_at_its_end():
    from core.generate import generate_group

    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=32, context_length=64, vocab_size=97)).eval()
    prompt = [1, 2, 3, 4]
    greedy = list(generate(model, prompt, max_new_tokens=12, temperature=0.0))
    assert generate_group(model, prompt, 3, max_new_tokens=12, temperature=0.0) == [greedy] * 3
    g = torch.Generator().manual_seed(5)
    stops = set(range(0, 97, 4))
    outs = generate_group(model, prompt, 6, max_new_tokens=20, temperature=1.5, stop_ids=stops, generator=g)
    assert len(outs) == 6 and len({tuple(o) for o in outs}) > 1
    assert all(not (set(o) & stops) for o in outs) and any(len(o) < 20 for o in outs)
    again = generate_group(model, prompt, 6, max_new_tokens=20, temperature=1.5, stop_ids=stops,
                           generator=torch.Generator().manual_seed(5))
    assert again == outs  # the generator's seed decides the rollout
    kept = generate_group(model, prompt, 6, max_new_tokens=20, temperature=1.5, stop_ids=stops,
                          generator=torch.Generator().manual_seed(5), keep_stop=True)
    assert [k[:len(o)] for k, o in zip(kept, outs)] == outs
    assert all(k[-1] in stops for k, o in zip(kept, outs) if len(o) < 20)
    with pytest.raises(ValueError, match="exceed the context"):
        generate_group(model, prompt, 2, max_new_tokens=61)
