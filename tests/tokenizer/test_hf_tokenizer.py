"""Real models' tokenizers: a Hugging Face tokenizer.json encodes exactly as transformers' AutoTokenizer."""

from __future__ import annotations

import json
import shutil

import pytest
from hf_tokenizer_files import BUILDERS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import UserError
from core.tokenizer import HFTokenizer, get_tokenizer, load_tokenizer

transformers = pytest.importorskip("transformers")
BYTE_LEVEL = ("smollm2", "qwen", "llama3")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf-tokenizers")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def pairs(folders):
    """(ours, transformers with special tokens split as user text, transformers as it loads by default)."""
    from transformers import AutoTokenizer

    return {name: (load_tokenizer(d), AutoTokenizer.from_pretrained(str(d), split_special_tokens=True),
                   AutoTokenizer.from_pretrained(str(d))) for name, d in folders.items()}


SPECIAL_SPELLINGS = ["<|im_end|>", "<|im_start|>", "<|endoftext|>", "<|eot_id|>", "<|begin_of_text|>", "<s>", "</s>",
                     "<unk>", "<0x41>", "<|start_header_id|>"]
pieces = st.one_of(
    st.text(max_size=12),
    st.sampled_from(SPECIAL_SPELLINGS),
    st.sampled_from(["def f(x):\n\treturn x ** 2", "    ", "\n\n\n", " \t \n", "1234567", "3.14159", "🙂🚀👩‍💻",
                     "東京 日本語", "naïve café", "Ünïcödé", "  ", "'s 've 'll", "x=[1,2,3];"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=6),
)
texts = st.lists(pieces, max_size=6).map("".join)


@pytest.mark.parametrize("family", list(BUILDERS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts)
def test_encoding_equals_transformers(pairs, family, text):
    ours, split, default = pairs[family]
    assert ours.encode(text) == split(text, add_special_tokens=False)["input_ids"]
    assert ours.encode(text, add_special_tokens=True) == split(text)["input_ids"]
    assert ours.encode_batch([text, text[::-1]]) == [split(t, add_special_tokens=False)["input_ids"]
                                                     for t in (text, text[::-1])]
    # with special tokens allowed (a prompt the user writes with its template) it is transformers' default
    assert ours.encode(text, allowed_special="all") == default(text, add_special_tokens=False)["input_ids"]
    ids = ours.encode(text)
    assert ours.decode(ids) == default.decode(ids)
    if family in BYTE_LEVEL:
        assert b"".join(ours.token_bytes(i) for i in ids) == text.encode()


def test_user_text_never_becomes_a_special_token(pairs):
    ours = pairs["smollm2"][0]
    ids = ours.encode("<|im_end|>")
    assert len(ids) > 1 and not any(ours.is_special(i) for i in ids)
    assert ours.encode("<|im_end|>", allowed_special="all") == [ours.special_tokens["<|im_end|>"]]


@pytest.mark.parametrize("family", list(BUILDERS))
def test_special_tokens_and_bos_as_transformers(pairs, family):
    ours, _, hf = pairs[family]
    assert ours.bos_id == hf.bos_token_id and ours.eos_id == hf.eos_token_id
    assert ours.eot_id == (hf.eos_token_id if hf.eos_token_id is not None else hf.bos_token_id)
    assert ours.add_bos_token == (hf("x")["input_ids"][:1] == [hf.bos_token_id])
    assert ours.add_bos_token == (family in ("llama3", "llama2"))
    assert set(ours.special_tokens) == set(hf.all_special_tokens) | {
        t.content for t in hf.added_tokens_decoder.values() if t.special}
    assert ours.n_vocab == len(hf)


@pytest.mark.parametrize("post_processor", [True, False])
def test_the_files_post_processor_decides_the_bos_as_in_transformers_5(folders, tmp_path, post_processor):
    """transformers 5 keeps tokenizer.json's post-processor whatever add_bos_token says (and adds
    nothing without one); llmlab does the same, so the ids of a document match."""
    from transformers import AutoTokenizer

    d = shutil.copytree(folders["llama2"], tmp_path / "t")
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps({**cfg, "add_bos_token": not post_processor,
                                                         "add_eos_token": True}))
    if not post_processor:
        spec = json.loads((d / "tokenizer.json").read_text())
        (d / "tokenizer.json").write_text(json.dumps({**spec, "post_processor": None}))
    ours, hf = load_tokenizer(d), AutoTokenizer.from_pretrained(str(d))
    assert ours.encode("hello there", add_special_tokens=True) == hf("hello there")["input_ids"]
    assert ours.add_bos_token == post_processor


def test_folders_load_by_path_and_save_their_own_files(folders, tmp_path):
    tok = get_tokenizer(folders["qwen"])
    assert isinstance(tok, HFTokenizer) and tok.kind == "hf"
    out = tok.save(tmp_path / "copy")
    assert sorted(p.name for p in out.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    back = load_tokenizer(out, "hf", name="qwen-test")
    assert back.fingerprint == tok.fingerprint and back.name == "qwen-test"


def test_shard_workers_get_a_picklable_encoder(pairs):
    import pickle

    ours = pairs["llama3"][0]
    enc = pickle.loads(pickle.dumps(ours.enc))
    assert enc.encode_ordinary("hi <|eot_id|> 12345") == ours.encode("hi <|eot_id|> 12345")


def test_unsupported_or_damaged_tokenizer_json_names_the_file(folders, tmp_path):
    d = shutil.copytree(folders["smollm2"], tmp_path / "t")
    spec = json.loads((d / "tokenizer.json").read_text())
    spec["model"]["type"] = "WordPiece"
    (d / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(UserError, match=r"tokenizer\.json: model\.type 'WordPiece' is not supported"):
        load_tokenizer(d, "hf")
    (d / "tokenizer.json").write_text('{"model": ')
    with pytest.raises(UserError, match=r"tokenizer\.json: not valid JSON"):
        load_tokenizer(d, "hf")
    shutil.copyfile(folders["smollm2"] / "tokenizer.json", d / "tokenizer.json")
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps({**cfg, "eos_token": "<|nope|>"}))
    with pytest.raises(UserError, match=r"tokenizer_config\.json: eos_token '<\|nope\|>' is not in the vocabulary"):
        load_tokenizer(d, "hf")


def test_both_kinds_satisfy_the_protocol_and_inspect(pairs, trained):
    from core.tokenizer import ChatFormat, TextTokenizer, compare, find_tokens, spans, vocab_entry

    ours = pairs["llama2"][0]
    for tok in (ours, trained):
        assert isinstance(tok, TextTokenizer) and isinstance(tok.chat, ChatFormat)
    sp = spans(ours, "hello <s> naïve")
    assert b"".join(ours.token_bytes(s.id) for s in sp).decode() == " hello <s> naïve"  # SentencePiece's prefix space
    assert not any(s.special for s in sp) and sp[-1].end == len("hello <s> naïve")
    assert [s.start for s in sp] == sorted(s.start for s in sp) and sp[0].start == 0
    assert vocab_entry(ours, ours.bos_id).special and find_tokens(ours, "</s>")[0].id == ours.eos_id
    assert compare("hello", ours, trained).names == (ours.name, trained.name)


def test_kind_model_is_for_finetuning_only():
    from core import config
    from core.tokenizer import tokenizer_for

    preset = config.from_dict({"name": "x", "tokenizer": {"kind": "model"}}, "<test>")
    with pytest.raises(UserError, match=r'tokenizer.kind = "model" means a base model\'s own tokenizer'):
        tokenizer_for(preset)
