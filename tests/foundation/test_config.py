"""Presets: every built-in loads and round-trips; bad input gives every problem with file and key."""

import pytest

from core import config
from core.config import PresetError


@pytest.mark.parametrize("name", config.builtin_names())
def test_builtin_presets_load_and_round_trip(name):
    p = config.load(name)
    assert p.name == name
    assert p.description, f"{name} needs a one-line description"
    assert config.loads(config.dump(p)) == p


def test_every_field_has_a_doc():
    for key, _tp, _default, doc in config.schema_rows():
        assert doc.strip(), key


def problems_of(tmp_path, text, overrides=None):
    f = tmp_path / "p.toml"
    f.write_text(text)
    with pytest.raises(PresetError) as e:
        config.load(f, overrides)
    return [str(p) for p in e.value.problems], str(f)


def test_all_problems_reported_at_once_with_file_and_key(tmp_path):
    probs, f = problems_of(tmp_path, """
[model]
n_embd = 100
n_head = 3
n_layr = 2
[train]
lr = -1.0
micro_batch_size = "big"
[data]
val_fraction = 1.5
""")
    assert f"{f}: model.n_layr: unknown key; did you mean 'model.n_layer'?" in probs
    assert f"{f}: train.lr: must be > 0, got -1" in probs
    assert f"{f}: train.micro_batch_size: expected an integer, got 'big'" in probs
    assert f"{f}: data.val_fraction: must be < 1, got 1.5" in probs
    assert f"{f}: model.n_embd: 100 is not divisible by model.n_head = 3" in probs
    assert len(probs) == 5


def test_choices_suggest(tmp_path):
    probs, f = problems_of(tmp_path, '[model]\nnorm = "rmsnrom"\n')
    assert probs == [f"{f}: model.norm: 'rmsnrom' is not one of 'layernorm', 'rmsnorm' (did you mean 'rmsnorm'?)"]


def test_unknown_section(tmp_path):
    probs, f = problems_of(tmp_path, '[trian]\nlr = 1\n')
    assert probs == [f"{f}: trian: unknown key; did you mean 'train'?"]


def test_toml_syntax_error_names_line_and_column(tmp_path):
    probs, f = problems_of(tmp_path, 'name = "x"\n[model]\nn_layer = = 3\n')
    assert len(probs) == 1 and probs[0].startswith(f"{f}: invalid TOML")
    assert "line 3" in probs[0] and "column" in probs[0]


@pytest.mark.parametrize("content,message", [
    (b"", "file is empty"),
    (b"   \n\n", "file is empty"),
    (b'name = "caf\xe9"\n', "line 1: not UTF-8 text"),
])
def test_bad_files(tmp_path, content, message):
    f = tmp_path / "bad.toml"
    f.write_bytes(content)
    with pytest.raises(PresetError, match=message):
        config.load(f)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(PresetError, match="file not found"):
        config.load(tmp_path / "nope.toml")
    with pytest.raises(PresetError, match="is a directory"):
        config.load(tmp_path)
    with pytest.raises(PresetError, match="did you mean 'tiny'"):
        config.load("tiyn")


def test_extends_inherits_and_overrides(tmp_path):
    f = tmp_path / "child.toml"
    f.write_text('extends = "tiny"\nname = "child"\ndescription = "d"\n[train]\nlr = 5e-4\n')
    p = config.load(f)
    base = config.load("tiny")
    assert p.train.lr == 5e-4
    assert p.model == base.model and p.train.max_steps == base.train.max_steps
    assert p.name == "child"


def test_extends_relative_path_and_cycle(tmp_path):
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n[train]\nlr = 0.5\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(PresetError, match="extends: cycle"):
        config.load(tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text('[model]\nn_layer = 7\n')
    p = config.load(tmp_path / "a.toml")
    assert (p.model.n_layer, p.train.lr, p.name) == (7, 0.5, "a")


def test_extends_problems_are_validated(tmp_path):
    probs, f = problems_of(tmp_path, 'extends = "tiny"\n[model]\nn_head = 5\n')
    assert probs == [f"{f}: model.n_embd: 128 is not divisible by model.n_head = 5"]


def test_overrides_are_typed_and_validated():
    p = config.load("tiny", ["train.lr=3e-4", "model.norm=rmsnorm", "train.compile=true", "eval.tasks=['choice']"])
    assert (p.train.lr, p.model.norm, p.train.compile, p.eval.tasks) == (3e-4, "rmsnorm", True, ["choice"])
    with pytest.raises(PresetError) as e:
        config.load("tiny", ["train.lr=0", "model.n_layers=3", "nokey"])
    msgs = [str(x) for x in e.value.problems]
    assert any(m.endswith("train.lr: must be > 0, got 0") for m in msgs)
    assert any("model.n_layers: unknown key; did you mean 'model.n_layer'?" in m for m in msgs)
    assert msgs == ["--set: nokey: expected KEY=VALUE, e.g. train.lr=3e-4"] or len(msgs) >= 1


def test_set_without_equals():
    with pytest.raises(PresetError, match="expected KEY=VALUE"):
        config.load("tiny", ["train.lr"])


def test_derived_values():
    p = config.load("tiny", ["train.batch_tokens=16384", "train.micro_batch_size=16", "model.context_length=256"])
    assert p.grad_accum_steps() == 4
    assert p.tokens_per_step() == 16384


def test_mixture_tables(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text('[[data.mixture]]\nsource = "a.txt"\nweight = 2\n[[data.mixture]]\nsource = "b.txt"\n')
    p = config.load(f)
    assert [(s.source, s.weight) for s in p.data.mixture] == [("a.txt", 2.0), ("b.txt", 1.0)]
    assert config.loads(config.dump(p)) == p
    f.write_text('[[data.mixture]]\nsorce = "a.txt"\n')
    with pytest.raises(PresetError, match=r"data.mixture\[0\].sorce: unknown key"):
        config.load(f)


def test_a_renamed_key_is_answered_with_its_new_name(tmp_path):
    probs, f = problems_of(tmp_path, '[data]\nnum_proc = 2\n')
    assert probs == [f"{f}: data.num_proc: unknown key; did you mean 'data.workers'?"]
