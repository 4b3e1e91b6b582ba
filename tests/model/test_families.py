"""Every supported family: a random small transformers model saved locally, imported and exported,
logits equal to transformers within 1e-4 in fp32; config.json fields we cannot honour are refused."""

import json

import pytest
import torch

from core.checkpoint import load_model
from core.errors import UserError
from core.model.hf import export_hf, import_hf

transformers = pytest.importorskip("transformers")
IDS = torch.tensor([[1, 7, 3, 9, 12, 4, 60, 2, 33, 5, 17, 40, 8, 21, 30, 11, 50, 6, 13, 25]])
SMALL = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-5, bos_token_id=0, eos_token_id=0)
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}

FAMILIES = {
    "llama2": (transformers.LlamaConfig, dict(tie_word_embeddings=False)),
    "llama3.2": (transformers.LlamaConfig, dict(tie_word_embeddings=True, rope_parameters=LLAMA3_ROPE)),
    "mistral": (transformers.MistralConfig, dict(sliding_window=None)),
    "qwen2": (transformers.Qwen2Config, dict(tie_word_embeddings=True)),
    "qwen3": (transformers.Qwen3Config, dict(head_dim=16, tie_word_embeddings=True)),
    "smollm3": (transformers.SmolLM3Config, dict(no_rope_layers=[1, 0], tie_word_embeddings=True, pad_token_id=None)),
}


def logits(model, ours: bool) -> torch.Tensor:
    with torch.no_grad():
        out = model.eval()(IDS)
        return out[0] if ours else out.logits


def random_model(family: str):
    cls, extra = FAMILIES[family]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cls(**{**SMALL, **extra}))
    with torch.no_grad():  # HF inits norms to 1 and biases to 0: randomise them so the test sees them
        for p in model.parameters():
            if p.dim() == 1:
                p.normal_(1, 0.5)
    return model


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_imports_and_exports_with_the_logits_of_transformers(tmp_path, family):
    torch.set_num_threads(1)
    ref = random_model(family)
    ref.save_pretrained(tmp_path / "hf")
    model, tok, meta = load_model(import_hf(tmp_path / "hf", tmp_path / "ours"))
    assert tok is None and meta["tokenizer"] is None
    torch.testing.assert_close(logits(model, True), logits(ref, False), atol=1e-4, rtol=0)
    c = model.config
    assert (c.qkv_bias, c.qk_norm, c.nope_layers) == (family == "qwen2", family == "qwen3", [1] if family == "smollm3" else [])
    assert c.rope_scaling == ("llama3" if family == "llama3.2" else "none") and model.tied == ref.config.tie_word_embeddings
    out = export_hf(meta["path"], tmp_path / "export")
    back = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert type(back).__name__ == type(ref).__name__ or family == "mistral"  # Mistral without a window is Llama
    torch.testing.assert_close(logits(back, False), logits(ref, False), atol=1e-4, rtol=0)


def test_sharded_folder_with_its_tokenizer_files(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    ref = random_model("qwen3")
    ref.save_pretrained(tmp_path / "hf", max_shard_size="20KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    vocab = {chr(ord("a") + i): i for i in range(26)} | {"<|im_end|>": 26}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.save(str(tmp_path / "hf" / "tokenizer.json"))
    template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    (tmp_path / "hf" / "tokenizer_config.json").write_text(json.dumps({"chat_template": template, "eos_token": "<|im_end|>"}))
    ckpt = import_hf(tmp_path / "hf", tmp_path / "ours")
    meta = json.loads((ckpt / "model.json").read_text())
    assert meta["tokenizer"]["folder"] == "tokenizer" and meta["tokenizer"]["kind"] == "hf"
    assert (ckpt / "tokenizer" / "tokenizer.json").read_bytes() == (tmp_path / "hf" / "tokenizer.json").read_bytes()
    assert json.loads((ckpt / "tokenizer" / "tokenizer_config.json").read_text())["chat_template"] == template
    model, _, _ = load_model(ckpt)
    torch.testing.assert_close(logits(model, True), logits(ref, False), atol=1e-4, rtol=0)


BAD_CONFIGS = [
    ("hidden_size", None, "hidden_size: missing"),
    ("num_hidden_layers", "2", "num_hidden_layers: expected int, got str"),
    ("tie_word_embeddings", 1, "tie_word_embeddings: expected bool, got int"),
    ("attn_logit_softcapping", 50.0, "attn_logit_softcapping: a field llmlab does not know"),
    ("rope_parameters", {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}, "rope_type: 'yarn' is not supported"),
    ("rope_parameters", {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}, "partial_rotary_factor"),
    ("hidden_act", "gelu", "hidden_act: 'gelu' is not supported"),
    ("model_type", "gemma2", "model_type: 'gemma2' is not supported"),
    ("num_key_value_heads", 3, "num_key_value_heads: 3 does not divide"),
]


@pytest.mark.parametrize("key, value, message", BAD_CONFIGS, ids=[f"{k}={v}" for k, v, _ in BAD_CONFIGS])
def test_config_fields_that_we_cannot_honour_are_refused_by_name(tmp_path, key, value, message):
    random_model("llama2").save_pretrained(tmp_path / "hf")
    path = tmp_path / "hf" / "config.json"
    config = json.loads(path.read_text())
    if value is None:
        config.pop(key)
    else:
        config[key] = value
    path.write_text(json.dumps(config))
    with pytest.raises(UserError, match=message) as e:
        import_hf(tmp_path / "hf", tmp_path / "ours")
    assert str(path) in str(e.value) and not (tmp_path / "ours").exists()


def test_a_sliding_window_shorter_than_the_context_is_refused(tmp_path):
    cls, extra = FAMILIES["mistral"]
    transformers.MistralForCausalLM(cls(**{**SMALL, "sliding_window": 8})).save_pretrained(tmp_path / "hf")
    with pytest.raises(UserError, match="sliding_window: 8 is shorter than the context"):
        import_hf(tmp_path / "hf", tmp_path / "ours")
