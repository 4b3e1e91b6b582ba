"""Built-in tiktoken encodings (offline), special tokens in text, save/load, bad names and files."""

from __future__ import annotations

import time

import pytest

from core.errors import UserError
from core.tokenizer import EncodingUnavailable, Tokenizer, get_tokenizer


def test_gpt2_offline_with_chat_tokens_after_its_vocabulary(gpt2_cache):
    tok = get_tokenizer("gpt2")
    assert tok.encode("hello world") == [31373, 995]
    assert tok.eot_id == 50256
    assert tok.special_tokens == {"<|endoftext|>": 50256, "<|im_start|>": 50257, "<|im_end|>": 50258}
    assert tok.n_vocab == 50259
    assert tok.decode([31373, 995]) == "hello world"


def test_special_tokens_in_text_are_ordinary_unless_allowed(gpt2_cache):
    tok = get_tokenizer("gpt2")
    text = "a<|endoftext|>b<|im_end|>"
    plain = tok.encode(text)
    assert 50256 not in plain and 50258 not in plain
    assert tok.decode(plain) == text
    assert tok.encode(text, allowed_special="all") == [64, 50256, 65, 50258]
    only_eot = tok.encode(text, allowed_special={"<|endoftext|>"})
    assert 50256 in only_eot and 50258 not in only_eot
    assert tok.encode_batch([text, "hello world"]) == [plain, [31373, 995]]


def test_unknown_encoding_lists_the_known_ones():
    with pytest.raises(UserError) as e:
        get_tokenizer("gtp2")
    msg = str(e.value)
    assert "did you mean 'gpt2'" in msg
    for name in ("gpt2", "r50k_base", "p50k_base", "cl100k_base", "o200k_base"):
        assert name in msg
    with pytest.raises(UserError, match="no such tokenizer folder"):
        get_tokenizer("./not/here")


def test_offline_encoding_fails_fast_with_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("LLMLAB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(EncodingUnavailable) as e:
        get_tokenizer("cl100k_base")
    assert time.monotonic() - t0 < 2
    msg = str(e.value)
    assert "could not be fetched" in msg and "TIKTOKEN_CACHE_DIR" in msg and "saved tokenizer folder" in msg
    assert "cl100k_base.tiktoken" in msg and str(tmp_path / "empty-cache") in msg
    assert isinstance(e.value, UserError)


def test_save_and_load_round_trip(gpt2_cache, tmp_path):
    tok = get_tokenizer("gpt2")
    tok.save(tmp_path / "tok")
    back = get_tokenizer(str(tmp_path / "tok"))
    assert isinstance(back, Tokenizer)
    assert back.fingerprint == tok.fingerprint
    assert back.special_tokens == tok.special_tokens and back.n_vocab == tok.n_vocab
    text = "Tokenizers split text ☃ into    ids\n\n\tdef f(x): return x**2"
    assert back.encode(text) == tok.encode(text)
    first = (tmp_path / "tok" / "tokenizer.tiktoken").read_text().splitlines()[0]
    assert first == "IQ== 0"  # b"!" has rank 0 in GPT-2, as in r50k_base.tiktoken


def test_damaged_saved_tokenizers_are_user_errors(trained, tmp_path):
    folder = trained.save(tmp_path / "tok")
    (folder / "llmlab_tokenizer.json").unlink()
    with pytest.raises(UserError, match="llmlab_tokenizer.json is missing"):
        Tokenizer.load(folder)
    trained.save(folder)
    with open(folder / "tokenizer.tiktoken", "a") as f:
        f.write("not-a-line\n")
    with pytest.raises(UserError, match="line 510: expected 'BASE64TOKEN RANK'"):
        Tokenizer.load(folder)
    (folder / "tokenizer.tiktoken").write_text("")
    trained.save(folder)
    (folder / "llmlab_tokenizer.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        get_tokenizer(folder)
    with pytest.raises(UserError, match="is a file"):
        get_tokenizer(folder / "llmlab_tokenizer.json")


def test_folders_saved_under_the_old_metadata_name_still_load(trained, tmp_path):
    """Before real models' tokenizer.json could share a folder, our metadata file had that name."""
    folder = trained.save(tmp_path / "tok")
    (folder / "llmlab_tokenizer.json").rename(folder / "tokenizer.json")
    back = get_tokenizer(folder)
    assert isinstance(back, Tokenizer) and back.fingerprint == trained.fingerprint


def test_tokenizers_pickle_for_worker_processes(trained):
    import pickle
    back = pickle.loads(pickle.dumps(trained))
    assert back.fingerprint == trained.fingerprint
    assert back.encode("<|im_end|>", allowed_special="all") == [511]
    assert back.chat.render([{"role": "user", "content": "hi"}]) == trained.chat.render([{"role": "user", "content": "hi"}])
