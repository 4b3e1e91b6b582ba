"""The one resolver of model names: a run means its latest checkpoint, `@best` its lowest validation loss."""

import json

import pytest
import torch

from core import checkpoint as ck
from core import lookup
from core.config import ModelConfig
from core.errors import UserError
from core.model.gpt import GPT

TINY = ModelConfig(n_layer=1, n_head=2, n_embd=32, context_length=16, vocab_size=64)


def finished_run(root, name, preset, stage, losses):
    """A run folder as core.runs writes it, with one checkpoint per (step, val_loss)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text(json.dumps({"state": "finished", "preset": preset, "stage": stage}))
    torch.manual_seed(0)
    m = GPT(TINY)
    for step, loss in losses:
        ck.save_checkpoint(run_dir, step, m, val_loss=loss, keep_last=5)
    return run_dir


def test_a_run_means_its_latest_checkpoint_and_best_is_a_suffix(workspace):
    runs = workspace / "runs"
    run_dir = finished_run(runs, "20260101-000000-tiny-pretrain", "tiny", "pretrain", [(10, 2.0), (20, 1.5), (30, 1.7)])
    for spec in ("run:tiny:pretrain", str(run_dir), run_dir.name, str(run_dir / "checkpoints"), "run:tiny:pretrain@latest"):
        assert lookup.resolve_checkpoint(spec).name == "step-00000030", spec
    for spec in ("run:tiny:pretrain@best", f"{run_dir}@best", f"{run_dir.name}@best"):
        assert lookup.resolve_checkpoint(spec).name == "step-00000020", spec
    ckpt = run_dir / "checkpoints" / "step-00000010"
    assert lookup.resolve_checkpoint(ckpt) == ckpt
    with pytest.raises(UserError, match="chooses among a run's checkpoints"):
        lookup.resolve_checkpoint(f"{ckpt}@best")


def test_best_without_validation_is_refused_by_name(workspace):
    run_dir = finished_run(workspace / "runs", "20260101-000000-x-finetune", "x", "finetune", [(5, None)])
    assert lookup.resolve_checkpoint("run:x:finetune").name == "step-00000005"
    with pytest.raises(UserError, match="no best checkpoint"):
        lookup.resolve_checkpoint(f"{run_dir}@best")


def test_imported_models_and_unknown_names(workspace):
    torch.manual_seed(0)
    out = ck.write_checkpoint(lookup.models_root() / "mine", 0, GPT(TINY))
    assert lookup.resolve_checkpoint("mine") == out
    assert lookup.read_meta(out)["architecture"]["n_embd"] == 32
    assert lookup.read_meta(workspace) is None
    with pytest.raises(UserError, match="nothing-here: not a checkpoint folder"):
        lookup.resolve_checkpoint("nothing-here")
    with pytest.raises(UserError, match="expected run:PRESET:STAGE"):
        lookup.resolve_checkpoint("run:tiny")
    with pytest.raises(UserError, match="no finished pretrain run of preset 'nope'"):
        lookup.resolve_checkpoint("run:nope:pretrain@best")
