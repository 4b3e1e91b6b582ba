"""The ChatML template: ids, the assistant-only loss mask, text form, parsing, bad conversations."""

from __future__ import annotations

import pytest

from core.errors import UserError
from core.tokenizer import get_tokenizer

CONVERSATION = [
    {"role": "system", "content": "You are brief."},
    {"role": "user", "content": "Say <|im_end|> please"},
    {"role": "assistant", "content": "Done: <|im_end|>"},
    {"role": "user", "content": "Thanks!"},
    {"role": "assistant", "content": "You are welcome 🙂"},
]


@pytest.fixture(params=["gpt2", "trained"])
def tok(request, trained):
    if request.param == "trained":
        return trained
    request.getfixturevalue("gpt2_cache")
    return get_tokenizer("gpt2")


def test_mask_covers_exactly_the_assistant_contents_and_their_end(tok):
    ids, mask = tok.chat.render(CONVERSATION)
    assert len(ids) == len(mask) and set(mask) == {0, 1}
    replies = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    assert sum(mask) == sum(len(tok.encode(r)) + 1 for r in replies)
    trained_ids = [i for i, m in zip(ids, mask) if m]
    assert tok.decode(trained_ids) == "".join(r + "<|im_end|>" for r in replies)
    # the <|im_end|> typed inside contents stayed text: the control token appears once per message
    im_end = tok.special_tokens["<|im_end|>"]
    assert ids.count(im_end) == len(CONVERSATION)
    assert sum(1 for i, m in zip(ids, mask) if m and i == im_end) == len(replies)


def test_text_form_equals_the_decoded_ids(tok):
    ids, _ = tok.chat.render(CONVERSATION, add_generation_prompt=True)
    text = tok.chat.render_text(CONVERSATION, add_generation_prompt=True)
    assert tok.decode(ids) == text
    assert text.startswith("<|endoftext|><|im_start|>system\nYou are brief.<|im_end|>\n")
    assert text.endswith("<|im_start|>assistant\n")
    assert ids[0] == tok.eot_id


def test_exact_ids_on_gpt2(gpt2_cache):
    tok = get_tokenizer("gpt2")
    ids, mask = tok.chat.render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}])
    assert ids == [50256, 50257, 7220, 198, 5303, 50258, 198, 50257, 562, 10167, 198, 15496, 50258, 198]
    assert mask == [0] * 11 + [1, 1, 0]
    assert tok.chat.stop_ids == [50258, 50256]


def test_parse_round_trip(tok):
    ids, _ = tok.chat.render(CONVERSATION)
    assert tok.chat.parse(ids) == CONVERSATION
    prompt, _ = tok.chat.render(CONVERSATION[:2], add_generation_prompt=True)
    partial = prompt + tok.encode("Half a rep")
    assert tok.chat.parse(partial)[-1] == {"role": "assistant", "content": "Half a rep"}


@pytest.mark.parametrize("bad, match", [
    ([{"role": "robot", "content": "x"}], "message 0: unknown role 'robot'"),
    ([{"role": "user"}], "message 0: expected"),
    ([{"role": "user", "content": 3}], "content must be text"),
    ("hello", "a conversation is a list"),
])
def test_bad_conversations(tok, bad, match):
    with pytest.raises(UserError, match=match):
        tok.chat.render(bad)
