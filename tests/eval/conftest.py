"""Fixtures of the evaluation tests: a small BPE trained on the embedded stories and tiny seeded GPTs."""

from __future__ import annotations

import pytest
import torch

from core.config import ModelConfig
from core.model.gpt import GPT


@pytest.fixture(scope="session")
def tok():
    from core.data.synthetic import iter_stories
    from core.tokenizer import train_bpe

    return train_bpe(list(iter_stories(1, 200_000)), 400, name="eval-test-bpe")


def tiny_gpt(vocab_size: int, seed: int = 0, context_length: int = 64, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = ModelConfig(n_layer=1, n_head=2, n_embd=32, context_length=context_length, vocab_size=vocab_size, **kw)
    return GPT(cfg).eval()


@pytest.fixture(scope="session")
def make_gpt():
    """tiny_gpt(vocab_size, seed=0, context_length=64, **ModelConfig fields) -> a seeded GPT in eval mode."""
    return tiny_gpt


@pytest.fixture
def model(tok) -> GPT:
    return tiny_gpt(tok.n_vocab)
