"""The real SmolLM2-135M-Instruct GGUF (Q4_1) through `llmlab import`, against transformers on the same file.

Both sides dequantize the same Q4_1/Q8_0 blocks to fp32 with gguf.quants, so the logits agree to
float rounding: measured max |difference| 0.0; the tolerance asserted is 1e-4. The import, the loaded
model and the transformers reference are the session's (tests/conftest.py), shared with the other
SmolLM2 tests.
"""

import pytest
import torch

pytestmark = pytest.mark.slow


def test_smollm2_gguf_imports_with_the_logits_of_transformers_and_the_tokens_of_llama_cpp(
        smollm2_file, smollm2_imported, smollm2_loaded, smollm2_transformers):
    from tokenizers import Tokenizer

    s = smollm2_imported
    assert (s.family, s.context_length, s.vocab_size, s.tokenizer, s.chat_template) == ("llama", 8192, 49152, "hf", True)
    assert 134_000_000 < s.params < 136_000_000
    ref, ref_tok = smollm2_transformers
    model = smollm2_loaded[0]
    ids = torch.tensor([ref_tok.encode("The capital of France is Paris, and the capital of Italy is")])
    with torch.no_grad():
        ours, theirs = model(ids)[0], ref(ids).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    ours_tok = Tokenizer.from_file(str(s.path / "tokenizer" / "tokenizer.json"))
    texts = ["Hello, world! It's 2026.", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n", "  naïve café 日本語\n\n\tcode()"]
    for text in texts[2:]:  # transformers' converter ignores tokenizer.ggml.pre = "smollm" (digits apart)
        assert ours_tok.encode(text).ids == ref_tok.encode(text)
    assert ours_tok.encode("2026").ids == [ours_tok.token_to_id(d) for d in "2026"]
    try:
        import llama_cpp
    except ImportError:
        return
    llm = llama_cpp.Llama(model_path=str(smollm2_file), vocab_only=True, verbose=False)
    for text in texts:  # llama.cpp, the file's own tool, splits as the model was trained
        assert ours_tok.encode(text).ids == llm.tokenize(text.encode(), add_bos=False, special=True)
