"""Finetuning a real model's checkpoint (a Hugging Face tokenizer and its Jinja chat template)."""

from __future__ import annotations

import json
import threading

import pytest
from hf_tokenizer_files import real_checkpoint

from core.checkpoint import load_model
from core.errors import UserError
from core.stages import finetune

from ft_helpers import Recorder, make_preset

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-model")
    return {"ckpt": real_checkpoint(root, "smollm2"), "bare": real_checkpoint(root, "smollm2", with_tokenizer=False)}


def run_stage(preset, run_dir) -> Recorder:
    rec = Recorder()
    run_dir.mkdir(parents=True, exist_ok=True)
    finetune.run(preset, run_dir, rec, threading.Event())
    return rec


@pytest.mark.parametrize("method,trainable", [("classify", "all"), ("instruct", "all"), ("instruct", "lora"),
                                              ("preference", "lora")])
def test_every_method_runs_with_the_models_own_tokenizer(tmp_path, real, data_files, method, trainable):
    over = {"finetune__template": "chat"} if method != "classify" else {}
    preset = make_preset(method, real["ckpt"], data_files[method], finetune__trainable=trainable,
                         finetune__lora__rank=2, finetune__lora__alpha=4.0, train__max_steps=2, train__eval_every=2,
                         train__checkpoint_every=2, **over)
    rec = run_stage(preset, tmp_path / "r")
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["steps"] == 2 and "test" in report and rec.of("test")
    _, base_tok, _ = load_model(real["ckpt"])
    _, tok, meta = load_model(report["checkpoint"])
    assert meta["tokenizer"]["kind"] == "hf" and tok.kind == "hf" and tok.fingerprint == base_tok.fingerprint


def test_instruction_masks_come_from_the_models_template(real, data_files):
    from core.train.instruct import encode_record

    _, tok, _ = load_model(real["ckpt"])
    conv = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."},
                         {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye."}]}
    ex = encode_record(conv, tok, "chat", 256)
    assert tok.decode([t for t, m in zip(ex["ids"], ex["mask"]) if m]) == "Hello there.<|im_end|>Goodbye.<|im_end|>"
    assert tok.decode(ex["ids"]).startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_a_preset_tokenizer_other_than_the_models_is_refused_with_both_names(tmp_path, real, data_files):
    preset = make_preset("instruct", real["ckpt"], data_files["instruct"], tokenizer__kind="bpe",
                         tokenizer__vocab_size=512)
    with pytest.raises(UserError, match=r"was trained with tokenizer 'hf-[0-9a-f]{8}' \(its own\), but the preset "
                                        r"names tokenizer.kind = \"bpe\" \(bpe512-[0-9a-f]{8}\).*tokenizer.kind = \"model\""):
        run_stage(preset, tmp_path / "r")
    ok = make_preset("instruct", real["ckpt"], data_files["instruct"], tokenizer__kind="model", train__max_steps=1,
                     finetune__template="chat")
    run_stage(ok, tmp_path / "ok")


def test_a_base_without_a_tokenizer_is_refused(tmp_path, real, data_files):
    preset = make_preset("instruct", real["bare"], data_files["instruct"])
    with pytest.raises(UserError, match=r"finetune.base: .*smollm2-bare has no tokenizer"):
        run_stage(preset, tmp_path / "r")
