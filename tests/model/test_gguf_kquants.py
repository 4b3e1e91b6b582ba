"""K-quants (Q4_K, Q5_K, Q6_K) in, checked against llama.cpp itself: the gguf package cannot write
them, so our f32 GGUF export of a small Llama-shaped model is quantized by llama.cpp's own quantizer
(`llama_model_quantize`, as `llama-quantize` does) to Q4_K_M, Q5_K_M and Q6_K. Every K-quant tensor
our importer dequantizes equals llama.cpp's C dequantizer (`dequantize_row_q*_K` in libggml-base)
exactly, and the imported model's logits are those llama.cpp computes from the file (`logits_all`)
within the error of llama.cpp's 8-bit activations (Q8_K dot products): 0.15 x the logits' standard
deviation (measured: 0.05-0.07), closer to llama.cpp than the unquantized model is."""

import ctypes
from pathlib import Path

import numpy as np
import pytest
import torch

llama_cpp = pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llamacpp]': a source build of minutes)")
gguf = pytest.importorskip("gguf")
pytest.importorskip("transformers")
pytestmark = pytest.mark.slow

from core.checkpoint import load_model, write_checkpoint  # noqa: E402
from core.config import ModelConfig  # noqa: E402
from core.model.gguf_export import export_gguf  # noqa: E402
from core.model.gguf_import import _dequantize  # noqa: E402
from core.model.gpt import GPT  # noqa: E402
from core.model.importer import import_model  # noqa: E402
from tests.model.export_helpers import LLAMA_STYLE, llama_cpp_model, trained_bpe  # noqa: E402

FTYPES = {"Q4_K_M": {"Q4_K", "Q6_K"}, "Q5_K_M": {"Q5_K", "Q6_K"}, "Q6_K": {"Q6_K"}}  # llama.cpp's mixes
TEXT = "Once upon a time, a kind girl named Amy saw a big dog at the beach"


def ggml_dequantize(kind: str, data: np.ndarray, n: int) -> np.ndarray:
    """llama.cpp's own dequantization of `n` values of type `kind` (Q4_K, Q5_K, Q6_K)."""
    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    fn = getattr(lib, f"dequantize_row_{kind.lower()[:-1]}{kind[-1]}")
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64], None
    src = np.ascontiguousarray(data)
    out = np.empty(n, dtype=np.float32)
    fn(src.ctypes.data, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n)
    return out


@pytest.fixture(scope="module")
def f32_export(tmp_path_factory):
    """(f32 GGUF, checkpoint, our fp32 model): dimensions multiples of 256, the K-quants' block."""
    tmp = tmp_path_factory.mktemp("kq")
    tok = trained_bpe()
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=2, n_head=4, n_embd=256, context_length=64, vocab_size=tok.n_vocab, mlp_hidden=512,
                      **LLAMA_STYLE)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.normal_(1, 0.2)
    ckpt = write_checkpoint(tmp / "ckpt", 1, model.eval(), tokenizer=tok)
    return export_gguf(ckpt, tmp / "f32.gguf", "f32", measure=False).path, ckpt, model


def quantize(src: Path, out: Path, ftype: str) -> Path:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}"), 1
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params)) == 0
    return out


@pytest.mark.parametrize("ftype", list(FTYPES))
def test_k_quants_dequantize_as_llama_cpp_and_give_its_logits(f32_export, tmp_path, monkeypatch, ftype):
    torch.set_num_threads(1)
    src, _, original = f32_export
    path = quantize(src, tmp_path / f"m-{ftype}.gguf", ftype)
    reader = gguf.GGUFReader(path)
    k_tensors = [t for t in reader.tensors if gguf.GGMLQuantizationType(t.tensor_type).name.endswith("_K")]
    assert {gguf.GGMLQuantizationType(t.tensor_type).name for t in k_tensors} == FTYPES[ftype]
    for t in k_tensors:
        kind = gguf.GGMLQuantizationType(t.tensor_type).name
        theirs = ggml_dequantize(kind, t.data, int(t.n_elements))
        np.testing.assert_array_equal(_dequantize(t, path).numpy().reshape(-1), theirs, err_msg=t.name)

    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path / "home"))
    import_model(str(path), "kq")
    model, tok, _ = load_model("kq")
    ids = tok.encode(TEXT)
    with torch.no_grad():
        ours, fp32 = model.eval()(torch.tensor([ids]))[0][0].numpy(), original(torch.tensor([ids]))[0][0].numpy()
    llm = llama_cpp_model(path, n_ctx=64, n_threads=1, n_batch=64, logits_all=True)
    llm.eval(ids)
    theirs = np.array(llm.scores[: len(ids)])
    scale = float(theirs.std())
    assert np.abs(ours - theirs).max() < 0.15 * scale
    assert np.abs(ours - theirs).max() < np.abs(fp32 - theirs).max()  # ours has the file's quantized weights


@pytest.mark.parametrize("gguf_type", ["q8_0", "q4_0"])
def test_our_q8_0_and_q4_0_are_what_llama_cpp_quantizer_writes(f32_export, tmp_path, gguf_type):
    """Our export and llama.cpp's quantizer, run on our f32 export, write the same tensors byte for
    byte, except that under q4_0 we keep the embeddings q8_0 (llama.cpp: q4_0) and the head q8_0
    (llama.cpp: q6_K when its rows fill 256-blocks, else q8_0)."""
    src, ckpt, _ = f32_export
    ours = gguf.GGUFReader(export_gguf(ckpt, tmp_path / "ours.gguf", gguf_type, measure=False).path)
    theirs = {t.name: t for t in gguf.GGUFReader(quantize(src, tmp_path / "theirs.gguf", gguf_type.upper())).tensors}
    assert sorted(t.name for t in ours.tensors) == sorted(theirs)  # llama.cpp writes them in its own order
    kept = {"token_embd.weight", "output.weight"} if gguf_type == "q4_0" else set()
    for t in ours.tensors:
        if t.name in kept:
            assert gguf.GGMLQuantizationType(t.tensor_type).name == "Q8_0", t.name
            continue
        assert t.tensor_type == theirs[t.name].tensor_type, t.name
        assert t.data.tobytes() == theirs[t.name].data.tobytes(), t.name
