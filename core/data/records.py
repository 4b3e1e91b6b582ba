"""Finetuning and evaluation sets as lists of records, with canonical field names and fixed splits.

Classification (`text`, `label`), instruction (`instruction`, `input`, `output`), preference
(`prompt`, `chosen`, `rejected`) and multiple-choice (`question`, `choices`, `answer`) records come
from the embedded world, the hub or local files. A caller maps its dataset's field names onto the
canonical ones (`text_field="sms"` puts row["sms"] in record["text"]). Splits a dataset lacks are
carved from its train split by a hash of each row, so they are the same on every run and machine.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from core.errors import UserError
from core.data.sources import ReadCounts, field_of, is_saved_dataset, iter_rows, open_hf

SPLIT_NAMES = {"train": ("train",), "val": ("validation", "val", "valid", "dev"), "test": ("test",)}


def _unit(row: dict) -> float:
    blob = json.dumps(row, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little") / 2**64


def carve(rows: list[dict], split: str, val_fraction: float, test_fraction: float, carve_val: bool = True,
          carve_test: bool = True) -> list[dict]:
    """The rows of `split` when val/test are carved out of `rows` by hash: test first, then val, rest train."""
    out = []
    for row in rows:
        x = _unit(row)
        s = "test" if carve_test and x < test_fraction else \
            "val" if carve_val and x < test_fraction + val_fraction else "train"
        if s == split:
            out.append(row)
    return out


def _map_fields(rows: list[dict], where: str, field_names: dict[str, str]) -> list[dict]:
    """record[canonical] = row[name] for each `canonical_field=name`; other fields are kept as they are."""
    mapping = {k.removesuffix("_field"): v for k, v in field_names.items() if v}
    out = []
    for i, row in enumerate(rows):
        rec = dict(row)
        for canon, name in mapping.items():
            rec[canon] = field_of(row, name, f"{where} row {i + 1}")
        out.append(rec)
    return out


def _labels_to_ints(rows: list[dict]) -> None:
    """Digit strings become ints; other string labels become indices of their sorted names (label_name kept)."""
    labels = [r["label"] for r in rows if "label" in r]
    if not labels or all(isinstance(x, int) and not isinstance(x, bool) for x in labels):
        return
    # ASCII digits only: "--5" or "²" pass isdigit() checks but int() refuses them
    if all(isinstance(x, str) and re.fullmatch(r"-?[0-9]+", x.strip()) for x in labels):
        for r in rows:
            if "label" in r:
                r["label"] = int(r["label"])
        return
    names = sorted({str(x) for x in labels})
    index = {n: i for i, n in enumerate(names)}
    for r in (r for r in rows if "label" in r):  # rows without a label keep none
        r["label_name"] = str(r["label"])
        r["label"] = index[str(r["label"])]


def load_records(spec: str, split: str = "train", *, seed: int = 1337, hf_config: str = "",
                 val_fraction: float = 0.1, test_fraction: float = 0.1, limit: int = 0,
                 **field_names: str) -> list[dict]:
    """Records of a finetuning or evaluation set, one split (train, val, test, or all).

    spec: embedded:tinyworld-classify|-instruct|-preference|-choice|-verify, hf:NAME, a save_to_disk folder, or a
    local file/glob (.jsonl .json .csv .parquet). field_names: canonical_field=dataset_field, e.g.
    text_field="sms", label_field="v1"; a missing field raises UserError listing the fields present.
    String labels become ints (sorted names; `label_name` keeps the name)."""
    if split not in ("train", "val", "test", "all"):
        raise UserError(f"{spec}: unknown split {split!r}; use train, val, test or all")
    if spec.startswith("embedded:"):
        from core.data.synthetic import MAKERS, derived_set

        kind = spec.split(":", 1)[1].removeprefix("tinyworld-")
        if kind == "verify":  # the verifiable set (core.data.verifiable), for RL and the eval task verify
            from core.data.verifiable import verifiable_set
            rows = _map_fields(verifiable_set(split, seed), spec, field_names)
            return rows[:limit] if limit else rows
        if kind not in MAKERS:
            raise UserError(f"{spec}: no such embedded set; choose from "
                            f"{', '.join('embedded:tinyworld-' + k for k in (*MAKERS, 'verify'))}")
        rows = derived_set(kind, split, seed)
        if kind == "instruct":  # with some verifiable questions, so that tiny-sft sometimes solves them
            from core.data.verifiable import sft_share
            rows += sft_share(split, seed)
        rows = _map_fields(rows, spec, field_names)
        return rows[:limit] if limit else rows

    if spec.startswith("hf:") or is_saved_dataset(Path(spec).expanduser()):
        name = spec[3:] if spec.startswith("hf:") else spec
        available = {k: [dict(r) for r in ds] for k, ds in open_hf(name, hf_config, split=None).items()}
    else:
        available = {"train": [row for _, row in iter_rows(spec, counts=ReadCounts())]}
    named = {canon: next((s for s in names if s in available), None) for canon, names in SPLIT_NAMES.items()}
    named["train"] = named["train"] or next(iter(available))
    if not available[named["train"]]:
        raise UserError(f"{spec}: the dataset is empty")
    mapped = {k: _map_fields(rows, spec, field_names) for k, rows in available.items()}
    _labels_to_ints([r for rows in mapped.values() for r in rows])  # one mapping for all splits

    pool = mapped[named["train"]]
    carve_val, carve_test = named["val"] is None, named["test"] is None

    def rows_of(s: str) -> list[dict]:
        if s != "train" and named[s] is not None:
            return mapped[named[s]]
        return carve(pool, s, val_fraction, test_fraction, carve_val, carve_test)

    splits = ("train", "val", "test") if split == "all" else (split,)
    out = [r for s in splits for r in rows_of(s)]
    return out[:limit] if limit else out
