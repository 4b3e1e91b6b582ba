"""Look inside a tokenizer: spans of a text, statistics, the vocabulary and its merges, comparisons.

Everything returns plain data (dataclasses) that the TUI's token view and the CLI render; nothing
here prints. Works for any tokenizer (built-in, trained, or a real model's HFTokenizer).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from core.errors import UserError
from core.tokenizer.encodings import TIKTOKEN_VOCAB, EncodingUnavailable, get_tokenizer
from core.tokenizer.protocol import TextTokenizer

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Span:
    """One token of a text. `start`/`end` are character offsets into the text; a token that holds
    only part of a character's UTF-8 bytes (`partial`) covers that whole character."""
    id: int
    bytes: bytes
    text: str          # printable: whitespace and control characters escaped, partial bytes as \xNN
    start: int
    end: int
    partial: bool
    special: bool = False


def printable(b: bytes) -> str:
    """A token's bytes for display: \\n, \\t, \\r and other controls escaped, broken UTF-8 as \\xNN."""
    s = b.decode("utf-8", errors="backslashreplace")
    out = []
    for ch in s:
        if ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def spans(tok: TextTokenizer, text: str, allowed_special: Literal["all"] | Iterable[str] = ()) -> list[Span]:
    """Tokenize `text` and say, for every token, which bytes and characters it covers."""
    if hasattr(tok, "encode_with_char_offsets"):  # a real model's tokenizer knows its own offsets (SentencePiece
        # adds a prefix space that is in no character of the text)
        return [Span(t, tok.token_bytes(t), printable(tok.token_bytes(t)), a, b, _partial(tok.token_bytes(t)),
                     tok.is_special(t)) for t, (a, b) in zip(*tok.encode_with_char_offsets(text, allowed_special))]
    ids = tok.encode(text, allowed_special=allowed_special)
    # char index of each UTF-8 byte of the text, to map byte offsets back to characters
    byte_to_char: list[int] = []
    for i, ch in enumerate(text):
        byte_to_char.extend([i] * len(ch.encode("utf-8")))
    out: list[Span] = []
    pos = 0
    for t in ids:
        b = tok.token_bytes(t)
        start_b, end_b = pos, pos + len(b)
        pos = end_b
        start = byte_to_char[start_b] if start_b < len(byte_to_char) else len(text)
        end = byte_to_char[end_b - 1] + 1 if b else start
        out.append(Span(t, b, printable(b), start, end, _partial(b), tok.is_special(t)))
    return out


def _partial(b: bytes) -> bool:
    """Whether a token holds only part of a character's UTF-8 bytes."""
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@dataclass(frozen=True)
class TokenStats:
    n_tokens: int
    n_chars: int
    n_bytes: int
    n_words: int
    chars_per_token: float
    bytes_per_token: float
    words_per_token: float
    tokens_per_word: float


def stats(tok: TextTokenizer, text: str | Sequence[str]) -> TokenStats:
    """Characters, bytes and (whitespace-separated) words per token over one text or several."""
    texts = [text] if isinstance(text, str) else list(text)
    n_tokens = sum(len(ids) for ids in tok.encode_batch(texts))
    n_chars = sum(len(t) for t in texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_words = sum(len(_WORD.findall(t)) for t in texts)
    per = (lambda x: x / n_tokens) if n_tokens else (lambda x: 0.0)
    return TokenStats(n_tokens, n_chars, n_bytes, n_words, per(n_chars), per(n_bytes), per(n_words),
                      n_tokens / n_words if n_words else 0.0)


# ---------------------------------------------------------------------------------- vocabulary

@dataclass(frozen=True)
class VocabEntry:
    """A vocabulary id: its bytes, its merge rank (for tiktoken encodings the rank is the id) and the
    two tokens whose merge made it (None for the 256 byte tokens and special tokens)."""
    id: int
    bytes: bytes
    text: str
    rank: int | None
    parents: tuple[int, int] | None
    special: bool = False


def merge_parents(ranks: dict[bytes, int], token: bytes) -> tuple[bytes, bytes] | None:
    """The two tokens that merged into `token`: run BPE on its bytes using only merges ranked below
    it (tiktoken's educational bpe with max_rank); what is left is the last pair merged."""
    rank = ranks.get(token)
    if rank is None or len(token) < 2:
        return None
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best_i, best_rank = -1, rank
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best_rank:
                best_i, best_rank = i, r
        if best_i < 0:
            break
        parts[best_i: best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    if len(parts) != 2:  # not reachable by merges below its rank (never for a BPE-trained table)
        return None
    return parts[0], parts[1]


def vocab_entry(tok: TextTokenizer, token_id: int) -> VocabEntry:
    if not 0 <= token_id < tok.n_vocab:
        raise UserError(f"token id {token_id} is outside the vocabulary (0 to {tok.n_vocab - 1})")
    if tok.is_special(token_id):
        b = tok.token_bytes(token_id)
        return VocabEntry(token_id, b, printable(b), None, None, special=True)
    try:
        b = tok.token_bytes(token_id)
    except KeyError:  # an unused id (p50k_base has gaps below its special tokens)
        return VocabEntry(token_id, b"", "", None, None)
    ranks = tok.mergeable_ranks
    pair = merge_parents(ranks, b)
    parents = (ranks[pair[0]], ranks[pair[1]]) if pair else None
    return VocabEntry(token_id, b, printable(b), ranks.get(b), parents)


def vocab_page(tok: TextTokenizer, start: int = 0, count: int = 100) -> list[VocabEntry]:
    """`count` entries from id `start` (a page of the vocabulary browser)."""
    stop = min(tok.n_vocab, max(0, start) + count)
    return [vocab_entry(tok, i) for i in range(max(0, start), stop)]


def find_tokens(tok: TextTokenizer, query: str, limit: int = 100) -> list[VocabEntry]:
    """Tokens whose bytes contain `query` (UTF-8), shortest first, then by id."""
    q = query.encode("utf-8")
    hits = sorted((len(b), r) for b, r in tok.mergeable_ranks.items() if q in b)
    hits += [(len(s), i) for s, i in tok.special_tokens.items() if query in s]
    return [vocab_entry(tok, i) for _, i in sorted(hits)[:limit]]


# --------------------------------------------------------------------------------- comparisons

@dataclass(frozen=True)
class Comparison:
    text: str
    names: tuple[str, str]
    spans: tuple[list[Span], list[Span]]
    stats: tuple[TokenStats, TokenStats]


def _as_tokenizer(t: Any) -> Any:
    """A tokenizer object as it is; a name or folder through get_tokenizer (ours and HF ones alike)."""
    return get_tokenizer(os.fspath(t)) if isinstance(t, (str, os.PathLike)) else t


def compare(text: str, a: TextTokenizer | str, b: TextTokenizer | str) -> Comparison:
    """Two tokenizers on the same text, side by side."""
    ta, tb = _as_tokenizer(a), _as_tokenizer(b)
    return Comparison(text, (ta.name, tb.name), (spans(ta, text), spans(tb, text)), (stats(ta, text), stats(tb, text)))


@dataclass
class CompressionRow:
    """One encoding over a sample. `vs_gpt2`/`vs_gpt4` = that encoding's token count divided by this
    one's (above 1: this one needs fewer tokens); None when the reference is unavailable.
    `tokens_per_word` is the fertility (whitespace-separated words); `byte_fallback_share` the share
    of tokens that hold part of a character's UTF-8 bytes (the text had no merge for that character)."""
    name: str
    available: bool
    error: str = ""
    n_vocab: int = 0
    n_tokens: int = 0
    n_bytes: int = 0
    bytes_per_token: float = 0.0
    vs_gpt2: float | None = None
    vs_gpt4: float | None = None
    tokens_per_word: float = 0.0
    byte_fallback_share: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_COMPARED = ("gpt2", "cl100k_base", "o200k_base")


def compression_table(texts: Sequence[str], encodings: Sequence[TextTokenizer | str] = DEFAULT_COMPARED,
                      ) -> list[CompressionRow]:
    """Bytes per token of each encoding over `texts` (nanochat's tokenizer evaluation); an encoding
    that cannot be loaded (offline) is a row with available=False and the reason, not a failure.
    GPT-2 and GPT-4 (cl100k_base) are measured as references even when not listed."""
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_words = sum(len(_WORD.findall(t)) for t in texts)
    rows: list[CompressionRow] = []
    counts: dict[str, int] = {}
    names = [str(e) if isinstance(e, (str, os.PathLike)) else e.name for e in encodings]
    refs = [r for r in ("gpt2", "cl100k_base") if r not in names]
    for e in [*encodings, *refs]:
        name = str(e) if isinstance(e, (str, os.PathLike)) else e.name
        try:
            tok = _as_tokenizer(e)
        except EncodingUnavailable as err:
            rows.append(CompressionRow(name, False, f"files not available offline ({err.reason})"))
            continue
        encoded = tok.encode_batch(list(texts))
        n = sum(len(ids) for ids in encoded)
        counts[name] = n
        partial = _partial_tokens(tok, encoded)
        rows.append(CompressionRow(name, True, "", tok.n_vocab, n, n_bytes, n_bytes / n if n else 0.0,
                                   tokens_per_word=n / n_words if n_words else 0.0,
                                   byte_fallback_share=partial / n if n else 0.0))
    for row in rows:
        if row.available and row.n_tokens:
            row.vs_gpt2 = counts["gpt2"] / row.n_tokens if "gpt2" in counts else None
            row.vs_gpt4 = counts["cl100k_base"] / row.n_tokens if "cl100k_base" in counts else None
    listed = set(names)
    return [r for r in rows if r.name in listed] + [r for r in rows if r.name not in listed and r.available]


def _partial_tokens(tok: TextTokenizer, encoded: Sequence[Sequence[int]]) -> int:
    """Tokens whose bytes are not whole UTF-8 characters: byte fallbacks of characters without a merge."""
    partial: dict[int, bool] = {}
    n = 0
    for ids in encoded:
        for t in ids:
            p = partial.get(t)
            if p is None:
                try:
                    tok.token_bytes(t).decode("utf-8")
                    p = False
                except (UnicodeDecodeError, KeyError):
                    p = True
                partial[t] = p
            n += p
    return n


def compression_by_source(texts: Mapping[str, Sequence[str]], encodings: Sequence[TextTokenizer | str] = DEFAULT_COMPARED,
                          ) -> dict[str, list[CompressionRow]]:
    """`compression_table` per source and over all of them ("all sources"); a source without text is left out."""
    out = {name: compression_table(t, encodings) for name, t in texts.items() if t}
    if len(out) > 1:
        out["all sources"] = compression_table([x for t in texts.values() for x in t], encodings)
    return out


def vocab_note(row: CompressionRow) -> str:
    """Why an encoding has the ids it has: tiktoken's ranks plus the special tokens llmlab adds."""
    base = TIKTOKEN_VOCAB.get(row.name)
    if base and row.n_vocab > base:
        return f"{base:,} ids as tiktoken ships it (<|endoftext|> included) + {row.n_vocab - base} chat special tokens added by llmlab"
    return ""


def format_compression_table(rows: Sequence[CompressionRow]) -> str:
    """A plain-text table of `compression_table` rows for the CLI."""
    head = (f"{'encoding':<24} {'vocab':>7} {'tokens':>10} {'bytes/token':>11} {'vs gpt2':>8} {'vs gpt4':>8} "
            f"{'tok/word':>8} {'fallback':>8}")
    lines = [head, "-" * len(head)]
    fmt = lambda x: f"{x:.3f}" if x is not None else "-"  # noqa: E731
    notes = []
    for r in rows:
        if not r.available:
            lines.append(f"{r.name:<24} unavailable: {r.error}")
            continue
        lines.append(f"{r.name:<24} {r.n_vocab:>7} {r.n_tokens:>10,} {r.bytes_per_token:>11.3f} "
                     f"{fmt(r.vs_gpt2):>8} {fmt(r.vs_gpt4):>8} {r.tokens_per_word:>8.3f} {r.byte_fallback_share:>8.2%}")
        if vocab_note(r):
            notes.append(f"{r.name}: {vocab_note(r)}")
    return "\n".join(lines + notes)


_COLOURS = (41, 42, 43, 44, 45, 46)  # ANSI background colours, cycled per token


def format_spans_ansi(span_list: Sequence[Span], show_ids: bool = True) -> str:
    """Coloured spans for a terminal (`llmlab tokenizer inspect`), then the ids on a second line."""
    parts = []
    for i, s in enumerate(span_list):
        colour = 7 if s.special else _COLOURS[i % len(_COLOURS)]
        parts.append(f"\x1b[30;{colour}m{s.text}\x1b[0m")
    out = "".join(parts)
    if show_ids:
        out += "\n" + " ".join(str(s.id) for s in span_list)
    return out
