"""Shard preparation at scale: any number of workers writes the same bytes, a preparation killed
mid-way continues after its last committed shard and ends equal to an unbroken one, and a streamed
pretraining run trains on the shards committed so far."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.config import from_dict
from core.data import prepare_shards, read_meta, shard_key
from core.data.parts import last_commit
from core.data.shards import partial_folder
from core.errors import Stopped
from core.tokenizer.encodings import get_tokenizer

ROOT = Path(__file__).resolve().parents[2]
WORDS = "the a cat dog sun river stone went found quietly over under bright small old new green red".split()


@pytest.fixture(scope="module")
def gpt2(gpt2_cache):
    return get_tokenizer("gpt2")


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory):
    """~3 MB of distinct documents (a few planted exact duplicates), as jsonl."""
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    texts = [f"Story {i}: " + " ".join(rng.choice(WORDS, size=int(rng.integers(20, 60)))) + "." for i in range(11_900)]
    with open(path, "w") as f:
        for text in texts + texts[5_000:5_100]:
            f.write(json.dumps({"text": text}) + "\n")
    return path


def preset(source, **data):
    return from_dict({"data": {"source": str(source), "val_fraction": 0.05, "workers": 1, **data},
                      "tokenizer": {"kind": "tiktoken", "encoding": "gpt2"}, "model": {"context_length": 16}})


def shard_bytes(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in ("train.bin", "val.bin")}


def test_one_and_two_workers_write_identical_shards_and_commits(workspace, big_corpus, gpt2, monkeypatch):
    one = prepare_shards(preset(big_corpus, shard_tokens=50_000), gpt2)
    monkeypatch.setenv("LLMLAB_HOME", str(workspace / "other"))
    two = prepare_shards(preset(big_corpus, shard_tokens=50_000, workers=2), gpt2)
    assert shard_bytes(one) == shard_bytes(two)
    commits = [sorted((f / "parts").glob("part-*.json")) for f in (one, two)]
    assert len(commits[0]) > 5 and [p.read_text() for p in commits[0]] == [p.read_text() for p in commits[1]]
    meta = read_meta(one)
    last = json.loads(commits[0][-1].read_text())
    assert (last["train_tokens"], last["val_tokens"]) == (meta["train_tokens"], meta["val_tokens"])
    assert (one / "train.bin").stat().st_size == 2 * meta["train_tokens"]
    assert meta["filter_report"]["rules"]["dedup_exact"]["docs"] == 100
    assert not list((one / "parts").glob("state-*"))  # only a resume needs the saved statistics


CHILD = """
import sys
from core.config import from_dict
from core.data import prepare_shards
from core.tokenizer.encodings import get_tokenizer
p = from_dict({"data": {"source": sys.argv[1], "val_fraction": 0.05, "workers": int(sys.argv[2]), "shard_tokens": 5000},
               "tokenizer": {"kind": "tiktoken", "encoding": "gpt2"}, "model": {"context_length": 16}})
prepare_shards(p, get_tokenizer("gpt2"))
"""


def test_a_killed_preparation_continues_after_its_last_commit(workspace, big_corpus, gpt2, monkeypatch):
    p = preset(big_corpus, shard_tokens=5000)
    partial = partial_folder(shard_key(p.data, gpt2))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(big_corpus), "2"], env=env, cwd=ROOT,
                             start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (partial / "parts" / "part-000010.json").exists():
            assert child.poll() is None and time.time() < deadline, "the preparation ended before it could be killed"
            time.sleep(0.01)
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the child and its tokenizing workers
        child.wait()
    killed_at = last_commit(partial)
    assert killed_at is not None and killed_at["part"] >= 10
    assert not (partial.parent / shard_key(p.data, gpt2)).exists()
    committed = (partial / "train.bin").read_bytes()[: 2 * killed_at["train_tokens"]]
    events = []

    class Log:
        def log(self, e):
            events.append(e)

    resumed = prepare_shards(p, gpt2, Log())
    assert any(f"after commit {killed_at['part']}:" in e.get("message", "") for e in events)
    assert (resumed / "train.bin").read_bytes()[: len(committed)] == committed
    monkeypatch.setenv("LLMLAB_HOME", str(workspace / "unbroken"))
    unbroken = prepare_shards(p, gpt2)
    assert shard_bytes(resumed) == shard_bytes(unbroken)
    a, b = read_meta(resumed), read_meta(unbroken)
    for k in ("train_tokens", "val_tokens", "train_docs", "val_docs", "chars", "top_tokens", "source_tokens",
              "doc_tokens_hist", "filter_report", "source_report"):
        assert a[k] == b[k], k


def test_a_resume_over_a_changed_source_starts_over(workspace, tmp_path, big_corpus, gpt2):
    src = tmp_path / "c.jsonl"
    src.write_bytes(big_corpus.read_bytes())
    p = preset(src, shard_tokens=5000)
    partial = partial_folder(shard_key(p.data, gpt2))
    stop = threading.Event()

    def stop_after_two_commits():
        while not (partial / "parts" / "part-000001.json").exists():
            time.sleep(0.005)
        stop.set()

    watcher = threading.Thread(target=stop_after_two_commits, daemon=True)
    watcher.start()
    with pytest.raises(Stopped):
        prepare_shards(p, gpt2, stop=stop)
    assert last_commit(partial)["part"] >= 1
    with open(src, "a") as f:
        f.write(json.dumps({"text": "A new last document."}) + "\n")
    events = []

    class Log:
        def log(self, e):
            events.append(e)

    again = prepare_shards(p, gpt2, Log())
    assert not any("resuming" in e.get("message", "") for e in events)
    meta = read_meta(again)
    assert meta["train_docs"] + meta["val_docs"] == 12_000 - 100 + 1
