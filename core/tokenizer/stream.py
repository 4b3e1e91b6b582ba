"""Streaming detokenization: token ids as they are generated, turned into text exactly as `decode` would.

`TextDecoder` releases the text of a growing id list piece by piece through the tokenizer's own
`decode` (so a Hugging Face tokenizer's SentencePiece spaces and byte fallback come out as
transformers decodes them); a `Piece` is generated ids with the text they completed.
core.generate yields Pieces; chat and the server stream them. Torch-free: the TUI imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.tokenizer.protocol import TextTokenizer


@dataclass
class Piece:
    """A step of a streamed reply: generated token id(s) and the text that became final with them
    ("" while a character or a possible stop string is still incomplete)."""

    text: str
    ids: list[int]


class TextDecoder:
    """Text of a growing list of token ids through the tokenizer's own `decode`, released piece by
    piece (vLLM's incremental detokenizing): each new piece is decode(window + new ids) less
    decode(window), where the window starts at the previous piece, so decoders that look at
    neighbours (SentencePiece's leading space, byte fallback) give exactly `decode(all ids)`; text
    that ends in an incomplete character (U+FFFD) is held until the character is whole. (A run of
    byte-fallback tokens that is not UTF-8 decodes to U+FFFDs as a whole, so there what was already
    released can differ from the decode of all ids; a model rarely generates one.)"""

    def __init__(self, tokenizer: TextTokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._start = 0  # the window: ids[_start:_read] were decoded into text already released
        self._read = 0

    def add(self, token_id: int) -> str:
        """The text `token_id` completes ("" while held back)."""
        self.ids.append(token_id)
        done = self.tokenizer.decode(self.ids[self._start:self._read])
        text = self.tokenizer.decode(self.ids[self._start:])
        if len(text) <= len(done) or text.endswith("\ufffd"):
            return ""
        self._start, self._read = self._read, len(self.ids)
        return text[len(done):]

    def flush(self) -> str:
        """What is still held at the end (an incomplete character, as `decode` spells it)."""
        done = self.tokenizer.decode(self.ids[self._start:self._read])
        text = self.tokenizer.decode(self.ids[self._start:])
        self._start = self._read = len(self.ids)
        return text[len(done):]
