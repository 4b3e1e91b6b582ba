"""Fuzzing the preset loader: whatever a preset file or a `--set` says, the loader answers with a
Preset or a PresetError whose every line is `file: key: message`, never another exception.

Documents are random TOML trees whose keys mix the real schema (so values reach deep validation)
with arbitrary names; values are every TOML type, non-finite floats and huge integers included.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing

import tomli_w
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core import config
from core.config import Preset, PresetError

from faultkit import FUZZ_EXAMPLES

FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _schema_keys(cls: type = Preset) -> set[str]:
    out = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        out.add(f.name)
        tp = hints[f.name]
        if typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        if dataclasses.is_dataclass(tp):
            out |= _schema_keys(tp)
    return out


SCHEMA_KEYS = sorted(_schema_keys() | {"extends"})
DOTTED = sorted({row[0].replace("[]", "") for row in config.schema_rows()})

key = st.one_of(st.sampled_from(SCHEMA_KEYS), st.text(min_size=0, max_size=8))
scalar = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=20),
    st.sampled_from(["tiny", "bpe", "tiktoken", "gpt2", "rope", "swiglu", "lora", "instruct", "embedded:tinyworld",
                     "", "../../etc/passwd", "a\x00b"]),
    st.dates(), st.datetimes(), st.times(),
    st.datetimes(timezones=st.just(dt.timezone.utc)),
)
value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(key, inner, max_size=4)), max_leaves=12)
document = st.dictionaries(key, value, max_size=8)
# sections with schema keys inside, so that most values reach type and bounds checks
sectioned = st.dictionaries(st.sampled_from(["data", "tokenizer", "model", "train", "finetune", "eval", "generate",
                                             "chat"]),
                            st.dictionaries(key, value, max_size=6), max_size=4)


def check_error(e: PresetError, files: set[str]) -> None:
    """Every problem names one of `files`, and str() is one `file: key: message` line per problem."""
    assert e.problems, "a PresetError with no problem"
    lines = str(e).split("\n")
    assert len(lines) == len(e.problems)
    for p, line in zip(e.problems, lines):
        assert p.file in files, (p, files)
        assert p.message.strip(), p
        assert "\n" not in str(p) and "\r" not in str(p), p
        assert line == str(p)
        if p.key and p.key.isprintable() and p.file.isprintable() and p.message.isprintable():
            assert line == f"{p.file}: {p.key}: {p.message}"


def load_file(tmp_path, text: str | bytes, overrides=None) -> Preset | None:
    path = tmp_path / "fuzz.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        return config.load(str(path), overrides)
    except PresetError as e:
        check_error(e, {str(path), "--set"})
        return None


@FUZZ
@given(doc=st.one_of(document, sectioned))
def test_random_toml_documents_give_a_preset_or_preset_error(tmp_path, doc):
    p = load_file(tmp_path, tomli_w.dumps(doc))
    if p is not None:  # what loaded also dumps and loads back to the same preset
        assert config.loads(config.dump(p)) == dataclasses.replace(p)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_random_bytes_as_a_preset_file(tmp_path, raw):
    load_file(tmp_path, raw)


@FUZZ
@given(parent=st.one_of(st.text(max_size=30), st.integers(), st.lists(st.text(max_size=5), max_size=2),
                        st.sampled_from(["tiny", "fuzz.toml", "missing.toml", "/", ".", "a\x00b", "~nobody/x.toml"])))
@example(parent="~\x00")  # found by a 2000-example run: ValueError from expanduser
@example(parent="~0")      # a user this machine does not have: RuntimeError from expanduser
def test_random_extends(tmp_path, parent):
    load_file(tmp_path, tomli_w.dumps({"extends": parent, "train": {"max_steps": 3}}))


override_key = st.one_of(
    st.sampled_from(DOTTED),
    st.lists(st.one_of(st.sampled_from(SCHEMA_KEYS), st.text(max_size=6)), min_size=1, max_size=4).map(".".join),
)
override_value = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["1e400", "-1e400", "nan", "inf", "-0", "0", "1", "-1", "3e-4", "true", "false", "[]", "[1, 2]",
                     '["a", 1]', "{a = 1}", "{}", "1979-05-27", "1979-05-27T07:32:00Z", '"quoted"', "'x'",
                     "1\nx = 2", "[[[[[[[[[[1]]]]]]]]]]", "9" * 30, "0x10", "1_000"]),
)


@FUZZ
@given(items=st.lists(st.one_of(st.tuples(override_key, override_value).map(lambda kv: f"{kv[0]}={kv[1]}"),
                                st.text(max_size=15)), min_size=1, max_size=5))
def test_random_set_overrides(tmp_path, items):
    try:
        config.load("tiny", items)
    except PresetError as e:
        check_error(e, {str(config.presets_dir() / "tiny.toml"), "--set"})


def test_known_bad_values_each_name_their_key():
    """Exact messages for a few representative mistakes, all reported at once."""
    try:
        config.load("tiny", ["train.lr=nan", "model.n_head=0", "model.norm=batchnorm", "train.bogus=1", "modle.x=1"])
    except PresetError as e:
        keys = {p.key for p in e.problems}
        assert {"train.lr", "model.n_head", "model.norm", "train.bogus", "modle"} <= keys, keys
        check_error(e, {str(config.presets_dir() / "tiny.toml"), "--set"})
    else:
        raise AssertionError("bad overrides were accepted")


def test_deeply_nested_values(tmp_path):
    """Deep arrays in a file and in --set are errors about the key, not a RecursionError."""
    deep = "[" * 2000 + "]" * 2000
    load_file(tmp_path, f"[train]\nlr = {deep}\n")
    try:
        config.load("tiny", [f"train.lr={deep}"])
    except PresetError as e:
        check_error(e, {str(config.presets_dir() / "tiny.toml"), "--set"})
