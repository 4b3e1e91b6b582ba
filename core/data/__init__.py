"""The data stage's public API: corpora, finetuning sets, token shards and the loader that reads them.

    iter_documents(preset)             the filtered corpus of preset.data, as strings
    load_records(spec, split, ...)     finetuning and evaluation sets (embedded, hub, local)
    prepare_shards(preset, tokenizer)  train.bin / val.bin / meta.json, cached by key
    TokenLoader(bin, T, B, seed)       (x, y) batches from a shard, resumable
Prompt formats and collate functions are in core.data.formats.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from core.data.documents import Documents
from core.data.records import load_records
from core.data.shards import TokenLoader, prepare_shards, read_meta, shard_key
from core.data.stats import record_stats, shard_stats, text_stats


def iter_documents(preset: Any) -> Iterator[str]:
    """The corpus of a preset (or of a DataConfig) after reading, limits and filters."""
    data = getattr(preset, "data", preset)
    return iter(Documents(data))


__all__ = ["Documents", "TokenLoader", "iter_documents", "load_records", "prepare_shards", "read_meta",
           "record_stats", "shard_key", "shard_stats", "text_stats"]
