"""generate, chat, report and export-hf on a real model's checkpoint, as a user runs them (real processes)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from hf_tokenizer_files import real_checkpoint

from core.chat import Conversation

pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-cli")
    return {"ckpt": real_checkpoint(root, "qwen"), "bare": real_checkpoint(root, "qwen", with_tokenizer=False)}


def llmlab(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          input=stdin, timeout=300)


def test_generate_chat_and_plain_and_without_a_tokenizer(real, capsys):
    from core.cli import main

    p = llmlab("generate", str(real["ckpt"]), "What is 2+2?", "--chat", "--system", "Be brief.", "--max-new-tokens",
               "5", "--temperature", "0")
    assert p.returncode == 0, p.stderr
    bare = llmlab("generate", str(real["bare"]), "Once upon")
    assert bare.returncode == 2 and "qwen-bare: has no tokenizer (model.json names none), so it cannot generate text" \
        in bare.stderr and "Traceback" not in bare.stderr
    capsys.readouterr()
    assert main(["generate", str(real["ckpt"]), "Once upon", "--max-new-tokens", "3", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("Once upon")
    assert main(["generate", str(real["ckpt"]), "hi", "--system", "x"]) == 2
    assert "--system sets the system turn of a chat prompt; add --chat" in capsys.readouterr().err
    assert main(["chat", str(real["bare"])]) == 2 and "has no tokenizer" in capsys.readouterr().err


def test_chat_prompts_through_the_models_template(real):
    from transformers import AutoTokenizer

    conv = Conversation.open(str(real["ckpt"]), device="cpu", system_prompt="Be brief.")
    conv.sampling.max_new_tokens, conv.sampling.temperature = 6, 0.0
    conv.add_user("Hello <|im_end|> there")
    hf = AutoTokenizer.from_pretrained(str(real["ckpt"] / "tokenizer"))
    want = hf.apply_chat_template(conv.all_messages(), add_generation_prompt=True, return_dict=True,
                                  sanitize_control_tokens=True)["input_ids"]
    assert conv.prompt_ids()[0] == want
    assert conv.template_text() == hf.apply_chat_template(conv.all_messages(), tokenize=False, add_generation_prompt=True)
    pieces = list(conv.stream_reply())
    assert conv.messages[-1]["role"] == "assistant" and conv.last_stats.tokens >= 1
    ids = [i for p in pieces for i in p.ids]
    assert hf.convert_tokens_to_ids("<|im_end|>") not in ids[:-1]  # the turn's end stops the reply


def test_chat_repl_and_report_run(real, capsys):
    from core.cli_chat import chat_repl
    from core.cli import main

    out = io.StringIO()
    assert chat_repl(str(real["ckpt"]), ["generate.max_new_tokens=3"], device="cpu",
                     stdin=io.StringIO("hi\n/quit\n"), stdout=out) == 0
    assert main(["report", str(real["ckpt"])]) == 0
    assert "tokenizer hf-" in capsys.readouterr().out


def test_export_hf_carries_the_models_own_tokenizer(real, tmp_path):
    from transformers import AutoTokenizer

    from core.checkpoint import load_model
    from core.model.hf import export_hf

    out = export_hf(real["ckpt"], tmp_path / "out")
    hf = AutoTokenizer.from_pretrained(str(out))
    _, tok, _ = load_model(real["ckpt"])
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    assert hf.apply_chat_template(msgs, return_dict=True)["input_ids"] == tok.chat.render(msgs)[0]
