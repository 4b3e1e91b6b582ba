"""Tiny models and a tiny character-level tokenizer for the finetuning tests."""

from __future__ import annotations

import pytest
import torch

from core.config import ModelConfig


def tiny_config(**kw) -> ModelConfig:
    base = dict(n_layer=2, n_head=2, n_embd=32, context_length=64, vocab_size=97, dropout=0.0)
    base.update(kw)
    return ModelConfig(**base)


@pytest.fixture
def tiny_gpt():
    from core.model.gpt import GPT

    def make(seed: int = 0, **kw):
        torch.manual_seed(seed)
        return GPT(tiny_config(**kw))
    return make
