"""Honest comparisons: the paired bootstrap, `llmlab compare` and `--seeds N` on real run folders."""

import json

import pytest

from core import cli
from core.eval.compare import paired_bootstrap, seed_summary
from test_eval_stage import chain  # noqa: F401  (a fixture)


def test_paired_bootstrap_says_better_only_when_the_interval_excludes_zero():
    a = [1.0, 0.0] * 50
    better = paired_bootstrap(a, [1.0, 1.0] * 50)  # B right on every question A got wrong
    assert better["difference"] == pytest.approx(0.5) and better["ci_low"] > 0.35 and better["verdict"] == "B is better"
    assert better["p_value"] < 0.001
    same = paired_bootstrap(a, a)
    assert same["difference"] == 0 and same["p_value"] == 1.0 and same["verdict"].startswith("no difference")
    noisy = paired_bootstrap(a, [0.0, 1.0] * 48 + [1.0, 1.0] * 2)  # +0.02 on 100 questions: not significant
    assert noisy["ci_low"] < 0 < noisy["ci_high"] and noisy["verdict"].startswith("no difference") and noisy["p_value"] > 0.05
    worse = paired_bootstrap([1.0, 1.0] * 50, a)
    assert worse["verdict"] == "A is better"
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap([1.0], [1.0, 0.0])


def test_seed_summary_is_a_student_t_interval():
    s = seed_summary([0.6, 0.7, 0.8])
    assert s["mean"] == pytest.approx(0.7) and s["ci_low"] == pytest.approx(0.7 - 4.303 * 0.1 / 3 ** 0.5)


def test_compare_cli_scores_both_models_on_the_same_questions(chain, tmp_path, capsys):
    pre_run, pre_ck, ft_run, ft_ck = chain
    out = tmp_path / "cmp.json"
    assert cli.main(["compare", str(pre_ck), str(ft_ck), "--set", "eval.limit=20", "--json", str(out)]) == 0
    r = json.loads(out.read_text())["tasks"]["choice"]
    assert r["n"] == 20 and r["metric"] == "multiple-choice acc"
    assert r["difference"] == pytest.approx(r["mean_b"] - r["mean_a"])
    assert r["ci_low"] <= r["difference"] <= r["ci_high"]
    assert f"choice: {r['verdict']}" in capsys.readouterr().out
    assert cli.main(["compare", str(pre_ck), str(tmp_path / "nothing")]) == 2


def test_seeds_zero_is_refused(chain, capsys):
    assert cli.main(["eval", str(chain[3]), "--seeds", "0"]) == 2
    assert "--seeds: 0" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_over_two_seeds_reports_mean_and_interval(chain, tmp_path):
    out = tmp_path / "seeds.json"
    assert cli.main(["eval", str(chain[3]), "--tasks", "choice", "--set", "eval.limit=8", "--set", "eval.num_fewshot=1",
                     "--seeds", "2", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert len(r["runs"]) == 2 and r["metrics"]["choice.acc"]["n"] == 2
    m = r["metrics"]["choice.acc"]
    assert m["ci_low"] <= m["mean"] <= m["ci_high"] or m["std"] == 0
