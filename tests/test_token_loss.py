"""Per-token loss (core.token_loss, `llmlab inspect`): a model trained on a repeated sentence finds
the one token that breaks the pattern the hardest."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from core.config import ModelConfig

SENTENCE = "the cat sat on the mat and the dog ran to the park. "


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from core.checkpoint import save_checkpoint
    from core.model.gpt import GPT
    from core.tokenizer import train_bpe

    torch.manual_seed(0)
    tok = train_bpe([SENTENCE * 20], 280, name="pattern-bpe")
    ids = torch.tensor(([tok.eot_id] + tok.encode(SENTENCE * 4)) * 10)  # documents, as pretraining sees them
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=32, context_length=48, vocab_size=tok.n_vocab))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        starts = torch.randint(0, len(ids) - 49, (8,))
        x = torch.stack([ids[s:s + 48] for s in starts])
        y = torch.stack([ids[s + 1:s + 49] for s in starts])
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ckpt = save_checkpoint(tmp_path_factory.mktemp("pattern-run"), 150, model, tokenizer=tok)
    return model, tok, ckpt


def test_the_token_that_breaks_the_pattern_has_the_highest_loss(trained):
    from core.token_loss import hardest, token_losses

    model, tok, _ = trained
    odd = SENTENCE + "the cat sat on the mat and the dog ran to the mat"  # the last word breaks the pattern
    res = token_losses(model, tok, odd)
    worst = max(range(len(res.tokens)), key=lambda i: res.tokens[i].loss)
    prefix = "".join(t.text for t in res.tokens[:worst])
    assert worst == len(res.tokens) - 1 and prefix.endswith("ran to the") and "mat" in res.tokens[worst].text
    assert res.tokens[worst].top[0][0] == " par" and res.tokens[worst].rank > 1
    assert len(res.tokens[worst].top) == 5 and sum(p for _, p in res.tokens[worst].top) <= 1.0001
    assert hardest(model, tok, [SENTENCE.strip(), odd, ""], n=1)[0].text == odd


def test_llmlab_inspect_prints_the_tokens_and_refuses_what_it_cannot_score(trained, tmp_path):
    _, _, ckpt = trained
    env = {**os.environ, "LLMLAB_HOME": str(tmp_path), "COLUMNS": "160"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "core.cli", "inspect", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    done = cli(str(ckpt), SENTENCE + "the cat sat on the park")  # the model expected " mat" there
    assert done.returncode == 0, done.stderr
    assert "mean loss" in done.stdout and "' mat'" in done.stdout
    for args, reason in (((str(tmp_path / "nothing"), "hi"), "not a checkpoint folder"),
                         ((str(ckpt),), "give a text or --file"),
                         ((str(ckpt), "--file", str(tmp_path / "missing.txt")), "cannot read")):
        bad = cli(*args)
        assert bad.returncode == 2 and reason in bad.stderr, bad.stderr
