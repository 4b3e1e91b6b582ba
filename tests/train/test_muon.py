"""train.optimizer = "muon": Muon on the blocks' matrices, AdamW on the rest; runs, resumes, refuses."""

from __future__ import annotations

import threading

import pytest
import torch

from core.config import ModelConfig, TrainConfig
from core.errors import UserError
from core.model.gpt import GPT
from core.stages import pretrain
from core.train.optim import build_optimizer

from train_helpers import ListLog, stop_at, tiny_preset

SMALL = ModelConfig(n_layer=2, n_head=2, n_embd=32, context_length=16, vocab_size=64)


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = GPT(SMALL)
    opt = build_optimizer(model, TrainConfig(optimizer="muon", weight_decay=0.1), "cpu")
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for g in opt.muon.param_groups for p in g["params"]}
    adamw = {names[id(p)] for g in opt.adamw.param_groups for p in g["params"]}
    assert muon == {n for n, p in model.named_parameters() if n.startswith("blocks.") and p.dim() == 2}
    assert "wte.weight" in adamw and "wpe.weight" in adamw and "blocks.0.ln_1.weight" in adamw
    assert not muon & adamw and len(muon | adamw) == len(list(model.parameters()))
    assert len(opt.param_groups) == 3  # the schedule reaches both halves


def test_muon_refuses_a_model_without_hidden_matrices():
    model = GPT(SMALL)
    for p in model.blocks.parameters():  # e.g. finetune.trainable = "head": nothing inside the blocks trains
        p.requires_grad_(False)
    with pytest.raises(UserError, match="muon needs hidden matrices"):
        build_optimizer(model, TrainConfig(optimizer="muon"), "cpu")
    with pytest.raises(UserError, match="muon needs hidden matrices"):
        build_optimizer(torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4)),
                        TrainConfig(optimizer="muon"), "cpu")


def test_muon_pretrains_and_resumes_exactly(workspace):
    extra = ("train.optimizer=muon", "train.max_steps=8")
    full = ListLog()
    pretrain.run(tiny_preset(*extra), workspace / "full", full, threading.Event())
    a = {e["step"]: e["loss"] for e in full.kind("train")}
    assert a[8] < a[1] - 0.1  # it learns
    stop, first = stop_at(4)
    pretrain.run(tiny_preset(*extra), workspace / "part", first, stop)
    second = ListLog()
    pretrain.run(tiny_preset(*extra), workspace / "part", second, threading.Event())
    b = {e["step"]: e["loss"] for e in second.kind("train")}
    assert sorted(b) == [5, 6, 7, 8] and all(b[s] == pytest.approx(a[s], abs=1e-5) for s in b)
    # an AdamW checkpoint does not resume under Muon: refused, not silently reset
    with pytest.raises(UserError, match="optimizer state does not fit"):
        pretrain.run(tiny_preset("train.max_steps=10"), workspace / "part", ListLog(), threading.Event())
