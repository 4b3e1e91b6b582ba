"""Prompt templates and collate functions: exactly the response tokens count in the loss."""

import pytest
import torch

from core.data.formats import (IGNORE_INDEX, alpaca_prompt, collate_classify, collate_instruction, collate_preference,
                               encode_prompt,
                               encode_classify, encode_instruction, encode_preference)
from core.tokenizer.encodings import get_tokenizer


@pytest.fixture(scope="module")
def tok(gpt2_cache):
    return get_tokenizer("gpt2")


REC = {"instruction": "Who went to the park?", "input": "Tom went to the park. Mia went to the farm.", "output": "Tom"}


def test_alpaca_prompt_text():
    assert alpaca_prompt("Say hi.") == ("Below is an instruction that describes a task. Write a response that "
                                        "appropriately completes the request.\n\n### Instruction:\nSay hi.\n\n### Response:\n")
    assert "\n\n### Input:\nctx\n\n### Response:\n" in alpaca_prompt("Q", "ctx")


def test_instruction_loss_is_on_the_response_and_its_end_token_only(tok):
    ex = encode_instruction(REC, tok, "alpaca")
    prompt = tok.encode(alpaca_prompt(REC["instruction"], REC["input"]))
    assert ex["ids"] == prompt + tok.encode("Tom") + [tok.eot_id]
    short = encode_instruction({"instruction": "Hi", "input": "", "output": "Hello there"}, tok, "alpaca")
    x, y = collate_instruction([ex, short], pad_id=tok.eot_id)
    assert x.shape == y.shape == (2, len(ex["ids"]) - 1)
    assert y[0][y[0] != IGNORE_INDEX].tolist() == tok.encode("Tom") + [tok.eot_id]
    assert y[1][y[1] != IGNORE_INDEX].tolist() == tok.encode("Hello there") + [tok.eot_id]
    n = len(short["ids"]) - 1
    assert (x[1, n:] == tok.eot_id).all() and (y[1, n:] == IGNORE_INDEX).all()
    assert x[0].tolist() == ex["ids"][:-1]
    # y is x shifted: where y counts, it is the next input token
    assert all(y[0, t] == ex["ids"][t + 1] for t in range(x.shape[1]) if y[0, t] != IGNORE_INDEX)


def test_truncation_is_reported(tok):
    ex = encode_instruction(REC, tok, "alpaca", max_len=10)
    assert ex["truncated"] and len(ex["ids"]) == 11 and not any(ex["mask"])
    assert not encode_instruction(REC, tok, "alpaca", max_len=1000)["truncated"]


def test_chat_template_masks_the_assistant_reply(tok):
    ex = encode_instruction(REC, tok, "chat")
    ids, mask = tok.chat.render([{"role": "user", "content": REC["instruction"] + "\n\n" + REC["input"]},
                                 {"role": "assistant", "content": "Tom"}])
    assert ex["ids"] == list(ids)
    counted = [t for t, m in zip(ex["ids"], ex["mask"]) if m]
    assert tok.decode(counted).startswith("Tom")
    _, y = collate_instruction([ex], tok.eot_id)
    assert y[0][y[0] != IGNORE_INDEX].tolist() == counted


def test_preference_pairs_mask_the_prompt_on_both_sides(tok):
    rec = {"prompt": "Who went to the park?\n\nTom went to the park.", "chosen": "It was Tom.",
           "rejected": "Go away."}
    ex = encode_preference(rec, tok)
    b = collate_preference([ex, ex], tok.eot_id)
    assert b["chosen_x"].shape == b["rejected_x"].shape == (2, max(len(ex["chosen"]["ids"]), len(ex["rejected"]["ids"])) - 1)
    for side, text in (("chosen", "It was Tom."), ("rejected", "Go away.")):
        y = b[f"{side}_y"][0]
        assert y[y != IGNORE_INDEX].tolist() == tok.encode(text) + [tok.eot_id]
    n = len(ex["chosen"]["ids"]) - len(tok.encode("It was Tom.")) - 1
    assert b["chosen_x"][0, :n].tolist() == b["rejected_x"][0, :n].tolist()  # the same prompt
    with_fields = encode_preference({**rec, "instruction": "Who went to the park?", "input": "Tom went to the park."}, tok)
    assert "### Input:\nTom went to the park." in tok.decode(with_fields["chosen"]["ids"])  # alpaca with its input


def test_classification_pads_and_points_at_the_last_real_token(tok):
    batch = [encode_classify({"text": "Tom was very happy.", "label": 1}, tok),
             encode_classify({"text": "Sad.", "label": 0}, tok),
             encode_classify({"text": "one two three four five six", "label": 1}, tok, max_len=3)]
    assert batch[2]["truncated"] and batch[2]["ids"] == tok.encode("one two three")
    x, last, labels = collate_classify(batch, pad_id=tok.eot_id)
    assert x.shape == (3, 5) and last.tolist() == [4, 1, 2] and labels.tolist() == [1, 0, 1]
    assert x[1, 2:].tolist() == [tok.eot_id] * 3
    assert x[torch.arange(3), last].tolist() == [tok.encode(" happy.")[-1], tok.encode("Sad.")[-1], tok.encode(" three")[0]]


def test_generation_prompt_is_the_training_prompt(tok):
    for template in ("alpaca", "chat"):
        ex = encode_instruction(REC, tok, template)
        prompt = encode_prompt(REC, tok, template)
        assert ex["ids"][: len(prompt)] == prompt and ex["mask"][len(prompt)] and not any(ex["mask"][: len(prompt)])
