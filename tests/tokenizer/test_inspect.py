"""Inspection on a small fixed text: exact spans, statistics, vocabulary entries, comparison and the
compression table (with unavailable encodings marked, not failing)."""

from __future__ import annotations

import pytest

from core.errors import UserError
from core.tokenizer import (
    Span,
    compare,
    compression_table,
    find_tokens,
    format_compression_table,
    format_spans_ansi,
    get_tokenizer,
    spans,
    stats,
    vocab_entry,
    vocab_page,
)

TEXT = "Hi 🦙 café\n\tok"


@pytest.fixture
def gpt2(gpt2_cache):
    return get_tokenizer("gpt2")


def test_spans_exact_on_gpt2(gpt2):
    assert spans(gpt2, TEXT) == [
        Span(17250, b"Hi", "Hi", 0, 2, False),
        Span(12520, b" \xf0\x9f", " \\xf0\\x9f", 2, 4, True),  # the llama emoji is split in three
        Span(99, b"\xa6", "\\xa6", 3, 4, True),
        Span(247, b"\x99", "\\x99", 3, 4, True),
        Span(40304, b" caf\xc3\xa9", " café", 4, 9, False),
        Span(198, b"\n", "\\n", 9, 10, False),
        Span(197, b"\t", "\\t", 10, 11, False),
        Span(482, b"ok", "ok", 11, 13, False),
    ]


def test_spans_with_allowed_special(gpt2):
    out = spans(gpt2, "a<|im_end|>", allowed_special="all")
    assert out == [Span(64, b"a", "a", 0, 1, False), Span(50258, b"<|im_end|>", "<|im_end|>", 1, 11, False, True)]
    assert [s.id for s in spans(gpt2, "a<|im_end|>")] != [64, 50258]


def test_spans_cover_the_text_on_the_trained_tokenizer(trained, corpus):
    text = corpus[0][:200] + " 🦙🦙"
    out = spans(trained, text)
    assert b"".join(s.bytes for s in out) == text.encode()
    assert out[0].start == 0 and out[-1].end == len(text)
    assert any(s.partial for s in out)  # the emoji is not in a 512-token vocabulary


def test_stats_exact(gpt2):
    s = stats(gpt2, TEXT)
    assert (s.n_tokens, s.n_chars, s.n_bytes, s.n_words) == (8, 13, 17, 4)
    assert s.chars_per_token == 13 / 8 and s.bytes_per_token == 17 / 8
    assert s.words_per_token == 0.5 and s.tokens_per_word == 2.0
    assert stats(gpt2, [TEXT, TEXT]).n_tokens == 16
    assert stats(gpt2, "").bytes_per_token == 0.0


def test_vocab_entries_and_merge_parents(gpt2, trained):
    hello = vocab_entry(gpt2, 31373)
    assert (hello.bytes, hello.rank, hello.parents) == (b"hello", 31373, (12758, 78))
    assert gpt2.token_bytes(12758) == b"hell" and gpt2.token_bytes(78) == b"o"
    assert vocab_entry(gpt2, 256).parents == (220, 83)  # " t" = " " + "t"
    assert vocab_entry(gpt2, 0).parents is None
    special = vocab_entry(gpt2, 50257)
    assert special.special and special.text == "<|im_start|>" and special.parents is None
    with pytest.raises(UserError, match="outside the vocabulary"):
        vocab_entry(gpt2, 50259)
    page = vocab_page(trained, 505, 10)
    assert [e.id for e in page] == [505, 506, 507, 508, 509, 510, 511]
    assert [e.special for e in page] == [False] * 4 + [True] * 3
    for e in page[:4]:
        a, b = e.parents
        assert trained.token_bytes(a) + trained.token_bytes(b) == e.bytes
    hits = find_tokens(trained, "river")
    assert hits and all(b"river" in h.bytes for h in hits)
    assert [h.id for h in find_tokens(gpt2, "im_end")] == [50258]


def test_compare_side_by_side(gpt2, trained):
    c = compare("The cat said hello", gpt2, trained)
    assert c.names == ("gpt2", "test-bpe")
    assert [s.id for s in c.spans[0]] == [464, 3797, 531, 23748]
    assert c.stats[0].n_tokens == 4
    assert b"".join(s.bytes for s in c.spans[1]) == b"The cat said hello"


def test_compression_table_marks_unavailable_encodings(gpt2, trained, corpus, monkeypatch):
    monkeypatch.setenv("LLMLAB_OFFLINE", "1")
    rows = compression_table(corpus[:100], [trained, "gpt2", "o200k_base"])
    by = {r.name: r for r in rows}
    assert list(by) == ["test-bpe", "gpt2", "o200k_base"]  # cl100k_base unavailable: not appended
    n_bytes = sum(len(d.encode()) for d in corpus[:100])
    g, t = by["gpt2"], by["test-bpe"]
    assert g.available and g.n_bytes == n_bytes and g.vs_gpt2 == 1.0 and g.vs_gpt4 is None
    assert g.n_tokens == sum(len(gpt2.encode(d)) for d in corpus[:100])
    assert t.bytes_per_token == n_bytes / t.n_tokens
    assert t.vs_gpt2 == g.n_tokens / t.n_tokens
    assert not by["o200k_base"].available and "LLMLAB_OFFLINE" in by["o200k_base"].error
    table = format_compression_table(rows)
    assert "o200k_base" in table and "unavailable" in table and f"{t.bytes_per_token:.3f}" in table


def test_format_spans_ansi(gpt2):
    out = format_spans_ansi(spans(gpt2, "hello world"))
    assert out == "\x1b[30;41mhello\x1b[0m\x1b[30;42m world\x1b[0m\n31373 995"
