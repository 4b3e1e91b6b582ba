"""The formats of the files llmlab reads, one small validated schema each, checked where they are read.

A file another program or person could have written (a checkpoint's model.json and COMMITTED manifest,
its trainer state, our tiktoken tokenizer files, a run's status.json and events.jsonl lines, report.json,
a chat JSONL, a shard folder's meta.json) goes through `read_json` (a regular file, a size bound, UTF-8, JSON) and `check` against
its schema (types, bounds, choices, required keys and sizes, before anything is allocated from it).
Every problem is a `FileFormatError` naming the file and the dotted key, the way presets report theirs.
"""

from __future__ import annotations

import json
import math
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from core.errors import UserError

NoneType = type(None)
MiB = 1 << 20
CHECKPOINT_FORMAT = "llmlab-checkpoint"  # model.json's "format" (core.checkpoint writes it)


class FileFormatError(UserError):
    """A file that does not have the format it should: `file: key: message`."""

    def __init__(self, file: str | Path, key: str, message: str):
        self.file, self.key = str(file), key
        super().__init__(f"{file}: {key}: {message}" if key else f"{file}: {message}")


@dataclass(frozen=True)
class F:
    """One field of a schema: accepted types, whether it must be there, bounds, choices, size."""

    types: tuple[type, ...]
    required: bool = True
    lo: float | None = None
    hi: float | None = None
    choices: tuple | None = None
    max_len: int | None = None  # characters of a string, items of a list or dict
    finite: bool = True  # an event's loss may be nan or inf: readers show it, they do not skip the line


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _names(types: tuple[type, ...]) -> str:
    words = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "an object",
             list: "a list", NoneType: "null"}
    return " or ".join(words.get(t, t.__name__) for t in types)


def check_value(value: Any, f: F, key: str, file: str | Path) -> None:
    if not _type_ok(value, f.types):
        raise FileFormatError(file, key, f"expected {_names(f.types)}, got {_short(value)}")
    if f.choices is not None and value not in f.choices:
        raise FileFormatError(file, key, f"{_short(value)} is not one of {', '.join(map(repr, f.choices))}")
    if isinstance(value, float) and not math.isfinite(value):
        if not f.finite:
            return
        raise FileFormatError(file, key, f"must be a finite number, got {value}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if f.lo is not None and value < f.lo:
            raise FileFormatError(file, key, f"must be >= {f.lo:g}, got {value:g}")
        if f.hi is not None and value > f.hi:
            raise FileFormatError(file, key, f"must be <= {f.hi:g}, got {value:g}")
    if f.max_len is not None and isinstance(value, (str, list, dict)) and len(value) > f.max_len:
        raise FileFormatError(file, key, f"has {len(value):,} items, at most {f.max_len:,} allowed")


def check(doc: Any, schema: dict[str, F], file: str | Path, prefix: str = "") -> dict:
    """`doc` must be an object whose fields fit `schema` (keys it does not name are left alone)."""
    if not isinstance(doc, dict):
        raise FileFormatError(file, prefix, f"expected a JSON object, got {_short(doc)}")
    for name, f in schema.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in doc:
            if f.required:
                raise FileFormatError(file, key, "is missing")
            continue
        check_value(doc[name], f, key, file)
    return doc


def _short(value: Any) -> str:
    text = f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------- reading

def read_bytes(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (a device, FIFO or socket is refused by name,
    so no read blocks or runs on without end)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        raise FileFormatError(path, "", f"cannot read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, FIFO or socket)"
        raise FileFormatError(path, "", f"is {kind}")
    if st.st_size > max_bytes:
        raise FileFormatError(path, "", f"{st.st_size:,} bytes, more than the {max_bytes:,} this file may have")
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as e:
        raise FileFormatError(path, "", f"cannot read ({e.strerror})") from None
    if len(data) > max_bytes:  # grew while we looked
        raise FileFormatError(path, "", f"more than the {max_bytes:,} bytes this file may have")
    return data


def decode_utf8(data: bytes, file: str | Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise FileFormatError(file, "", f"line {line}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start})") from None


def parse_json(text: str | bytes, file: str | Path) -> Any:
    if isinstance(text, bytes):
        text = decode_utf8(text, file)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise FileFormatError(file, "", f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except (ValueError, RecursionError) as e:  # an integer of 5,000 digits; nesting too deep
        raise FileFormatError(file, "", f"not valid JSON ({str(e)[:80] or type(e).__name__})") from None


def read_json(path: str | Path, max_bytes: int = 4 * MiB, schema: dict[str, F] | None = None) -> Any:
    """A JSON file (regular, at most `max_bytes`, UTF-8), checked against `schema` when given."""
    doc = parse_json(read_bytes(path, max_bytes), path)
    return check(doc, schema, path) if schema is not None else doc


# --------------------------------------------------------------------------------------- formats

def _relative_name(rel: str) -> bool:
    p = PurePosixPath(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts and "\\" not in rel and "\x00" not in rel


MANIFEST = {"step": F((int,), lo=0, hi=2**62), "files": F((dict,), max_len=10_000)}
MANIFEST_FILE = {"bytes": F((int,), lo=0, hi=2**50), "sha256": F((str,))}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_manifest(doc: Any, file: str | Path, required: tuple[str, ...]) -> dict[str, dict]:
    """A COMMITTED manifest: {"step", "files": {relative path: {"bytes", "sha256"}}} naming `required`."""
    check(doc, MANIFEST, file)
    for rel, info in doc["files"].items():
        if not _relative_name(rel):
            raise FileFormatError(file, f"files.{rel}", "not a path inside the checkpoint folder")
        check(info, MANIFEST_FILE, file, f"files.{rel}")
        if not _SHA256.fullmatch(info["sha256"]):
            raise FileFormatError(file, f"files.{rel}.sha256", "not a sha256 hex digest")
    for name in required:
        if name not in doc["files"]:
            raise FileFormatError(file, "files", f"does not list {name}")
    return doc["files"]


MODEL_JSON = {
    "format": F((str,)), "version": F((int,), lo=1, hi=1000), "step": F((int,), required=False, lo=0, hi=2**62),
    "architecture": F((dict,), max_len=100), "tokenizer": F((dict, NoneType), required=False),
    "chat_template": F((str, NoneType), required=False, max_len=100_000), "head": F((dict, NoneType), required=False),
    "val_loss": F((float, NoneType), required=False), "lineage": F((dict, NoneType), required=False),
    "adapter": F((dict, NoneType), required=False), "finetune": F((dict, NoneType), required=False),
}
MODEL_TOKENIZER = {"name": F((str,), max_len=1000), "folder": F((str,), required=False, max_len=255),
                   "n_vocab": F((int,), required=False, lo=1, hi=10_000_000)}
MODEL_HEAD = {"kind": F((str,), choices=("lm", "classify")), "out_features": F((int,), required=False, lo=1, hi=1_000_000),
              "bias": F((bool,), required=False)}
MODEL_ADAPTER = {"base": F((str,), max_len=4096), "rank": F((int,), lo=1, hi=4096), "alpha": F((float,), lo=0),
                 "dropout": F((float,), required=False, lo=0, hi=1), "targets": F((list,), max_len=3)}
# the architecture fields that shape the weights: without them a checkpoint is not a model
ARCHITECTURE_REQUIRED = ("n_layer", "n_head", "n_embd", "context_length", "vocab_size")


def check_model_json(meta: Any, file: str | Path, format_name: str = CHECKPOINT_FORMAT) -> dict:
    """model.json: format, version, architecture (through the preset's ModelConfig bounds), tokenizer,
    head, adapter. Returns it; the architecture is checked by `model_config_of`."""
    check(meta, MODEL_JSON, file)
    if meta["format"] != format_name:
        raise FileFormatError(file, "format", f"not an llmlab checkpoint (format {meta['format']!r})")
    for key, schema in (("tokenizer", MODEL_TOKENIZER), ("head", MODEL_HEAD), ("adapter", MODEL_ADAPTER)):
        if meta.get(key) is not None:
            check(meta[key], schema, file, key)
    tok = meta.get("tokenizer")
    if tok is not None and not _relative_name(tok.get("folder", "tokenizer")) or tok and "/" in tok.get("folder", ""):
        raise FileFormatError(file, "tokenizer.folder", "must name a folder inside the checkpoint")
    head = meta.get("head")
    if head and head["kind"] != "lm" and "out_features" not in head:
        raise FileFormatError(file, "head.out_features", f"is missing (a {head['kind']} head needs it)")
    adapter = meta.get("adapter")
    if adapter and any(not isinstance(t, str) or t not in ("attn", "mlp", "head") for t in adapter["targets"]):
        raise FileFormatError(file, "adapter.targets", "must be a list of attn, mlp, head")
    model_config_of(meta, file)
    return meta


def model_config_of(meta: dict, file: str | Path) -> Any:
    """The ModelConfig of model.json's architecture, validated with the preset schema's own bounds and
    cross-field checks (core/config.py, one definition); keys this version does not know are ignored."""
    from core import config

    arch = meta.get("architecture")
    if not isinstance(arch, dict):
        raise FileFormatError(file, "architecture", "expected an object")
    for name in ARCHITECTURE_REQUIRED:
        if name not in arch:
            raise FileFormatError(file, f"architecture.{name}", "is missing")
    names = {f.name for f in config.dataclasses.fields(config.ModelConfig)}
    problems: list[config.Problem] = []
    cfg = config._build(config.ModelConfig, {k: v for k, v in arch.items() if k in names}, "architecture",
                        str(file), problems)
    if not problems:
        preset = config.Preset(model=cfg, tokenizer=config.TokenizerConfig(kind="tiktoken"))
        problems = [config.Problem(str(file), "architecture" + p.key.removeprefix("model"), p.message)
                    for p in config.validate(preset, str(file)) if p.key.startswith("model.")]
    if not problems and cfg.vocab_size < 1:
        problems.append(config.Problem(str(file), "architecture.vocab_size", "must be >= 1"))
    if problems:
        raise FileFormatError(file, problems[0].key, problems[0].message)
    return cfg


TRAINER_STATE = {"version": F((int,)), "optimizer": F((dict,)), "step": F((int,), lo=0, hi=2**62),
                 "tokens": F((int,), lo=0, hi=2**62), "rng": F((dict,)), "best_val_loss": F((float, NoneType), required=False),
                 "val_loss": F((float, NoneType), required=False), "data": F((dict, NoneType), required=False),
                 "train_s": F((float, int), required=False, lo=0), "live_eval": F((dict, NoneType), required=False)}


LIVE_EVAL_STATE = {"eval_s": F((float, int), required=False, lo=0), "rule": F((dict, NoneType), required=False)}
EARLY_STOP_STATE = {"metric": F((str,), max_len=200), "best": F((float, int, NoneType)),
                    "best_step": F((int, NoneType), lo=0, hi=2**62), "waited": F((int,), lo=0, hi=2**62)}


def check_trainer_state(state: Any, file: str | Path) -> dict:
    check(state, TRAINER_STATE, file)
    if isinstance(live := state.get("live_eval"), dict):  # train.eval_tasks' seconds and early stopping
        check(live, LIVE_EVAL_STATE, file, "live_eval")
        if live.get("rule") is not None:
            check(live["rule"], EARLY_STOP_STATE, file, "live_eval.rule")
    return check(state["rng"], {"python": F((list,)), "numpy": F((dict,)), "torch": F((object,))}, file, "rng")


TOKENIZER_META = {"name": F((str,), max_len=1000), "pattern": F((str,), max_len=100_000),
                  "special_tokens": F((dict,), max_len=100_000), "chat_template": F((str,), required=False, max_len=100),
                  "n_vocab": F((int,), required=False, lo=1, hi=10_000_000)}
MAX_RANKS = 10_000_000


def check_tokenizer_meta(meta: Any, file: str | Path) -> dict:
    """Our tiktoken tokenizer's JSON: name, split pattern, special ids >= 0 (the pattern is compiled by
    tiktoken itself, whose ValueError the loader reports against `pattern`)."""
    check(meta, TOKENIZER_META, file)
    for name, i in meta["special_tokens"].items():
        check_value(i, F((int,), lo=0, hi=MAX_RANKS + 100_000), f"special_tokens.{name}", file)
    if len(set(meta["special_tokens"].values())) != len(meta["special_tokens"]):
        raise FileFormatError(file, "special_tokens", "two special tokens share an id")
    return meta


def check_ranks(ranks: dict[bytes, int], specials: dict[str, int], file: str | Path, meta_file: str | Path) -> None:
    """Ranks must hold every single byte (tiktoken panics on a byte it cannot encode) and share no id
    with a special token."""
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise FileFormatError(file, "", f"ranks miss {len(missing)} of the 256 single bytes (first: {missing[0]:#04x}); "
                                        "the file is damaged, train or save the tokenizer again")
    clash = [name for name, i in specials.items() if i < len(ranks)]
    if clash:
        raise FileFormatError(meta_file, f"special_tokens.{clash[0]}", f"id {specials[clash[0]]} is an ordinary token's rank")


SHARD_META = {"key": F((str,), required=False, max_len=200), "dtype": F((str,), choices=("uint16", "uint32")),
              "train_tokens": F((int,), required=False, lo=0, hi=2**62),
              "val_tokens": F((int,), required=False, lo=0, hi=2**62),
              "tokenizer": F((dict,), required=False), "source_report": F((dict,), required=False),
              "filter_report": F((dict,), required=False)}


RUN_STATES = ("created", "running", "finished", "failed", "stopped")
STATUS_JSON = {"state": F((str,), choices=RUN_STATES), "pid": F((int, NoneType), required=False, lo=0, hi=2**31),
               "host": F((str, NoneType), required=False, max_len=1000), "stage": F((str,), required=False, max_len=100),
               "preset": F((str,), required=False, max_len=1000), "started": F((float, NoneType), required=False),
               "ended": F((float, NoneType), required=False), "created": F((float, NoneType), required=False),
               "error": F((str, NoneType), required=False), "error_kind": F((str, NoneType), required=False)}

# the numeric fields of events (DESIGN.md); a line where one is not a number is skipped by readers
EVENT_NUMBERS = ("loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mfu", "step_ms", "eta_s", "mem_bytes",
                 "val_loss", "val_ppl", "accuracy", "reward_margin", "reward_accuracy", "done", "total")
EVENT = {"kind": F((str,), max_len=100), "t": F((float,), required=False), "step": F((int, NoneType), required=False),
         **{k: F((float, NoneType), required=False, finite=False) for k in EVENT_NUMBERS},
         **{k: F((str, NoneType), required=False) for k in ("prompt", "text", "message", "level", "state", "error",
                                                            "what", "task")}}


def parse_event(line: bytes, where: str) -> dict:
    """One events.jsonl line -> the event, or FileFormatError."""
    ev = parse_json(line, where)
    return check(ev, EVENT, where)


REPORT_JSON = {"stage": F((str,), required=False, max_len=100), "preset": F((str,), required=False),
               "model": F((dict,), required=False), "settings": F((dict,), required=False),
               "hardware": F((dict, NoneType), required=False), "tasks": F((dict,), required=False, max_len=1000),
               "skipped": F((dict,), required=False), "samples": F((list,), required=False, max_len=10_000),
               "tokens": F((int, NoneType), required=False), "best_val_loss": F((float, NoneType), required=False)}


def check_report(doc: Any, file: str | Path) -> dict:
    """report.json: the sections readers index into are objects (tasks of objects, samples of objects)."""
    check(doc, REPORT_JSON, file)
    check(doc.get("model") or {}, {"checkpoint": F((str,), required=False)}, file, "model")
    for name, r in (doc.get("tasks") or {}).items():
        check_value(r, F((dict,)), f"tasks.{name}", file)
    for i, r in enumerate(doc.get("samples") or []):
        check_value(r, F((dict,)), f"samples[{i}]", file)
    return doc


CHAT_HEADER = {"format": F((str,)), "system_prompt": F((str,), required=False), "sampling": F((dict, NoneType), required=False)}
CHAT_MESSAGE = {"role": F((str,), choices=("system", "user", "assistant")), "content": F((str,))}
