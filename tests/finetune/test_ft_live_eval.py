"""Live downstream evaluations inside finetuning runs: classification accuracy during a classify
finetune, multiple choice during an instruction finetune, and early stopping on either."""

from __future__ import annotations

import json
import threading

from core.stages import finetune

from ft_helpers import Recorder, make_preset


def run(preset, run_dir) -> Recorder:
    rec = Recorder()
    run_dir.mkdir(parents=True, exist_ok=True)
    finetune.run(preset, run_dir, rec, threading.Event())
    return rec


def test_classify_accuracy_at_every_validation(tmp_path, base_ckpt, data_files):
    preset = make_preset("classify", base_ckpt, data_files["classify"], finetune__trainable="last_blocks",
                         train__eval_tasks=["classify"], eval__limit=16)
    rec = run(preset, tmp_path / "r")
    evals = rec.of("eval")
    assert [(e["step"], e["task"]) for e in evals] == [(3, "classify"), (6, "classify")]
    assert all(0 <= e["accuracy"] <= 1 and e["seconds"] > 0 for e in evals)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["eval_s"] > 0 and 0 < report["eval_share"] < 1


def test_instruct_stops_early_on_multiple_choice(tmp_path, base_ckpt, data_files):
    # patience 1 on "val_loss, max": the loss falls, so the first validation stays best and the next one ends the run
    preset = make_preset("instruct", base_ckpt, data_files["instruct"], train__max_steps=12,
                         train__eval_tasks=["choice"], eval__limit=8, train__early_stop__metric="val_loss",
                         train__early_stop__mode="max", train__early_stop__patience=1)
    rec = run(preset, tmp_path / "r")
    assert [(e["step"], e["task"], e["n"]) for e in rec.of("eval")] == [(3, "choice", 8), (6, "choice", 8)]
    (stop,) = [e["early_stop"] for e in rec.events if "early_stop" in e]
    assert (stop["step"], stop["best_step"]) == (6, 3)
    assert max(e["step"] for e in rec.of("train")) == 6
    assert (tmp_path / "r" / "checkpoints" / "best").read_text().strip() == "step-00000003"
