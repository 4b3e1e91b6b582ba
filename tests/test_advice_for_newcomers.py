"""Advice a newcomer can act on: each warning says what to change; a rule that a built-in preset
breaks on purpose carries the preset's reason; rules of stages a preset does not run do not count."""

from __future__ import annotations

import pytest

from core import config
from core.advice import advise, worst


@pytest.mark.parametrize("name", config.builtin_names())
def test_every_builtin_preset_follows_the_rules_or_says_why(name):
    findings = advise(config.load(name))
    assert worst(findings) == "ok", [(f.title, f.reason) for f in findings if f.matters]
    for f in findings:
        if f.level != "ok":
            assert f.accepted or f.not_applicable, f


def test_a_warning_says_what_to_change_with_the_number():
    p = config.load("tiny", ["accepted=[]"])
    (tpp,) = [f for f in advise(p, stage="pretrain") if f.title == "Tokens per parameter"]
    assert tpp.matters and tpp.level == "warn"
    # 20 tokens per parameter at 2,048 tokens per step
    steps = -(-20 * tpp.numbers["params"] // p.tokens_per_step())
    assert f"train.max_steps = {steps:,}" in tpp.fix
    assert worst(advise(p)) == "warn"


def test_the_preset_reason_replaces_the_warning():
    p = config.load("tiny", {"accepted": ["train.lr: on purpose for this test"], "train.lr": 0.05})
    (lr,) = [f for f in advise(p, stage="pretrain") if f.key == "train.lr"]
    assert lr.level == "bad" and lr.accepted == "on purpose for this test" and not lr.matters


def test_pretraining_rules_do_not_count_against_a_finetuning_preset():
    findings = advise(config.load("tiny-sft"), stage="pretrain")
    tpp = next(f for f in findings if f.title == "Tokens per parameter")
    assert tpp.level != "ok" and "finetunes" in tpp.not_applicable and not tpp.matters


@pytest.mark.parametrize("entry", ["train.lr", "train.lr:", "no.such.key: because"])
def test_a_malformed_accepted_entry_is_a_problem_naming_it(entry):
    with pytest.raises(config.PresetError) as e:
        config.load("tiny", {"accepted": [entry]})
    assert [q.key for q in e.value.problems] == ["accepted[0]"]
