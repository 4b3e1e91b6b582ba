"""Real models' chat templates: the string and ids of transformers' apply_chat_template, a loss mask by rendering."""

from __future__ import annotations

import json
import shutil

import pytest
from hf_tokenizer_files import BUILDERS

from core.errors import UserError
from core.tokenizer import load_tokenizer

pytest.importorskip("transformers")

THREE_TURNS = [
    {"role": "system", "content": "You answer in one line."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4, as always."},
    {"role": "user", "content": "And in code?"},
    {"role": "assistant", "content": "def add(a, b):\n    return a + b"},
    {"role": "user", "content": "Thanks 🙂"},
    {"role": "assistant", "content": "You're welcome."},
]
END_OF_TURN = {"smollm2": "<|im_end|>", "qwen": "<|im_end|>", "llama3": "<|eot_id|>", "llama2": "</s>"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf-templates")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def pairs(folders):
    from transformers import AutoTokenizer

    return {name: (load_tokenizer(d), AutoTokenizer.from_pretrained(str(d))) for name, d in folders.items()}


@pytest.mark.parametrize("family", list(BUILDERS))
@pytest.mark.parametrize("n", [2, 3, 7])
@pytest.mark.parametrize("gen", [False, True])
def test_string_and_ids_equal_apply_chat_template(pairs, family, n, gen):
    ours, hf = pairs[family]
    messages = THREE_TURNS[:n] if n != 2 else THREE_TURNS[1:3]  # with and without a system turn
    assert ours.chat.render_text(messages, gen) == hf.apply_chat_template(messages, tokenize=False,
                                                                           add_generation_prompt=gen)
    ids, mask = ours.chat.render(messages, gen)
    assert ids == hf.apply_chat_template(messages, add_generation_prompt=gen, return_dict=True)["input_ids"]
    assert len(mask) == len(ids)


def _expected_mask(tok, ids: list[int], messages: list[dict], end: str) -> list[int]:
    """1 on each assistant content's tokens and the end-of-turn token after it, found in order."""
    mask, pos = [0] * len(ids), 0
    eot = tok.special_tokens[end]
    for m in messages:
        if m["role"] != "assistant":
            continue
        want = tok.encode(m["content"]) + [eot]
        at = next(i for i in range(pos, len(ids)) if ids[i:i + len(want)] == want)
        mask[at:at + len(want)] = [1] * len(want)
        pos = at + len(want)
    return mask


@pytest.mark.parametrize("family", ["smollm2", "qwen", "llama3"])
def test_mask_is_exactly_the_assistant_turns_and_their_end(pairs, family):
    ours, _ = pairs[family]
    ids, mask = ours.chat.render(THREE_TURNS)
    assert mask == _expected_mask(ours, ids, THREE_TURNS, END_OF_TURN[family])
    assert ours.decode([t for t, m in zip(ids, mask) if m]) == "".join(
        m["content"] + END_OF_TURN[family] for m in THREE_TURNS if m["role"] == "assistant")
    assert ours.chat.stop_ids == list(dict.fromkeys([ours.special_tokens[END_OF_TURN[family]], ours.eot_id]))


def test_sentencepiece_mask_keeps_the_eos_after_the_content(pairs):
    ours, _ = pairs["llama2"]
    ids, mask = ours.chat.render(THREE_TURNS)
    trained = ours.decode([t for t, m in zip(ids, mask) if m])
    assert trained.count("</s>") == 3 and "You're welcome.</s>" in trained and "What is" not in trained


@pytest.mark.parametrize("family", list(BUILDERS))
def test_control_tokens_typed_in_messages_stay_text(pairs, family):
    """As transformers' sanitize_control_tokens=True: the template's own tokens count, the user's do not."""
    ours, hf = pairs[family]
    messages = [{"role": "user", "content": "say <|im_end|><|eot_id|></s> then <s>"},
                {"role": "assistant", "content": "<|im_start|>no</s>"}]
    ids, mask = ours.chat.render(messages)
    assert ids == hf.apply_chat_template(messages, return_dict=True, sanitize_control_tokens=True)["input_ids"]
    n_special = sum(ours.is_special(t) for t in ids)
    assert n_special == sum(ours.is_special(t) for t in ours.chat.render(
        [{"role": "user", "content": "say"}, {"role": "assistant", "content": "no"}])[0])
    assert ours.decode([t for t, m in zip(ids, mask) if m]) == "<|im_start|>no</s>" + END_OF_TURN[family]


def _with_template(folders, tmp_path, template: str, where: str = "config"):
    d = shutil.copytree(folders["smollm2"], tmp_path / "t")
    if where == "jinja":
        (d / "chat_template.jinja").write_text(template)
    else:
        cfg = json.loads((d / "tokenizer_config.json").read_text())
        (d / "tokenizer_config.json").write_text(json.dumps({**cfg, "chat_template": template}))
    return load_tokenizer(d)


def test_chat_template_jinja_wins_over_the_config(folders, tmp_path):
    tok = _with_template(folders, tmp_path, "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}", "jinja")
    assert tok.chat.render_text([{"role": "user", "content": "hi"}]) == "[user]hi"
    assert str(tok.chat.where).endswith("chat_template.jinja")


@pytest.mark.parametrize("template, message", [
    ("{{ raise_exception('System role not supported') }}", r"refused the conversation: System role not supported"),
    ("{% for m in messages %}{{ m.content }}{{ nonexistent_variable }}{% endfor %}",
     r"reads an undefined variable \('nonexistent_variable' is undefined\)"),
    ("{% for i in range(99999) %}{{ 'x' * 1000 }}{% endfor %}", r"ran past its budget"),
    ("{% for i in range(10 ** 9) %}{% endfor %}", r"ran past its budget \(range of 1,000,000,000"),
    ("{% for m in messages %}{{ m.content }", r"chat_template line 1: unexpected"),
])
def test_bad_templates_are_user_errors_naming_the_file(folders, tmp_path, template, message):
    with pytest.raises(UserError, match=rf"tokenizer_config\.json: .*{message}"):
        tok = _with_template(folders, tmp_path, template)
        tok.chat.render_text([{"role": "user", "content": "hi"}])


def test_a_template_that_works_forever_is_stopped(folders, tmp_path, monkeypatch):
    from core.tokenizer import jinja

    monkeypatch.setattr(jinja, "MAX_RENDER_S", 0.2)
    tok = _with_template(folders, tmp_path, "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}")
    with pytest.raises(UserError, match="ran past its budget"):
        tok.chat.render([{"role": "user", "content": "hi"}])


def test_falsy_undefined_checks_still_work(folders, tmp_path):
    tok = _with_template(folders, tmp_path, "{% if tools %}T{% endif %}{% if enable_thinking is defined %}E{% endif %}"
                                            "{{ strftime_now('%Y')|length }}{{ messages|tojson }}")
    assert tok.chat.render_text([{"role": "user", "content": "é"}]) == '4[{"role": "user", "content": "é"}]'


def test_a_model_without_a_template_refuses_chat_by_name(folders, tmp_path):
    d = shutil.copytree(folders["smollm2"], tmp_path / "t")
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    del cfg["chat_template"]
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    tok = load_tokenizer(d)
    with pytest.raises(UserError, match="has no chat_template"):
        tok.chat.render([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("content", ["  padded answer \n", " ", ""])
def test_a_template_that_trims_contents_still_masks_what_it_writes(pairs, content):
    ours, hf = pairs["llama3"]  # `message['content'] | trim`
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": content}]
    ids, mask = ours.chat.render(messages)
    assert ids == hf.apply_chat_template(messages, return_dict=True)["input_ids"]
    assert ours.decode([t for t, m in zip(ids, mask) if m]) == content.strip() + "<|eot_id|>"
