"""Per-token loss (core.token_loss, `llmlab inspect`): a model trained on a repeated sentence finds
the one token that breaks the pattern the hardest."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pattern_model import ODD, SENTENCE, train_pattern_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_pattern_model(tmp_path_factory.mktemp("pattern-run"))


def test_the_token_that_breaks_the_pattern_has_the_highest_loss(trained):
    from core.token_loss import hardest, token_losses

    model, tok, _ = trained
    odd = ODD  # the last word breaks the pattern
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
