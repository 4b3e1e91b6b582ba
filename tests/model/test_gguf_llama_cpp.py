"""The exported GGUF in llama.cpp itself (llama-cpp-python): the same tokens, the same chat prompt,
and for f32/f16 the same greedy continuation as ours, token for token."""

import numpy as np
import pytest
import torch

from core.checkpoint import load_model, write_checkpoint
from core.data.synthetic import iter_stories
from core.generate import generate
from core.model.gguf_export import export_gguf
from core.model.gguf_import import read_gguf
from core.tokenizer.train import train_bpe
from tests.model.export_helpers import (
    LLAMA3_JINJA, LLAMA_STYLE, MESSAGES, hf_kind_checkpoint, hf_tokenizer_folder, llama_cpp_model, our_checkpoint,
    sharp_model, trained_bpe)

llama_cpp = pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed (a source build of several minutes: "
                        "pip install llama-cpp-python); the GGUF is still checked by test_gguf_export.py")
pytestmark = pytest.mark.slow

TEXT = ("Once upon a time, Amy's dog ran 1,234 miles!\n\n  It's 3.14 o'clock... naïve café — 日本語\t\tend   \n"
        "She said: \"WE'LL go\", and they'd gone.\r\n")


def load(path, **kw):
    return llama_cpp_model(path, n_ctx=64, n_threads=1, n_batch=64, **kw)


def greedy_llama_cpp(llm, ids: list[int], n: int) -> list[int]:
    out = []
    for t in llm.generate(ids, temp=0.0, top_k=1, reset=True):
        out.append(t)
        if len(out) == n:
            return out
    return out


@pytest.mark.parametrize("gguf_type", ["f32", "f16"])
@pytest.mark.parametrize("style", [{}, LLAMA_STYLE], ids=["gpt2", "llama"])
def test_greedy_continuation_equals_ours(tmp_path, style, gguf_type):
    tok = trained_bpe()
    ckpt = our_checkpoint(tmp_path, style)
    r = export_gguf(ckpt, tmp_path / "m.gguf", gguf_type)
    model, _, _ = load_model(ckpt)
    llm = load(r.path)
    prompt = tok.encode("Once upon a time, a kind girl")
    assert llm.tokenize(b"Once upon a time, a kind girl", add_bos=False, special=False) == prompt
    ours = list(generate(model, prompt, max_new_tokens=24, temperature=0, stop_ids=()))
    assert greedy_llama_cpp(llm, prompt, 24) == ours


def test_tokenization_and_chat_prompt_equal_ours(tmp_path):
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    tok = trained_bpe()
    r = export_gguf(our_checkpoint(tmp_path, LLAMA_STYLE), tmp_path / "m.gguf", "q8_0", measure=False)
    llm = load(r.path, vocab_only=True)
    for line in TEXT.splitlines(keepends=True) + [TEXT]:
        assert llm.tokenize(line.encode(), add_bos=False, special=False) == tok.encode(line), line
    assert llm.detokenize(tok.encode(TEXT)).decode() == TEXT
    assert llm.token_eos() == tok.eot_id
    text = lambda i: llm.detokenize([i], special=True).decode()  # noqa: E731
    fmt = Jinja2ChatFormatter(llm.metadata["tokenizer.chat_template"], eos_token=text(llm.token_eos()),
                              bos_token=text(llm.token_bos()))
    prompt = fmt(messages=MESSAGES).prompt
    assert prompt == tok.chat.render_text(MESSAGES, add_generation_prompt=True)
    assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == \
        tok.chat.render(MESSAGES, add_generation_prompt=True)[0]


def test_splitting_equals_ours_where_pre_tokenizers_differ(tmp_path):
    """A BPE trained on text whose pieces only our (Llama-3) split makes: punctuation glued to a word,
    runs of newlines, 3-digit groups, upper-case contractions. Another pre-tokenizer type would
    split them apart and give other ids."""
    odd = "(hello) [world] 1234567 IT'S WE'LL\n\n\n  \"quoted\" x+y=z  \t\n"
    tok = train_bpe(list(iter_stories(2, 20_000)) + [odd * 3] * 200, 400, name="odd")
    ckpt = write_checkpoint(tmp_path / "odd", 1, sharp_model(tok.n_vocab), tokenizer=tok)
    llm = load(export_gguf(ckpt, tmp_path / "odd.gguf", "f16").path, vocab_only=True)
    for text in (odd, odd * 2, "Tom said (hello)\n\n\nIT'S 98765", TEXT):
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == tok.encode(text), text


def test_gpt2_encoding_tokenizes_the_same(tmp_path):
    from core.tokenizer import get_tokenizer
    from core.tokenizer.encodings import EncodingUnavailable

    try:
        tok = get_tokenizer("gpt2")
    except EncodingUnavailable as e:
        pytest.skip(f"the gpt2 encoding's files are not cached here: {e.reason}")
    r = export_gguf(our_checkpoint(tmp_path, {}, tokenizer=tok, std=0.02), tmp_path / "g.gguf", "f16")
    assert r.pre_tokenizer == "gpt-2"
    llm = load(r.path, vocab_only=True)
    for line in TEXT.splitlines(keepends=True) + [TEXT]:
        assert llm.tokenize(line.encode(), add_bos=False, special=False) == tok.encode(line), line


def test_q8_0_logits_in_llama_cpp_match_our_dequantized_reading(tmp_path):
    tok = trained_bpe()
    ckpt = our_checkpoint(tmp_path, LLAMA_STYLE, std=0.05)
    r = export_gguf(ckpt, tmp_path / "q.gguf", "q8_0", measure=False)
    model, _, _ = load_model(ckpt)
    ids = tok.encode("Once upon a time, a kind girl named Amy lived in a house by the hill.")[:40]
    llm = load(r.path, logits_all=True)
    llm.eval(ids)
    theirs = torch.from_numpy(np.array(llm.scores[: len(ids)], dtype=np.float32))
    with torch.no_grad():
        ours = read_gguf(r.path, model.config)[0](torch.tensor([ids]))[0][0]
    # llama.cpp also rounds the activations to 8 bits in its q8_0 products: close, not equal
    assert (theirs.argmax(-1) == ours.argmax(-1)).float().mean() > 0.9
    assert (theirs - ours).abs().max() < 0.05 * ours.abs().max()


def test_imported_hf_tokenizer_tokenizes_the_same_and_q4_0_runs(tmp_path):
    from tokenizers import Tokenizer

    folder = hf_tokenizer_folder(tmp_path, LLAMA3_JINJA)
    hf = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ckpt = hf_kind_checkpoint(tmp_path, folder, sharp_model(405, **LLAMA_STYLE))
    r = export_gguf(ckpt, tmp_path / "h.gguf", "q4_0", measure=False)
    llm = load(r.path)
    for line in TEXT.splitlines(keepends=True) + [TEXT]:
        assert llm.tokenize(line.encode(), add_bos=False, special=False) == \
            hf.encode(line, add_special_tokens=False).ids, line
    assert llm.token_bos() == hf.token_to_id("<|begin_of_text|>")
    assert llm.token_eos() == hf.token_to_id("<|eot_id|>")
    assert len(greedy_llama_cpp(llm, hf.encode("Amy saw").ids, 8)) == 8


def test_smollm2_exported_again_runs_in_llama_cpp_as_in_ours(tmp_path, smollm2_file, smollm2_imported, smollm2_loaded):
    """A real instruct model (SmolLM2-135M as `llmlab import` stores it) exported to f16: llama.cpp's
    tokens, greedy reply and the source GGUF's chat template equal ours."""
    import gguf
    from tokenizers import Tokenizer

    ckpt, model = smollm2_imported.path, smollm2_loaded[0]
    r = export_gguf(ckpt, tmp_path / "smollm2-f16.gguf", "f16")
    assert r.pre_tokenizer == "smollm" and r.arch == "llama"
    hf = Tokenizer.from_file(str(ckpt / "tokenizer" / "tokenizer.json"))
    llm = llama_cpp.Llama(model_path=str(r.path), n_ctx=256, n_threads=2, verbose=False)
    for line in TEXT.splitlines(keepends=True):
        assert llm.tokenize(line.encode(), add_bos=False, special=False) == \
            hf.encode(line, add_special_tokens=False).ids, line
    source = gguf.GGUFReader(str(smollm2_file)).fields["tokenizer.chat_template"].contents()
    assert llm.metadata["tokenizer.chat_template"] == source
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    ids = hf.encode(prompt, add_special_tokens=False).ids
    assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids
    ours = list(generate(model, ids, max_new_tokens=12, temperature=0, stop_ids=()))
    assert greedy_llama_cpp(llm, ids, 12) == ours
