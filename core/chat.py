"""Chat: a conversation with a checkpoint, rendered through its chat template, streamed token by token.

`Conversation` holds a system prompt and the turns so far; `stream_reply()` renders them with the
tokenizer's chat template (`ChatTemplate.render(..., add_generation_prompt=True)`), drops the oldest
turns that do not fit `max_history_tokens` (or the context, less room for the reply), and yields
`ReplyPiece`s (text and the token ids behind it) from `core.generate`. A `threading.Event` stops a
reply between two tokens; what was said so far stays in the history. Conversations save to and load
from JSONL (one header line, then one message per line). The TUI chat pane and `llmlab chat` (the
`chat_repl` at the end) both drive this class; neither samples anything itself.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from core.errors import UserError

FORMAT = "llmlab-conversation"


@dataclass
class Sampling:
    """How a reply is sampled (the preset's [generate] section, adjustable per conversation)."""

    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    @classmethod
    def from_preset(cls, gen: Any) -> Sampling:
        return cls(gen.temperature, gen.top_k, gen.top_p, gen.max_new_tokens, list(gen.stop), gen.seed or None)

    def check(self) -> None:
        """The same bounds as the preset's [generate] fields, so a typed value is refused early."""
        problems = []
        if not self.temperature >= 0:
            problems.append(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if problems:
            raise UserError("sampling: " + "; ".join(problems))


@dataclass
class ReplyPiece:
    """A piece of a streamed reply: the text and the token ids generated since the previous piece."""

    text: str
    ids: list[int]


@dataclass
class ReplyStats:
    """How the last reply went: tokens, time to first token, tokens/s, and why it ended."""

    tokens: int = 0
    prompt_tokens: int = 0
    dropped_messages: int = 0
    first_token_s: float = 0.0
    seconds: float = 0.0
    ended: str = ""  # end (stop token or string), max_tokens, cancelled

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class _RecordingTokenizer:
    """The checkpoint's tokenizer, noting which ids generate_text decodes, so each text piece
    comes with its ids (generate_text yields text only)."""

    def __init__(self, tokenizer: Any):
        self._tok = tokenizer
        self.eot_id = tokenizer.eot_id
        self.ids: list[int] = []

    def encode(self, text: str, allowed_special: Any = ()) -> list[int]:
        return self._tok.encode(text, allowed_special=allowed_special)

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(ids)

    def token_bytes(self, token_id: int) -> bytes:
        self.ids.append(token_id)
        return self._tok.token_bytes(token_id)

    def take(self) -> list[int]:
        out, self.ids = self.ids, []
        return out


class Conversation:
    """A multi-turn conversation with one model. Not thread-safe: one reply streams at a time."""

    def __init__(self, model: Any, tokenizer: Any, meta: dict | None = None, *, system_prompt: str = "",
                 max_history_tokens: int = 0, sampling: Sampling | None = None, model_spec: str = ""):
        if tokenizer is None:
            raise UserError(f"{model_spec or 'model'}: the checkpoint has no tokenizer, so it cannot chat")
        head = (meta or {}).get("head") or {"kind": "lm"}
        if head.get("kind", "lm") != "lm":
            raise UserError(f"{model_spec or 'model'}: a {head['kind']} checkpoint predicts labels, not text; "
                            f"chat with a pretrained or instruction-tuned model")
        self.model = model
        self.tokenizer = tokenizer
        self.meta = meta or {}
        self.model_spec = model_spec or self.meta.get("path", "")
        self.system_prompt = system_prompt
        self.max_history_tokens = max_history_tokens
        self.sampling = sampling or Sampling()
        self.messages: list[dict] = []  # user and assistant turns; the system prompt is kept apart
        self.last_stats = ReplyStats()

    @classmethod
    def open(cls, spec: str | Path, *, device: str = "auto", **kwargs: Any) -> Conversation:
        """Load the checkpoint `spec` names (anything core.lookup.resolve_checkpoint accepts)."""
        from core.checkpoint import load_model
        from core.train.device import pick_device

        model, tokenizer, meta = load_model(spec, device=pick_device(device))
        return cls(model, tokenizer, meta, model_spec=str(spec), **kwargs)

    # ------------------------------------------------------------------------------ history
    @property
    def context_length(self) -> int:
        return int(self.model.config.context_length)

    def history_limit(self) -> int:
        """Prompt tokens allowed: max_history_tokens (0 = the context), leaving the reply room in the
        context (at most half of it, so a long max_new_tokens does not starve the history)."""
        ctx = self.context_length
        room = min(self.sampling.max_new_tokens, ctx // 2)
        limit = ctx - room
        return min(limit, self.max_history_tokens) if self.max_history_tokens else limit

    def all_messages(self) -> list[dict]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": m["role"], "content": m["content"]} for m in self.messages]

    def fitted_messages(self) -> tuple[list[dict], int]:
        """The messages that go into the prompt and how many old turns were dropped to fit the limit.
        The system prompt and the newest message always stay."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        turns = [{"role": m["role"], "content": m["content"]} for m in self.messages]
        limit = self.history_limit()
        dropped = 0
        while len(turns) > 1 and len(self.tokenizer.chat.render(system + turns, True)[0]) > limit:
            turns.pop(0)
            dropped += 1
        # a reply right after a dropped user turn would answer nothing: start at a user turn
        while len(turns) > 1 and turns[0]["role"] != "user":
            turns.pop(0)
            dropped += 1
        return system + turns, dropped

    def prompt_ids(self) -> tuple[list[int], int]:
        """Token ids of the prompt for the next reply (generation prompt included), dropped turns."""
        messages, dropped = self.fitted_messages()
        ids, _ = self.tokenizer.chat.render(messages, add_generation_prompt=True)
        return ids, dropped

    def template_text(self, pending_user: str = "") -> str:
        """The prompt as the model sees it, special tokens spelled out (the chat pane shows this)."""
        messages, _ = self.fitted_messages()
        if pending_user:
            messages = messages + [{"role": "user", "content": pending_user}]
        return self.tokenizer.chat.render_text(messages, add_generation_prompt=True)

    def add_user(self, text: str) -> None:
        if not text.strip():
            raise UserError("an empty message; type something to send")
        self.messages.append({"role": "user", "content": text})

    def clear(self) -> None:
        """Forget the turns (the system prompt and sampling settings stay)."""
        self.messages.clear()
        self.last_stats = ReplyStats()

    # ----------------------------------------------------------------------------- replies
    def stream_reply(self, cancel: threading.Event | None = None, **sampling: Any) -> Iterator[ReplyPiece]:
        """Generate the assistant's answer to the history, yielding pieces as they are decoded.

        Ends at the template's end-of-turn token, a stop string, max_new_tokens, or when `cancel` is
        set (checked between tokens). The reply, whole or partial, is appended to the history when
        the generator finishes or is closed; `last_stats` describes it. `sampling` overrides
        fields of `self.sampling` for this reply only."""
        from core.generate import generate_text

        if not self.messages or self.messages[-1]["role"] != "user":
            raise UserError("nothing to answer: add a user message first")
        s = dataclasses.replace(self.sampling, **sampling)
        s.check()
        ids, dropped = self.prompt_ids()
        stats = ReplyStats(prompt_tokens=len(ids), dropped_messages=dropped, ended="end")
        self.last_stats = stats
        recorder = _RecordingTokenizer(self.tokenizer)
        text_parts: list[str] = []
        t0 = time.perf_counter()
        pieces = generate_text(self.model, recorder, ids, max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                               top_k=s.top_k, top_p=s.top_p, stop=s.stop, stop_ids=self.tokenizer.chat.stop_ids,
                               seed=s.seed)
        try:
            for text in pieces:
                new_ids = recorder.take()
                stats.tokens += len(new_ids)
                if not stats.first_token_s:
                    stats.first_token_s = time.perf_counter() - t0
                stats.seconds = time.perf_counter() - t0
                text_parts.append(text)
                yield ReplyPiece(text, new_ids)
                if cancel is not None and cancel.is_set():
                    stats.ended = "cancelled"
                    return
            # tokens consumed after the last yielded piece (held back for a stop string, or a stop id)
            stats.tokens += len(recorder.take())
            stats.seconds = time.perf_counter() - t0
            if stats.tokens >= s.max_new_tokens:
                stats.ended = "max_tokens"
        except GeneratorExit:  # the caller stopped reading: same as a cancel
            stats.ended = "cancelled"
            raise
        finally:
            pieces.close()
            if stats.ended != "cancelled" and cancel is not None and cancel.is_set():
                stats.ended = "cancelled"
            self.messages.append({"role": "assistant", "content": "".join(text_parts),
                                  "tokens": stats.tokens, "tokens_per_s": round(stats.tokens_per_s, 2),
                                  "ended": stats.ended})

    def reply(self, text: str, cancel: threading.Event | None = None, **sampling: Any) -> str:
        """Send `text` and return the whole answer (for scripts and tests)."""
        self.add_user(text)
        return "".join(p.text for p in self.stream_reply(cancel, **sampling))

    # ----------------------------------------------------------------------------- save/load
    def save(self, path: str | Path) -> Path:
        """Write the conversation as JSONL: a header (model, system prompt, sampling), then one
        {"role", "content", ...} line per message, the system prompt first."""
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"format": FORMAT, "model": str(self.model_spec), "checkpoint": self.meta.get("path", ""),
                  "system_prompt": self.system_prompt, "sampling": dataclasses.asdict(self.sampling),
                  "saved": round(time.time(), 3)}
        lines = [json.dumps(header)]
        lines += [json.dumps(m, ensure_ascii=False) for m in self.all_messages()[:1] if m["role"] == "system"]
        lines += [json.dumps(m, ensure_ascii=False) for m in self.messages]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(path)
        return path

    def load(self, path: str | Path) -> None:
        """Replace this conversation's system prompt, sampling and turns by a saved one's. Plain
        JSONL chats (one {"role", "content"} per line, no header) load too."""
        path = Path(path).expanduser()
        try:
            text = path.read_text()
        except OSError as e:
            raise UserError(f"{path}: cannot read ({e.strerror})") from None
        system, messages, sampling = "", [], None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not JSON ({e.msg}); a conversation file has one JSON object a line") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
            if row.get("format") == FORMAT:
                sampling = row.get("sampling")
                system = row.get("system_prompt", "") or system
                continue
            if row.get("role") not in ("system", "user", "assistant") or not isinstance(row.get("content"), str):
                raise UserError(f"{path}:{n}: expected {{\"role\": system|user|assistant, \"content\": text}}")
            if row["role"] == "system":
                system = row["content"]
            else:
                messages.append(row)
        if sampling:
            names = {f.name for f in dataclasses.fields(Sampling)}
            try:
                self.sampling = Sampling(**{k: v for k, v in sampling.items() if k in names})
            except TypeError as e:
                raise UserError(f"{path}: bad sampling header ({e})") from None
        self.system_prompt = system
        self.messages = messages
        self.last_stats = ReplyStats()


# ------------------------------------------------------------------------------------------ CLI

REPL_HELP = """commands: /new  /system TEXT  /set KEY=VALUE (temperature, top_k, top_p, max_new_tokens)
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


def _apply_set(conv: Conversation, item: str) -> str:
    key, _, value = item.partition("=")
    key = key.strip().removeprefix("generate.")
    names = {"temperature": float, "top_k": int, "top_p": float, "max_new_tokens": int, "seed": int}
    if key not in names or not value.strip():
        raise UserError(f"/set {item}: expected KEY=VALUE with KEY one of {', '.join(names)}")
    try:
        v = names[key](value)
    except ValueError:
        raise UserError(f"/set {item}: {value!r} is not a {names[key].__name__}") from None
    trial = dataclasses.replace(conv.sampling, **{key: v})
    trial.check()
    conv.sampling = trial
    return f"{key} = {v}"


def chat_repl(model_spec: str, overrides: list[str], *, stdin: TextIO | None = None,
              stdout: TextIO | None = None, device: str = "auto") -> int:
    """`llmlab chat MODEL`: read a line, stream the reply, repeat. Returns the exit code."""
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
        except KeyboardInterrupt:
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
                if cmd in ("quit", "exit", "q"):
                    return 0
                if cmd == "new":
                    conv.clear()
                    out.write("(new conversation)\n")
                elif cmd == "system":
                    conv.system_prompt = arg
                    out.write(f"(system prompt {'set' if arg else 'cleared'})\n")
                elif cmd == "set":
                    out.write(f"({_apply_set(conv, arg)})\n")
                elif cmd == "template":
                    out.write(conv.template_text() + "\n")
                elif cmd == "save":
                    out.write(f"(saved {conv.save(arg or 'conversation.jsonl')})\n")
                elif cmd == "load":
                    conv.load(arg)
                    out.write(f"(loaded {len(conv.messages)} messages)\n")
                else:
                    out.write(REPL_HELP + "\n")
                continue
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
            st = conv.last_stats
            dropped = f", {st.dropped_messages} old messages dropped" if st.dropped_messages else ""
            out.write(f"\n[{st.tokens} tokens, {st.tokens_per_s:.1f} tokens/s, {st.ended}{dropped}]\n")
        except UserError as e:
            out.write(f"error: {e}\n")
