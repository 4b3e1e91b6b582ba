"""Hugging Face tokenizer files in and out: a checkpoint's tokenizer as other programs read it.

Out: `write_hf_tokenizer` writes tokenizer.json (built with `tokenizers`), tokenizer_config.json
(with the chat template as Jinja) and special_tokens_map.json for a Hugging Face folder; `bpe_vocab`
gives the same vocabulary and merges as lists for the GGUF export. Our tiktoken ranks become GPT-2's
byte-to-unicode alphabet; ids stay as they are. A checkpoint whose tokenizer is already a Hugging
Face one (model.json `tokenizer.kind = "hf"`) has its files read and copied as they are.
In: `HFTokenizerFiles` holds the files a real model brings (validated, from its folder, or converted
from a GGUF file's metadata by transformers) for its checkpoint's tokenizer/ folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import UserError
from core.tokenizer.hf import HF_FILES, bytes_to_unicode
from core.tokenizer.inspect import merge_parents

if TYPE_CHECKING:
    from core.tokenizer.encodings import Tokenizer
    from core.tokenizer.protocol import TextTokenizer

# core.tokenizer.chat's ChatML as Jinja (transformers, llama.cpp and LM Studio render it):
# the end-of-text id first, then one block per message, then the assistant's opening
CHATML_JINJA = ("{{ bos_token }}{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
                "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
                "{{ '<|im_start|>assistant\\n' }}{% endif %}")


def _unicode(b: bytes) -> str:
    b2u = bytes_to_unicode()
    return "".join(b2u[x] for x in b)


@dataclass
class BpeVocab:
    """A byte-level BPE as exchange formats store it: token strings by id, merges, specials."""

    tokens: list[str | None]  # by id; None where no token has the id
    merges: list[tuple[str, str]]
    specials: dict[str, int]
    pattern: str | None = None  # our split regex; None for a Hugging Face tokenizer (see pre_tokenizer)
    pre_tokenizer: dict | None = None  # tokenizer.json's pre_tokenizer (Hugging Face tokenizers)
    config: dict = field(default_factory=dict)  # tokenizer_config.json (Hugging Face tokenizers)


def bpe_vocab(tokenizer: Tokenizer) -> BpeVocab:
    """Token strings, merges and special tokens of one of our tiktoken tokenizers."""
    ranks = tokenizer.mergeable_ranks
    specials = tokenizer.special_tokens
    size = max([*ranks.values(), *specials.values()]) + 1
    tokens: list[str | None] = [None] * size
    merges = []
    for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        tokens[rank] = _unicode(tok)
        if len(tok) > 1:
            parts = merge_parents(ranks, tok)
            if parts is None:
                raise UserError(f"tokenizer {tokenizer.name!r}: token {tok!r} is not the merge of two lower-ranked "
                                f"tokens, so it is not a plain BPE that other programs can read")
            merges.append((_unicode(parts[0]), _unicode(parts[1])))
    for name, i in specials.items():
        tokens[i] = name
    return BpeVocab(tokens, merges, dict(specials), pattern=tokenizer.pattern)


def read_hf_vocab(folder: Path) -> BpeVocab:
    """The same from a Hugging Face tokenizer folder (tokenizer.json + tokenizer_config.json)."""
    path = folder / "tokenizer.json"
    try:
        tj = json.loads(path.read_text(encoding="utf-8"))
        model = tj["model"]
        vocab: dict[str, int] = model["vocab"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a readable tokenizers file ({type(e).__name__}: {e})") from None
    if model.get("type") != "BPE" or not isinstance(vocab, dict):
        raise UserError(f"{path}: model type {model.get('type')!r}; only byte-level BPE tokenizers export")
    try:
        added = {a["content"]: int(a["id"]) for a in tj.get("added_tokens", [])}
        specials = {a["content"]: int(a["id"]) for a in tj.get("added_tokens", []) if a.get("special")}
        size = max([*vocab.values(), *added.values()]) + 1
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: damaged vocabulary or added_tokens ({type(e).__name__}: {e})") from None
    tokens: list[str | None] = [None] * size
    for t, i in {**vocab, **added}.items():
        tokens[i] = t
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
    config = {}
    if (folder / "tokenizer_config.json").is_file():
        try:
            config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise UserError(f"{folder / 'tokenizer_config.json'}: not valid JSON ({e})") from None
    return BpeVocab(tokens, merges, specials, pre_tokenizer=tj.get("pre_tokenizer"), config=config)  # type: ignore[arg-type]


def special_id(v: BpeVocab, key: str) -> int | None:
    """The id of tokenizer_config.json's `key` token (bos_token, eos_token), or None."""
    tok = v.config.get(key)
    if isinstance(tok, dict):  # an AddedToken written out
        tok = tok.get("content")
    if not tok:
        return None
    try:
        return v.tokens.index(tok)
    except ValueError:
        raise UserError(f"tokenizer_config.json: {key} {tok!r} is not in the vocabulary of tokenizer.json") from None


def hf_tokenizer_folder(checkpoint: Path, meta: dict) -> Path | None:
    """The Hugging Face tokenizer folder of an imported model (model.json tokenizer.kind = "hf")."""
    tok = meta.get("tokenizer") or {}
    if tok.get("kind") != "hf":
        return None
    folder = checkpoint / tok.get("folder", "tokenizer")
    if not (folder / "tokenizer.json").is_file():
        raise UserError(f"{folder}: model.json names a Hugging Face tokenizer here, but tokenizer.json is missing")
    return folder


def chat_template_jinja(tokenizer: TextTokenizer) -> str | None:
    """Our chat template as Jinja text, or None when the tokenizer has no chat tokens."""
    if getattr(tokenizer, "chat_template", None) == "chatml" and {"<|im_start|>", "<|im_end|>"} <= set(
            tokenizer.special_tokens):
        return CHATML_JINJA
    return None


def eot_token(tokenizer: TextTokenizer) -> str | None:
    return next((t for t, i in tokenizer.special_tokens.items() if i == tokenizer.eot_id), None)


def write_hf_tokenizer(tokenizer: Tokenizer, out: Path, model_max_length: int) -> None:
    """tokenizer.json + tokenizer_config.json + special_tokens_map.json: a fast byte-level BPE with
    our split pattern and special tokens, same ids as ours, and the chat template as Jinja."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    v = bpe_vocab(tokenizer)
    vocab = {t: i for i, t in enumerate(v.tokens) if t is not None}
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=v.merges))
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(tokenizer.pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    hf.decoder = decoders.ByteLevel()
    specials = v.specials
    in_id_order = sorted(specials, key=lambda t: specials[t])
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in in_id_order])
    hf.save(str(out / "tokenizer.json"))
    eot = eot_token(tokenizer)
    cfg: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model_max_length,
                           "bos_token": eot, "eos_token": eot, "pad_token": eot, "unk_token": None,
                           "clean_up_tokenization_spaces": False}
    jinja = chat_template_jinja(tokenizer)
    if jinja is not None:
        cfg["chat_template"] = jinja
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    write_special_tokens_map(cfg, out)


def write_special_tokens_map(cfg: dict, out: Path) -> None:
    keys = ("bos_token", "eos_token", "unk_token", "pad_token", "additional_special_tokens")
    smap = {k: cfg[k] for k in keys if cfg.get(k) is not None}
    (out / "special_tokens_map.json").write_text(json.dumps(smap, indent=2) + "\n")


def copy_hf_tokenizer(folder: Path, out: Path) -> None:
    """An imported model's own Hugging Face tokenizer files (chat_template.jinja included), copied as
    they are (validated first)."""
    v = read_hf_vocab(folder)
    for name in HF_FILES:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, out / name)
    if not (out / "special_tokens_map.json").is_file():
        write_special_tokens_map(v.config, out)


# ------------------------------------------------------------------------------ a model's own

class HFTokenizerFiles:
    """The files, validated, ready for write_checkpoint (which calls `save`); model.json records
    `{"folder": "tokenizer", "kind": "hf"}`."""

    kind = "hf"

    def __init__(self, files: dict[str, bytes], n_vocab: int, source: str):
        self.files, self.n_vocab, self.name = files, n_vocab, f"hf:{source}"
        self.fingerprint = hashlib.sha256(files["tokenizer.json"]).hexdigest()[:16]
        config = json.loads(files.get("tokenizer_config.json", b"{}"))
        self.has_chat_template = "chat_template.jinja" in files or bool(config.get("chat_template"))

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (folder / name).write_bytes(data)

    @classmethod
    def from_folder(cls, folder: Path, model_vocab: int) -> HFTokenizerFiles | None:
        """The folder's tokenizer files, or None when it has no tokenizer.json; UserError when one is bad."""
        if not (folder / "tokenizer.json").is_file():
            return None
        files = {n: (folder / n).read_bytes() for n in HF_FILES if (folder / n).is_file()}
        return cls(files, _validate(files, folder, model_vocab), str(folder))

    @classmethod
    def from_gguf(cls, path: Path, model_vocab: int) -> HFTokenizerFiles:
        """Convert a GGUF file's tokenizer metadata (tokens, merges, token types, bos/eos, chat template,
        add_bos) into HF files with transformers' converter; UserError when transformers is missing."""
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise UserError(f"{path}: converting a GGUF tokenizer needs transformers (pip install transformers)") from None
        try:
            tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        except Exception as e:  # the converter raises ValueError, KeyError, ... on metadata it cannot use
            raise UserError(f"{path}: tokenizer.ggml.*: cannot build a tokenizer from the metadata "
                            f"({type(e).__name__}: {e})") from None
        with tempfile.TemporaryDirectory() as tmp:
            tok.save_pretrained(tmp)
            files = {n: (Path(tmp) / n).read_bytes() for n in HF_FILES if (Path(tmp) / n).is_file()}
        files["tokenizer.json"] = _split_digits_as_gguf_says(files["tokenizer.json"], path)
        return cls(files, _validate(files, path, model_vocab), str(path))


# llama.cpp's pre-tokenizers that split every digit apart before GPT-2's regex (llama-vocab.cpp groups them;
# names as convert_hf_to_gguf writes them). transformers' GGUF converter knows the Split-regex ones (llama-bpe,
# qwen2, ...) but leaves these as GPT-2's ByteLevel, so "2026" would become other tokens than the model saw.
DIGIT_SPLIT_PRES = ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b")
DIGITS_THEN_BYTE_LEVEL = {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}


def _split_digits_as_gguf_says(tokenizer_json: bytes, path: Path) -> bytes:
    """tokenizer.json with the digit-splitting pre-tokenizer when the GGUF's tokenizer.ggml.pre names one."""
    import gguf

    field = gguf.GGUFReader(path).fields.get("tokenizer.ggml.pre")
    pre = field.contents() if field is not None else None
    doc = json.loads(tokenizer_json)
    if pre not in DIGIT_SPLIT_PRES or (doc.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
        return tokenizer_json
    doc["pre_tokenizer"] = DIGITS_THEN_BYTE_LEVEL
    return json.dumps(doc, ensure_ascii=False).encode()


def _json_object(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{where}: not readable JSON ({e})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _validate(files: dict[str, bytes], source: Path, model_vocab: int) -> int:
    """Check the files at the boundary; returns the tokenizer's vocabulary size (added tokens included)."""
    where = source / "tokenizer.json" if source.is_dir() else source
    doc = _json_object(files["tokenizer.json"], str(where))
    model = doc.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("vocab"), dict):
        raise UserError(f"{where}: model.vocab: missing; not a Hugging Face tokenizer.json")
    if "tokenizer_config.json" in files:
        config = _json_object(files["tokenizer_config.json"], f"{source}: tokenizer_config.json")
        template = config.get("chat_template")
        if template is not None and not isinstance(template, (str, list)):
            raise UserError(f"{source}: tokenizer_config.json: chat_template: expected a string, "
                            f"got {type(template).__name__}")
    ids = list(model["vocab"].values()) + [t.get("id") for t in doc.get("added_tokens") or [] if isinstance(t, dict)]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise UserError(f"{where}: token ids must be non-negative integers")
    n_vocab = max(ids, default=-1) + 1
    if n_vocab > model_vocab:
        raise UserError(f"{where}: the tokenizer has ids up to {n_vocab - 1}, beyond the model's {model_vocab} embedding rows")
    return n_vocab
