"""Fixtures of the serving tests: a committed tiny checkpoint with its BPE, and a running server."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory):
    """A committed checkpoint of a tiny seeded GPT (random weights, a 1,024-token context so a
    judge's rubric fits) with a 320-id BPE trained on a little of the story world."""
    from core.checkpoint import save_checkpoint
    from core.config import ModelConfig
    from core.data.synthetic import iter_stories
    from core.model.gpt import GPT
    from core.tokenizer import train_bpe

    tok = train_bpe(list(iter_stories(1, 60_000)), 320, name="serve-test-bpe")
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=32, context_length=1024, vocab_size=tok.n_vocab))
    return save_checkpoint(tmp_path_factory.mktemp("serve-run"), 0, model, tokenizer=tok, lineage={"stage": "pretrain"})


@pytest.fixture(scope="session")
def loaded(ckpt):
    from core.checkpoint import load_model

    model, tok, _ = load_model(ckpt)
    return model, tok


@pytest.fixture
def server(loaded):
    """server(api_key="", log=None, **defaults) -> (base URL, events list) of a server on a free port."""
    from contextlib import ExitStack

    from core.serve.server import bind, serving

    stack = ExitStack()

    def start(api_key: str = "", **defaults):
        events: list[dict] = []
        model, tok = loaded
        opts = {"temperature": 0.0, "top_k": 0, "top_p": 1.0, "max_new_tokens": 16, "seed": None, "stop": [],
                **defaults}
        url = stack.enter_context(serving(model, tok, "tiny-test", bind("127.0.0.1", 0), defaults=opts,
                                          api_key=api_key, log=events.append))
        return url, events

    with stack:
        yield start
