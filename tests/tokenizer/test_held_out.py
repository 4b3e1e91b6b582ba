"""The compression table is measured on held-out text of every source, never on training text."""

from __future__ import annotations

import json
import threading

from core.config import load
from core.data import Documents
from core.stages.tokenizer import run
from tests.data.corpus_kit import mixed_corpus
from tests.tokenizer.test_tokenizer_stage import Events


def test_compression_per_source_on_held_out_text(workspace, tmp_path, gpt2_cache, monkeypatch):
    monkeypatch.setenv("LLMLAB_OFFLINE", "1")
    mixed_corpus(tmp_path / "c")
    preset = load("tiny", {"data.mixture": [{"source": str(tmp_path / "c" / "docs"), "weight": 0.6},
                                            {"source": str(tmp_path / "c" / "fortunes.txt"), "weight": 0.4,
                                             "separator": "^%$"}],
                           "data.mixture_end": "largest", "data.val_fraction": 0.1, "tokenizer.vocab_size": 300})
    docs = Documents(preset.data)
    held = docs.held_out()
    train = set(docs.train_texts())
    assert all(held.values()) and not any(t in train for ts in held.values() for t in ts)
    run_dir = workspace / "runs" / "r"
    run_dir.mkdir(parents=True)
    log = Events()
    run(preset, run_dir, log, threading.Event())
    report = json.loads((run_dir / "report.json").read_text())
    by_source = report["compression_by_source"]
    assert set(by_source) == {str(tmp_path / "c" / "docs"), str(tmp_path / "c" / "fortunes.txt"), "all sources"}
    for name, rows in by_source.items():
        ours, gpt2 = rows[0], next(r for r in rows if r["name"] == "gpt2")
        assert ours["n_bytes"] == report["sample_bytes_by_source"].get(name, report["sample_bytes"])
        assert ours["tokens_per_word"] > gpt2["tokens_per_word"] > 1.0  # a 300-id BPE splits words more
        assert 0.0 <= ours["byte_fallback_share"] < 0.01 and gpt2["vs_gpt2"] == 1.0
    messages = "\n".join(e.get("message", "") for e in log.events)
    assert "of held-out text (all sources)" in messages and "chat special tokens added by llmlab" in messages
