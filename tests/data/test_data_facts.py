"""Corpus facts for the rules of thumb: a scan of local sources before the shards exist, the
shards' meta.json after; `llmlab presets check` uses them and says which."""

import os
import random
import subprocess
import sys
from pathlib import Path

from core.advice import advise
from core.config import load
from core.data import prepare_shards
from core.data.facts import corpus_facts, facts_line, lengths_from_histogram
from core.tokenizer import get_tokenizer
from tests.data.corpus_kit import fortunes_file

ROOT = Path(__file__).resolve().parents[2]


def test_facts_from_a_scan_then_from_the_shards(workspace, tmp_path, gpt2_cache):
    fortunes_file(tmp_path / "f.txt", random.Random(4), 300)
    preset = load("tiny", {"data.source": str(tmp_path / "f.txt"), "data.separator": "^%$",
                           "tokenizer.kind": "tiktoken", "model.context_length": 32, "data.workers": 1})
    before = corpus_facts(preset)
    assert before.origin.startswith("a scan of the local sources") and before.corpus_bytes == (tmp_path / "f.txt").stat().st_size
    assert len(before.doc_tokens) == 300 and before.corpus_tokens > 0
    titles = {f.title for f in advise(preset, before)}
    assert {"Context length", "Validation split", "Repeated data"} <= titles
    gpt2 = get_tokenizer("gpt2")
    prepare_shards(preset, gpt2)
    after = corpus_facts(preset)
    assert after.origin.startswith("prepared shards") and len(after.doc_tokens) == 300
    line = facts_line(after)
    assert line.startswith(f"corpus: {after.corpus_tokens:,} training tokens (+{after.val_tokens:,} validation)")
    assert line.endswith(f"from {after.origin}") and "documents: median" in line
    assert facts_line(corpus_facts(load("tiny"))) == ""  # sizes only: the rules say "estimated" themselves
    assert after.corpus_tokens + after.val_tokens == sum(len(gpt2.encode(t)) + 1 for t in
                                                          (tmp_path / "f.txt").read_text().split("\n%\n") if t.strip("\n%"))
    assert lengths_from_histogram([1, 2, 4, 8], [2, 0, 1]) == [1, 1, 4]


def test_presets_check_says_where_the_facts_come_from(workspace, tmp_path):
    fortunes_file(tmp_path / "f.txt", random.Random(4), 50)
    preset = tmp_path / "p.toml"
    preset.write_text(f'name = "p"\nextends = "tiny"\n[data]\nsource = "{tmp_path / "f.txt"}"\nseparator = "^%$"\n')
    env = {**os.environ, "LLMLAB_HOME": str(workspace), "COLUMNS": "300"}
    p = subprocess.run([sys.executable, "-m", "core.cli", "presets", "check", str(preset)], capture_output=True,
                       text=True, cwd=ROOT, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "corpus facts: a scan of the local sources" in p.stdout and "Context length" in p.stdout
