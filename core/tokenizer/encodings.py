"""Tokenizers as tiktoken encodings: the built-in OpenAI encodings and our saved, trained ones.

Every tokenizer in llmlab is a `tiktoken.Encoding` (fast, exact, thread-parallel batch encoding)
wrapped in `Tokenizer`, which adds the chat template's special tokens, save/load of a
self-contained folder (`tokenizer.tiktoken` rank file + `llmlab_tokenizer.json`), and a fingerprint
that data shards and checkpoints use to know which tokenizer produced their ids. Real models'
Hugging Face tokenizers are `core.tokenizer.hf.HFTokenizer`; `load_tokenizer` reads either kind.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import os
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import tiktoken

from core.errors import UserError
from core.schemas import MAX_RANKS, MiB, FileFormatError, check_ranks, check_tokenizer_meta, read_bytes, read_json
from core.tokenizer.chat import ChatTemplate, chat_special_tokens

if TYPE_CHECKING:
    from core.tokenizer.hf import HFTokenizer

ENDOFTEXT = "<|endoftext|>"
RANK_FILE = "tokenizer.tiktoken"
META_FILE = "llmlab_tokenizer.json"
OLD_META_FILE = "tokenizer.json"  # the name before real models' tokenizer.json shared folders; still read
FORMAT_VERSION = 1
RANK_FILE_MAX_BYTES = 1 << 30

# The files each built-in encoding downloads (tiktoken_ext.openai_public); we look for them in
# tiktoken's cache before letting tiktoken fetch them, so offline use fails at once with advice.
_BLOB = "https://openaipublic.blob.core.windows.net"
BUILTIN_FILES: dict[str, tuple[str, ...]] = {
    "gpt2": (f"{_BLOB}/gpt-2/encodings/main/vocab.bpe", f"{_BLOB}/gpt-2/encodings/main/encoder.json"),
    "r50k_base": (f"{_BLOB}/encodings/r50k_base.tiktoken",),
    "p50k_base": (f"{_BLOB}/encodings/p50k_base.tiktoken",),
    "cl100k_base": (f"{_BLOB}/encodings/cl100k_base.tiktoken",),
    "o200k_base": (f"{_BLOB}/encodings/o200k_base.tiktoken",),
}
BUILTIN_ENCODINGS: tuple[str, ...] = tuple(BUILTIN_FILES)
# ids of each built-in as tiktoken ships it (<|endoftext|> included; p50k_base has unused ids);
# Tokenizer adds the chat template's special tokens after them (gpt2 + chatml: 50,259 ids)
TIKTOKEN_VOCAB = {"gpt2": 50257, "r50k_base": 50257, "p50k_base": 50281, "cl100k_base": 100277,
                  "o200k_base": 200019}
_FETCH_TIMEOUT_S = 5.0


class Tokenizer:
    """A tiktoken encoding with the special tokens of a chat template.

    `encode` treats special-token strings in text as ordinary text unless `allowed_special` names
    them (or is "all"): user text can never inject `<|im_end|>`.
    """

    def __init__(self, enc: tiktoken.Encoding, name: str | None = None, chat_template: str = "chatml",
                 mergeable_ranks: dict[bytes, int] | None = None):
        enc = _with_special_tokens(enc, [ENDOFTEXT, *chat_special_tokens(chat_template)])
        self.enc = enc
        self.name = name or enc.name
        self.chat_template = chat_template
        self._ranks = mergeable_ranks
        self._fingerprint: str | None = None
        self.chat = ChatTemplate(chat_template, enc)

    # ------------------------------------------------------------------------------- basics
    @property
    def eot_id(self) -> int:
        return self.enc.eot_token

    @property
    def n_vocab(self) -> int:
        """Ids run from 0 to n_vocab - 1 (special tokens included): the model's vocab_size."""
        return self.enc.n_vocab

    @property
    def pattern(self) -> str:
        return self.enc._pat_str

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self.enc._special_tokens)

    @property
    def mergeable_ranks(self) -> dict[bytes, int]:
        if self._ranks is None:
            self._ranks = dict(self.enc._mergeable_ranks)
        return self._ranks

    def encode(self, text: str, allowed_special: Literal["all"] | Iterable[str] = (),
               add_special_tokens: bool = False) -> list[int]:
        """Ids of `text`. `add_special_tokens` is for the interface of HFTokenizer (which may add a
        BOS there); our documents start with <|endoftext|> where the caller puts it."""
        allowed = allowed_special if allowed_special == "all" else set(allowed_special)
        if not allowed:
            return self.enc.encode_ordinary(text)
        return self.enc.encode(text, allowed_special=allowed, disallowed_special=())

    def encode_batch(self, texts: Sequence[str], num_threads: int = 8) -> list[list[int]]:
        return self.enc.encode_ordinary_batch(list(texts), num_threads=num_threads)

    def decode(self, ids: Sequence[int]) -> str:
        return self.enc.decode(list(ids), errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self.enc.decode_single_token_bytes(token_id)

    def is_special(self, token_id: int) -> bool:
        return token_id in self.enc._special_token_values

    @property
    def fingerprint(self) -> str:
        """A short hash of ranks, pattern and special tokens: equal fingerprints encode identically."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(self.pattern.encode())
            h.update(json.dumps(sorted(self.special_tokens.items())).encode())
            for token, rank in sorted(self.mergeable_ranks.items(), key=lambda kv: kv[1]):
                h.update(rank.to_bytes(4, "little") + len(token).to_bytes(2, "little") + token)
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r}, n_vocab={self.n_vocab}, chat={self.chat_template!r})"

    # ---------------------------------------------------------------------------- save/load
    def save(self, folder: str | Path) -> Path:
        """Write `tokenizer.tiktoken` (base64 token + rank per line, as tiktoken reads it) and
        `llmlab_tokenizer.json`; the folder then loads offline with `Tokenizer.load` or `get_tokenizer`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        lines = [f"{base64.b64encode(tok).decode()} {rank}\n"
                 for tok, rank in sorted(self.mergeable_ranks.items(), key=lambda kv: kv[1])]
        (folder / RANK_FILE).write_text("".join(lines))
        meta = {
            "format": FORMAT_VERSION,
            "name": self.name,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "chat_template": self.chat_template,
            "n_vocab": self.n_vocab,
            "fingerprint": self.fingerprint,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Tokenizer:
        folder = Path(folder)
        meta_path, rank_path = meta_file(folder), folder / RANK_FILE
        for p in (meta_path, rank_path):
            if not p.is_file():
                raise UserError(f"{folder}: not a saved tokenizer ({p.name} is missing); "
                                f"a tokenizer folder holds {RANK_FILE} and {META_FILE}")
        meta = check_tokenizer_meta(read_json(meta_path, 64 * MiB), meta_path)
        ranks = read_rank_file(rank_path)
        check_ranks(ranks, meta["special_tokens"], rank_path, meta_path)
        chat_special_tokens(meta.get("chat_template", "chatml"))  # an unknown template, by name
        try:
            enc = tiktoken.Encoding(name=meta["name"], pat_str=meta["pattern"], mergeable_ranks=ranks,
                                    special_tokens=meta["special_tokens"])
        except ValueError as e:  # the pattern does not compile
            raise FileFormatError(meta_path, "pattern", f"not a regular expression tiktoken accepts ({e})") from None
        return cls(enc, meta["name"], meta.get("chat_template", "chatml"), mergeable_ranks=ranks)


def meta_file(folder: Path) -> Path:
    """Our metadata file in a saved tokenizer folder: llmlab_tokenizer.json, or tokenizer.json of old saves."""
    old = folder / OLD_META_FILE
    if not (folder / META_FILE).is_file() and old.is_file() and (folder / RANK_FILE).is_file():
        return old
    return folder / META_FILE


def is_saved_tokenizer(folder: Path) -> bool:
    """Whether `folder` holds a complete tokenizer save (ours, old or new name)."""
    return meta_file(folder).is_file() and (folder / RANK_FILE).is_file()


def load_tokenizer(folder: str | Path, kind: str | None = None, name: str | None = None) -> Tokenizer | HFTokenizer:
    """The tokenizer saved in `folder`: a Hugging Face one (kind "hf", or a tokenizer.json of that
    format) as HFTokenizer, else our tiktoken save."""
    from core.tokenizer.hf import HFTokenizer, is_hf_folder

    folder = Path(folder)
    if kind == "hf" or (kind is None and not (folder / RANK_FILE).is_file() and is_hf_folder(folder)):
        return HFTokenizer.load(folder, name)
    if kind is None and not (folder / RANK_FILE).is_file() and not meta_file(folder).is_file():
        raise UserError(f"{folder}: not a tokenizer folder: it holds neither ours ({RANK_FILE} and {META_FILE}) "
                        "nor a Hugging Face tokenizer.json")
    return Tokenizer.load(folder)


def read_rank_file(path: Path) -> dict[bytes, int]:
    """Parse a tiktoken rank file ourselves: tiktoken's loader would copy local files into its cache."""
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(read_bytes(path, RANK_FILE_MAX_BYTES).splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError:
            raise UserError(f"{path}: line {lineno}: expected 'BASE64TOKEN RANK'; "
                            "the file is damaged, train or save the tokenizer again") from None
        if ranks[base64.b64decode(token)] >= MAX_RANKS:
            raise UserError(f"{path}: line {lineno}: rank {int(rank)} is beyond {MAX_RANKS:,}; the file is damaged")
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise UserError(f"{path}: ranks are not 0..{len(ranks) - 1} without gaps; the file is damaged")
    return ranks


def _with_special_tokens(enc: tiktoken.Encoding, names: list[str]) -> tiktoken.Encoding:
    """Add the special tokens `enc` lacks at ids after its largest one (gpt2 + chatml: 50257, 50258)."""
    specials = dict(enc._special_tokens)
    missing = [n for n in dict.fromkeys(names) if n not in specials]
    if not missing:
        return enc
    next_id = enc.max_token_value + 1
    for n in missing:
        specials[n] = next_id
        next_id += 1
    return tiktoken.Encoding(name=enc.name, pat_str=enc._pat_str,
                             mergeable_ranks=enc._mergeable_ranks, special_tokens=specials)


# ------------------------------------------------------------------------------ built-ins

def _cache_dir() -> Path:
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if var in os.environ:
            return Path(os.environ[var])
    import tempfile
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def cache_path(url: str) -> Path:
    """Where tiktoken keeps (or looks for) the download of `url`: the SHA-1 of the address."""
    return _cache_dir() / hashlib.sha1(url.encode()).hexdigest()


class EncodingUnavailable(UserError):
    """A built-in encoding whose files are neither cached nor downloadable; `reason` says why."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def _offline_error(name: str, missing: list[str], reason: str) -> EncodingUnavailable:
    where = "\n".join(f"  {url}\n    -> {cache_path(url)}" for url in missing)
    return EncodingUnavailable(
        f"tokenizer.encoding: the files of the {name!r} encoding could not be fetched ({reason}). "
        "Run once with network access, or download these files on another machine and put them at "
        f"(set TIKTOKEN_CACHE_DIR to choose the folder):\n{where}\n"
        "or set tokenizer.encoding to a saved tokenizer folder (one holding tokenizer.tiktoken and "
        f"{META_FILE}, written by Tokenizer.save).", reason)


def _reachable(url: str) -> str | None:
    """None when the host answers within a few seconds, else why not (tiktoken sets no timeout)."""
    if os.environ.get("LLMLAB_OFFLINE") == "1":
        return "LLMLAB_OFFLINE=1"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # requests goes through the proxy; a direct connection says nothing
    host = urlparse(url).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=_FETCH_TIMEOUT_S).close()
    except OSError as e:
        return f"cannot reach {host}: {e.strerror or e}"
    return None


_builtin_cache: dict[str, tiktoken.Encoding] = {}


def load_builtin(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding `name`, from tiktoken's cache or fetched once; offline -> UserError."""
    if name in _builtin_cache:
        return _builtin_cache[name]
    missing = [u for u in BUILTIN_FILES[name] if not cache_path(u).is_file()]
    if missing:
        reason = _reachable(missing[0])
        if reason is not None:
            raise _offline_error(name, missing, reason)
    try:
        enc = tiktoken.get_encoding(name)
    except Exception as e:  # requests' ConnectionError/HTTPError, hash mismatch, partial file
        raise _offline_error(name, missing or list(BUILTIN_FILES[name]), f"{type(e).__name__}: {e}") from None
    _builtin_cache[name] = enc
    return enc


def get_tokenizer(name_or_path: str | Path, chat_template: str = "chatml") -> Tokenizer | HFTokenizer:
    """A built-in tiktoken encoding by name, or a saved tokenizer folder by path."""
    s = str(name_or_path)
    if s in BUILTIN_FILES:
        return Tokenizer(load_builtin(s), s, chat_template)
    p = Path(s).expanduser()
    if p.is_dir():
        return load_tokenizer(p)
    if p.exists():
        raise UserError(f"{s}: is a file; tokenizer.encoding takes a built-in name or a saved tokenizer "
                        f"folder (holding {RANK_FILE} and {META_FILE}, or a Hugging Face tokenizer.json)")
    if "/" in s or os.sep in s or s.startswith("."):
        raise UserError(f"{s}: no such tokenizer folder")
    hint = difflib.get_close_matches(s, BUILTIN_ENCODINGS, n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise UserError(f"tokenizer.encoding: unknown encoding {s!r}{extra}; known encodings: "
                    f"{', '.join(BUILTIN_ENCODINGS)}, or a path to a saved tokenizer folder")
