"""The real SmolLM2-135M-Instruct tokenizer and template (from its GGUF file, through transformers) against ours."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from test_hf_tokenizer import texts

from core.tokenizer import load_tokenizer

pytestmark = pytest.mark.slow
pytest.importorskip("transformers")
pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def smol(tmp_path_factory, smollm2_file):
    """(ours, transformers with user text split, transformers as loaded) of the GGUF's tokenizer saved to a folder."""
    from transformers import AutoTokenizer

    gguf = smollm2_file
    hf = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    folder = tmp_path_factory.mktemp("smollm2-tokenizer")
    hf.save_pretrained(str(folder))
    return load_tokenizer(folder), AutoTokenizer.from_pretrained(str(folder), split_special_tokens=True), hf


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts)
def test_encoding_equals_transformers(smol, text):
    ours, split, hf = smol
    assert ours.encode(text) == split(text, add_special_tokens=False)["input_ids"]
    assert ours.encode(text, allowed_special="all") == hf(text, add_special_tokens=False)["input_ids"]
    ids = ours.encode(text)  # (the GGUF's vocabulary lacks some bytes, e.g. 0xF1: both tokenizers drop them)
    assert b"".join(ours.token_bytes(i) for i in ids).decode("utf-8", "replace") == hf.decode(ids) == ours.decode(ids)


def test_template_ids_mask_and_stop(smol):
    ours, _, hf = smol
    conv = [{"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Italy?"},
            {"role": "assistant", "content": "Rome."},
            {"role": "user", "content": "Thanks!"},
            {"role": "assistant", "content": "You're welcome."}]
    for gen in (False, True):
        assert ours.chat.render_text(conv, gen) == hf.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
        assert ours.chat.render(conv, gen)[0] == hf.apply_chat_template(conv, add_generation_prompt=gen,
                                                                         return_dict=True)["input_ids"]
    ids, mask = ours.chat.render(conv)
    assert ours.decode([t for t, m in zip(ids, mask) if m]) == "Paris.<|im_end|>Rome.<|im_end|>You're welcome.<|im_end|>"
    assert ours.chat.stop_ids == [hf.convert_tokens_to_ids("<|im_end|>")] and ours.n_vocab == 49152
