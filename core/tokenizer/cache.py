"""The preset -> tokenizer resolution every stage goes through, and the cache of trained tokenizers.

`tokenizer_for(preset)` returns the tokenizer a preset means: a tiktoken encoding by name, a saved
folder, or (kind = "bpe") a BPE trained on the preset's corpus and cached under
`workspace()/tokenizers/<key>/`, where the key hashes everything that changes the result. The
tokenizer stage (core/stages/tokenizer.py) runs this as a run and reports the compression table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import DATA_SPEED_KEYS
from core.errors import UserError
from core.runs import workspace
from core.tokenizer.encodings import Tokenizer, get_tokenizer, is_saved_tokenizer
from core.tokenizer.train import check_vocab_size, train_bpe

if TYPE_CHECKING:
    from core.config import Preset
    from core.runs import Logger
    from core.tokenizer.hf import HFTokenizer

KEY_VERSION = 2           # bump when training changes what a key produces (2: validation text held out)


def tokenizer_key(preset) -> str:
    """Hash of what decides a trained tokenizer: the corpus definition and the BPE settings."""
    data = dataclasses.asdict(preset.data)
    for k in DATA_SPEED_KEYS:  # how fast shards are written, not what the corpus is
        data.pop(k, None)
    data.pop("relevance_reference", None)  # what the report compares the corpus with
    t = preset.tokenizer
    spec = {"v": KEY_VERSION, "data": data, "vocab_size": t.vocab_size, "pattern": t.pattern,
            "chat_template": t.chat_template, "train_max_bytes": t.train_max_bytes}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def tokenizer_dir(preset) -> Path:
    return workspace() / "tokenizers" / tokenizer_key(preset)


def documents(preset) -> Iterator[str]:
    """The training documents of the preset's corpus: the validation split is never trained on."""
    from core.data import Documents  # imported late: core.data imports the tokenizer too
    return Documents(preset.data).train_texts()


def ready_tokenizer(preset: Preset) -> tuple[Tokenizer | HFTokenizer | None, str]:
    """(tokenizer or None, note) without training: the preset's encoding, or its trained BPE if
    cached. Training is long work that belongs to a run, so an untrained BPE is None with a note."""
    from core.errors import UserError

    t = preset.tokenizer
    if t.kind == "model":
        return None, "this preset finetunes with its base model's own tokenizer (tokenizer.kind = \"model\")"
    if t.kind == "tiktoken":
        try:
            return get_tokenizer(t.encoding, t.chat_template), t.encoding
        except UserError as e:
            return None, str(e)
    folder = tokenizer_dir(preset)
    if is_saved_tokenizer(folder):
        return Tokenizer.load(folder), f"BPE {t.vocab_size} ({folder.name})"
    return None, f"the preset's BPE ({t.vocab_size}) is not trained yet: train it as a run (Tokenizer screen, T)"


def _expected_bytes(preset) -> int:
    """A guess of how many bytes training will read, for the progress bar's total."""
    limits = [preset.tokenizer.train_max_bytes]
    if preset.data.max_bytes:
        limits.append(preset.data.max_bytes)
    if preset.data.source.startswith("embedded:") and not preset.data.mixture:
        limits.append(int(preset.data.synthetic_mb * 1e6))
    return min(limits)


def trained_name(preset) -> str:
    """The name a preset's trained BPE gets (known before it is trained: the key is in it)."""
    return f"bpe{preset.tokenizer.vocab_size}-{tokenizer_key(preset)[:8]}"


def uses_model_tokenizer(preset) -> bool:
    """Whether a finetune takes the base model's own tokenizer: kind = "model", or a [tokenizer]
    section left at its defaults (a finetune that names no tokenizer means the model's)."""
    from core.config import TokenizerConfig

    return preset.tokenizer.kind == "model" or preset.tokenizer == TokenizerConfig()


def tokenizer_for(preset: Preset, log: Logger | None = None, stop: threading.Event | None = None) -> Tokenizer | HFTokenizer:
    """The preset's tokenizer; for kind = "bpe" trained on the corpus's training documents on
    first use and cached. Raises core.errors.Stopped when `stop` is set during training."""
    t = preset.tokenizer
    if t.kind == "model":
        raise UserError('tokenizer.kind = "model" means a base model\'s own tokenizer (finetuning); this stage '
                        'needs one of its own: set tokenizer.kind = "bpe" or "tiktoken"')
    if t.kind == "tiktoken":
        return get_tokenizer(t.encoding, t.chat_template)
    check_vocab_size(t.vocab_size, t.chat_template)
    folder = tokenizer_dir(preset)
    if is_saved_tokenizer(folder):
        return Tokenizer.load(folder)
    if folder.exists():  # not written by save_atomic (which renames only complete folders): stale
        shutil.rmtree(folder)
    tok = train_bpe(documents(preset), t.vocab_size, t.pattern, chat_template=t.chat_template,
                    name=trained_name(preset), max_bytes=t.train_max_bytes, log=log,
                    stop=stop, total_bytes=_expected_bytes(preset))
    save_atomic(tok, folder)
    if log is not None:
        log.log({"kind": "log", "level": "info", "message": f"saved the tokenizer to {folder}"})
    return Tokenizer.load(folder)


def save_atomic(tok: Tokenizer, folder: Path) -> Path:
    """Save into a temporary sibling, then rename: a killed process never leaves a half tokenizer
    under the final name, and of two concurrent trainers the first rename wins."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tok.save(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not is_saved_tokenizer(folder):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
