"""Readers for every place text comes from: the hub, local files and folders, the embedded world, mixtures.

The first step of the data stage. A source spec is `embedded:tinyworld[-KIND]`, `hf:NAME` (a hub
dataset through `datasets`; remote code is never run), or a local path or glob (.txt .jsonl .json
.parquet .csv, or a folder written by `datasets`' `save_to_disk`, which goes through the same
`datasets` code as the hub). Readers are generators, so a corpus larger than memory streams. Bytes
that are not UTF-8 are replaced and counted in a `ReadCounts`; bad rows raise `UserError` with the
file and line.
"""

from __future__ import annotations

import glob as globlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import UserError

TEXT_SUFFIXES = (".txt", ".md")
ROW_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
EMBEDDED = ("tinyworld", "tinyworld-classify", "tinyworld-instruct", "tinyworld-preference", "tinyworld-choice",
            "tinyworld-verify")


@dataclass
class ReadCounts:
    """What a reader saw besides documents: replaced non-UTF-8 sequences and where."""
    bad_utf8: int = 0
    bad_utf8_files: set[str] = field(default_factory=set)

    def decode(self, raw: bytes, where: str) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            # count what "replace" put in, not U+FFFD characters that were in the file already
            self.bad_utf8 += text.count("\ufffd") - raw.count("\ufffd".encode())
            self.bad_utf8_files.add(where)
            return text


# ------------------------------------------------------------------------------------- the hub


def is_saved_dataset(path: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return path.is_dir() and ((path / "dataset_info.json").exists() and (path / "state.json").exists()
                              or (path / "dataset_dict.json").exists())


def _how_to_get(name: str) -> str:
    return (f"it must be downloaded once with the network on: unset HF_DATASETS_OFFLINE and HF_HUB_OFFLINE and run "
            f"`llmlab data PRESET` (or `python -c \"import datasets; datasets.load_dataset('{name}')\"`), or save it "
            f"with `save_to_disk` on a machine that has it and set the source to that folder")


def open_hf(name: str, config: str = "", split: str | None = "train", streaming: bool = False) -> Any:
    """A `datasets` Dataset or IterableDataset: from the hub (name) or a save_to_disk folder (path).
    split=None gives every split: a dict of split name -> Dataset.

    Both go through `datasets`, so a local folder exercises the same row handling as the hub."""
    import datasets  # heavy import: only when a hub or saved dataset is read

    path = Path(name).expanduser()
    if is_saved_dataset(path):
        ds = datasets.load_from_disk(str(path))
        if split is None:
            return dict(ds) if isinstance(ds, datasets.DatasetDict) else {"train": ds}
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise UserError(f"{path}: no split {split!r}; splits: {', '.join(ds)}")
            ds = ds[split]
        return ds.to_iterable_dataset() if streaming else ds
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
    try:
        ds = datasets.load_dataset(name, config or None, split=split, streaming=streaming)
        return dict(ds) if split is None else ds
    except UserError:
        raise
    except ValueError as e:
        if "split" in str(e).lower():
            raise UserError(f"hf:{name}: {e}") from None
        raise UserError(f"hf:{name}: cannot load the dataset: {e}") from None
    except Exception as e:  # noqa: BLE001 - every hub failure (network, offline, not found) is the user's to fix
        why = "offline mode is on and the dataset is not in the local cache" if offline else f"{type(e).__name__}: {e}"
        raise UserError(f"hf:{name}{'/' + config if config else ''}: cannot load the dataset ({why}); {_how_to_get(name)}") from None


def iter_hf_rows(name: str, config: str = "", split: str = "train", streaming: bool = False) -> Iterator[dict]:
    ds = open_hf(name, config, split, streaming)
    yield from ds


# ---------------------------------------------------------------------------------- local files


def expand_paths(spec: str) -> list[Path]:
    """A file, a folder (its supported files, recursively) or a glob, sorted; UserError when nothing matches.
    A path that exists is itself, even when its name has glob characters (`stories [v2].txt`)."""
    path = Path(spec).expanduser()
    if not path.exists() and any(ch in spec for ch in "*?["):
        found = sorted(Path(p) for p in globlib.glob(str(path), recursive=True) if Path(p).is_file())
        if not found:
            raise UserError(f"{spec}: no files match this pattern")
        return found
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES + ROW_SUFFIXES)
        if not found:
            raise UserError(f"{spec}: the folder holds no .txt, .jsonl, .json, .parquet or .csv files")
        return found
    if not path.exists():
        raise UserError(f"{spec}: no such file or folder; a source is embedded:tinyworld, hf:NAME, or a local path or glob")
    if not path.is_file():  # reading a device, FIFO or socket would never end or never start
        raise UserError(f"{spec}: not a regular file (a device, FIFO or socket); a source reads files")
    return [path]


# a whole-file read (.txt in file mode, .json) and a single line are bounded: /dev/zero behind a
# regular-looking name, or a 50 GB file without newlines, fail by name instead of exhausting memory
MAX_WHOLE_FILE_BYTES = 1 << 30
MAX_LINE_BYTES = 64 << 20


def _read_whole(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_WHOLE_FILE_BYTES + 1)
    if len(data) > MAX_WHOLE_FILE_BYTES:
        raise UserError(f"{path}: more than {MAX_WHOLE_FILE_BYTES >> 20} MiB to read as one document or JSON "
                        f"value; use data.txt_mode = \"line\" or \"block\", or JSON Lines")
    return data


def _iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as f:
        lineno = 0
        while raw := f.readline(MAX_LINE_BYTES + 1):
            lineno += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise UserError(f"{path}:{lineno}: a line of more than {MAX_LINE_BYTES >> 20} MiB; "
                                f"is this a text file?")
            yield lineno, raw


def iter_txt(path: Path, mode: str, counts: ReadCounts) -> Iterator[str]:
    """Documents of a text file: the whole file, blank-line separated blocks, or single lines."""
    where = str(path)
    if mode == "file":
        yield counts.decode(_read_whole(path), where)
        return
    yield from split_by_mode((counts.decode(raw, where).rstrip("\r\n") for _, raw in _iter_lines(path)), mode)


def split_by_mode(lines: Iterable[str], mode: str) -> Iterator[str]:
    """Documents of text lines: the whole text (mode "file"), blank-line separated blocks, or single lines."""
    if mode == "file":
        yield "\n".join(lines)
        return
    block: list[str] = []
    for line in lines:
        if mode == "line":
            if line.strip():
                yield line
        elif line.strip():
            block.append(line)
        elif block:
            yield "\n".join(block)
            block = []
    if block:
        yield "\n".join(block)


def iter_jsonl(path: Path, counts: ReadCounts) -> Iterator[dict]:
    for lineno, raw in _iter_lines(path):
        line = counts.decode(raw, str(path)).strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
        except (ValueError, RecursionError) as e:  # an integer of over 4300 digits, nesting too deep
            raise UserError(f"{path}:{lineno}: JSON that cannot be read ({e})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object per line, got {type(row).__name__}")
        yield row


def iter_json(path: Path, counts: ReadCounts) -> Iterator[dict]:
    """A JSON array of objects, or an object holding one such array (e.g. {"data": [...]}); JSON Lines too."""
    text = counts.decode(_read_whole(path), str(path))
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # several values: it is JSON Lines with a .json name
            yield from iter_jsonl(path, counts)
            return
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    except (ValueError, RecursionError) as e:  # an integer of over 4300 digits, nesting too deep
        raise UserError(f"{path}: JSON that cannot be read ({e})") from None
    if isinstance(doc, dict):
        lists = [v for v in doc.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise UserError(f"{path}: expected an array of objects (or an object holding one array), got an object "
                            f"with keys {', '.join(map(str, doc)) or '(none)'}")
        doc = lists[0]
    if not isinstance(doc, list):
        raise UserError(f"{path}: expected an array of objects, got {type(doc).__name__}")
    for i, row in enumerate(doc):
        if not isinstance(row, dict):
            raise UserError(f"{path}: item {i} of the array is {type(row).__name__}, expected an object")
        yield row


def iter_csv(path: Path, counts: ReadCounts) -> Iterator[dict]:
    import csv

    lines = (counts.decode(raw, str(path)) for _, raw in _iter_lines(path))
    reader = csv.DictReader(lines)
    try:
        for row in reader:
            row.pop(None, None)  # cells beyond the header
            yield row
    except csv.Error as e:  # e.g. a quoted field over the csv module's 128 KiB limit
        raise UserError(f"{path}:{reader.line_num}: not readable as CSV ({e})") from None


def iter_parquet(path: Path) -> Iterator[dict]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        raise UserError(f"{path}: not a readable parquet file ({e})") from None
    for batch in pf.iter_batches(batch_size=1024):
        yield from batch.to_pylist()


def iter_file_rows(path: Path, counts: ReadCounts, txt_mode: str = "file") -> Iterator[dict]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return iter_jsonl(path, counts)
    if suffix == ".json":
        return iter_json(path, counts)
    if suffix == ".csv":
        return iter_csv(path, counts)
    if suffix == ".parquet":
        return iter_parquet(path)
    return ({"text": t} for t in iter_txt(path, txt_mode, counts))


def field_of(row: dict, name: str, where: str) -> Any:
    """row[name]; a missing field is a UserError that lists the fields the row has."""
    try:
        return row[name]
    except KeyError:
        have = ", ".join(map(str, row)) or "(none)"
        raise UserError(f"{where}: no field {name!r}; the rows have: {have} (set the field name in the preset, "
                        f"e.g. data.text_field)") from None


# ------------------------------------------------------------------------------ one source's text


def iter_rows(spec: str, *, hf_config: str = "", split: str = "train", streaming: bool = False,
              txt_mode: str = "file", counts: ReadCounts | None = None) -> Iterator[tuple[str, dict]]:
    """(where, row) for every row of a hub dataset or local file(s); `where` names file and row for errors."""
    counts = counts if counts is not None else ReadCounts()
    if spec.startswith("hf:"):
        name = spec[3:]
        for i, row in enumerate(iter_hf_rows(name, hf_config, split, streaming)):
            yield f"{spec} row {i}", row
        return
    if is_saved_dataset(Path(spec).expanduser()):
        for i, row in enumerate(iter_hf_rows(spec, hf_config, split, streaming)):
            yield f"{spec} row {i}", row
        return
    for path in expand_paths(spec):
        for i, row in enumerate(iter_file_rows(path, counts, txt_mode)):
            yield f"{path} row {i + 1}", row


def iter_texts(spec: str, *, text_field: str = "text", hf_config: str = "", split: str = "train",
               streaming: bool = False, txt_mode: str = "file", seed: int = 1337, synthetic_mb: float = 4.0,
               counts: ReadCounts | None = None) -> Iterator[str]:
    """The documents of one source, as strings (None values are skipped as empty documents)."""
    if spec.startswith("embedded:"):
        name = spec.split(":", 1)[1]
        if name != "tinyworld":
            raise UserError(f"{spec}: the embedded corpus for pretraining is embedded:tinyworld "
                            f"(the {', '.join(EMBEDDED[1:])} sets are for finetuning and evaluation)")
        from core.data.synthetic import iter_stories

        yield from iter_stories(seed, int(synthetic_mb * 1_000_000))
        return
    for where, row in iter_rows(spec, hf_config=hf_config, split=split, streaming=streaming, txt_mode=txt_mode,
                                counts=counts):
        value = field_of(row, text_field, where)
        if value is None:
            yield ""
        else:
            yield _encodable(value if isinstance(value, str) else str(value), counts, where)


def _encodable(text: str, counts: ReadCounts | None, where: str) -> str:
    """A JSON escape such as \\ud800 gives a lone surrogate, which no UTF-8 consumer (filters, the BPE
    trainer) accepts: replace it like an undecodable byte, and count it."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        fixed = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
        if counts is not None:
            counts.bad_utf8 += sum("\ud800" <= c <= "\udfff" for c in text)
            counts.bad_utf8_files.add(where.rsplit(" row ", 1)[0])
        return fixed


def source_bytes(spec: str, synthetic_mb: float = 4.0) -> int | None:
    """The size a source will read, when known without reading it (for progress bars)."""
    if spec.startswith("embedded:"):
        return int(synthetic_mb * 1_000_000)
    if spec.startswith("hf:") or is_saved_dataset(Path(spec).expanduser()):
        return None
    try:
        return sum(p.stat().st_size for p in expand_paths(spec))
    except (UserError, OSError):
        return None
