"""An Ollama Modelfile beside an exported GGUF, so `ollama create NAME -f Modelfile` runs the model.

Ollama renders prompts with Go templates, not Jinja, so the chat template is translated for the
two layouts it can be recognised as: ChatML (ours, Qwen, SmolLM) and Llama-3. Stop strings are the
template's end-of-turn and end-of-text tokens; sampling defaults come from the preset's [generate]
(the run's preset.toml where the checkpoint belongs to a run, else the defaults).
"""

from __future__ import annotations

from pathlib import Path

from core.errors import UserError

MODELFILE = "Modelfile"

# one message of each layout; {role} and {content} are Go template actions in the output
_CHATML = ("<|im_start|>", "<|im_end|>\n", "\n")
_LLAMA3 = ("<|start_header_id|>", "<|eot_id|>", "<|end_header_id|>\n\n")


def template_style(jinja: str) -> str:
    """'chatml' or 'llama3' by the tokens the Jinja template writes, else UserError."""
    if "<|im_start|>" in jinja and "<|im_end|>" in jinja:
        return "chatml"
    if "<|start_header_id|>" in jinja and "<|eot_id|>" in jinja:
        return "llama3"
    raise UserError("--ollama: the chat template is neither ChatML nor Llama-3 style, so it cannot be translated "
                    "to Ollama's Go template; export without --ollama and write the TEMPLATE by hand")


def go_template(style: str, bos_text: str = "") -> str:
    """The chat template in Ollama's Go template syntax. The system prompt comes first from .System
    (Ollama collects system messages there, and a Modelfile SYSTEM fills it); the other messages
    follow in order, then the assistant's opening, as add_generation_prompt renders it."""
    start, end, after_role = _CHATML if style == "chatml" else _LLAMA3

    def turn(role: str, content: str) -> str:
        return f"{start}{role}{after_role}{content}{end}"

    return (f"{bos_text}{{{{ if .System }}}}{turn('system', '{{ .System }}')}{{{{ end }}}}"
            f"{{{{ range .Messages }}}}{{{{ if ne .Role \"system\" }}}}{turn('{{ .Role }}', '{{ .Content }}')}"
            f"{{{{ end }}}}{{{{ end }}}}{start}assistant{after_role}")


def _generate_config(checkpoint: Path):
    """The [generate] section of the run's preset.toml (checkpoints/step-N/ -> run/), else the defaults."""
    from core.config import GenerateConfig, load

    preset = checkpoint.parent.parent / "preset.toml"
    if checkpoint.parent.name == "checkpoints" and preset.is_file():
        return load(preset).generate
    return GenerateConfig()


def modelfile_text(gguf_name: str, jinja: str, stops: list[str], checkpoint: Path, context_length: int,
                   bos_text: str = "") -> str:
    """The Modelfile: FROM the GGUF beside it, TEMPLATE, stop strings and sampling parameters."""
    gen = _generate_config(checkpoint)
    template = go_template(template_style(jinja), bos_text)
    if '"""' in template:
        raise UserError('--ollama: the chat template contains """, which a Modelfile cannot quote')
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    lines += [f'PARAMETER stop "{s}"' for s in dict.fromkeys(stops)]
    lines += [f"PARAMETER temperature {gen.temperature:g}", f"PARAMETER top_k {gen.top_k}",
              f"PARAMETER top_p {gen.top_p:g}", f"PARAMETER num_predict {gen.max_new_tokens}",
              f"PARAMETER num_ctx {context_length}"]
    if gen.seed:
        lines.append(f"PARAMETER seed {gen.seed}")
    return "\n".join(lines) + "\n"


def write_modelfile(gguf_path: Path, text: str) -> Path:
    """Write `text` as the Modelfile beside the GGUF (replacing an older one: it belongs to the export)."""
    from core.runs import write_text_atomic

    path = gguf_path.with_name(MODELFILE)
    write_text_atomic(path, text)
    return path
