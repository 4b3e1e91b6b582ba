"""Tokenizers of real models: a Hugging Face `tokenizer.json` (+ `tokenizer_config.json`) as a llmlab tokenizer.

Byte-level BPE (GPT-2, Llama-3, Qwen2/3, SmolLM) and SentencePiece-style BPE with byte fallback
(Llama-2, TinyLlama, Mistral-v0.1) run through the `tokenizers` library itself rather than being
converted to tiktoken ranks: normalizers (NFC, Prepend "▁"), byte fallback, Metaspace and the
post-processor's BOS have no tiktoken equivalent, and running the model's own pipeline is the only
way to be exactly what transformers encodes. BOS/EOS follow transformers 5: tokenizer.json's
post-processor decides what encoding a document adds (a BOS for Llama); the config's
`add_bos_token` does not override it (transformers 5 reports the flag but keeps the file's
post-processor, so the model's importer writes the BOS into tokenizer.json). transformers 5's LlamaTokenizer class
(Llama-2, TinyLlama, Mistral-v0.1 name it) rebuilds the pipeline around the file's vocabulary
(Metaspace with prepend_scheme "first" unless `legacy`, no normalizer); `_as_transformers_builds`
does the same, so ids equal transformers' even where the file's own normalizer would differ (text
that starts with spaces, text after a special token). User text is encoded with special tokens
split (`encode_special_tokens`), so typing "<|im_end|>" never yields the control token.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterable, Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal

from core.errors import UserError

HF_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_MAP_FILE = "special_tokens_map.json"
TEMPLATE_FILE = "chat_template.jinja"
HF_FILES = (HF_FILE, CONFIG_FILE, SPECIAL_MAP_FILE, TEMPLATE_FILE)
SUPPORTED_MODELS = ("BPE",)


def is_hf_folder(folder: Path) -> bool:
    """A folder holding a Hugging Face tokenizer.json (a dict with a "model" entry, unlike our old metadata)."""
    p = folder / HF_FILE
    if not p.is_file():
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return b'"model"' in head or b'"added_tokens"' in head


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _token_text(value: Any, path: Path, key: str) -> str | None:
    """A special token entry: a string, an AddedToken dict {"content": ...}, or null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise UserError(f"{path}: {key} must be a string or {{\"content\": ...}}, got {value!r:.60}")


def _chat_template_text(folder: Path, config: dict) -> tuple[str | None, Path | None]:
    """The Jinja chat template and the file it came from: chat_template.jinja first, then the config."""
    jinja = folder / TEMPLATE_FILE
    if jinja.is_file():
        try:
            return jinja.read_text(encoding="utf-8"), jinja
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{jinja}: unreadable ({e})") from None
    tpl = config.get("chat_template")
    where = folder / CONFIG_FILE
    if isinstance(tpl, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in tpl if isinstance(t, dict)}
        tpl = named.get("default", next(iter(named.values()), None))
    if tpl is not None and not isinstance(tpl, str):
        raise UserError(f"{where}: chat_template must be a string (a Jinja template), got {type(tpl).__name__}")
    return tpl, (where if tpl else None)


class HFTokenizer:
    """A Hugging Face tokenizer folder with the interface of `core.tokenizer.Tokenizer`."""

    kind = "hf"

    def __init__(self, folder: str | Path, name: str | None = None):
        from tokenizers import Tokenizer as RustTokenizer

        self.folder = Path(folder)
        path = self.folder / HF_FILE
        raw = self._check_json(path)
        self.config = _read_json(self.folder / CONFIG_FILE) if (self.folder / CONFIG_FILE).is_file() else {}
        try:
            self._special = RustTokenizer.from_str(_as_transformers_builds(raw, self.config))
        except Exception as e:  # the Rust side reports any malformed part as a generic Exception
            raise UserError(f"{path}: the tokenizers library cannot load it ({e})") from None
        self._raw = raw
        smap = _read_json(self.folder / SPECIAL_MAP_FILE) if (self.folder / SPECIAL_MAP_FILE).is_file() else {}
        self._named = self._named_tokens(smap)
        self._plain = RustTokenizer.from_str(self._special.to_str())
        self._plain.encode_special_tokens = True
        self.template_source, self.template_path = _chat_template_text(self.folder, self.config)
        self.name = name or f"hf-{self.fingerprint[:8]}"
        self.chat_template = "jinja" if self.template_source else "none"

    # ----------------------------------------------------------------------------- loading
    @staticmethod
    def _check_json(path: Path) -> str:
        raw = path.read_text(encoding="utf-8") if path.is_file() else None
        if raw is None:
            raise UserError(f"{path}: missing; a Hugging Face tokenizer folder holds {HF_FILE}")
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
        model = data.get("model") if isinstance(data, dict) else None
        kind = model.get("type") if isinstance(model, dict) else None
        if kind not in SUPPORTED_MODELS:
            raise UserError(f"{path}: model.type {kind!r} is not supported; llmlab reads BPE tokenizers "
                            "(byte-level as GPT-2/Llama-3/Qwen, or SentencePiece-style with byte fallback as Llama-2)")
        return raw

    def _named_tokens(self, smap: dict) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            src, where = (self.config, CONFIG_FILE) if key in self.config else (smap, SPECIAL_MAP_FILE)
            tok = _token_text(src.get(key), self.folder / where, key)
            if tok is not None and self._special.token_to_id(tok) is None:
                raise UserError(f"{self.folder / where}: {key} {tok!r} is not in the vocabulary of {HF_FILE}")
            out[key] = tok
        return out

    # ------------------------------------------------------------------------------- basics
    def _id(self, key: str) -> int | None:
        tok = self._named.get(key)
        return None if tok is None else self._special.token_to_id(tok)

    @property
    def bos_id(self) -> int | None:
        return self._id("bos_token")

    @property
    def eos_id(self) -> int | None:
        return self._id("eos_token")

    @property
    def eot_id(self) -> int:
        """End of text (padding, document separator, stop): the EOS token, else BOS."""
        i = self.eos_id if self.eos_id is not None else self.bos_id
        if i is None:
            raise UserError(f"{self.folder / CONFIG_FILE}: names neither eos_token nor bos_token; "
                            "llmlab needs an end-of-text token")
        return i

    @property
    def add_bos_token(self) -> bool:
        """Whether encoding a document (`add_special_tokens=True`) puts BOS first, as transformers does."""
        return self.bos_id is not None and self.encode("", add_special_tokens=True)[:1] == [self.bos_id]

    @cached_property
    def n_vocab(self) -> int:
        """Ids run from 0 to n_vocab - 1 (added tokens included)."""
        return max(self._special.get_vocab(with_added_tokens=True).values()) + 1

    @cached_property
    def special_tokens(self) -> dict[str, int]:
        """Added tokens marked special, plus the named ones (bos, eos, unk, pad): text never spells them."""
        out = {t.content: i for i, t in self._special.get_added_tokens_decoder().items() if t.special}
        for tok in self._named.values():
            i = None if tok is None else self._special.token_to_id(tok)
            if tok is not None and i is not None:  # (checked present when the config was read)
                out[tok] = i
        return out

    @cached_property
    def _special_ids(self) -> frozenset[int]:
        return frozenset(self.special_tokens.values())

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special_ids

    def encode(self, text: str, allowed_special: Literal["all"] | Iterable[str] = (),
               add_special_tokens: bool = False) -> list[int]:
        """Ids of `text`; special-token spellings stay text unless `allowed_special` is "all".
        `add_special_tokens=True` adds what the post-processor adds (BOS for Llama), as transformers does."""
        allowed = allowed_special if allowed_special == "all" else set(allowed_special)
        tok = self._special if allowed else self._plain
        return tok.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: Sequence[str], num_threads: int = 8) -> list[list[int]]:
        return [e.ids for e in self._plain.encode_batch_fast(list(texts), add_special_tokens=False)]

    def encode_with_char_offsets(self, text: str, allowed_special: Literal["all"] | Iterable[str] = ()
                                 ) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids of `text` as `encode` gives them and the (start, end) characters each covers (inspection,
        and where a rendered chat template's tokens lie)."""
        e = (self._special if allowed_special else self._plain).encode(text, add_special_tokens=False)
        return e.ids, e.offsets

    def decode(self, ids: Sequence[int]) -> str:
        return self._special.decode(list(ids), skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    @cached_property
    def _bytes(self) -> list[bytes]:
        return vocab_bytes(self._special, json.loads(self._raw), self.n_vocab)

    @cached_property
    def mergeable_ranks(self) -> dict[bytes, int]:
        """Bytes -> id of the ordinary tokens (for inspection; encoding never goes through it)."""
        out: dict[bytes, int] = {}
        for i, b in enumerate(self._bytes):
            if i not in self._special_ids and b not in out:
                out[b] = i
        return out

    @property
    def pattern(self) -> str:
        pre = json.loads(self._raw).get("pre_tokenizer")
        return json.dumps(pre) if pre else ""

    @property
    def enc(self) -> Any:
        """A picklable object with encode_ordinary (what token shard workers call)."""
        return OrdinaryEncoder(self._plain)

    @cached_property
    def fingerprint(self) -> str:
        """A short hash of tokenizer.json and the config entries that change ids: equal -> same ids."""
        h = hashlib.sha256(self._raw.encode())
        h.update(json.dumps({k: self.config.get(k) for k in ("add_bos_token", "add_eos_token")}).encode())
        h.update(json.dumps(self._named, sort_keys=True).encode())
        return h.hexdigest()[:16]

    @cached_property
    def chat(self) -> Any:
        from core.tokenizer.jinja import JinjaChatTemplate, NoChatTemplate

        if not self.template_source:
            return NoChatTemplate(self.folder)
        return JinjaChatTemplate(self.template_source, self, str(self.template_path))

    def template_variables(self) -> dict[str, str]:
        """The special tokens a template sees by name (transformers passes its special_tokens_map)."""
        return {k: v for k, v in self._named.items() if v is not None}

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r}, n_vocab={self.n_vocab}, chat={self.chat_template!r})"

    # ------------------------------------------------------------------------------ saving
    def save(self, folder: str | Path) -> Path:
        """Copy the Hugging Face files as they were read: a checkpoint carries the model's own tokenizer."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in HF_FILES:
            if (self.folder / name).is_file():
                shutil.copyfile(self.folder / name, folder / name)
        return folder

    @classmethod
    def load(cls, folder: str | Path, name: str | None = None) -> HFTokenizer:
        return cls(folder, name)


LLAMA_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast")


def _as_transformers_builds(raw: str, config: dict) -> str:
    """tokenizer.json as transformers 5 runs it: its LlamaTokenizer keeps the vocabulary, merges and
    post-processor but sets Metaspace (prepend "first", or "always" with legacy) and no normalizer."""
    if config.get("tokenizer_class") not in LLAMA_CLASSES:
        return raw
    spec = json.loads(raw)
    prefix = config.get("add_prefix_space")
    prefix = True if prefix is None else bool(prefix)
    scheme = ("always" if config.get("legacy", False) else "first") if prefix else "never"
    spec["normalizer"] = None
    spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": False}
    steps = [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
             {"type": "Fuse"}]
    if prefix:
        steps.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    spec["decoder"] = {"type": "Sequence", "decoders": steps}
    spec["model"].update(fuse_unk=True, byte_fallback=True, dropout=None)
    return json.dumps(spec, ensure_ascii=False)


class OrdinaryEncoder:
    """encode_ordinary over a `tokenizers.Tokenizer` (picklable: it crosses to shard worker processes)."""

    def __init__(self, tok: Any):
        self.tok = tok

    def encode_ordinary(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def __getstate__(self) -> str:
        return self.tok.to_str()

    def __setstate__(self, state: str) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        self.tok = RustTokenizer.from_str(state)
        self.tok.encode_special_tokens = True


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _is_byte_level(spec: dict) -> bool:
    dec = spec.get("decoder") or {}
    parts = dec.get("decoders", [dec]) if dec.get("type") == "Sequence" else [dec]
    return any(d.get("type") == "ByteLevel" for d in parts if isinstance(d, dict))


def vocab_bytes(tok: Any, spec: dict, n_vocab: int) -> list[bytes]:
    """The bytes each id stands for: byte-level strings mapped back through GPT-2's alphabet, or
    SentencePiece pieces ("▁" is a space, "<0x0A>" a byte-fallback byte); added tokens as their text."""
    added = {i: t.content for i, t in tok.get_added_tokens_decoder().items()}
    byte_level = _is_byte_level(spec)
    u2b = {c: b for b, c in bytes_to_unicode().items()}
    fallback = re.compile(r"<0x([0-9A-Fa-f]{2})>")
    out = [b""] * n_vocab
    for piece, i in tok.get_vocab(with_added_tokens=False).items():
        if byte_level:
            out[i] = bytes(u2b[c] for c in piece) if all(c in u2b for c in piece) else piece.encode()
        elif m := fallback.fullmatch(piece):
            out[i] = bytes([int(m.group(1), 16)])
        else:
            out[i] = piece.replace("\u2581", " ").encode()
    for i, content in added.items():
        out[i] = content.encode()
    return out
