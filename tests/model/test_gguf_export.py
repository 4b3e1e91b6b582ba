"""GGUF export without llama.cpp: the file read back through the gguf package (keys, tokenizer,
dequantized weights), the perplexity a quantization costs, the Ollama Modelfile, and bad input."""

import re
import shutil

import gguf
import pytest
import torch

from core.checkpoint import load_model, write_checkpoint
from core.cli import main
from core.errors import UserError
from core.model.gguf_export import export_gguf
from core.model.gguf_import import read_gguf
from core.model.lora import AdapterModel, apply_lora
from tests.model.export_helpers import (
    LLAMA3_JINJA, LLAMA_STYLE, hf_kind_checkpoint, hf_tokenizer_folder, our_checkpoint, sharp_model, trained_bpe)

X = torch.tensor([[5, 17, 260, 3, 99, 42, 7]])


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


@pytest.mark.parametrize("style,arch", [({}, "gpt2"), (LLAMA_STYLE, "llama")])
def test_f32_round_trip_is_exact_and_the_keys_are_llama_cpps(tmp_path, style, arch):
    tok = trained_bpe()
    ckpt = our_checkpoint(tmp_path, style)
    r = export_gguf(ckpt, tmp_path / "m.gguf", "f32")
    assert (r.arch, r.pre_tokenizer, r.chat_template, r.perplexity) == (arch, "llama-bpe", True, None)
    reader = gguf.GGUFReader(str(r.path))
    assert field(reader, "general.architecture") == arch
    assert field(reader, f"{arch}.block_count") == 2 and field(reader, f"{arch}.context_length") == 64
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "llama-bpe"
    assert len(field(reader, "tokenizer.ggml.tokens")) == tok.n_vocab
    assert len(field(reader, "tokenizer.ggml.merges")) == tok.n_vocab - 256 - 3
    assert field(reader, "tokenizer.ggml.eos_token_id") == tok.eot_id
    assert field(reader, "tokenizer.ggml.eot_token_id") == tok.special_tokens["<|im_end|>"]
    assert field(reader, "tokenizer.chat_template").startswith("{{ bos_token }}")
    model, _, _ = load_model(ckpt)
    back = read_gguf(r.path, model.config)[0]
    with torch.no_grad():
        assert torch.equal(back(X)[0], model(X)[0])


def test_quantized_types_shrink_the_file_and_report_the_perplexity(tmp_path, capsys):
    ckpt = our_checkpoint(tmp_path, LLAMA_STYLE)
    model, _, _ = load_model(ckpt)
    sizes, errors = {}, {}
    for t in ("f32", "f16", "bf16", "q8_0", "q4_0"):
        r = export_gguf(ckpt, tmp_path / f"{t}.gguf", t)
        sizes[t] = r.bytes
        w = read_gguf(r.path, model.config)[0].blocks[0].mlp.c_fc.weight
        errors[t] = float((w - model.blocks[0].mlp.c_fc.weight).abs().max().detach())
        assert (r.perplexity is not None) == t.startswith("q")
    assert sizes["f32"] > sizes["f16"] == sizes["bf16"] > sizes["q8_0"] > sizes["q4_0"]
    assert errors["f32"] == 0 < errors["f16"] < errors["bf16"] < errors["q4_0"] and errors["q8_0"] < errors["q4_0"]
    assert main(["export-gguf", str(ckpt), str(tmp_path / "cli.gguf"), "--type", "q8_0"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"perplexity on [\d,]+ held-out tokens:", out) and "after q8_0" in out


def test_ollama_modelfile_translates_chatml_with_stops_and_the_presets_sampling(tmp_path):
    ckpt = our_checkpoint(tmp_path, {})
    r = export_gguf(ckpt, tmp_path / "out" / "tiny.gguf", "q8_0", ollama=True, measure=False)
    assert r.modelfile == tmp_path / "out" / "Modelfile"
    assert r.modelfile.read_text() == (
        'FROM ./tiny.gguf\n'
        'TEMPLATE """<|endoftext|>{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
        '{{ range .Messages }}{{ if ne .Role "system" }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n'
        '{{ end }}{{ end }}<|im_start|>assistant\n"""\n'
        'PARAMETER stop "<|im_end|>"\nPARAMETER stop "<|endoftext|>"\n'
        'PARAMETER temperature 0.8\nPARAMETER top_k 50\nPARAMETER top_p 1\nPARAMETER num_predict 128\n'
        'PARAMETER num_ctx 64\n')


def test_ollama_modelfile_translates_llama3_of_an_imported_tokenizer(tmp_path):
    folder = hf_tokenizer_folder(tmp_path, LLAMA3_JINJA)
    ckpt = hf_kind_checkpoint(tmp_path, folder, sharp_model(405, **LLAMA_STYLE))
    r = export_gguf(ckpt, tmp_path / "l3.gguf", "q8_0", ollama=True)
    assert r.pre_tokenizer == "gpt-2"
    # the imported tokenizer now encodes in llmlab, so the quantization's perplexity change is measured
    assert r.perplexity is not None and r.perplexity["tokens"] > 0 and r.perplexity["after"] > 0
    text = r.modelfile.read_text()
    assert ('TEMPLATE """<|begin_of_text|>{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n'
            '{{ .System }}<|eot_id|>{{ end }}{{ range .Messages }}{{ if ne .Role "system" }}'
            '<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}{{ end }}'
            '<|start_header_id|>assistant<|end_header_id|>\n\n"""') in text
    assert 'PARAMETER stop "<|eot_id|>"' in text
    reader = gguf.GGUFReader(str(r.path))
    assert field(reader, "tokenizer.chat_template") == LLAMA3_JINJA
    assert field(reader, "tokenizer.ggml.tokens")[400] == "[PAD400]"


def test_a_chat_template_jinja_file_goes_into_the_gguf(tmp_path):
    """A GGUF or hub import keeps its template in tokenizer/chat_template.jinja (transformers 5 saves it
    there); the export carried none (`chat template none`) until it read that file too."""
    folder = hf_tokenizer_folder(tmp_path, None)
    ckpt = hf_kind_checkpoint(tmp_path, folder, sharp_model(405, **LLAMA_STYLE))
    (ckpt / "tokenizer" / "chat_template.jinja").write_text(LLAMA3_JINJA)
    r = export_gguf(ckpt, tmp_path / "t.gguf", "f16", measure=False)
    assert r.chat_template and field(gguf.GGUFReader(str(r.path)), "tokenizer.chat_template") == LLAMA3_JINJA


def test_a_lora_adapter_is_merged_into_its_base_and_refused_without_it(tmp_path):
    tok = trained_bpe()
    base = our_checkpoint(tmp_path, LLAMA_STYLE, name="base")
    model, _, _ = load_model(base)
    apply_lora(model, 4, 8.0, targets=["attn", "mlp"])
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    adapter = AdapterModel(model, str(base), 4, 8.0, 0.0, ["attn", "mlp"])
    lora = write_checkpoint(tmp_path / "lora", 1, adapter, tokenizer=tok, extra={"adapter": adapter.adapter_meta()})
    r = export_gguf(lora, tmp_path / "lora.gguf", "f32")
    assert r.merged_adapter == str(base)
    with pytest.raises(UserError, match="lies inside .*base"):
        export_gguf(lora, base / "inside.gguf")
    merged, _, _ = load_model(lora)
    with torch.no_grad():
        assert torch.equal(read_gguf(r.path, merged.config)[0](X)[0], merged(X)[0])
    shutil.rmtree(base)
    with pytest.raises(UserError, match="no longer exists"):
        export_gguf(lora, tmp_path / "again.gguf")
    assert not (tmp_path / "again.gguf").exists()


def test_bad_input_is_refused_with_one_line_and_nothing_written(tmp_path, capsys):
    tok = trained_bpe()
    ckpt = our_checkpoint(tmp_path, {})
    clf = sharp_model(tok.n_vocab)
    clf.set_head(2, kind="classify")
    write_checkpoint(tmp_path / "clf", 1, clf, tokenizer=tok)
    write_checkpoint(tmp_path / "notok", 1, sharp_model(64))
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe not utf-8")
    (tmp_path / "exists.gguf").write_bytes(b"mine")
    mixed = our_checkpoint(tmp_path, dict(position="rope"), name="mixed")
    cases = [([str(tmp_path / "clf"), str(tmp_path / "a.gguf")], "is a classify checkpoint"),
             ([str(tmp_path / "notok"), str(tmp_path / "b.gguf")], "has no tokenizer"),
             ([str(ckpt), str(tmp_path / "exists.gguf")], "the file exists; add --force"),
             ([str(ckpt), str(ckpt / "in.gguf")], "lies inside"),
             ([str(ckpt), str(tmp_path)], "is a folder"),
             ([str(ckpt), str(tmp_path / "c.gguf"), "--type", "q4_0", "--eval-text", str(tmp_path / "bad.txt")], "bad.txt: cannot read"),
             ([str(mixed), str(tmp_path / "d.gguf")], "neither GPT-2-shaped"),
             ([str(ckpt), str(tmp_path / "e.gguf"), "--type", "q5_k"], "invalid choice")]
    for args, message in cases:
        assert main(["export-gguf", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (args, err)
    assert (tmp_path / "exists.gguf").read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.rglob("*.gguf")) == ["exists.gguf"]


def test_a_pattern_llama_cpp_cannot_split_like_is_refused(tmp_path):
    from core.tokenizer.train import train_bpe
    from core.data.synthetic import iter_stories

    tok = train_bpe(list(iter_stories(3, 20_000)), 300, pattern=r"\S+|\s+", name="words")
    ckpt = write_checkpoint(tmp_path / "ck", 1, sharp_model(tok.n_vocab), tokenizer=tok)
    with pytest.raises(UserError, match="no llama.cpp pre-tokenizer"):
        export_gguf(ckpt, tmp_path / "w.gguf")
    assert not (tmp_path / "w.gguf").exists()
