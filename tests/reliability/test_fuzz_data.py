"""Fuzzing the data readers: random bytes in .txt, .jsonl, .json and .csv files either read as
documents (strings) or stop with a UserError naming the file, through the same code a preset's
`data.source` and a finetuning set's `finetune.data` go through; never another exception.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.config import DataConfig, FilterConfig
from core.data import Documents, load_records
from core.errors import UserError

from faultkit import FUZZ_EXAMPLES

FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# bytes that are mostly near-valid for the format, so the fuzzer gets past the first check
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30))
json_value = st.recursive(json_scalar, lambda x: st.one_of(st.lists(x, max_size=3),
                                                           st.dictionaries(st.text(max_size=5), x, max_size=3)),
                          max_leaves=8)
jsonl_bytes = st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["text", "label", "instruction", "output", "prompt", "chosen", "rejected", "x"]),
                    json_value, max_size=4).map(json.dumps),
    json_value.map(json.dumps),
    st.text(max_size=30),
), max_size=6).map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass"))
csv_bytes = st.lists(st.lists(st.text(alphabet=st.characters(), max_size=12), min_size=1, max_size=4)
                     .map(lambda cells: ",".join(cells)), max_size=6).map(
    lambda rows: ("text,label\n" + "\n".join(rows)).encode("utf-8", "surrogatepass"))
raw_bytes = st.binary(max_size=400)


def read_all(path, **data) -> list[str]:
    """Every document of a preset whose data.source is `path` (filters included)."""
    try:
        docs = list(Documents(DataConfig(source=str(path), **data)))
    except UserError as e:
        assert str(path) in str(e), f"the error does not name the file: {e}"
        return []
    assert all(isinstance(d, str) for d in docs)
    return docs


def read_records(path) -> None:
    try:
        rows = load_records(str(path), "all")
    except UserError as e:
        assert str(path) in str(e), f"the error does not name the file: {e}"
        return
    assert all(isinstance(r, dict) for r in rows)


@FUZZ
@given(raw=st.one_of(raw_bytes, st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))),
       mode=st.sampled_from(["file", "block", "line"]))
def test_random_bytes_in_a_txt_file(tmp_path, raw, mode):
    path = tmp_path / "corpus.txt"
    path.write_bytes(raw)
    read_all(path, txt_mode=mode, filters=FilterConfig(dedup_near=True, min_words=1))


@FUZZ
@given(raw=st.one_of(raw_bytes, jsonl_bytes))
@example(raw=b'{"text": ' + b"1" * 5000 + b"}")     # an integer longer than Python converts
@example(raw=b"[" * 100_000)                         # nesting deeper than the JSON parser recurses
@example(raw=b'{"text": "a\\ud800b"}')               # an escaped lone surrogate
@example(raw=b'{"text": "a", "label": "--5"}\n{"text": "b", "label": "\xc2\xb2"}')  # not int() labels
@example(raw=b'{}\n{"label": null}')                  # a label in some rows only
def test_random_bytes_in_a_jsonl_file(tmp_path, raw):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(raw)
    read_all(path)
    read_records(path)


@FUZZ
@given(raw=st.one_of(raw_bytes, jsonl_bytes))
@example(raw=b"1" * 5000)
@example(raw=b"[" * 100_000)
def test_random_bytes_in_a_json_file(tmp_path, raw):
    path = tmp_path / "corpus.json"
    path.write_bytes(raw)
    read_all(path)
    read_records(path)


@FUZZ
@given(raw=st.one_of(raw_bytes, csv_bytes))
@example(raw=b'text\n"' + b"x" * 200_000 + b'"\n')    # a field beyond csv's default field limit
@example(raw=b"text\n\x00a\x00\n")
def test_random_bytes_in_a_csv_file(tmp_path, raw):
    path = tmp_path / "corpus.csv"
    path.write_bytes(raw)
    read_all(path)
    read_records(path)


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv"])
def test_text_survives_reading(tmp_path, suffix):
    """What the readers return for well-formed files is the text that was written (no silent change)."""
    texts = ["plain", "ünïcödé ✓ 🚀", 'quote " and, comma', "tab\tinside"]
    path = tmp_path / f"corpus{suffix}"
    if suffix == ".txt":
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
        got = read_all(path, txt_mode="line")
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
        got = read_all(path)
    else:
        import csv

        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text"])
            w.writerows([[t] for t in texts])
        got = read_all(path)
    assert got == texts
