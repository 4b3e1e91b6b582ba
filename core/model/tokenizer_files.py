"""The Hugging Face tokenizer files a real model brings, as a checkpoint's tokenizer/ folder.

An imported model keeps its own tokenizer.json and tokenizer_config.json (chat template, bos/eos/
pad tokens, add_bos_token), plus chat_template.jinja and special_tokens_map.json where the source
has them. From a HF folder they are validated and copied; from a GGUF file they are converted
from its metadata by transformers' own GGUF tokenizer conversion. core.tokenizer loads them.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from core.errors import UserError

HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


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
        files = {n: (folder / n).read_bytes() for n in HF_TOKENIZER_FILES if (folder / n).is_file()}
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
            files = {n: (Path(tmp) / n).read_bytes() for n in HF_TOKENIZER_FILES if (Path(tmp) / n).is_file()}
        return cls(files, _validate(files, path, model_vocab), str(path))


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
