"""The data stage end to end: in process with reports, and as `llmlab data` with exit code 2 on bad input."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from core.config import from_dict
from core.stages.data import run
from core.runs import EventLog

ROOT = Path(__file__).resolve().parents[2]


def small_preset(**data):
    return from_dict({"name": "t", "data": {"source": "embedded:tinyworld", "synthetic_mb": 0.2, "val_fraction": 0.05,
                                            "workers": 1, "filters": {"min_chars": 20}, **data},
                      "tokenizer": {"kind": "tiktoken", "encoding": "gpt2"}, "model": {"context_length": 64}})


def test_stage_writes_shards_and_reports(workspace, gpt2_cache):
    run_dir = workspace / "runs" / "r1"
    run_dir.mkdir(parents=True)
    log = EventLog(run_dir / "events.jsonl")
    run(small_preset(), run_dir, log, threading.Event())
    log.close()
    report = json.loads((run_dir / "report.json").read_text())
    stats = json.loads((run_dir / "stats.json").read_text())
    flt = json.loads((run_dir / "filter_report.json").read_text())
    shards = Path(report["shards"])
    n = len(np.fromfile(shards / "train.bin", dtype=np.uint16)) + len(np.fromfile(shards / "val.bin", dtype=np.uint16))
    assert report["train_tokens"] + report["val_tokens"] == n and report["tokens"] == n - report["docs"]
    assert report["docs"] == flt["docs_kept"] == stats["docs"] > 300 and flt["sources"]["sources"][0]["share_bytes"] == 1
    assert sum(b["docs"] for b in stats["length_histogram"]) == stats["docs"] and stats["truncated_share"] > 0
    assert stats["top_tokens"][0]["text"] == "." and stats["context_length"] == 64
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "progress" and e["what"] == "tokenizing" for e in events)
    again = workspace / "runs" / "r2"
    again.mkdir()
    run(small_preset(), again, EventLog(again / "events.jsonl"), threading.Event())
    assert json.loads((again / "report.json").read_text())["shards"] == report["shards"]


def test_cli_bad_input_exits_2_with_the_message(workspace, tmp_path, gpt2_cache):
    (tmp_path / "bad.jsonl").write_text('{"body": "x"}\n')
    preset = tmp_path / "p.toml"
    preset.write_text(f'name = "p"\n[data]\nsource = "{tmp_path / "bad.jsonl"}"\n[tokenizer]\nkind = "tiktoken"\n')
    env = {**os.environ, "LLMLAB_HOME": str(workspace), "COLUMNS": "400"}  # no wrapping inside the message
    p = subprocess.run([sys.executable, "-m", "core.cli", "data", str(preset)], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "no field 'text'; the rows have: body" in p.stdout + p.stderr
