"""Chat templates: how a conversation becomes token ids and a loss mask.

The template lives with the tokenizer (its special tokens are part of the vocabulary) and is saved
with it and with every checkpoint trained on it; instruction finetuning, DPO and the chat pane all
render through `ChatTemplate.render`, so what the model learns is what it is later prompted with.

ChatML layout, one conversation:
    <|endoftext|><|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\n...<|im_end|>\\n
    <|im_start|>assistant\\n...<|im_end|>\\n
The leading <|endoftext|> marks a document start, as between pretraining documents. Role names
are plain text; message contents are encoded as ordinary text, so a user typing "<|im_end|>"
gets the characters, not the control token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import tiktoken

from core.errors import UserError

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer

ROLES = ("system", "user", "assistant")
CHAT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
}


def chat_special_tokens(name: str) -> tuple[str, ...]:
    if name not in CHAT_TEMPLATES:
        raise UserError(f"tokenizer.chat_template: unknown template {name!r}; known: {', '.join(CHAT_TEMPLATES)}")
    return CHAT_TEMPLATES[name]


def prompt_ids(tokenizer: TextTokenizer, text: str, *, chat: bool = False, system: str = "") -> tuple[list[int], list[int] | None]:
    """(ids, stop ids) that prompt a model: `text` as a document (BOS first where the tokenizer adds
    one; special tokens spelled in it count), or with `chat` as one user turn (after a `system`
    turn) through the tokenizer's chat template, stopping at its end of turn."""
    if not chat:
        if system:
            raise UserError("--system sets the system turn of a chat prompt; add --chat")
        return tokenizer.encode(text, allowed_special="all", add_special_tokens=True), None
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    ids, _ = tokenizer.chat.render(messages, add_generation_prompt=True)
    return list(ids), list(tokenizer.chat.stop_ids)


class ChatTemplate:
    """ChatML over one encoding (which already holds <|im_start|> and <|im_end|>)."""

    def __init__(self, name: str, enc: tiktoken.Encoding):
        start, end = chat_special_tokens(name)
        self.name = name
        self.enc = enc
        self.start_text, self.end_text = start, end
        self.im_start_id = enc._special_tokens[start]
        self.im_end_id = enc._special_tokens[end]
        self.bos_id = enc.eot_token

    @property
    def stop_ids(self) -> list[int]:
        """Generation of a reply ends at either of these ids."""
        return [self.im_end_id, self.bos_id]

    def _check(self, messages: Sequence[dict]) -> None:
        if not isinstance(messages, (list, tuple)):
            raise UserError(f"a conversation is a list of {{'role', 'content'}} messages, got {type(messages).__name__}")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise UserError(f"message {i}: expected {{'role': ..., 'content': ...}}, got {m!r:.80}")
            if m["role"] not in ROLES:
                raise UserError(f"message {i}: unknown role {m['role']!r}; roles: {', '.join(ROLES)}")
            if not isinstance(m["content"], str):
                raise UserError(f"message {i}: content must be text, got {type(m['content']).__name__}")

    def render(self, messages: Sequence[dict], add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
        """Ids of the conversation and a 0/1 mask of the same length that is 1 exactly on the
        assistant contents and their closing <|im_end|> (what a finetuned model must produce)."""
        self._check(messages)
        ids: list[int] = [self.bos_id]
        mask: list[int] = [0]

        def add(tokens: list[int], train: bool) -> None:
            ids.extend(tokens)
            mask.extend([int(train)] * len(tokens))

        newline = self.enc.encode_ordinary("\n")
        for m in messages:
            train = m["role"] == "assistant"
            add([self.im_start_id, *self.enc.encode_ordinary(m["role"] + "\n")], False)
            add(self.enc.encode_ordinary(m["content"]), train)
            add([self.im_end_id], train)
            add(newline, False)
        if add_generation_prompt:
            add([self.im_start_id, *self.enc.encode_ordinary("assistant\n")], False)
        return ids, mask

    def render_text(self, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
        """The same conversation as text (for display); equals decoding `render(...)[0]`."""
        self._check(messages)
        parts = [self.enc.decode([self.bos_id])]
        for m in messages:
            parts.append(f"{self.start_text}{m['role']}\n{m['content']}{self.end_text}\n")
        if add_generation_prompt:
            parts.append(f"{self.start_text}assistant\n")
        return "".join(parts)

    def parse(self, ids: Sequence[int]) -> list[dict]:
        """Messages back from ids (an unfinished last message is kept as far as it goes)."""
        messages: list[dict] = []
        current: list[int] | None = None
        for t in list(ids) + [self.im_end_id]:
            if t == self.im_start_id:
                current = []
            elif t == self.im_end_id and current is not None:
                text = self.enc.decode(current, errors="replace")
                role, sep, content = text.partition("\n")
                if sep and role in ROLES:
                    messages.append({"role": role, "content": content})
                current = None
            elif current is not None and t != self.bos_id:
                current.append(t)
        return messages
