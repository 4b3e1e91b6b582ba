"""Statistics as plain data: length histograms against the context, truncation, class balance, field lengths."""

import pytest

from core.data import load_records, record_stats, text_stats
from core.data.shards import LENGTH_EDGES
from core.data.stats import length_histogram
from core.tokenizer.encodings import get_tokenizer


def hist_of(lengths):
    import numpy as np

    return np.histogram(lengths, bins=LENGTH_EDGES)[0].tolist()


def test_length_histogram_is_exact_at_powers_of_two():
    lengths = [1, 7, 8, 31, 32, 63, 64, 65, 127, 128, 255, 256, 257, 1000, 5000]
    rows = length_histogram(LENGTH_EDGES, hist_of(lengths), 64)
    assert [r["docs"] for r in rows] == [2, 1, 1, 2, 3, 2, 4]  # < 8, < 16, < 32, < 64, < 128, < 256, >= 256
    assert [r["max_tokens"] for r in rows] == [7, 15, 31, 63, 127, 255, None]
    assert sum(r["docs"] for r in rows) == len(lengths)


@pytest.fixture(scope="module")
def tok(gpt2_cache):
    return get_tokenizer("gpt2")


def test_text_stats_counts_tokens_and_truncation(tok):
    docs = ["one two three", "a " * 40, "hello"]
    s = text_stats(docs, tok, context_length=16)
    assert s["docs"] == 3 and s["chars"] == sum(map(len, docs))
    assert s["tokens"] == sum(len(tok.encode(d)) for d in docs)
    assert s["truncated_share"] == pytest.approx(1 / 3)
    assert s["top_tokens"][0]["text"] == " a" and s["top_tokens"][0]["count"] == 39
    assert text_stats(docs)["docs"] == 3 and "tokens" not in text_stats(docs)


def test_record_stats_class_balance_and_field_lengths(tok):
    s = record_stats(load_records("embedded:tinyworld-classify", "train"))
    assert [c["name"] for c in s["classes"]] == ["sad", "happy"]
    assert abs(s["classes"][0]["share"] - 0.5) < 0.05 and s["records"] == sum(c["count"] for c in s["classes"])
    s = record_stats(load_records("embedded:tinyworld-instruct", "val"), tok)
    assert set(s["fields"]) == {"instruction", "input", "output"}
    out = s["fields"]["output"]
    assert 1 <= out["tokens"]["min"] <= out["tokens"]["p50"] <= out["tokens"]["max"] <= 20
    s = record_stats(load_records("embedded:tinyworld-choice", "test"))
    assert s["chance"] == 0.25 and sorted(s["answers"]) == [0, 1, 2, 3]
