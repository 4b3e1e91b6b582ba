"""The data stage (`llmlab data PRESET`): corpus -> filters -> tokenizer -> token shards, with reports.

One pass reads and filters the corpus while the shards are written, and the filter report, the
source report (realised mixture proportions, replaced non-UTF-8 bytes) and the token statistics are
gathered on the way into the shards' meta.json; this stage copies them into the run directory:
filter_report.json, stats.json and report.json. A cached shard folder makes the stage instant.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from core.data.quality import read_reference
from core.data.report import filter_lines, quality_lines, source_lines, token_line
from core.data.shards import prepare_shards, read_meta
from core.data.stats import shard_stats
from core.errors import Stopped
from core.runs import Logger, write_json_atomic, write_report


def run(preset: Any, run_dir: Path, log: Logger, stop: threading.Event) -> None:
    from core.tokenizer.cache import tokenizer_for

    t0 = time.time()
    run_dir = Path(run_dir)
    d = preset.data
    what = " + ".join(f"{s.source} ({s.weight:g})" for s in d.mixture) if d.mixture else d.source
    log.log({"kind": "log", "level": "info", "message": f"data: {what}"})
    if d.relevance_reference:
        read_reference(d.relevance_reference)  # an unreadable reference fails before any work
    try:
        tokenizer = tokenizer_for(preset, log, stop)
        if stop.is_set():
            return
        folder = prepare_shards(preset, tokenizer, log, stop)
    except Stopped:
        return
    meta = read_meta(folder)
    src, flt = meta["source_report"], meta["filter_report"]
    if src["bad_utf8"]:
        log.log({"kind": "log", "level": "warning",
                 "message": f"replaced {src['bad_utf8']} byte sequences that are not UTF-8 "
                            f"(in {', '.join(src['bad_utf8_files'][:3])})"})
    if src.get("exhausted"):
        log.log({"kind": "log", "level": "info", "message": f"the mixture stopped when {src['exhausted']} ran out"})
    unread = src.get("left_unread", [])
    log.log({"kind": "log", "level": "warning" if unread else "info", "message": "\n".join(source_lines(src))})
    names = [s["source"] for s in src["sources"]]
    log.log({"kind": "log", "level": "info", "message": "\n".join(filter_lines(flt, names))})
    if meta.get("quality"):
        log.log({"kind": "log", "level": "info", "message": "\n".join(quality_lines(meta["quality"]))})
    stats = shard_stats(meta, preset.model.context_length, tokenizer)
    write_json_atomic(run_dir / "filter_report.json", {"source": what, **flt, "sources": src})
    write_json_atomic(run_dir / "stats.json", stats)
    report = {
        "stage": "data", "source": what, "shards": str(folder), "key": meta["key"], "tokenizer": meta["tokenizer"],
        "dtype": meta["dtype"], "docs": stats["docs"], "chars": stats["chars"], "tokens": stats["tokens"],
        "train_tokens": meta["train_tokens"], "val_tokens": meta["val_tokens"],
        "truncated_share": stats["truncated_share"], "context_length": preset.model.context_length,
        "filtered": {"docs_in": flt["docs_in"], "docs_removed": flt["docs_removed"],
                     "chars_removed": flt["chars_removed"],
                     "by_rule": {r: v["docs"] for r, v in flt["rules"].items()}},
        "shard_tokens": meta["train_tokens"] + meta["val_tokens"], "eot_tokens": stats["docs"],
        "sources": src["sources"], "source_tokens": meta.get("source_tokens"), "bad_utf8": src["bad_utf8"],
        "quality": meta.get("quality"),
        "seconds": round(time.time() - t0, 3), "tokenize_seconds": meta["seconds"],
    }
    write_report(run_dir, report)
    log.log({"kind": "log", "level": "info", "message": f"{token_line(meta)} in {folder}"})
