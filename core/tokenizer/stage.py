"""The tokenizer stage and the preset -> tokenizer resolution every other stage goes through.

`tokenizer_for(preset)` returns the tokenizer a preset means: a tiktoken encoding by name, a saved
folder, or (kind = "bpe") a BPE trained on the preset's corpus and cached under
`workspace()/tokenizers/<key>/`, where the key hashes everything that changes the result. The stage
`run` trains (when needed), copies the tokenizer into the run and reports its compression against
GPT-2 and GPT-4 on a sample of the corpus.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from core.runs import workspace
from core.tokenizer.encodings import META_FILE, Tokenizer, get_tokenizer
from core.tokenizer.inspect import DEFAULT_COMPARED, compression_table, format_compression_table
from core.tokenizer.train import TrainingStopped, check_vocab_size, train_bpe

KEY_VERSION = 1           # bump when training changes what a key produces
SAMPLE_BYTES = 1_000_000  # corpus sample for the compression table


def tokenizer_key(preset) -> str:
    """Hash of what decides a trained tokenizer: the corpus definition and the BPE settings."""
    data = dataclasses.asdict(preset.data)
    data.pop("num_proc", None)  # how fast shards are written, not what the corpus is
    t = preset.tokenizer
    spec = {"v": KEY_VERSION, "data": data, "vocab_size": t.vocab_size, "pattern": t.pattern,
            "chat_template": t.chat_template, "train_max_bytes": t.train_max_bytes}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def tokenizer_dir(preset) -> Path:
    return workspace() / "tokenizers" / tokenizer_key(preset)


def _documents(preset) -> Iterator[str]:
    from core.data import iter_documents  # imported late: core.data imports the tokenizer too
    return iter_documents(preset)


def _expected_bytes(preset) -> int:
    """A guess of how many bytes training will read, for the progress bar's total."""
    limits = [preset.tokenizer.train_max_bytes]
    if preset.data.max_bytes:
        limits.append(preset.data.max_bytes)
    if preset.data.source.startswith("embedded:") and not preset.data.mixture:
        limits.append(int(preset.data.synthetic_mb * 1e6))
    return min(limits)


def tokenizer_for(preset, log=None, stop: threading.Event | None = None) -> Tokenizer:
    """The preset's tokenizer; for kind = "bpe" trained from core.data.iter_documents(preset) on
    first use and cached. Raises TrainingStopped when `stop` is set during training."""
    t = preset.tokenizer
    if t.kind == "tiktoken":
        return get_tokenizer(t.encoding, t.chat_template)
    check_vocab_size(t.vocab_size, t.chat_template)
    folder = tokenizer_dir(preset)
    if (folder / META_FILE).is_file():
        return Tokenizer.load(folder)
    if folder.exists():  # not written by save_atomic (which renames only complete folders): stale
        shutil.rmtree(folder)
    tok = train_bpe(_documents(preset), t.vocab_size, t.pattern, chat_template=t.chat_template,
                    name=f"bpe{t.vocab_size}-{folder.name[:8]}", max_bytes=t.train_max_bytes, log=log,
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
            if not (folder / META_FILE).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _sample(preset, max_bytes: int = SAMPLE_BYTES) -> list[str]:
    out, n = [], 0
    for doc in _documents(preset):
        out.append(doc)
        n += len(doc.encode("utf-8"))
        if n >= max_bytes:
            break
    return out


def run(preset, run_dir: Path, log, stop: threading.Event) -> None:
    """Stage `tokenizer`: train (kind = "bpe", unless cached) or load the encoding, save it into the
    run, and report the compression table over a corpus sample in run_dir/report.json."""
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    t = preset.tokenizer
    cached = t.kind == "bpe" and (tokenizer_dir(preset) / META_FILE).is_file()
    if cached:
        log.log({"kind": "log", "level": "info", "message": f"using the cached tokenizer {tokenizer_dir(preset)}"})
    try:
        tok = tokenizer_for(preset, log, stop)
    except TrainingStopped:
        log.log({"kind": "log", "level": "info", "message": "tokenizer training stopped; nothing was saved"})
        return
    seconds = time.perf_counter() - t0
    if stop.is_set():
        return

    saved = None
    if t.kind == "bpe" or Path(t.encoding).is_dir():
        saved = tok.save(run_dir / "tokenizer")
    texts = _sample(preset)
    rows = compression_table(texts, [tok, *[e for e in DEFAULT_COMPARED if e != tok.name]])
    table = format_compression_table(rows)
    log.log({"kind": "log", "level": "info",
             "message": f"compression on {sum(len(x.encode()) for x in texts):,} bytes of the corpus:\n{table}"})
    report = {
        "tokenizer": {
            "name": tok.name,
            "kind": t.kind,
            "path": str(tokenizer_dir(preset)) if t.kind == "bpe" else t.encoding,
            "run_copy": str(saved) if saved else None,
            "fingerprint": tok.fingerprint,
            "n_vocab": tok.n_vocab,
            "special_tokens": tok.special_tokens,
            "chat_template": tok.chat_template,
            "pattern": tok.pattern,
            "trained": t.kind == "bpe" and not cached,
            "seconds": round(seconds, 3),
        },
        "sample_bytes": sum(len(x.encode("utf-8")) for x in texts),
        "compression": [r.to_dict() for r in rows],
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
