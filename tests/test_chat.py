"""core.chat: prompts through the chat template, history trimming, streaming with ids, cancel, JSONL, the REPL."""

from __future__ import annotations

import io
import json
import threading

import pytest
import torch

from core.chat import Conversation, Sampling
from core.cli_chat import chat_repl
from core.checkpoint import write_checkpoint
from core.config import ModelConfig
from core.errors import UserError
from core.model.gpt import GPT
from core.tokenizer import get_tokenizer


@pytest.fixture(scope="module")
def tok(gpt2_cache):
    return get_tokenizer("gpt2")


def tiny_model(tok, ctx: int = 64, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, context_length=ctx, vocab_size=tok.n_vocab))


@pytest.fixture
def ckpt(tmp_path, tok):
    return write_checkpoint(tmp_path / "ckpt", 0, tiny_model(tok), tokenizer=tok,
                            lineage={"stage": "pretrain", "preset": "t", "init": "random"})


def test_prompt_is_the_template_with_generation_prompt(tok):
    conv = Conversation(tiny_model(tok), tok, system_prompt="Be brief.")
    conv.add_user("Hi there")
    ids, dropped = conv.prompt_ids()
    expected, _ = tok.chat.render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
                                  add_generation_prompt=True)
    assert ids == expected and dropped == 0
    assert conv.template_text().endswith("<|im_start|>assistant\n")
    assert tok.decode(ids) == conv.template_text()


def test_history_is_trimmed_to_the_limit_keeping_system_and_last_turn(tok):
    conv = Conversation(tiny_model(tok, ctx=64), tok, system_prompt="S", max_history_tokens=40,
                        sampling=Sampling(max_new_tokens=8))
    for i in range(6):
        conv.messages += [{"role": "user", "content": f"question number {i}"},
                          {"role": "assistant", "content": f"answer number {i}"}]
    conv.add_user("the last question")
    messages, dropped = conv.fitted_messages()
    ids, _ = conv.prompt_ids()
    assert len(ids) <= 40
    assert messages[0] == {"role": "system", "content": "S"}
    assert messages[1]["role"] == "user"  # never starts on an orphaned answer
    assert messages[-1]["content"] == "the last question"
    assert dropped == 13 - (len(messages) - 1) and dropped > 0
    # without an explicit limit the context (less the reply's room, at most half) bounds it
    conv.max_history_tokens = 0
    assert conv.history_limit() == 64 - 8
    conv.sampling.max_new_tokens = 500
    assert conv.history_limit() == 32


def test_stream_yields_text_with_its_ids_and_records_the_reply(tok):
    conv = Conversation(tiny_model(tok), tok, sampling=Sampling(temperature=0, max_new_tokens=12))
    conv.add_user("Hello")
    pieces = list(conv.stream_reply())
    ids = [i for p in pieces for i in p.ids]
    text = "".join(p.text for p in pieces)
    assert ids and len(ids) <= 12
    assert tok.decode(ids) == text
    last = conv.messages[-1]
    assert last["role"] == "assistant" and last["content"] == text and last["tokens"] == len(ids)
    st = conv.last_stats
    assert st.tokens == len(ids) and st.tokens_per_s > 0 and st.first_token_s > 0
    assert st.ended in ("max_tokens", "end")
    # greedy is deterministic: the same history gives the same reply
    conv2 = Conversation(tiny_model(tok), tok, sampling=Sampling(temperature=0, max_new_tokens=12))
    assert conv2.reply("Hello") == text


def test_an_hf_tokenizers_reply_is_what_transformers_decodes(tmp_path):
    # the text comes from the tokenizer's own decode, not from joining token bytes
    from hf_tokenizer_files import smollm2_folder
    from transformers import AutoTokenizer

    from core.tokenizer import load_tokenizer

    folder = smollm2_folder(tmp_path / "tok", vocab_size=400)
    hf_tok = load_tokenizer(folder)
    conv = Conversation(tiny_model(hf_tok), hf_tok, sampling=Sampling(temperature=1.0, top_k=0, max_new_tokens=24,
                                                                     seed=5))
    conv.add_user("Hello")
    pieces = list(conv.stream_reply())
    ids = [i for p in pieces for i in p.ids]
    assert all(p.text for p in pieces) and len(ids) == conv.last_stats.tokens
    assert "".join(p.text for p in pieces) == AutoTokenizer.from_pretrained(str(folder)).decode(ids)


def test_cancel_stops_midway_and_keeps_the_partial_reply(tok):
    conv = Conversation(tiny_model(tok), tok, sampling=Sampling(temperature=1.0, top_k=0, max_new_tokens=200, seed=3))
    conv.add_user("Tell me a long story")
    cancel = threading.Event()
    got = []
    for piece in conv.stream_reply(cancel):
        got.append(piece)
        if len(got) == 5:
            cancel.set()
    assert len(got) == 5
    assert conv.last_stats.ended == "cancelled" and conv.last_stats.tokens == sum(len(p.ids) for p in got)
    assert conv.messages[-1]["content"] == "".join(p.text for p in got)
    assert conv.messages[-1]["ended"] == "cancelled"


def test_sampling_overrides_and_bad_values(tok):
    conv = Conversation(tiny_model(tok), tok)
    conv.add_user("x")
    out = list(conv.stream_reply(max_new_tokens=3, temperature=0))
    assert sum(len(p.ids) for p in out) <= 3
    conv.add_user("y")
    with pytest.raises(UserError, match="top_p"):
        list(conv.stream_reply(top_p=0.0))
    with pytest.raises(UserError, match="nothing to answer"):
        conv.messages.append({"role": "assistant", "content": "z"})
        list(conv.stream_reply())


def test_save_and_load_jsonl_round_trip(tmp_path, tok):
    conv = Conversation(tiny_model(tok), tok, system_prompt="You are terse.",
                        sampling=Sampling(temperature=0.3, top_k=7, top_p=0.9, max_new_tokens=5))
    conv.reply("first")
    conv.reply("second")
    path = conv.save(tmp_path / "c.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["format"] == "llmlab-conversation" and rows[0]["sampling"]["top_k"] == 7
    assert [r["role"] for r in rows[1:]] == ["system", "user", "assistant", "user", "assistant"]
    other = Conversation(tiny_model(tok), tok)
    other.load(path)
    assert other.system_prompt == "You are terse."
    assert other.sampling == conv.sampling
    assert [m["content"] for m in other.messages] == [m["content"] for m in conv.messages]
    # a plain chat JSONL without header loads too; a broken line is named
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"role": "user", "content": "a"}\n{"role": "assistant", "content": "b"}\n')
    other.load(plain)
    assert other.system_prompt == "" and len(other.messages) == 2
    plain.write_text('{"role": "user", "content": "a"}\nnot json\n')
    with pytest.raises(UserError, match="plain.jsonl:2"):
        other.load(plain)


def test_open_a_checkpoint_and_refuse_a_classifier(tmp_path, tok, ckpt):
    conv = Conversation.open(ckpt, device="cpu")
    assert conv.context_length == 64 and conv.meta["path"] == str(ckpt)
    model = tiny_model(tok)
    model.set_head(2, bias=True, kind="classify")
    clf = write_checkpoint(tmp_path / "clf", 0, model, tokenizer=tok)
    with pytest.raises(UserError, match="classify checkpoint"):
        Conversation.open(clf, device="cpu")


def test_chat_repl_streams_and_handles_commands(tmp_path, ckpt):
    script = "/set temperature=0\n/system Be kind.\nhello\n/template\n/save " + str(tmp_path / "s.jsonl") + "\n/quit\n"
    out = io.StringIO()
    code = chat_repl(str(ckpt), ["generate.max_new_tokens=4"], stdin=io.StringIO(script), stdout=out, device="cpu")
    text = out.getvalue()
    assert code == 0
    assert "(temperature = 0.0)" in text and "(system prompt set)" in text
    assert "tokens/s" in text
    assert "<|im_start|>system\nBe kind.<|im_end|>" in text
    saved = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert saved[0]["sampling"]["max_new_tokens"] == 4 and saved[2] == {"role": "user", "content": "hello"}
    out = io.StringIO()
    assert chat_repl(str(ckpt), [], stdin=io.StringIO("/set top_p=2\n"), stdout=out, device="cpu") == 0
    assert "error: /set: top_p: must be <= 1, got 2" in out.getvalue()


def test_chat_repl_refuses_what_is_not_a_model(workspace):
    with pytest.raises(UserError, match="not a checkpoint"):
        chat_repl(str(workspace / "nothing"), [], stdin=io.StringIO(""), stdout=io.StringIO())
