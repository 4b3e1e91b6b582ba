"""The evaluation challenges on real run folders: contamination, prompt/position sensitivity, a baseline."""

import json
import shutil

import pytest
import torch

from core.data.synthetic import derived_set, iter_stories
from core.errors import UserError
from core.eval.baseline import bag_of_words_baseline
from core.eval.contamination import build_index, check_set
from core.eval.report import read_report
from test_eval_stage import chain, make_run, preset, run_eval  # noqa: F401  (chain is a fixture)


def test_embedded_eval_sets_are_clean_and_a_leaked_set_is_caught():
    corpus = list(iter_stories(1337, 400_000))
    index = build_index(corpus)
    for kind in ("choice", "classify", "preference"):
        rows = derived_set(kind, "test")
        texts = [r.get("text") or r.get("prompt") or f"{r['question']} {r['choices'][r['answer']]}" for r in rows]
        assert check_set(index, texts)["n_dirty"] == 0, kind
    leaked = [" ".join(s.split()[:20]) for s in corpus[:30]] + ["Tom had a red kite and a dog and he went far away."]
    r = check_set(index, leaked)
    assert r["n_dirty"] == 30 and r["n_checked"] == 31 and r["dirty_share"] == pytest.approx(30 / 31)
    assert r["examples"][0]["ngram"] in " ".join(corpus[0].lower().replace(",", "").replace(".", "").split())
    assert check_set(index, ["too short to check"])["n_too_short"] == 1


def test_contamination_task_reads_the_lineages_corpus_and_fails_clearly_without_it(chain, tmp_path):
    pre_run, pre_ck, ft_run, ft_ck = chain
    leak = tmp_path / "leak.jsonl"
    stories = list(iter_stories(1337, 20_000))  # the chain's pretraining corpus starts with these
    leak.write_text("".join(json.dumps({"question": " ".join(s.split()[:16]), "choices": ["a", "b"], "answer": 0}) + "\n"
                            for s in stories[:8]))
    ev_run, state = run_eval(preset(f"eval.model={ft_ck}", 'eval.tasks=["contamination"]', f"eval.choice_data={leak}",
                                    "finetune.data=embedded:tinyworld-choice"))
    c = read_report(ev_run.path)["tasks"]["contamination"]
    assert state == "finished" and c["ngram"] == 13 and c["corpus"]["run"] == str(pre_run.path)
    assert c["sets"][f"{leak} (test)"]["dirty_share"] == 1.0 and c["sets"][f"{leak} (test)"]["examples"]
    assert c["sets"]["embedded:tinyworld-choice (test)"]["n_dirty"] == 0
    shutil.rmtree(pre_run.path)
    with pytest.raises(UserError, match="no longer exists"):
        run_eval(preset(f"eval.model={ft_ck}", 'eval.tasks=["contamination"]'))


def test_sensitivity_reports_ranges_over_shots_formats_and_positions(chain, tmp_path):
    _, _, _, ft_ck = chain
    ev_run, state = run_eval(preset(f"eval.model={ft_ck}", 'eval.tasks=["sensitivity"]', "eval.limit=12"))
    s = read_report(ev_run.path)["tasks"]["sensitivity"]
    assert state == "finished" and s["n"] == 12 and s["complete"]
    assert list(s["kshot"]) == ["0", "1", "3", "5"] and list(s["formats"]) == ["continuation", "question-answer", "lettered"]
    assert list(s["position"]) == ["A", "B", "C", "D"]
    for group, r in s["ranges"].items():
        assert r["min"] <= r["max"] and r["min"] == min(s[group].values())
    small = tmp_path / "three.jsonl"
    small.write_text("".join(json.dumps({"question": f"q{i}", "choices": ["a", "b"], "answer": 0}) + "\n" for i in range(3)))
    with pytest.raises(UserError, match="num_fewshot: 5 .* only 2"):
        run_eval(preset(f"eval.model={ft_ck}", 'eval.tasks=["choice"]', f"eval.choice_data={small}", "eval.num_fewshot=5"))
    with pytest.raises(UserError, match="5-shot needs more than 5 examples"):
        run_eval(preset(f"eval.model={ft_ck}", 'eval.tasks=["sensitivity"]', f"eval.choice_data={small}"))


def test_bag_of_words_baseline_sits_at_chance_on_the_world_but_not_on_keywords():
    torch.set_num_threads(1)
    train, test = derived_set("classify", "train")[:1200], derived_set("classify", "test")
    world = bag_of_words_baseline([r["text"] for r in train], [r["label"] for r in train],
                                  [r["text"] for r in test], [r["label"] for r in test], 2)
    assert 0.4 < world["accuracy"] < 0.6 and world["ci_low"] < 0.5 < world["ci_high"]
    keyword = [("it was a good day" if r["label"] else "it was a bad day") + " " + r["text"] for r in train + test]
    easy = bag_of_words_baseline(keyword[:len(train)], [r["label"] for r in train], keyword[len(train):],
                                 [r["label"] for r in test], 2)
    assert easy["accuracy"] > 0.98


def test_place_questions_ask_about_the_first_named_child_so_the_distractor_is_the_nearer_place():
    """Why "where was X" sits below chance (README): the clean-by-construction rule keeps only the
    question about the child named first, so the other child's place is always the one nearer the
    end, while a question about the second child would share 13-grams with the corpus."""
    place = [x for x in derived_set("choice", "test") if x["kind"] == "place"]
    assert len(place) > 30
    for x in place:
        q, gold = x["question"], x["choices"][x["answer"]].rstrip(".")
        named = [c.rstrip(".") for c in x["choices"] if f" {c.rstrip('.')}." in q or f" {c.rstrip('.')} " in q]
        nearest = max(named, key=lambda c: q.rfind(f" {c}"))
        assert gold in named and nearest != gold
