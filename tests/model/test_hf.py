"""HF import/export with no network: tiny random transformers models saved locally, logits compared."""

import json

import pytest
import torch

from core.checkpoint import load_model, write_checkpoint
from core.config import ModelConfig
from core.errors import UserError
from core.model.gpt import GPT
from core.model.hf import export_hf, import_hf

transformers = pytest.importorskip("transformers")
IDS = torch.tensor([[1, 7, 3, 9, 12, 4, 60, 2, 33, 5]])


def hf_logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(IDS).logits


def our_logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(IDS)[0]


@pytest.mark.parametrize("tied", [True, False])
def test_gpt2_import_matches_transformers(tmp_path, tied):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=32, n_positions=16, vocab_size=64,
                                  tie_word_embeddings=tied, bos_token_id=0, eos_token_id=0)
    ref = transformers.GPT2LMHeadModel(cfg)
    with torch.no_grad():  # HF zero-inits biases and LayerNorm affine: randomise them so the test sees them
        for n, p in ref.named_parameters():
            if p.dim() == 1:
                p.normal_(0, 0.5)
    ref.save_pretrained(tmp_path / "hf")
    ckpt = import_hf(tmp_path / "hf", tmp_path / "ours")
    model, tok, meta = load_model(ckpt)
    assert tok is None and meta["lineage"]["family"] == "gpt2"
    assert model.tied == tied and model.config.context_length == 16
    torch.testing.assert_close(our_logits(model), hf_logits(ref), atol=1e-4, rtol=0)


def test_llama_gqa_import_matches_transformers(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                   rope_theta=500.0, rms_norm_eps=1e-5, bos_token_id=0, eos_token_id=0)
    ref = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if p.dim() == 1:
                p.normal_(1, 0.5)
    ref.save_pretrained(tmp_path / "hf")
    model, _, meta = load_model(import_hf(tmp_path / "hf", tmp_path / "ours"))
    c = model.config
    assert (c.n_kv_head, c.mlp_hidden, c.rope_theta, c.norm, c.tie_embeddings) == (2, 80, 500.0, "rmsnorm", False)
    torch.testing.assert_close(our_logits(model), hf_logits(ref), atol=1e-4, rtol=0)


@pytest.mark.parametrize("style", [
    dict(),
    dict(tie_embeddings=False, mlp_hidden=48),
    dict(norm="rmsnorm", position="rope", mlp="swiglu", bias=False, tie_embeddings=False, n_kv_head=2, rope_theta=1e4),
    dict(norm="rmsnorm", position="rope", mlp="swiglu", bias=True, tie_embeddings=True),
])
def test_export_loads_in_transformers_with_the_same_logits(tmp_path, style):
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=2, n_head=4, n_embd=32, context_length=16, vocab_size=64, **style))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.normal_(1, 0.5)
    write_checkpoint(tmp_path / "ckpt", 5, model)
    out = export_hf(tmp_path / "ckpt", tmp_path / "hf")
    ref = transformers.AutoModelForCausalLM.from_pretrained(out)
    expected = "GPT2LMHeadModel" if style.get("norm") != "rmsnorm" else "LlamaForCausalLM"
    assert type(ref).__name__ == expected
    torch.testing.assert_close(hf_logits(ref), our_logits(model), atol=1e-4, rtol=0)
    # and back again
    again, _, _ = load_model(import_hf(out, tmp_path / "again"))
    torch.testing.assert_close(our_logits(again), our_logits(model), atol=1e-5, rtol=0)


def test_export_refuses_mixed_architectures_and_offline_hub_names_say_what_to_do(tmp_path, monkeypatch):
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, context_length=8, vocab_size=32, position="rope"))
    write_checkpoint(tmp_path / "ckpt", 1, model)
    with pytest.raises(UserError, match="matches no transformers class"):
        export_hf(tmp_path / "ckpt", tmp_path / "hf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(UserError, match="hf download openai-community/gpt2-medium"):
        import_hf("gpt2-medium", tmp_path / "out")
    with pytest.raises(UserError, match="not a local folder"):
        import_hf("no-such-model", tmp_path / "out")


def test_gpt2_tokenizer_exports_to_hf_with_identical_ids(tmp_path, gpt2_cache):
    from core.tokenizer import get_tokenizer

    tok = get_tokenizer("gpt2")
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, context_length=32, vocab_size=tok.n_vocab))
    write_checkpoint(tmp_path / "ckpt", 1, model, tokenizer=tok)
    out = export_hf(tmp_path / "ckpt", tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "Hello world! It's 2024, naïve café — 日本語   spaces\n\nnew lines"
    assert hf_tok.encode(text) == tok.encode(text)
    assert hf_tok.convert_tokens_to_ids("<|im_end|>") == tok.special_tokens["<|im_end|>"]
    msgs = [{"role": "user", "content": "Hi there"}]
    assert hf_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) == \
        tok.chat.render_text(msgs, add_generation_prompt=True)
    assert json.loads((out / "config.json").read_text())["eos_token_id"] == tok.eot_id


def test_gpt2_vocab_import_gets_the_gpt2_tokenizer_and_room_for_chat_tokens(tmp_path, gpt2_cache):
    torch.manual_seed(0)
    ref = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=16))
    ref.save_pretrained(tmp_path / "hf")
    model, tok, meta = load_model(import_hf(tmp_path / "hf", tmp_path / "ours"))
    assert tok.name == "gpt2" and model.config.vocab_size == tok.n_vocab == 50259 and model.tied
    torch.testing.assert_close(our_logits(model)[..., :50257], hf_logits(ref), atol=1e-4, rtol=0)
    mean = ref.transformer.wte.weight.mean(0)
    torch.testing.assert_close(model.wte.weight[50258], mean)


def test_stages_import_a_hub_model_once_into_models(workspace, monkeypatch):
    # pretraining's init_from and finetuning's base share one path: models/<last part of the name>
    from core.model.importer import import_once
    from core.runs import NullLogger

    model = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, context_length=8, vocab_size=32))
    done = write_checkpoint(workspace / "models" / "SmolThing", 0, model)
    assert import_once("someone/SmolThing", NullLogger()) == done  # committed: reused, nothing fetched
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(workspace / "hf-home"))
    with pytest.raises(UserError, match="hf download openai-community/gpt2-medium"):
        import_once("gpt2-medium", NullLogger())
    assert not (workspace / "models" / "gpt2-medium").exists()
