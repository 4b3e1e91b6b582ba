"""The three objectives on fixed inputs: response masks, the last real token, the DPO loss by hand."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from core.data.formats import collate_classify, collate_instruction, encode_classify
from core.train.classify import ClassifyObjective, class_logits, classification_metrics
from core.train.examples import ExampleLoader
from core.train.instruct import InstructObjective, encode_record, pack, prompt_ids
from core.train.preference import dpo_loss, sequence_logps

RECS = [{"instruction": "Who went to the park?", "input": "Tom went to the park. Mia went to the shop.", "output": "Tom"},
        {"instruction": "List the things in the story.", "input": "", "output": "ball, kite, drum"}]


def test_alpaca_mask_counts_exactly_the_response_tokens(tokenizer):
    exs = [encode_record(r, tokenizer, "alpaca", 160) for r in RECS]
    x, y = collate_instruction(exs, tokenizer.eot_id)
    expected = [len(tokenizer.encode(r["output"])) + 1 for r in RECS]  # the answer and its end token
    assert (y != -100).sum(1).tolist() == expected
    for i, r in enumerate(RECS):
        kept = y[i][y[i] != -100].tolist()
        assert kept == tokenizer.encode(r["output"]) + [tokenizer.eot_id]
        # the prompt the model sees in training is the prompt chat and evaluation use
        n_prompt = len(exs[i]["ids"]) - expected[i]
        assert exs[i]["ids"][:n_prompt] == prompt_ids(tokenizer, "alpaca", r["instruction"], r["input"])
    assert (y != -100).sum().item() == sum(expected)


def test_chat_mask_and_multi_turn(tokenizer):
    ex = encode_record(RECS[0], tokenizer, "chat", 160)
    x, y = collate_instruction([ex], tokenizer.eot_id)
    kept = y[0][y[0] != -100].tolist()
    assert kept == tokenizer.encode("Tom") + [tokenizer.chat.im_end_id]
    conv = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"},
                         {"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Tom"}]}
    ex = encode_record(conv, tokenizer, "alpaca", 160)  # conversations always use the chat template
    _, y = collate_instruction([ex], tokenizer.eot_id)
    assert (y != -100).sum().item() == len(tokenizer.encode("Hello there")) + len(tokenizer.encode("Tom")) + 2


def test_instruct_loss_is_cross_entropy_over_response_tokens_only(tiny_gpt, tokenizer):
    model = tiny_gpt(vocab_size=tokenizer.n_vocab, context_length=160)
    exs = [encode_record(r, tokenizer, "alpaca", 160) for r in RECS]
    x, y = collate_instruction(exs, tokenizer.eot_id)
    loss, _ = InstructObjective()(model, (x, y))
    logits, _ = model(x)
    keep = y != -100
    manual = F.cross_entropy(logits[keep], y[keep])
    assert torch.allclose(loss, manual, atol=1e-6)


def test_packing_keeps_every_response_token(tokenizer):
    exs = [encode_record(r, tokenizer, "alpaca", 400) for r in RECS * 3]
    rows = pack(exs, 400, seed=0)
    assert len(rows) < len(exs) and all(len(r["ids"]) <= 401 for r in rows)
    _, y = collate_instruction(rows, tokenizer.eot_id)
    assert (y != -100).sum().item() == sum(sum(ex["mask"][1:]) for ex in exs)


def test_last_token_index_with_padding(tiny_gpt, tokenizer):
    model = tiny_gpt(vocab_size=tokenizer.n_vocab)
    model.set_head(3, bias=True)
    model.eval()
    texts = ["Tom went to the park.", "Mia was sad.", "The sun was warm and bright. Lily smiled."]
    exs = [encode_classify({"text": t, "label": i}, tokenizer) for i, t in enumerate(texts)]
    x, last, labels = collate_classify(exs, tokenizer.eot_id)
    assert last.tolist() == [len(e["ids"]) - 1 for e in exs] and len(set(last.tolist())) == 3
    batched = class_logits(model, x, last)
    for i, ex in enumerate(exs):
        alone = model(torch.tensor([ex["ids"]]))[0][0, -1]  # the same text without any padding
        assert torch.allclose(batched[i], alone, atol=1e-5)
    # reading the last position instead (a padding token for the short rows) gives something else
    assert not torch.allclose(model(x)[0][:, -1], batched, atol=1e-3)
    loss, m = ClassifyObjective(3)(model, (x, last, labels))
    assert torch.allclose(loss, F.cross_entropy(batched, labels))
    assert m["tokens"] == sum(len(e["ids"]) for e in exs)


def test_classification_metrics_exact():
    m = classification_metrics([0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 0, 2], 3)
    assert m["accuracy"] == 4 / 6
    assert m["confusion_matrix"] == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    assert m["precision"] == [0.5, 2 / 3, 1.0] and m["recall"] == [0.5, 2 / 3, 1.0]
    assert m["class_names"] == ["0", "1", "2"]
    assert classification_metrics([0, 1], [0, 1], 2, ["ham", "spam"])["class_names"] == ["ham", "spam"]


def test_dpo_loss_equals_hand_computation():
    pc, pr = torch.tensor([-1.0, -2.0, -4.0]), torch.tensor([-3.0, -1.5, -4.0])
    rc, rr = torch.tensor([-1.5, -2.0, -3.0]), torch.tensor([-2.0, -1.0, -5.0])
    loss, m = dpo_loss(pc, pr, rc, rr, beta=0.1)
    # rewards: chosen 0.1*(0.5, 0, -1) ; rejected 0.1*(-1, -0.5, 1) ; margins (0.15, 0.05, -0.2)
    margins = [0.15, 0.05, -0.2]
    hand = sum(math.log(1 + math.exp(-d)) for d in margins) / 3
    assert abs(loss.item() - hand) < 1e-6
    assert abs(m["reward_chosen"].item() - (0.05 + 0.0 - 0.1) / 3) < 1e-7
    assert abs(m["reward_rejected"].item() - (-0.1 - 0.05 + 0.1) / 3) < 1e-7
    assert abs(m["reward_margin"].item() - sum(margins) / 3) < 1e-7
    assert abs(m["reward_accuracy"].item() - 2 / 3) < 1e-7


def test_sequence_logps_sum_only_answer_tokens():
    logits = torch.tensor([[[0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [3.0, 0.0, 0.0]]])  # (1, 3, 3)
    y = torch.tensor([[-100, 2, 0]])
    lp = sequence_logps(logits, y)
    hand = math.log(1 / 3) + (3.0 - math.log(math.exp(3.0) + 2))
    assert abs(lp.item() - hand) < 1e-6


def test_example_loader_resumes_at_the_same_place():
    a = ExampleLoader(list(range(10)), 3, list, seed=5)
    first = [a.next_batch() for _ in range(7)]  # crosses two epoch boundaries (3 batches per epoch)
    assert sorted(sum(first[:3], [])) != list(range(10)) and len(set(sum(first[:3], []))) == 9
    b = ExampleLoader(list(range(10)), 3, list, seed=5)
    for _ in range(4):
        b.next_batch()
    c = ExampleLoader(list(range(10)), 3, list, seed=5)
    c.load_state_dict(b.state_dict())
    assert [c.next_batch() for _ in range(3)] == first[4:]


def test_balance_undersamples_to_the_smallest_class():
    from core.train.classify import balance

    exs = [{"label": 0, "i": i} for i in range(30)] + [{"label": 1, "i": i} for i in range(7)]
    out = balance(exs, seed=3)
    assert sorted(e["label"] for e in out) == [0] * 7 + [1] * 7
    assert out == balance(exs, seed=3) and out != balance(exs, seed=4)
