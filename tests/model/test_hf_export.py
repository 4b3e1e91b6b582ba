"""export-hf, complete: tokenizer files AutoTokenizer reads with our ids and template, and a target
that can never be the checkpoint, a run or an existing folder (unless --force)."""

import json
import shutil

import pytest
import torch

from core.checkpoint import verify
from core.cli import main
from core.errors import UserError
from core.model.hf import export_hf
from tests.model.export_helpers import (
    LLAMA3_JINJA, LLAMA_STYLE, MESSAGES, hf_kind_checkpoint, hf_tokenizer_folder, our_checkpoint, sharp_model,
    trained_bpe)

transformers = pytest.importorskip("transformers")


def test_trained_bpe_exports_with_ids_template_and_special_tokens(tmp_path):
    tok = trained_bpe()
    ckpt = our_checkpoint(tmp_path, LLAMA_STYLE)
    out = export_hf(ckpt, tmp_path / "hf")
    hf = transformers.AutoTokenizer.from_pretrained(out)
    text = "Once upon a time, Amy's dog ran 1234 miles!\n\n  It's naïve — 日本"
    assert hf.encode(text) == tok.encode(text)
    assert hf.decode(tok.encode(text)) == text
    assert hf.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False) == \
        tok.chat.render_text(MESSAGES, add_generation_prompt=True)
    ids = hf.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(ids) == tok.chat.render(MESSAGES, add_generation_prompt=True)[0]
    # end-of-text precedes every pretraining document (so it is BOS and EOS, as GPT-2's) and pads
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (tok.eot_id, tok.eot_id, tok.eot_id)
    assert hf(["a", "Once upon a time"], padding=True)["attention_mask"][0][-1] == 0
    smap = json.loads((out / "special_tokens_map.json").read_text())
    assert smap["eos_token"] == "<|endoftext|>"
    config = json.loads((out / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"]) == (tok.eot_id, tok.eot_id)
    gen = transformers.GenerationConfig.from_pretrained(out)  # a chat reply ends at <|im_end|>, as ours does
    assert gen.eos_token_id == [tok.eot_id, tok.special_tokens["<|im_end|>"]] and gen.pad_token_id == tok.eot_id


def test_transformers_generate_stops_where_our_chat_stops(tmp_path):
    """Greedy tokens of a chat prompt: transformers (its own generation_config) == core.generate with
    the chat's stop ids, both ending at the <|im_end|> the model is made to write at step k."""
    from core.checkpoint import write_checkpoint
    from core.generate import generate

    torch.set_num_threads(1)
    tok = trained_bpe()
    model = sharp_model(tok.n_vocab, **LLAMA_STYLE)
    prompt, _ = tok.chat.render([{"role": "user", "content": "Where is Sam?"}], add_generation_prompt=True)
    free = list(generate(model, prompt, max_new_tokens=12, temperature=0, stop_ids=()))
    im_end = tok.special_tokens["<|im_end|>"]
    k = next(i for i in range(2, 12) if free[i] not in free[:i])
    with torch.no_grad():  # swap two rows of the (untied) head: the first k tokens stay, the k-th becomes <|im_end|>
        w = model.lm_head.weight
        w[[free[k], im_end]] = w[[im_end, free[k]]]
    ckpt = write_checkpoint(tmp_path / "ckpt", 1, model, tokenizer=tok)
    ours = list(generate(model, prompt, max_new_tokens=12, temperature=0, stop_ids=tok.chat.stop_ids))
    assert ours == free[:k]  # our generator does not yield the stop token
    hf = transformers.AutoModelForCausalLM.from_pretrained(export_hf(ckpt, tmp_path / "hf"), dtype=torch.float32)
    out = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False)[0, len(prompt):].tolist()
    assert out == free[:k] + [im_end]


def test_imported_hf_tokenizer_is_kept_with_its_template_and_ids(tmp_path):
    folder = hf_tokenizer_folder(tmp_path, LLAMA3_JINJA)
    src = transformers.AutoTokenizer.from_pretrained(folder)
    ckpt = hf_kind_checkpoint(tmp_path, folder, sharp_model(len(src), **LLAMA_STYLE))
    out = export_hf(ckpt, tmp_path / "hf")
    hf = transformers.AutoTokenizer.from_pretrained(out)
    assert hf.apply_chat_template(MESSAGES, tokenize=False) == src.apply_chat_template(MESSAGES, tokenize=False)
    assert hf.encode("Amy saw a dog") == src.encode("Amy saw a dog")
    config = json.loads((out / "config.json").read_text())
    assert config["bos_token_id"] == src.convert_tokens_to_ids("<|begin_of_text|>")
    assert config["eos_token_id"] == src.convert_tokens_to_ids("<|eot_id|>")
    assert json.loads((out / "special_tokens_map.json").read_text())["eos_token"] == "<|eot_id|>"


def test_an_imported_chat_template_jinja_is_exported(tmp_path):
    """transformers 5 saves a GGUF's or hub model's template as chat_template.jinja; the export keeps it."""
    folder = hf_tokenizer_folder(tmp_path, None)
    (folder / "chat_template.jinja").write_text(LLAMA3_JINJA)
    src = transformers.AutoTokenizer.from_pretrained(folder)
    ckpt = hf_kind_checkpoint(tmp_path, folder, sharp_model(len(src), **LLAMA_STYLE))
    shutil.copyfile(folder / "chat_template.jinja", ckpt / "tokenizer" / "chat_template.jinja")
    hf = transformers.AutoTokenizer.from_pretrained(export_hf(ckpt, tmp_path / "hf"))
    assert hf.apply_chat_template(MESSAGES, tokenize=False) == src.apply_chat_template(MESSAGES, tokenize=False)


def test_unsafe_targets_are_refused_and_the_checkpoint_survives(tmp_path, capsys):
    ckpt = our_checkpoint(tmp_path, {})
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    cases = {str(ckpt): "which this command reads", str(ckpt / "hf"): "lies inside",
             str(tmp_path): "contains", str(tmp_path / "a-file"): "is a file",
             str(tmp_path / "full"): "not empty; add --force"}
    for out, message in cases.items():
        assert main(["export-hf", str(ckpt), out]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    verify(ckpt)  # every file as committed
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    run = tmp_path / "ws" / "runs" / "20260101-000000-tiny-pretrain"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("status.json", "events.jsonl"):
        (run / name).write_text("{}\n")
    with pytest.raises(UserError, match="lies inside .* a run folder"):
        export_hf(ckpt, run / "export")
    with pytest.raises(UserError, match="contains .* a run or checkpoint"):
        export_hf(ckpt, tmp_path / "ws", force=True)
    assert (run / "status.json").is_file()


def test_force_replaces_a_folder_only_after_a_complete_export(tmp_path):
    ckpt = our_checkpoint(tmp_path, {})
    out = tmp_path / "hf"
    out.mkdir()
    (out / "old.txt").write_text("old")
    # a checkpoint that fails half-way (its Hugging Face tokenizer.json is damaged): the old folder stays
    folder = hf_tokenizer_folder(tmp_path, LLAMA3_JINJA)
    bad = hf_kind_checkpoint(tmp_path, folder, sharp_model(405, **LLAMA_STYLE))
    (bad / "tokenizer" / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="tokenizer.json: not"):
        export_hf(bad, out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []
    assert main(["export-hf", str(ckpt), str(out), "--force"]) == 0
    assert not (out / "old.txt").exists()
    ref = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert type(ref).__name__ == "GPT2LMHeadModel"
    assert torch.isfinite(ref(torch.tensor([[1, 2, 3]])).logits).all()


def test_a_killed_exports_temporary_is_removed_by_the_next_export(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".tmp-hf-{int(dead.stdout)}-0123abcd"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    export_hf(our_checkpoint(tmp_path, {}), tmp_path / "hf")
    assert not stale.exists() and (tmp_path / "hf" / "model.safetensors").is_file()


@pytest.mark.slow
def test_smollm2_exports_with_its_own_tokenizer_and_template(tmp_path, smollm2_imported, smollm2_loaded):
    """A real instruct model as `llmlab import` stores it (SmolLM2-135M from its GGUF): transformers loads
    the export with our logits, the source's ids and its chat template."""
    from tests.model.export_helpers import MESSAGES

    ckpt, model = smollm2_imported.path, smollm2_loaded[0]
    out = export_hf(ckpt, tmp_path / "hf")
    src = transformers.AutoTokenizer.from_pretrained(ckpt / "tokenizer")
    hf = transformers.AutoTokenizer.from_pretrained(out)
    for messages in (MESSAGES, MESSAGES[1:2]):
        assert hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == \
            src.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = hf.apply_chat_template(MESSAGES[1:2], add_generation_prompt=True, return_dict=False)
    assert list(ids) == list(src.apply_chat_template(MESSAGES[1:2], add_generation_prompt=True, return_dict=False))
    config = json.loads((out / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"]) == (1, 2)
    ref = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    x = torch.tensor([list(ids)])
    with torch.no_grad():
        torch.testing.assert_close(ref(x).logits, model(x)[0], atol=2e-3, rtol=1e-3)
