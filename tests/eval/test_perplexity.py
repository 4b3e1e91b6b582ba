"""Loss, perplexity and bits per byte against a hand computation on a tiny seeded GPT."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.errors import UserError
from core.eval.perplexity import evaluate_ids, evaluate_shard, evaluate_texts, token_byte_lengths


def hand_nll(model, ids, T):
    """Per-target negative log-likelihoods, window by window (each window one forward, no batching)."""
    out = []
    for s in range(0, len(ids) - 1, T):
        w = ids[s:s + T + 1]
        with torch.no_grad():
            logits, _ = model(torch.tensor([w[:-1]]))
        logp = F.log_softmax(logits[0].double(), -1)
        out += [(-logp[t, w[t + 1]].item(), w[t + 1]) for t in range(len(w) - 1)]
    return out


def test_scores_equal_a_hand_computation(tok, make_gpt):
    model = make_gpt(tok.n_vocab, context_length=8)
    text = "Mia went to the park. She found a red ball."
    ids = [tok.eot_id] + tok.encode(text) + [tok.eot_id] + tok.encode("Tom was happy.")
    assert (len(ids) - 1) % 8 != 0  # a shorter tail window is scored too
    per = hand_nll(model, ids, 8)
    assert len(per) == len(ids) - 1
    nbytes = [len(tok.token_bytes(t)) if not tok.is_special(t) else 0 for _, t in per]
    r = evaluate_ids(model, ids, tok, batch_size=2)
    assert r["tokens"] == len(ids) - 1
    assert r["loss"] == pytest.approx(sum(n for n, _ in per) / len(per), rel=1e-5)
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]), rel=1e-9)
    nats_text = sum(n for (n, _), b in zip(per, nbytes) if b)
    assert r["bytes"] == sum(nbytes) == len(text.encode()) + len("Tom was happy.".encode())
    assert r["bits_per_byte"] == pytest.approx(nats_text / (sum(nbytes) * math.log(2)), rel=1e-5)
    # the same documents through evaluate_texts (each preceded by end-of-text, as in the shards)
    r2 = evaluate_texts(model, tok, [text, "Tom was happy."], batch_size=3)
    assert r2["loss"] == pytest.approx(r["loss"], rel=1e-6) and r2["bytes"] == r["bytes"]


def test_byte_lengths_give_special_tokens_none(tok):
    lengths = token_byte_lengths(tok, tok.n_vocab + 3)
    assert lengths.shape == (tok.n_vocab + 3,)
    assert lengths[tok.eot_id] == 0 and lengths[-1] == 0
    assert all(lengths[i] == 1 for i in range(256))  # byte-level BPE: the first 256 ranks are single bytes


def test_max_windows_limits_the_tokens_scored(tok, model):
    ids = tok.encode("Mia went to the park. " * 40)
    r = evaluate_ids(model, ids, tok, max_windows=2)
    assert r["windows"] == 2 and r["tokens"] == 2 * model.config.context_length


def _write_shard(folder, ids, tokenizer_ident):
    folder.mkdir()
    np.array(ids, dtype=np.uint16).tofile(folder / "val.bin")
    (folder / "meta.json").write_text(json.dumps({"dtype": "uint16", "tokenizer": tokenizer_ident}))


def test_shard_is_read_and_a_foreign_tokenizer_refused(tok, model, tmp_path):
    ids = [tok.eot_id] + tok.encode("Ben went to the lake. He saw a big fish.")
    _write_shard(tmp_path / "ok", ids, {"name": tok.name, "fingerprint": tok.fingerprint})
    r = evaluate_shard(model, tok, tmp_path / "ok" / "val.bin")
    assert r["tokens"] == len(ids) - 1 and r["loss"] == pytest.approx(evaluate_ids(model, ids, tok)["loss"])
    _write_shard(tmp_path / "other", ids, {"name": "gpt2", "fingerprint": "0123456789abcdef"})
    with pytest.raises(UserError, match="not with the model's tokenizer"):
        evaluate_shard(model, tok, tmp_path / "other" / "val.bin")
    with pytest.raises(UserError, match="no such token shard"):
        evaluate_shard(model, tok, tmp_path / "missing" / "val.bin")
