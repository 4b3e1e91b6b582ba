"""Fuzzing the tokenizers: encode/decode round-trips arbitrary unicode exactly, for GPT-2 and for a
BPE trained on the embedded corpus, and special-token text in user input stays ordinary text.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.tokenizer import ENDOFTEXT, Tokenizer, get_tokenizer, train_bpe

from faultkit import FUZZ_EXAMPLES

FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# every code point but lone surrogates (which no UTF-8 text can hold): all planes, controls, combining marks
unicode_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)
SAMPLES = ["", " ", "\n\n\t", "héllo wörld", "日本語のテキスト", "👩‍👩‍👧‍👦🏳️‍🌈", "\u0000\u200b\ufeff",
           "a" * 500, "  leading and trailing  ", ENDOFTEXT, "<|im_start|>user\nhi<|im_end|>", "\r\n" * 20,
           "\U0010ffff\U000e0001", "ﬁ ﬂ Å Å"]


@pytest.fixture(scope="module")
def gpt2(gpt2_cache) -> Tokenizer:
    return get_tokenizer("gpt2")


@pytest.fixture(scope="module")
def bpe(tmp_path_factory) -> Tokenizer:
    from core.data.synthetic import iter_stories

    tok = train_bpe(list(iter_stories(7, 60_000)), 300, name="fuzz-bpe")
    # the saved and re-loaded folder is what checkpoints carry: fuzz that one
    return Tokenizer.load(tok.save(tmp_path_factory.mktemp("bpe")))


def _round_trip(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text)
    assert all(0 <= i < tok.n_vocab for i in ids)
    assert not any(tok.is_special(i) for i in ids), "user text produced a special token"
    assert tok.decode(ids) == text
    assert tok.encode_batch([text, text]) == [ids, ids]


@FUZZ
@given(text=unicode_text)
@example(text="")
def test_gpt2_round_trips_arbitrary_unicode(gpt2, text):
    _round_trip(gpt2, text)


@FUZZ
@given(text=unicode_text)
def test_trained_bpe_round_trips_arbitrary_unicode(bpe, text):
    _round_trip(bpe, text)


@pytest.mark.parametrize("text", SAMPLES)
def test_hand_picked_texts_round_trip(gpt2, bpe, text):
    _round_trip(gpt2, text)
    _round_trip(bpe, text)


@FUZZ
@given(ids=st.lists(st.integers(0, 299), max_size=60))
def test_decoding_any_ids_never_raises(bpe, ids):
    """A model can emit any id sequence (e.g. half of a multi-byte character): decode never raises."""
    assert isinstance(bpe.decode(ids), str)
