"""Fixed data for the tests of the screens over trained models (finetune, eval report, chat): runs with real tiny checkpoints under fixed names.

Run folders are written by hand (not `core.runs.create_run`, which stamps the current time) so
names, and so snapshots, stay the same on every run. Models are real: a seeded tiny GPT with the
GPT-2 tokenizer (offline through the shared tiktoken cache), saved with core.checkpoint.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))  # tests/tui: conftest helpers, screen_text

PRETRAIN = "20260101-000000-small-pretrain"
INSTRUCT = "20260101-010000-small-sft-finetune"
CLASSIFY = "20260101-020000-small-classify-finetune"
EVAL = "20260101-030000-small-eval"


def make_run(root: Path, name: str, stage: str, preset: str, state: str = "finished",
             events: list[dict] | None = None, report: dict | None = None, base_preset: str = "tiny") -> Path:
    from core import config

    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "preset.toml").write_text(config.dump(config.load(base_preset)))
    (path / "status.json").write_text(json.dumps({"state": state, "stage": stage, "preset": preset, "pid": None,
                                                  "host": "test", "created": 1_767_225_600.0,
                                                  "started": 1_767_225_600.0, "ended": 1_767_225_660.0}))
    t = 1_767_225_600.0
    lines = [json.dumps({"t": t + i, **ev}) for i, ev in enumerate(events or [])]
    (path / "events.jsonl").write_text("".join(line + "\n" for line in lines))
    if report is not None:
        (path / "report.json").write_text(json.dumps(report))
    return path


CLASSIFY_EVENTS = (
    [{"kind": "train", "step": s, "loss": 0.7 - 0.02 * s, "accuracy": 0.5 + 0.02 * s, "lr": 1e-3} for s in range(1, 21, 2)]
    + [{"kind": "val", "step": s, "val_loss": 0.69 - 0.015 * s, "accuracy": 0.55 + 0.015 * s,
        "macro_f1": 0.5 + 0.015 * s, "confusion_matrix": [[40 + s, 10 - s // 2], [12 - s // 2, 38 + s]]}
       for s in (5, 10, 15, 20)]
    + [{"kind": "test", "step": 20, "accuracy": 0.81, "macro_f1": 0.8, "confusion_matrix": [[41, 9], [10, 40]]}])


def tiny_checkpoint(run_dir: Path, *, seed: int = 0, step: int = 20, val_loss: float = 3.5, lineage: dict | None = None,
                    classes: list[str] | None = None, ctx: int = 128) -> Path:
    import torch

    from core.checkpoint import save_checkpoint
    from core.config import ModelConfig
    from core.model.gpt import GPT
    from core.tokenizer import get_tokenizer

    tok = get_tokenizer("gpt2")
    torch.manual_seed(seed)
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=32, context_length=ctx, vocab_size=tok.n_vocab))
    extra = None
    if classes:
        model.set_head(len(classes), bias=True, kind="classify")
        extra = {"finetune": {"method": "classify", "num_classes": len(classes), "class_names": classes}}
    return save_checkpoint(run_dir, step, model, tokenizer=tok, val_loss=val_loss, lineage=lineage, extra=extra)


@pytest.fixture
def models(lab, gpt2_cache):
    """lab/runs with a finished pretraining run, an instruction finetune of it and a classifier of it."""
    return build_models(lab)


def build_models(lab: Path) -> dict:
    """The runs of the `models` fixture in `lab` (also used to set up the tmux check by hand)."""
    root = lab / "runs"
    pre = make_run(root, PRETRAIN, "pretrain", "small",
                   events=[{"kind": "train", "step": s, "loss": 6.0 - 0.1 * s} for s in range(1, 21)]
                   + [{"kind": "val", "step": 20, "val_loss": 4.2, "val_ppl": 66.7}])
    base = tiny_checkpoint(pre, lineage={"stage": "pretrain", "preset": "small", "init": "random"})
    sft = make_run(root, INSTRUCT, "finetune", "small-sft", base_preset="tiny-sft",
                   events=[{"kind": "train", "step": s, "loss": 3.0 - 0.05 * s} for s in range(1, 21, 2)]
                   + [{"kind": "val", "step": s, "val_loss": 3.1 - 0.04 * s, "val_ppl": 20.0 - s / 2} for s in (10, 20)])
    sft_ckpt = tiny_checkpoint(sft, seed=1, val_loss=2.9, lineage={"stage": "finetune", "preset": "small-sft",
                                                                   "method": "instruct", "init": str(base),
                                                                   "base": str(base), "trainable": "all"})
    clf = make_run(root, CLASSIFY, "finetune", "small-classify", base_preset="tiny-classify", events=CLASSIFY_EVENTS)
    clf_ckpt = tiny_checkpoint(clf, seed=2, val_loss=0.4, classes=["calm", "scary"],
                               lineage={"stage": "finetune", "preset": "small-classify", "method": "classify",
                                        "init": str(base), "base": str(base), "trainable": "last_blocks"})
    make_run(root, EVAL, "eval", "small", report=eval_report(sft_ckpt))
    make_run(root, EVAL.replace("03", "04", 1), "eval", "small", report={
        "stage": "eval", "model": {"checkpoint": str(clf_ckpt)}, "tasks": {"classify": {
            "accuracy": 0.8, "majority_baseline": 0.5, "n": 100, "macro": {"f1": 0.79},
            "per_class": [{"name": "calm"}, {"name": "scary"}], "confusion_matrix": [[42, 8], [12, 38]],
            "settings": {"data": "embedded:tinyworld-classify", "split": "test"}}}})
    return {"root": root, "pretrain": base, "instruct": sft_ckpt, "classify": clf_ckpt}


def eval_report(ckpt: Path) -> dict:
    """An evaluation of every kind (values fixed), as core.stages.eval writes report.json."""
    return {"stage": "eval", "preset": "small", "model": {"spec": str(ckpt), "checkpoint": str(ckpt), "step": 20},
            "tasks": {
                "perplexity": {"loss": 2.95, "perplexity": 19.1, "bits_per_byte": 1.2, "tokens": 4096,
                               "settings": {"split": "val"}},
                "choice": {"acc": 0.41, "acc_stderr": 0.049, "acc_norm": 0.45, "acc_norm_stderr": 0.05,
                           "chance": 0.25, "n": 100, "settings": {"num_fewshot": 0}},
                "judge": {"mean": 55.0, "ci_low": 48.0, "ci_high": 62.0, "scale": "0-100", "n_scored": 20,
                          "n_unparseable": 1, "n_failed": 0, "mean_answer_chars": 80.0},
                "pairwise": {"win_rate": 0.6, "ci_low": 0.45, "ci_high": 0.73, "wins": 12, "losses": 7, "ties": 1,
                             "position_consistency": 0.8, "n_unparseable": 0, "n_failed": 0,
                             "settings": {"compare_with": "run:small:pretrain"}}},
            "samples": [{"prompt": "Once upon a time", "text": " there was a cat who liked the sea."}],
            "complete": True}


def app_with(make, mode: str, **kw):
    """The workbench (U's make_app) on `mode`; the screens over trained models are registered in tui.screens."""
    return make(mode=mode, **kw)


def wait_until(predicate, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
