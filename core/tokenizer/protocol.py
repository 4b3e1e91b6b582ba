"""What every llmlab tokenizer offers the rest of the code: ours (tiktoken) and real models' (HF) alike.

Stages, chat, evaluation and the TUI use nothing of a tokenizer beyond `TextTokenizer` (`.enc` is what
token shard workers encode with); `Tokenizer` (core/tokenizer/encodings.py) and `HFTokenizer` (core/tokenizer/hf.py)
both satisfy it, and `chat` is a template with `render(messages, add_generation_prompt) -> (ids,
loss mask)`, `render_text` and `stop_ids` (ChatML ours, the model's Jinja template theirs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable


@runtime_checkable
class ChatFormat(Protocol):
    name: str

    def render(self, messages: Sequence[dict], add_generation_prompt: bool = False) -> tuple[list[int], list[int]]: ...

    def render_text(self, messages: Sequence[dict], add_generation_prompt: bool = False) -> str: ...

    @property
    def stop_ids(self) -> list[int]: ...


class ShardEncoder(Protocol):
    """What token shard workers call (a tiktoken.Encoding, or HFTokenizer's picklable OrdinaryEncoder)."""

    def encode_ordinary(self, text: str) -> list[int]: ...


@runtime_checkable
class TextTokenizer(Protocol):
    name: str
    chat_template: str

    @property
    def n_vocab(self) -> int: ...

    @property
    def eot_id(self) -> int: ...

    @property
    def special_tokens(self) -> dict[str, int]: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def chat(self) -> ChatFormat: ...

    @property
    def enc(self) -> ShardEncoder: ...

    @property
    def mergeable_ranks(self) -> dict[bytes, int]: ...

    def encode(self, text: str, allowed_special: Literal["all"] | Iterable[str] = (),
               add_special_tokens: bool = False) -> list[int]: ...

    def encode_batch(self, texts: Sequence[str], num_threads: int = 8) -> list[list[int]]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def token_bytes(self, token_id: int) -> bytes: ...

    def is_special(self, token_id: int) -> bool: ...

    def save(self, folder: str | Path) -> Path: ...


class TemplateTokenizer(TextTokenizer, Protocol):
    """What a real model's Jinja chat template (core/tokenizer/jinja.py) needs of its HFTokenizer
    beyond text: the characters each id covers and the special tokens the template sees by name."""

    def encode_with_char_offsets(self, text: str, allowed_special: Literal["all"] | Iterable[str] = ()
                                 ) -> tuple[list[int], list[tuple[int, int]]]: ...

    def template_variables(self) -> dict[str, str]: ...
