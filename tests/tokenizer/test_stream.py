"""Streaming detokenization: pieces of a growing id list join to exactly what the tokenizer decodes."""

from __future__ import annotations

import pytest
from hf_tokenizer_files import BUILDERS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.tokenizer import get_tokenizer, load_tokenizer
from core.tokenizer.stream import TextDecoder


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream-tokenizers")
    out = {name: load_tokenizer(build(root / name)) for name, build in BUILDERS.items()}
    out["gpt2"] = get_tokenizer("gpt2")
    return out


def streamed(tok, ids: list[int]) -> list[str]:
    dec = TextDecoder(tok)
    return [dec.add(i) for i in ids] + [dec.flush()]


BYTE_LEVEL = [name for name in BUILDERS if name != "llama2"] + ["gpt2"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(BYTE_LEVEL), picks=st.lists(st.integers(0, 10**6), max_size=24))
def test_pieces_join_to_the_decode_of_any_ids(tokenizers, name, picks):
    tok = tokenizers[name]
    ids = [p % tok.n_vocab for p in picks]  # any ids: split characters, invalid UTF-8, specials
    assert "".join(streamed(tok, ids)) == tok.decode(ids)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from([*BUILDERS, "gpt2"]), text=st.text(max_size=40))
def test_pieces_join_to_the_decode_of_encoded_text(tokenizers, name, text):
    # (byte fallback turns a whole run of byte tokens that is not UTF-8 into U+FFFDs, so for
    # SentencePiece-style tokenizers exactness holds for runs that are characters: what text encodes to)
    tok = tokenizers[name]
    ids = tok.encode(text)
    assert "".join(streamed(tok, ids)) == tok.decode(ids)


def test_a_sentencepiece_reply_starts_as_transformers_decodes_it(tokenizers):
    # Llama-2's decoder strips the space of the first "▁word": the reply's text must not start with it,
    # and later words keep theirs; a character split over byte-fallback tokens comes out once, whole
    from transformers import AutoTokenizer

    tok = tokenizers["llama2"]
    ids = tok.encode("Hello world, naïve 🙂 end")
    hf = AutoTokenizer.from_pretrained(str(tok.folder))
    pieces = streamed(tok, ids)
    assert "".join(pieces) == hf.decode(ids) == "Hello world, naïve 🙂 end"
    assert not any("\ufffd" in p for p in pieces)
    assert next(p for p in pieces if p).startswith("H")
    # what joining each token's bytes gives instead (the old way): the stripped space comes back
    assert b"".join(tok.token_bytes(i) for i in ids).decode() == " " + hf.decode(ids)
