"""Tiny models, a tiny BPE tokenizer, a base checkpoint and small local data files for the finetuning tests."""

from __future__ import annotations

import json
import threading
from pathlib import Path

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


@pytest.fixture(scope="session")
def tokenizer():
    """A 384-id BPE trained on a little of the story world and the derived sets (seconds)."""
    from core.data.synthetic import derived_set, iter_stories
    from core.tokenizer import train_bpe

    texts = list(iter_stories(1, 150_000))
    for kind, keys in (("classify", ("text",)), ("instruct", ("instruction", "input", "output")),
                       ("preference", ("prompt", "chosen", "rejected"))):
        texts += [" ".join(str(r[k]) for k in keys) for r in derived_set(kind, "train")[:300]]
    from core.data.formats import ALPACA_HEADER
    texts += [ALPACA_HEADER + "\n\n### Instruction:\n### Input:\n### Response:\n"] * 50
    return train_bpe(texts, 384, name="test-bpe")


@pytest.fixture(scope="session")
def base_ckpt(tmp_path_factory, tokenizer):
    """A committed checkpoint of a tiny GPT-2-style LM (random weights, seeded) with its tokenizer."""
    from core.checkpoint import save_checkpoint
    from core.model.gpt import GPT

    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=tokenizer.n_vocab, context_length=160))
    run = tmp_path_factory.mktemp("base-run")
    return save_checkpoint(run, 0, model, tokenizer=tokenizer, lineage={"stage": "pretrain"})


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def data_files(tmp_path_factory):
    """Small local JSONL sets (a local file goes through the same reader as hub rows)."""
    from core.data.synthetic import derived_set

    d = tmp_path_factory.mktemp("ft-data")
    classify = [{"text": r["text"], "label": r["label"]} for r in derived_set("classify", "train")[:80]]
    instruct = [{k: r[k] for k in ("instruction", "input", "output")} for r in derived_set("instruct", "train")[:60]]
    pref = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in derived_set("preference", "train")[:60]]
    return {"classify": write_jsonl(d / "classify.jsonl", classify),
            "instruct": write_jsonl(d / "instruct.jsonl", instruct),
            "preference": write_jsonl(d / "preference.jsonl", pref),
            "dir": d}
