"""Fixtures of the evaluation tests: a small BPE, tiny seeded GPTs, a local chat-completions judge server."""

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



@pytest.fixture
def serve():
    """serve(reply) -> a running JudgeServer (closed after the test); see judge_server.py."""
    from judge_server import JudgeServer

    servers = []

    def start(reply):
        s = JudgeServer(reply)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()
