"""The real SmolLM2-135M-Instruct GGUF (Q4_1) through `llmlab import`, against transformers on the same file.

Both sides dequantize the same Q4_1/Q8_0 blocks to fp32 with gguf.quants, so the logits agree to
float rounding: measured max |difference| 0.0; the tolerance asserted is 1e-4.
"""

import pytest
import torch

from smollm2_fixture import smollm2_gguf

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gguf_path():
    path, why = smollm2_gguf()
    if path is None:
        pytest.skip(why)
    return path


def test_smollm2_gguf_imports_with_the_logits_and_tokenizer_of_transformers(tmp_path, monkeypatch, gguf_path):
    from tokenizers import Tokenizer

    from core.checkpoint import load_model
    from core.model.importer import import_model

    torch.set_num_threads(1)
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path))
    s = import_model(str(gguf_path), "smollm2")
    assert (s.family, s.context_length, s.vocab_size, s.tokenizer, s.chat_template) == ("llama", 8192, 49152, "hf", True)
    assert 134_000_000 < s.params < 136_000_000
    ref_tok = transformers.AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    ours_tok = Tokenizer.from_file(str(s.path / "tokenizer" / "tokenizer.json"))
    for text in ["Hello, world! It's 2026.", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n", "  naïve café 日本語\n\n\tcode()"]:
        assert ours_tok.encode(text).ids == ref_tok.encode(text)
    model, _, _ = load_model("smollm2")
    ids = torch.tensor([ref_tok.encode("The capital of France is Paris, and the capital of Italy is")])
    ref = transformers.AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    with torch.no_grad():
        ours, theirs = model(ids)[0], ref.eval()(ids).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
