"""Live downstream evaluations during pretraining (train.eval_tasks), their time budget, and early
stopping (train.early_stop) that ends the run and marks its best checkpoint."""

from __future__ import annotations

import json
import threading

import pytest
from train_helpers import ListLog, stop_at, tiny_preset

from core.errors import UserError
from core.stages import pretrain
from core.train.live_eval import EarlyStop


def test_early_stop_patience_and_min_delta():
    e = EarlyStop("choice.acc", "max", patience=2, min_delta=0.01)
    assert [e.observe(v, s) for s, v in enumerate([0.3, 0.305, 0.35, 0.34, 0.351])] == [True, False, True, False, False]
    assert e.should_stop and (e.best, e.best_step) == (0.35, 2)


def test_choice_every_validation_and_an_early_stop_that_marks_the_best_checkpoint(workspace):
    # val loss falls, so in "max" mode the first validation stays the best: the run stops one later
    preset = tiny_preset('train.eval_tasks=["choice"]', "eval.limit=12", "train.early_stop.metric=val_loss",
                         "train.early_stop.mode=max", "train.early_stop.patience=1")
    log = ListLog()
    pretrain.run(preset, workspace, log, threading.Event())
    evals = log.kind("eval")
    assert [e["step"] for e in evals] == [4, 8] and all(e["task"] == "choice" for e in evals)
    assert all(e["n"] == 12 and 0 <= e["acc"] <= 1 and e["seconds"] > 0 for e in evals)
    stop = next(e for e in log.events if "early_stop" in e)
    assert stop["early_stop"]["best_step"] == 4 and stop["early_stop"]["step"] == 8
    assert max(e["step"] for e in log.kind("train")) == 8
    assert (workspace / "checkpoints" / "best").read_text().strip() == "step-00000004"
    report = json.loads((workspace / "report.json").read_text())
    assert report["early_stopped_at"] == 8 and report["best_step"] == 4 and not report["stopped"]
    assert 0 < report["eval_share"] < 1 and report["eval_s"] > 0


def test_the_budget_cuts_an_evaluation_short(workspace):
    preset = tiny_preset('train.eval_tasks=["choice"]', "train.eval_budget_s=0.001", "train.max_steps=4")
    log = ListLog()
    pretrain.run(preset, workspace, log, threading.Event())
    (ev,) = log.kind("eval")
    assert ev["budget_hit"] and ev["n"] < 205


@pytest.mark.parametrize("extra, reason", [
    (['train.eval_tasks=["classify"]'], "classify measures a classification finetune"),
    (['train.eval_tasks=["choice"]', "eval.choice_data=/nonexistent/mc.jsonl"], "no such multiple-choice file"),
])
def test_a_task_the_run_has_no_data_for_is_refused_before_training(workspace, extra, reason):
    with pytest.raises(UserError, match=reason):
        pretrain.run(tiny_preset(*extra), workspace, ListLog(), threading.Event())
    assert not (workspace / "checkpoints").exists()


class Crash(BaseException):
    """What a killed process leaves: no stop path, no checkpoint of the step it died at."""


def _crash_at(step: int) -> ListLog:
    def on(ev: dict) -> None:
        if ev["kind"] == "train" and ev["step"] == step:
            raise Crash
    return ListLog(on)


def test_early_stopping_survives_a_crash_between_evaluations(workspace, tmp_path):
    # the process dies at step 10: the resume starts from step 8's checkpoint, whose rule has waited one
    # evaluation since the best (step 4); the next one (12) ends the run, as in an unbroken run
    over = ("train.max_steps=20", "train.early_stop.metric=val_loss", "train.early_stop.mode=max",
            "train.early_stop.patience=2")
    full = ListLog()
    pretrain.run(tiny_preset(*over), workspace, full, threading.Event())
    broken = tmp_path / "crashed"
    broken.mkdir()
    with pytest.raises(Crash):
        pretrain.run(tiny_preset(*over), broken, _crash_at(10), threading.Event())
    second = ListLog()
    pretrain.run(tiny_preset(*over), broken, second, threading.Event())
    assert [e["resumed_step"] for e in second.events if "resumed_step" in e] == [8]
    assert [e["early_stop"] for e in second.events if "early_stop" in e] == [
        e["early_stop"] for e in full.events if "early_stop" in e]
    assert max(e["step"] for e in second.kind("train")) == 12


def test_early_stopping_continues_across_a_resume(workspace, tmp_path):
    # val loss falls, so in "max" mode step 4 stays the best; patience 2 ends an unbroken run at step 12.
    # A run stopped at step 6 (between evaluations) must stop there too: a rule that forgot its best and
    # its count would take the step-8 validation as best and run on to 16.
    over = ("train.max_steps=20", "train.early_stop.metric=val_loss", "train.early_stop.mode=max",
            "train.early_stop.patience=2")
    full = ListLog()
    pretrain.run(tiny_preset(*over), workspace, full, threading.Event())
    stop, first = stop_at(6)
    broken = tmp_path / "broken"
    broken.mkdir()
    pretrain.run(tiny_preset(*over), broken, first, stop)
    assert max(e["step"] for e in first.kind("train")) == 6
    second = ListLog()
    pretrain.run(tiny_preset(*over), broken, second, threading.Event())
    (a,) = [e["early_stop"] for e in full.events if "early_stop" in e]
    (b,) = [e["early_stop"] for e in second.events if "early_stop" in e]
    assert a == b and (a["step"], a["best_step"]) == (12, 4)
    assert max(e["step"] for e in second.kind("train")) == 12
    assert (broken / "checkpoints" / "best").read_text().strip() == "step-00000004"
    report = json.loads((broken / "report.json").read_text())
    assert report["resumed_from"] == 6 and report["early_stopped_at"] == 12 and report["best_step"] == 4


def test_a_damaged_early_stop_state_is_named_by_its_key():
    from core.schemas import FileFormatError, check_trainer_state

    good = {"version": 1, "optimizer": {}, "step": 8, "tokens": 0, "rng": {"python": [], "numpy": {}, "torch": None},
            "live_eval": {"eval_s": 1.5, "rule": {"metric": "val_loss", "best": 2.0, "best_step": 4, "waited": 1}}}
    check_trainer_state(good, "trainer.pt")
    bad = {**good, "live_eval": {"eval_s": 1.5, "rule": {**good["live_eval"]["rule"], "waited": -1}}}
    with pytest.raises(FileFormatError, match="live_eval.rule.waited"):
        check_trainer_state(bad, "trainer.pt")
    e = EarlyStop("choice.acc", "max", patience=3)
    e.load_state_dict(good["live_eval"]["rule"])  # saved for another metric: the rule starts afresh
    assert (e.best, e.best_step, e.waited) == (None, None, 0)
