"""Fixtures of the tokenizer tests: a small seeded English-like corpus and a BPE trained on it."""

from __future__ import annotations

import random

import pytest

from core.tokenizer import Tokenizer, train_bpe

_NAMES = ["Mila", "Tom", "Ada", "Ravi", "Lena", "Omar", "Jun", "Sofia"]
_NOUNS = ["cat", "dog", "river", "forest", "castle", "apple", "robot", "garden", "boat", "lantern", "key", "bird"]
_VERBS = ["found", "saw", "lost", "painted", "carried", "followed", "opened", "built", "heard", "shared"]
_ADJ = ["small", "old", "bright", "quiet", "green", "brave", "curious", "golden", "tired", "happy"]
_PLACES = ["by the sea", "in the town", "under the hill", "near the mill", "at the market", "in the woods"]


def make_corpus(n_docs: int, seed: int = 0) -> list[str]:
    """Short stories over a small world (seeded): enough repetition for BPE to find merges."""
    rng = random.Random(seed)
    docs = []
    for d in range(n_docs):
        lines = []
        for _ in range(rng.randint(3, 7)):
            who, noun, adj = rng.choice(_NAMES), rng.choice(_NOUNS), rng.choice(_ADJ)
            lines.append(f"{who} {rng.choice(_VERBS)} a {adj} {noun} {rng.choice(_PLACES)}. "
                         f"The {noun} was {rng.choice(_ADJ)}, and {who} said: \"{rng.choice(_VERBS)} it!\"")
        lines.append(f"Story {d} ends with {rng.randint(1, 999)} stars.")
        docs.append(" ".join(lines))
    return docs


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return make_corpus(600)  # about 300 KB


@pytest.fixture(scope="session")
def trained(corpus) -> Tokenizer:
    return train_bpe(corpus, 512, name="test-bpe")
