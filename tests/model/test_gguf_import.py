"""GGUF import: small files written with the gguf package's own writer (as llama.cpp's converter
does: permuted q/k rows, quantized tensors), read back by us and by transformers (gguf_file=)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")
from gguf import GGMLQuantizationType as Q  # noqa: E402

from core.checkpoint import load_model  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.model.importer import import_model  # noqa: E402

C, H, KV, FF, V, LAYERS = 64, 4, 2, 96, 72, 2
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
IDS = torch.tensor([[1, 7, 3, 9, 12, 4, 60, 2, 33, 5, 17, 40]])


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf LlamaModel.permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tokens() -> tuple[list[str], list[int], list[str]]:
    import string

    alphabet = ["Ġ", "Ċ", "ĉ", "|", *string.ascii_letters, *string.digits]  # byte-level spellings of the texts used
    assert len(alphabet) == V - 6
    tokens = alphabet + ["Ġt", "he", "Ġthe"] + SPECIALS
    types = [1] * (V - 3) + [3, 3, 3]
    return tokens, types, ["Ġ t", "h e", "Ġt he"]


CONFIGS = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config, "qwen3": transformers.Qwen3Config}


def rope_factors(hd: int, theta: float, rope: dict) -> list[float]:
    """llama.cpp's convert_hf_to_gguf (LlamaModel.generate_extra_tensors): the rope_freqs of llama3 scaling."""
    import math

    old, lo, hi, factor = (rope["original_max_position_embeddings"], rope["low_freq_factor"],
                           rope["high_freq_factor"], rope["factor"])
    out = []
    for freq in 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)):
        wavelen = 2 * math.pi / float(freq)
        if wavelen < old / hi:
            out.append(1.0)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return out


def write_gguf(path, *, quant=Q.Q8_0, arch="llama", extra_meta=None, tensor_type_of=None, rope_scaling=None,
               context=64):
    """A random model as llama.cpp writes it (q/k rows permuted for the llama architecture only; a
    llama3 `rope_scaling` as the rope_freqs tensor); returns the transformers model."""
    torch.manual_seed(0)
    hd = 128 if arch == "qwen3" else C // H  # transformers reads no head_dim from a qwen3 GGUF: it assumes 128
    cfg = CONFIGS.get(arch, transformers.LlamaConfig)(
        vocab_size=V, hidden_size=C, intermediate_size=FF, num_hidden_layers=LAYERS, num_attention_heads=H,
        num_key_value_heads=KV, max_position_embeddings=context, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=True, head_dim=hd, rope_scaling=rope_scaling)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.normal_(1, 0.5)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(LAYERS), w.add_context_length(context), w.add_embedding_length(C), w.add_feed_forward_length(FF)
    w.add_head_count(H), w.add_head_count_kv(KV), w.add_rope_freq_base(10000.0), w.add_vocab_size(V)
    w.add_layer_norm_rms_eps(1e-5), w.add_rope_dimension_count(hd)
    if arch == "qwen3":  # as llama.cpp writes Qwen3, whose head_dim is its own field
        w.add_key_length(hd), w.add_value_length(hd)
    tokens, types, merges = _tokens()
    w.add_tokenizer_model("gpt2"), w.add_tokenizer_pre("smollm"), w.add_token_list(tokens)
    w.add_token_types(types), w.add_token_merges(merges), w.add_bos_token_id(V - 3), w.add_eos_token_id(V - 1)
    w.add_chat_template(TEMPLATE), w.add_add_bos_token(False)
    for k, v in (extra_meta or {}).items():
        w.add_uint32(k, v)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    per = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
           "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
           "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    per_bias = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v"}
    norms = {"self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm"}
    for i in range(LAYERS):
        names |= {f"model.layers.{i}.{a}.weight": f"blk.{i}.{b}.weight" for a, b in per.items()}
        names |= {f"model.layers.{i}.{a}.bias": f"blk.{i}.{b}.bias" for a, b in per_bias.items()}
        names |= {f"model.layers.{i}.{a}.weight": f"blk.{i}.{b}.weight" for a, b in norms.items()}
    for hf, name in names.items():
        if hf not in sd:
            continue  # biases (Qwen2 only) and q/k norms (Qwen3 only)
        t = sd[hf].astype(np.float32)
        if arch == "llama" and ("attn_q" in name or "attn_k" in name):
            t = _permute(t, H if "attn_q" in name else KV)
        qt = (tensor_type_of or {}).get(name, Q.F32 if t.ndim == 1 else quant)
        if qt == Q.F32:
            w.add_tensor(name, t)
        else:
            w.add_tensor(name, gguf.quants.quantize(t, qt), raw_dtype=qt)
    if rope_scaling is not None:
        w.add_tensor("rope_freqs.weight", np.array(rope_factors(hd, 10000.0, rope_scaling), dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    return model


@pytest.mark.parametrize("arch, quant", [("llama", Q.F16), ("llama", Q.BF16), ("llama", Q.Q8_0), ("llama", Q.Q4_0),
                                         ("llama", Q.Q4_1), ("qwen2", Q.Q8_0), ("qwen3", Q.Q4_1)],
                         ids=lambda x: getattr(x, "name", x))
def test_gguf_import_has_the_logits_of_transformers_on_the_same_file(tmp_path, monkeypatch, arch, quant):
    torch.set_num_threads(1)
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path / "home"))
    write_gguf(tmp_path / "m.gguf", quant=quant, arch=arch)
    s = import_model(str(tmp_path / "m.gguf"), "tiny-gguf")
    assert (s.family, s.context_length, s.vocab_size, s.tokenizer, s.chat_template) == (arch, 64, V, "hf", True)
    model, _, meta = load_model("tiny-gguf")  # a NAME resolves under $LLMLAB_HOME/models/
    assert meta["tokenizer"] == {**meta["tokenizer"], "folder": "tokenizer", "kind": "hf"}
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32)
    with torch.no_grad():
        ours, theirs = model(IDS)[0], ref.eval()(IDS).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_gguf_tokenizer_is_written_as_hf_files_that_encode_like_transformers(tmp_path, monkeypatch):
    from tokenizers import Tokenizer

    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path / "home"))
    write_gguf(tmp_path / "m.gguf")
    ckpt = import_model(str(tmp_path / "m.gguf"), "tok").path
    ours = Tokenizer.from_file(str(ckpt / "tokenizer" / "tokenizer.json"))
    ref = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="m.gguf")
    for text in ["the then", "<|im_start|>user\nthe<|im_end|>", "  the  \n\tthe"]:
        assert ours.encode(text).ids == ref.encode(text)
    config = json.loads((ckpt / "tokenizer" / "tokenizer_config.json").read_text())
    assert config.get("chat_template", TEMPLATE) == TEMPLATE and config["eos_token"] == "<|im_end|>"
    assert (ckpt / "tokenizer" / "chat_template.jinja").read_text() == TEMPLATE or config["chat_template"] == TEMPLATE


def _cli(tmp_path, *args):
    env = {**os.environ, "LLMLAB_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)


def test_import_cli_prints_what_it_imported_and_refuses_bad_files_by_name(tmp_path, monkeypatch, capsys):
    from core.cli import main

    write_gguf(tmp_path / "m.gguf", quant=Q.Q4_0)
    r = _cli(tmp_path, "import", str(tmp_path / "m.gguf"), "good")
    assert r.returncode == 0, r.stderr
    assert "family llama" in r.stdout and f"vocabulary {V}" in r.stdout and "chat template found" in r.stdout
    data = (tmp_path / "m.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) - 300])
    (tmp_path / "text.gguf").write_text("not a model\n")
    write_gguf(tmp_path / "q5.gguf", tensor_type_of={"blk.1.ffn_up.weight": Q.Q5_0})
    write_gguf(tmp_path / "moe.gguf", extra_meta={"llama.expert_count": 8})
    write_gguf(tmp_path / "gemma.gguf", arch="gemma2")
    cases = {"cut.gguf": "truncated", "text.gguf": "not a GGUF file", "q5.gguf": "blk.1.ffn_up.weight: quantization type Q5_0",
             "moe.gguf": "llama.expert_count: a key llmlab does not know", "gemma.gguf": "'gemma2' is not supported"}
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path / "home"))
    for name, message in cases.items():  # the CLI's own main, in this process (one subprocess above is enough)
        code = main(["import", str(tmp_path / name), "bad"])
        err = capsys.readouterr().err
        assert code == 2 and message in err and str(tmp_path / name) in err and len(err.splitlines()) == 1, (name, err)
    assert sorted(p.name for p in (tmp_path / "home" / "models").iterdir()) == ["good"]  # nothing half-written


def test_import_refuses_an_existing_name_and_offline_hub_names_say_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    (tmp_path / "home" / "models" / "taken").mkdir(parents=True)
    with pytest.raises(UserError, match="already exists"):
        import_model(str(tmp_path / "m.gguf"), "taken")
    with pytest.raises(UserError, match="hf download Qwen/Qwen3-0.6B --local-dir DIR.*llmlab import DIR NAME"):
        import_model("Qwen/Qwen3-0.6B", "qwen3")
    assert [p.name for p in (tmp_path / "home" / "models").iterdir()] == ["taken"]


LLAMA31 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 16.0,
           "original_max_position_embeddings": 512}  # Llama 3.1's rule at a scale where 2 of 8 frequencies interpolate


def test_rope_freqs_of_llama3_scaling_import_as_rope_scaling(tmp_path, monkeypatch):
    """Llama-3.1-style file: the imported model has the logits of the transformers model with that
    rope_scaling (transformers' own GGUF loader ignores rope_freqs), and of llama.cpp on the file."""
    torch.set_num_threads(1)
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path / "home"))
    ref = write_gguf(tmp_path / "m.gguf", quant=Q.F32, rope_scaling=LLAMA31, context=1024).eval()
    import_model(str(tmp_path / "m.gguf"), "llama31")
    model, _, _ = load_model("llama31")
    c = model.config
    assert (c.rope_scaling, c.rope_factor, c.rope_low_freq_factor, c.rope_original_context) == ("llama3", 8.0, 1.0, 512)
    assert c.rope_high_freq_factor == pytest.approx(16.0, rel=1e-6)
    ids = torch.tensor([[(7 * i + 3) % (V - 3) for i in range(200)]])  # 200 positions: the long wavelengths turn
    with torch.no_grad():
        ours = model(ids)[0]
        torch.testing.assert_close(ours, ref(ids).logits, atol=1e-4, rtol=0)
        unscaled = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf").eval()(ids).logits
    assert (ours - unscaled).abs().max() > 1e-3  # the scaling matters here, so the check above means something
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    llm = llama_cpp.Llama(model_path=str(tmp_path / "m.gguf"), n_ctx=256, n_threads=1, n_batch=256,
                          logits_all=True, verbose=False)
    llm.eval(ids[0].tolist())
    np.testing.assert_allclose(np.array(llm.scores[:200]), ours[0].numpy(), atol=1e-3, rtol=0)


def test_rope_freqs_that_are_not_llama3_scaling_are_refused_by_name(tmp_path):
    from core.model.gguf_import import llama3_rope_from_factors
    from core.config import ModelConfig

    cfg = ModelConfig(n_layer=1, n_head=H, n_embd=C, position="rope", norm="rmsnorm", mlp="swiglu")
    good = torch.tensor(rope_factors(C // H, 10000.0, LLAMA31), dtype=torch.float64)
    assert llama3_rope_from_factors(cfg, good, tmp_path)["rope_original_context"] == 512
    assert llama3_rope_from_factors(cfg, torch.ones(8, dtype=torch.float64), tmp_path) == {"rope_scaling": "none"}
    bent = good.clone()
    bent[2] *= 1.01
    for bad, message in ((bent, "do not follow Llama 3.1"), (good[:4], "not the 8 factors"),
                         (torch.tensor([1.0] * 7 + [8.0], dtype=torch.float64), "fewer than two interpolated")):
        with pytest.raises(UserError, match=f"rope_freqs.weight: .*{message}"):
            llama3_rope_from_factors(cfg, bad, tmp_path)
