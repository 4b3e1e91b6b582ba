"""Multiple choice: acc and acc_norm equal a hand computation; prompts, few-shot and bad task files."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.errors import UserError
from core.eval.choice import (ChoiceExample, FewshotSampler, encode_pair, evaluate, fewshot_context, load_task,
                              loglikelihoods, normalise_row)

EXAMPLES = [
    # options of very different lengths, so summed and length-normalised scores disagree
    ChoiceExample("Mia went to the park. At the park, she", ["ran.", "played on the swings with her friend all day.",
                                                              "slept.", "fed the ducks."], 1),
    ChoiceExample("Tom lost his ball. He was very", ["sad", "happy", "glad and happy and glad", "cross"], 0),
    ChoiceExample("Ben went to the lake with his dad.", ["He swam.", "She swam.", "He swam. Then she went home.",
                                                         "It rained."], 2),
]


def hand_loglikelihood(model, tok, context, option):
    """The harness's recipe written out: encode whole and context, the continuation is the tail of the whole."""
    whole = tok.encode(context + " " + option)
    ctx = tok.encode(context)
    cont = whole[len(ctx):]
    seq = ctx + cont
    with torch.no_grad():
        logits, _ = model(torch.tensor([seq[:-1]]))
    logp = F.log_softmax(logits[0].float(), -1)
    return sum(logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont))


def test_acc_and_acc_norm_equal_a_hand_computation(tok, model):
    lls = [[hand_loglikelihood(model, tok, ex.context, c) for c in ex.choices] for ex in EXAMPLES]
    acc = np.mean([np.argmax(l) == ex.answer for l, ex in zip(lls, EXAMPLES)])
    norm = np.mean([np.argmax(np.array(l) / np.array([len(c) for c in ex.choices])) == ex.answer
                    for l, ex in zip(lls, EXAMPLES)])
    r = evaluate(model, tok, EXAMPLES, batch_size=5)
    for got, want in zip(r["samples"], lls):
        assert got["lls"] == pytest.approx(want, abs=1e-3)
    assert r["acc"] == pytest.approx(acc) and r["acc_norm"] == pytest.approx(norm)
    assert r["chance"] == 0.25 and r["n"] == 3 and r["complete"]
    # the untrained model prefers short options by summed log-likelihood, and normalising changes the picks
    assert [s["pred"] for s in r["samples"]] == [int(np.argmax(l)) for l in lls]
    assert [s["pred"] for s in r["samples"]] != [s["pred_norm"] for s in r["samples"]]
    assert r["settings"]["normalisation"] == "characters"


def test_batching_does_not_change_loglikelihoods(tok, model):
    reqs = [encode_pair(tok, ex.context, " " + c) for ex in EXAMPLES for c in ex.choices]
    one = loglikelihoods(model, reqs, batch_size=1)
    many = loglikelihoods(model, reqs, batch_size=7)
    assert one == pytest.approx(many, abs=1e-4)


def test_long_contexts_are_truncated_on_the_left(tok, make_gpt):
    model = make_gpt(tok.n_vocab, context_length=16)
    ctx = "Mia went to the park and played with her ball. " * 6
    ctx_ids, cont_ids = encode_pair(tok, ctx, " She was happy.")
    seq = (ctx_ids + cont_ids)[-17:]
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor([seq[:-1]]))[0][0], -1)
    want = sum(logp[16 - len(cont_ids) + j, t].item() for j, t in enumerate(cont_ids))
    assert loglikelihoods(model, [(ctx_ids, cont_ids)])[0] == pytest.approx(want, abs=1e-4)


def test_encode_pair_moves_trailing_space_and_handles_an_empty_context(tok):
    ctx, cont = encode_pair(tok, "Tom was very ", "sad")
    assert tok.decode(ctx) == "Tom was very" and tok.decode(cont) == " sad"
    ctx, cont = encode_pair(tok, "", "Hello")
    assert ctx == [tok.eot_id] and cont == tok.encode("Hello")


def test_fewshot_prompt_and_sampler():
    pool = [ChoiceExample(f"Q{i}", ["a", "b"], i % 2) for i in range(6)]
    ex = pool[0]
    shots = FewshotSampler(pool, seed=1234).sample(2, ex)
    assert len(shots) == 2 and ex not in shots
    assert FewshotSampler(pool, seed=1234).sample(2, ex) == shots  # seeded
    text = fewshot_context(ex, shots)
    assert text == f"{shots[0].context} {shots[0].target}\n\n{shots[1].context} {shots[1].target}\n\nQ0"
    with pytest.raises(UserError, match="few-shot pool"):
        FewshotSampler(pool[:2]).sample(5, ex)


def test_fewshot_changes_the_requests(tok, model):
    zero = evaluate(model, tok, EXAMPLES)
    two = evaluate(model, tok, EXAMPLES, num_fewshot=2)
    assert two["settings"]["num_fewshot"] == 2
    assert zero["samples"][0]["lls"] != two["samples"][0]["lls"]


def test_row_shapes_build_the_harness_prompts():
    mmlu = normalise_row({"question": "2+2? ", "choices": ["3", "4"], "answer": 1, "subject": "elementary_math"}, "x")
    assert mmlu.context == "2+2?\nA. 3\nB. 4\nAnswer:" and mmlu.choices == ["A", "B"] and mmlu.answer == 1
    assert mmlu.description.endswith("about elementary math.\n\n")
    arc = normalise_row({"question": "Sky?", "choices": {"text": ["blue", "red"], "label": ["A", "B"]},
                         "answerKey": "A"}, "x")
    assert arc.context == "Question: Sky?\nAnswer:" and arc.choices == ["blue", "red"] and arc.answer == 0
    hs = normalise_row({"activity_label": "Cooking", "ctx": "A man [title] cuts", "endings": ["a", "b [x]"],
                        "label": "1"}, "x")
    assert hs.context == "Cooking: A man. cuts" and hs.choices == ["a", "b "] and hs.answer == 1
    assert normalise_row({"question": "q", "choices": ["a", "b", "c"], "answer": "C"}, "x").answer == 2


def _jsonl(path, rows):
    path.write_text("".join((json.dumps(r) if not isinstance(r, str) else r) + "\n" for r in rows))
    return str(path)


def test_task_file_errors_name_file_and_line(tmp_path):
    good = {"question": "q", "choices": ["a", "b", "c", "d"], "answer": 3}
    p = _jsonl(tmp_path / "missing.jsonl", [good, "", {"question": "q", "choices": ["a", "b"]}])
    with pytest.raises(UserError, match=r"missing\.jsonl:3: the answer is missing"):
        load_task(p)
    p = _jsonl(tmp_path / "range.jsonl", [good, {**good, "answer": 4}])
    with pytest.raises(UserError, match=r"range\.jsonl:2: answer 4 is out of range for 4 options"):
        load_task(p)
    p = _jsonl(tmp_path / "neg.jsonl", [{**good, "answer": -1}])
    with pytest.raises(UserError, match=r"neg\.jsonl:1: answer -1 is out of range"):
        load_task(p)
    p = _jsonl(tmp_path / "bad.jsonl", [good, "{not json"])
    with pytest.raises(UserError, match=r"bad\.jsonl:2: not valid JSON"):
        load_task(p)
    p = _jsonl(tmp_path / "one.jsonl", [{**good, "choices": ["only"], "answer": 0}])
    with pytest.raises(UserError, match=r"one\.jsonl:1: choices must be a list of at least two"):
        load_task(p)
    with pytest.raises(UserError, match="no such multiple-choice file"):
        load_task(str(tmp_path / "nope.jsonl"))
    p = _jsonl(tmp_path / "ok.jsonl", [good, good, good])
    assert len(load_task(p)) == 3 and len(load_task(p, limit=2)) == 2


def test_embedded_set_loads_with_kinds():
    ex = load_task("embedded:tinyworld-choice", "test", limit=40)
    assert len(ex) == 40 and all(len(e.choices) == 4 and 0 <= e.answer < 4 for e in ex)
    assert {e.kind for e in ex} == {"owner", "place", "count", "order", "feeling"}
