"""`llmlab chat MODEL`: the terminal REPL over `core.chat.Conversation` (the CLI layer: it reads stdin and
writes stdout). A bad command (/set out of bounds, /save to a folder, /load of a damaged file) prints one
error line and the conversation goes on unchanged; only /quit, ctrl+d or ctrl+c at the prompt end it.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from core.chat import Conversation, Sampling
from core.errors import UserError

REPL_HELP = """commands: /new  /system TEXT  /set KEY=VALUE (temperature, top_k, top_p, max_new_tokens, seed, stop)
          /template  /save FILE  /load FILE  /quit    (ctrl+c stops a reply; ctrl+d quits)"""


def _model_and_preset(model_spec: str, overrides: list[str]) -> tuple[str, Any]:
    """`llmlab chat MODEL`: MODEL is a checkpoint/run spec, or a preset whose chat.model (else its
    newest finetuned, else pretrained, model) is used; overrides set generate.* and chat.*."""
    from core import config
    from core.lookup import resolve_checkpoint

    try:
        resolve_checkpoint(model_spec)
        return model_spec, config.from_dict(config.apply_overrides({}, overrides), "--set")
    except UserError as e:
        not_a_model = e
    try:
        preset = config.load(model_spec, overrides)
    except config.PresetError:
        raise not_a_model from None
    if preset.chat.model:
        return preset.chat.model, preset
    for stage in ("finetune", "pretrain"):
        spec = f"run:{preset.name}:{stage}"
        try:
            resolve_checkpoint(spec)
            return spec, preset
        except UserError:
            continue
    raise UserError(f"{model_spec}: the preset names no chat.model and has no finished finetune or pretrain run; "
                    f"run `llmlab pretrain {model_spec}` first or pass a checkpoint")


def apply_set(conv: Conversation, item: str) -> str:
    """`/set KEY=VALUE` (a TOML value, as in --set): checked with the preset's [generate] bounds."""
    from dataclasses import asdict

    from core.config import parse_override
    from core.sampling import check_sampling

    key, value = parse_override(item)
    key = key.removeprefix("generate.")
    values = {**asdict(conv.sampling), key: value}
    conv.sampling = Sampling.from_preset(check_sampling(values, "/set"))
    return f"{key} = {getattr(conv.sampling, key)!r}"


def _command(conv: Conversation, cmd: str, arg: str, out: TextIO) -> bool:
    """Run one /command; False when it ends the REPL."""
    if cmd in ("quit", "exit", "q"):
        return False
    if cmd == "new":
        conv.clear()
        out.write("(new conversation)\n")
    elif cmd == "system":
        conv.system_prompt = arg
        out.write(f"(system prompt {'set' if arg else 'cleared'})\n")
    elif cmd == "set":
        out.write(f"({apply_set(conv, arg)})\n")
    elif cmd == "template":
        out.write(conv.template_text() + "\n")
    elif cmd == "save":
        out.write(f"(saved {conv.save(arg.strip() or 'conversation.jsonl')})\n")
    elif cmd == "load":
        if not arg.strip():
            raise UserError("/load FILE: name the conversation file")
        conv.load(arg.strip())
        out.write(f"(loaded {len(conv.messages)} messages)\n")
    else:
        out.write(REPL_HELP + "\n")
    return True


def _reply(conv: Conversation, line: str, out: TextIO) -> None:
    conv.add_user(line)
    cancel = threading.Event()
    try:
        for piece in conv.stream_reply(cancel):
            out.write(piece.text)
            out.flush()
    except KeyboardInterrupt:
        cancel.set()  # the generator closed; the partial reply is kept
        conv.last_stats.ended = "cancelled"
        if conv.messages and conv.messages[-1]["role"] == "assistant":
            conv.messages[-1]["ended"] = "cancelled"
    except BaseException:
        if conv.messages and conv.messages[-1]["role"] == "user" and conv.messages[-1]["content"] == line:
            conv.messages.pop()  # the turn that got no answer: the history stays answerable
        raise
    st = conv.last_stats
    dropped = f", {st.dropped_messages} old messages dropped" if st.dropped_messages else ""
    out.write(f"\n[{st.tokens} tokens, {st.tokens_per_s:.1f} tokens/s, {st.ended}{dropped}]\n")


def chat_repl(model_spec: str, overrides: list[str], *, stdin: TextIO | None = None,
              stdout: TextIO | None = None, device: str = "auto") -> int:
    """Read a line, stream the reply, repeat. Returns the exit code."""
    inp = stdin or sys.stdin
    out = stdout or sys.stdout
    spec, preset = _model_and_preset(model_spec, overrides)
    conv = Conversation.open(spec, device=device, system_prompt=preset.chat.system_prompt,
                             max_history_tokens=preset.chat.max_history_tokens,
                             sampling=Sampling.from_preset(preset.generate))
    out.write(f"chatting with {conv.meta.get('path', spec)} (context {conv.context_length} tokens)\n{REPL_HELP}\n")
    out.flush()
    while True:
        out.write("\n> ")
        out.flush()
        try:
            line = inp.readline()
        except (KeyboardInterrupt, UnicodeDecodeError):
            out.write("\n")
            return 0
        if not line:
            out.write("\n")
            return 0
        line = line.rstrip("\n")
        if not line.strip():
            continue
        try:
            if line.startswith("/"):
                cmd, _, arg = line[1:].partition(" ")
                if not _command(conv, cmd, arg, out):
                    return 0
                continue
            _reply(conv, line, out)
        except UserError as e:
            out.write(f"error: {e}\n")
        except Exception as e:  # noqa: BLE001 - the REPL keeps the conversation whatever one command does
            out.write(f"error: {type(e).__name__}: {e}\n")
