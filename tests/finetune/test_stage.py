"""The finetune stage end to end on a tiny base: events, checkpoints, reports, and exact resume."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from core.checkpoint import committed_checkpoints, load_model
from core.stages import finetune

from ft_helpers import Recorder, make_preset


def run_stage(preset, run_dir, stop_after: int = 0) -> Recorder:
    stop = threading.Event()
    rec = Recorder(stop, stop_after)
    run_dir.mkdir(parents=True, exist_ok=True)
    finetune.run(preset, run_dir, rec, stop)
    return rec


def losses(rec: Recorder) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in rec.of("train")}


METHODS = [
    ("classify", "all"), ("classify", "lora"), ("classify", "last_blocks"),
    ("instruct", "all"), ("instruct", "lora"),
    ("preference", "all"), ("preference", "lora"),
]


@pytest.mark.parametrize("method,trainable", METHODS)
def test_resume_gives_the_uninterrupted_losses(tmp_path, base_ckpt, data_files, method, trainable):
    preset = make_preset(method, base_ckpt, data_files[method], finetune__trainable=trainable,
                         finetune__lora__rank=4, finetune__lora__alpha=8.0)
    full = run_stage(preset, tmp_path / "full")
    part = tmp_path / "part"
    first = run_stage(preset, part, stop_after=3)
    assert max(losses(first)) == 3 and [c.name for c in committed_checkpoints(part)][-1] == "step-00000003"
    second = run_stage(preset, part)
    a, b = losses(full), {**losses(first), **losses(second)}
    assert sorted(a) == sorted(b) == list(range(1, 7))
    for step in range(1, 7):
        assert abs(a[step] - b[step]) < 1e-5, (step, a[step], b[step])
    lr_a = {e["step"]: e["lr"] for e in full.of("train")}
    lr_b = {e["step"]: e["lr"] for e in first.of("train") + second.of("train")}
    assert lr_a == lr_b
    report = json.loads((part / "report.json").read_text())
    assert report["resumed_from"] == 3 and report["steps"] == 6 and "test" in report


def test_classification_events_and_report(tmp_path, base_ckpt, data_files):
    preset = make_preset("classify", base_ckpt, data_files["classify"], finetune__trainable="last_blocks")
    rec = run_stage(preset, tmp_path / "r")
    train, val = rec.of("train"), rec.of("val")
    assert all(0 <= e["accuracy"] <= 1 for e in train)
    assert [e["step"] for e in val] == [3, 6]
    for e in val:
        assert {"val_loss", "accuracy", "precision", "recall", "f1", "confusion_matrix"} <= set(e)
        assert len(e["precision"]) == 2 and len(e["confusion_matrix"]) == 2
        n = sum(map(sum, e["confusion_matrix"]))
        assert e["accuracy"] == sum(e["confusion_matrix"][i][i] for i in range(2)) / n
    (test,) = rec.of("test")
    assert test["split"] == "test" and test["n"] > 0
    model, tok, meta = load_model(tmp_path / "r")
    assert meta["head"] == {"kind": "classify", "out_features": 2, "bias": True}
    assert meta["finetune"]["method"] == "classify" and tok is not None


def test_trainable_parts(tiny_gpt):
    m = tiny_gpt()
    finetune.set_trainable(m, "last_blocks", 1)
    names = {n for n, p in m.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(("blocks.1.", "ln_f.", "wte.", "lm_head.")) for n in names)
    assert not any(n.startswith("blocks.0.") for n in names)
    m.set_head(2, bias=True)
    finetune.set_trainable(m, "head")
    assert {n for n, p in m.named_parameters() if p.requires_grad} == {"lm_head.weight", "lm_head.bias"}


def test_lora_checkpoint_holds_adapters_and_loads_merged(tmp_path, base_ckpt, data_files):
    preset = make_preset("instruct", base_ckpt, data_files["instruct"], finetune__trainable="lora",
                         finetune__lora__rank=2, finetune__lora__targets=["attn"], train__max_steps=3)
    run_stage(preset, tmp_path / "r")
    ckpt = committed_checkpoints(tmp_path / "r")[-1]
    meta = json.loads((ckpt / "model.json").read_text())
    assert meta["adapter"]["base"] == str(base_ckpt.resolve()) and meta["adapter"]["rank"] == 2
    from safetensors.torch import load_file
    assert set(load_file(ckpt / "model.safetensors")) == {f"blocks.{i}.attn.{m}.lora_{ab}"
                                                          for i in range(2) for m in ("c_attn", "c_proj") for ab in "AB"}
    merged, tok, meta2 = load_model(ckpt)  # base + adapters, merged
    assert meta2["merged_from_adapter"] and meta2["finetune"]["prompt_format"] == "alpaca"
    base, _, _ = load_model(base_ckpt)
    x = torch.randint(0, tok.n_vocab, (1, 12))
    assert not torch.allclose(merged(x)[0], base(x)[0])
    from core.checkpoint import export_merged
    out = export_merged(ckpt, tmp_path / "export")
    exported, _, meta3 = load_model(out)
    assert "adapter" not in meta3
    assert torch.allclose(exported(x)[0], merged(x)[0], atol=1e-6)


def test_dpo_starts_at_zero_reward_and_logs_reward_metrics(tmp_path, base_ckpt, data_files):
    preset = make_preset("preference", base_ckpt, data_files["preference"], train__max_steps=3)
    rec = run_stage(preset, tmp_path / "r")
    first = rec.of("train")[0]
    # policy == reference before the first step: every reward is 0 and the loss is log 2
    assert abs(first["loss"] - 0.693147) < 1e-5 and first["reward_margin"] == 0.0
    for k in ("reward_chosen", "reward_rejected", "reward_margin", "reward_accuracy"):
        assert k in first and k in rec.of("val")[-1]
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert "logp_accuracy" in report["baseline"] and "reward_accuracy" in report["test"]


def test_instruct_report_has_exact_match_before_and_after(tmp_path, base_ckpt, data_files):
    preset = make_preset("instruct", base_ckpt, data_files["instruct"], train__max_steps=2, train__eval_batches=1,
                         train__micro_batch_size=3)
    rec = run_stage(preset, tmp_path / "r")
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert 0 <= report["baseline"]["exact_match"] <= 1 and 0 <= report["test"]["exact_match"] <= 1
    assert report["test"]["n"] == report["baseline"]["n"] == 3  # as many as one validation reads (1 x 3)
    _, _, meta = load_model(tmp_path / "r")
    assert meta["finetune"]["prompt_format"] == "alpaca"
    assert rec.of("test")[0]["exact_match"] == report["test"]["exact_match"]


def test_packing_and_head_only_runs(tmp_path, base_ckpt, data_files):
    preset = make_preset("instruct", base_ckpt, data_files["instruct"], finetune__packing=True, train__max_steps=2,
                         finetune__template="chat")
    rec = run_stage(preset, tmp_path / "packed")
    assert any("packed into" in e.get("message", "") for e in rec.of("log"))
    assert json.loads((tmp_path / "packed" / "report.json").read_text())["test"]["prompt_format"] == "chat"
    preset = make_preset("classify", base_ckpt, data_files["classify"], finetune__trainable="head",
                         finetune__balance_classes=True, train__max_steps=2)
    rec = run_stage(preset, tmp_path / "head")
    assert any("of 42,946 parameters train" in e.get("message", "") and e["message"].startswith("finetune (classify, trainable head): 66 ")
               for e in rec.of("log"))
