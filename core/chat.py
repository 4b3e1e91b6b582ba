"""Chat: a conversation with a checkpoint, rendered through its chat template, streamed token by token.

`Conversation` holds a system prompt and the turns so far; `stream_reply()` renders them with the
tokenizer's chat template (`ChatTemplate.render(..., add_generation_prompt=True)`), drops the oldest
turns that do not fit `max_history_tokens` (or the context, less room for the reply), and yields
`Piece`s (text and the token ids behind it, decoded by the tokenizer itself) from `core.generate`. A
`threading.Event` stops a reply between two tokens; what was said so far stays in the history. Conversations save to and load
from JSONL (one header line, then one message per line). The TUI chat pane and `llmlab chat`
(core/cli_chat.py) both drive this class; neither samples anything itself.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import GenerateConfig
from core.errors import UserError
from core.tokenizer.stream import Piece

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer

FORMAT = "llmlab-conversation"
CHAT_MAX_BYTES = 64 << 20


class Sampling(GenerateConfig):
    """How a reply is sampled: the preset's [generate] fields, adjustable per conversation. The fields,
    defaults and bounds are GenerateConfig's (core/config.py); `core.sampling.check_sampling` checks
    values typed anywhere against them."""

    @classmethod
    def from_preset(cls, gen: GenerateConfig) -> Sampling:
        return cls(**dataclasses.asdict(gen))


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


class Conversation:
    """A multi-turn conversation with one model. Not thread-safe: one reply streams at a time."""

    def __init__(self, model: Any, tokenizer: TextTokenizer | None, meta: dict | None = None, *, system_prompt: str = "",
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
    def stream_reply(self, cancel: threading.Event | None = None, **sampling: Any) -> Iterator[Piece]:
        """Generate the assistant's answer to the history, yielding pieces as they are decoded.

        Ends at the template's end-of-turn token, a stop string, max_new_tokens, or when `cancel` is
        set (checked between tokens). The reply, whole or partial, is appended to the history when
        the generator finishes or is closed; `last_stats` describes it. `sampling` overrides
        fields of `self.sampling` for this reply only."""
        from core.generate import generate_pieces, sampling_options
        from core.sampling import check_sampling

        if not self.messages or self.messages[-1]["role"] != "user":
            raise UserError("nothing to answer: add a user message first")
        s = check_sampling({**dataclasses.asdict(self.sampling), **sampling}, "sampling")
        ids, dropped = self.prompt_ids()
        stats = ReplyStats(prompt_tokens=len(ids), dropped_messages=dropped, ended="end")
        self.last_stats = stats
        text_parts: list[str] = []
        held: list[int] = []  # ids whose text is not out yet (an incomplete character, a possible stop)
        t0 = time.perf_counter()
        pieces = generate_pieces(self.model, self.tokenizer, ids, stop=s.stop, stop_ids=self.tokenizer.chat.stop_ids,
                                 **sampling_options(s))
        try:
            for piece in pieces:
                stats.tokens += len(piece.ids)
                held += piece.ids
                if not piece.text:
                    continue
                if not stats.first_token_s:
                    stats.first_token_s = time.perf_counter() - t0
                stats.seconds = time.perf_counter() - t0
                text_parts.append(piece.text)
                yield Piece(piece.text, held)
                held = []
                if cancel is not None and cancel.is_set():
                    stats.ended = "cancelled"
                    return
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
        {"role", "content", ...} line per message, the system prompt first. A target that is a folder,
        or lies in the checkpoint being chatted with, is refused (core.safety)."""
        from core.safety import refuse_unsafe_target

        path = Path(path).expanduser()
        reads = [Path(self.meta["path"])] if self.meta.get("path") else []
        refuse_unsafe_target(path, reads, True, file=True)
        header = {"format": FORMAT, "model": str(self.model_spec), "checkpoint": self.meta.get("path", ""),
                  "system_prompt": self.system_prompt, "sampling": dataclasses.asdict(self.sampling),
                  "saved": round(time.time(), 3)}
        lines = [json.dumps(header)]
        lines += [json.dumps(m, ensure_ascii=False) for m in self.all_messages()[:1] if m["role"] == "system"]
        lines += [json.dumps(m, ensure_ascii=False) for m in self.messages]
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text("\n".join(lines) + "\n")
            tmp.replace(path)
        except OSError as e:
            if tmp.is_file():
                tmp.unlink()
            raise UserError(f"{path}: cannot write ({e.strerror})") from None
        return path

    def load(self, path: str | Path) -> None:
        """Replace this conversation's system prompt, sampling and turns by a saved one's. Plain
        JSONL chats (one {"role", "content"} per line, no header) load too. Every line is checked
        (core.schemas) before anything changes: a bad file leaves the conversation as it was."""
        from core.sampling import check_sampling
        from core.schemas import CHAT_HEADER, CHAT_MESSAGE, check, decode_utf8, parse_json, read_bytes

        path = Path(path).expanduser()
        text = decode_utf8(read_bytes(path, CHAT_MAX_BYTES), path)
        system, messages, sampling = "", [], None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            row = parse_json(line, where)
            if isinstance(row, dict) and row.get("format") == FORMAT:
                check(row, CHAT_HEADER, where)
                sampling = row.get("sampling")
                system = row.get("system_prompt", "") or system
                continue
            check(row, CHAT_MESSAGE, where)
            if row["role"] == "system":
                system = row["content"]
            else:
                messages.append(row)
        if sampling:
            names = {f.name for f in dataclasses.fields(Sampling)}
            values = {k: v for k, v in sampling.items() if k in names}
            values["seed"] = values.get("seed") or 0
            self.sampling = Sampling.from_preset(check_sampling(values, f"{path}: sampling"))
        self.system_prompt = system
        self.messages = messages
        self.last_stats = ReplyStats()
