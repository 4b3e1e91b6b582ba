"""The Modelfile's TEMPLATE executed by Go's text/template (the engine Ollama renders prompts with),
with the System and Messages Ollama passes: it must give our chat prompt exactly."""

import json
import os
import re
import shutil
import subprocess

import jinja2
import pytest

from core.model.gguf_export import export_gguf
from tests.model.export_helpers import (
    LLAMA3_JINJA, LLAMA_STYLE, MESSAGES, hf_kind_checkpoint, hf_tokenizer_folder, our_checkpoint, sharp_model,
    trained_bpe)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed (apt-get install golang-go); "
                                 "the Modelfile's text is still checked by test_gguf_export.py")]

RENDER_GO = """package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

func main() {
	var in struct {
		Template string    `json:"template"`
		System   string    `json:"system"`
		Messages []Message `json:"messages"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	t := template.Must(template.New("modelfile").Parse(in.Template))
	if err := t.Execute(os.Stdout, map[string]any{"System": in.System, "Messages": in.Messages}); err != nil {
		panic(err)
	}
}
"""


@pytest.fixture(scope="module")
def render_go(tmp_path_factory):
    d = tmp_path_factory.mktemp("go")
    (d / "main.go").write_text(RENDER_GO)
    env = {"HOME": str(d), "GOCACHE": str(d / "cache"), "GOPATH": str(d / "gopath"),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GO111MODULE": "off"}
    subprocess.run(["go", "build", "-o", str(d / "render"), str(d / "main.go")], check=True, env=env,
                   capture_output=True, timeout=300)

    def render(template: str, messages: list[dict]) -> str:
        # Ollama collects the system messages into .System and passes every message in .Messages
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        doc = json.dumps({"template": template, "system": system, "messages": messages})
        return subprocess.run([str(d / "render")], input=doc, capture_output=True, text=True, check=True,
                              timeout=60).stdout
    return render


def template_of(modelfile) -> str:
    return re.search(r'TEMPLATE """(.*?)"""', modelfile.read_text(), re.S).group(1)


def test_chatml_modelfile_renders_our_prompt(tmp_path, render_go):
    tok = trained_bpe()
    r = export_gguf(our_checkpoint(tmp_path, {}), tmp_path / "m.gguf", "f16", ollama=True)
    template = template_of(r.modelfile)
    for messages in (MESSAGES, MESSAGES[1:2], MESSAGES[1:]):
        assert render_go(template, messages) == tok.chat.render_text(messages, add_generation_prompt=True)


def test_llama3_modelfile_renders_the_jinja_template(tmp_path, render_go):
    folder = hf_tokenizer_folder(tmp_path, LLAMA3_JINJA)
    ckpt = hf_kind_checkpoint(tmp_path, folder, sharp_model(405, **LLAMA_STYLE))
    r = export_gguf(ckpt, tmp_path / "l3.gguf", "f16", ollama=True)
    jinja = jinja2.Environment().from_string(LLAMA3_JINJA)
    for messages in (MESSAGES, MESSAGES[1:]):
        expected = jinja.render(messages=messages, bos_token="<|begin_of_text|>", add_generation_prompt=True)
        assert render_go(template_of(r.modelfile), messages) == expected
