"""Shard preparation at scale: any number of workers writes the same bytes, a preparation killed
mid-way continues after its last committed shard and ends equal to an unbroken one, and a streamed
pretraining run trains on the shards committed so far."""

import hashlib
import json
import math
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
from core.errors import Stopped, UserError
from core.runs import NullLogger
from core.tokenizer.encodings import get_tokenizer

ROOT = Path(__file__).resolve().parents[2]
N_TEXTS = 6_000
WORDS = "the a cat dog sun river stone went found quietly over under bright small old new green red".split()


@pytest.fixture(scope="module")
def gpt2(gpt2_cache):
    return get_tokenizer("gpt2")


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory):
    """~1.5 MB of distinct documents and 100 planted exact duplicates, as jsonl."""
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    texts = [f"Story {i}: " + " ".join(rng.choice(WORDS, size=int(rng.integers(20, 60)))) + "." for i in range(N_TEXTS)]
    with open(path, "w") as f:
        for text in texts + texts[1_000:1_100]:
            f.write(json.dumps({"text": text}) + "\n")
    return path


def preset(source, **data):
    return from_dict({"data": {"source": str(source), "val_fraction": 0.05, "workers": 1, **data},
                      "tokenizer": {"kind": "tiktoken", "encoding": "gpt2"}, "model": {"context_length": 16}})


def shard_bytes(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in ("train.bin", "val.bin")}


def test_one_and_two_workers_write_identical_shards_and_commits(workspace, big_corpus, gpt2, monkeypatch):
    one = prepare_shards(preset(big_corpus, shard_tokens=20_000), gpt2)
    monkeypatch.setenv("LLMLAB_HOME", str(workspace / "other"))
    two = prepare_shards(preset(big_corpus, shard_tokens=20_000, workers=2), gpt2)
    assert shard_bytes(one) == shard_bytes(two)
    commits = [sorted((f / "parts").glob("part-*.json")) for f in (one, two)]
    assert len(commits[0]) > 5 and [p.read_text() for p in commits[0]] == [p.read_text() for p in commits[1]]
    meta = read_meta(one)
    last = json.loads(commits[0][-1].read_text())
    assert (last["train_tokens"], last["val_tokens"]) == (meta["train_tokens"], meta["val_tokens"])
    assert (one / "train.bin").stat().st_size == 2 * meta["train_tokens"]
    assert meta["filter_report"]["rules"]["dedup_exact"]["docs"] == 100
    assert not list((one / "parts").glob("state-*"))  # only a resume needs the saved statistics


def test_filters_judged_by_workers_decide_as_this_process_does(workspace, tmp_path, big_corpus, gpt2, monkeypatch):
    """Rules and the exact-dedup hash computed in worker processes, over a mixture that stops early:
    the same shards, filter report and source accounts (unread documents included) as one process."""
    other = tmp_path / "other.jsonl"
    rows = [f"Note {i}: " + ("#$%&" * (i % 4)) + " the river went over the stone" * (1 + i % 3) for i in range(3000)]
    other.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))

    def mixed(workers):
        return from_dict({"data": {"mixture": [{"source": str(big_corpus), "weight": 2.0},
                                               {"source": str(other), "weight": 1.0, "filters": {"min_words": 9}}],
                                   "mixture_end": "smallest", "val_fraction": 0.05, "workers": workers,
                                   "filters": {"max_non_letter_frac": 0.1, "min_chars": 40}},
                          "tokenizer": {"kind": "tiktoken", "encoding": "gpt2"}, "model": {"context_length": 16}})

    one = prepare_shards(mixed(1), gpt2)
    monkeypatch.setenv("LLMLAB_HOME", str(workspace / "three"))
    three = prepare_shards(mixed(3), gpt2)
    assert shard_bytes(one) == shard_bytes(three)
    a, b = read_meta(one), read_meta(three)
    assert a["filter_report"] == b["filter_report"] and a["source_report"] == b["source_report"]
    assert a["filter_report"]["rules"]["max_non_letter_frac"]["docs"] > 0 and a["source_report"]["left_unread"]


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
    assert stopped_after(p, gpt2, 1)["part"] >= 1
    with open(src, "a") as f:
        f.write(json.dumps({"text": "A new last document."}) + "\n")
    events = []

    class Log:
        def log(self, e):
            events.append(e)

    again = prepare_shards(p, gpt2, Log())
    assert not any("resuming" in e.get("message", "") for e in events)
    meta = read_meta(again)
    assert meta["train_docs"] + meta["val_docs"] == N_TEXTS + 1


def stream_preset(source, *extra):
    from core import config

    return config.load("tiny", [f'data.source="{source}"', "data.prepare=\"stream\"", "data.shard_tokens=5000",
                                "data.val_fraction=0.05", 'tokenizer.kind="tiktoken"', 'tokenizer.encoding="gpt2"',
                                "model.n_layer=1", "model.n_head=2", "model.n_embd=16", "model.context_length=32",
                                "train.micro_batch_size=4", "train.max_steps=30", "train.log_every=1",
                                "train.eval_every=15", "train.eval_batches=2", "train.checkpoint_every=15",
                                "train.sample_every=0", "train.device=cpu", *extra])


def stopped_after(p, tok, part):
    """A preparation of p stopped once its shard `part` is committed (as a killed one leaves it)."""
    partial = partial_folder(shard_key(p.data, tok))
    stop = threading.Event()

    def watch():
        while not (partial / "parts" / f"part-{part:06d}.json").exists():
            time.sleep(0.005)
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    with pytest.raises(Stopped):
        prepare_shards(p, tok, stop=stop)
    return last_commit(partial)


def test_a_streamed_run_trains_on_committed_shards_and_waits_for_more(workspace, big_corpus, gpt2):
    """The preparation is held at a known commit (this test holds its lock), so the run must train
    on what is committed, wait with a progress event when it catches up, and go on once released."""
    import fcntl

    from core import run_stage

    probe = stream_preset(big_corpus, "data.shard_tokens=1000")
    held_at = stopped_after(probe, gpt2, 1)
    covered = (held_at["train_tokens"] - 1) // 128  # steps of 4 x 32 windows within the committed tokens
    lock = open(workspace / "data" / ".locks" / shard_key(probe.data, gpt2), "a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    trained_while_held: list[int] = []

    def on(e):
        if e["kind"] == "train" and not lock.closed:
            trained_while_held.append(e["step"])
        if e["kind"] == "progress" and e["what"] == "waiting for train shards" and not lock.closed:
            lock.close()  # releases the lock: the preparation continues from its last commit

    steps = covered + 6
    run = run_stage("pretrain", stream_preset(big_corpus, "data.shard_tokens=1000", f"train.max_steps={steps}",
                                              f"train.eval_every={steps}", f"train.checkpoint_every={steps}"),
                    echo=ListLog(on))
    assert run.status()["state"] == "finished", run.status()
    assert lock.closed, "the run never waited for shards"
    # it trained up to (and drew ahead to) the last committed batch, never past it, before waiting
    assert trained_while_held and covered - 1 <= max(trained_while_held) <= covered
    events = run.events()
    assert any(f"after commit {held_at['part']}:" in e.get("message", "") for e in events)
    assert json.loads((run.path / "report.json").read_text())["steps"] == steps
    assert all(math.isfinite(e["loss"]) for e in events if e["kind"] == "train")


class ListLog:
    def __init__(self, on):
        self.on = on

    def log(self, e):
        self.on(e)

    def close(self):
        pass


def test_the_stream_loader_reads_in_order_and_wraps_once_complete(workspace, tmp_path, gpt2):
    from core.data.stream import ShardStream, StreamTokenLoader

    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": f"Document {i} about a cat and a dog."}) + "\n" for i in range(300)))
    p = stream_preset(src)
    folder = prepare_shards(p, gpt2)
    train = np.fromfile(folder / "train.bin", dtype=np.uint16)
    stream = ShardStream(p, gpt2, NullLogger())  # complete already: reads the finished folder
    try:
        loader = StreamTokenLoader(stream, "train", 32, 4, threading.Event())
        n_windows = (len(train) - 1) // 32
        for i in range(n_windows // 4 + 3):  # past the end: around again
            x, y = loader.next_batch()
            starts = [((i * 4 + j) % n_windows) * 32 for j in range(4)]
            assert x.tolist() == [train[s:s + 32].tolist() for s in starts]
            assert y.tolist() == [train[s + 1:s + 33].tolist() for s in starts]
        loader.load_state_dict({"step": 1})
        assert loader.next_batch()[0][0].tolist() == train[4 * 32:5 * 32].tolist()
    finally:
        stream.close()


def test_a_failed_streamed_preparation_fails_the_run_by_name(workspace, tmp_path, big_corpus):
    from core import config, runs

    lines = big_corpus.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:4000] + ['"not an object"'] + lines[4000:]) + "\n")
    p = stream_preset(bad, "train.max_steps=100000")
    run = runs.create_run("bad", "pretrain", config.dump(p))
    with pytest.raises(UserError, match=r"preparation .* failed: .*bad.jsonl:4001: expected a JSON object"):
        runs.execute(run, "pretrain", p)
    st = run.status()
    assert st["state"] == "failed" and st["error_kind"] == "input", st
    assert "preparation" in st["error"] and "bad.jsonl:4001" in st["error"], st["error"]


@pytest.mark.parametrize("sets, message", [
    (["train.nproc=2"], r"data\.prepare: \"stream\" runs in one process; with train\.nproc = 2"),
    (["train.epochs=1", "train.max_steps=0"], r"data\.prepare: .* train\.epochs cannot end the run"),
])
def test_stream_settings_that_cannot_work_are_refused_by_key(sets, message):
    from core import config

    with pytest.raises(UserError, match=message):
        config.load("tiny", ['data.prepare="stream"', *sets])


def test_a_stop_while_waiting_for_shards_ends_the_run_and_its_preparation(workspace, big_corpus, gpt2):
    import fcntl

    from core.stages import pretrain

    p = stream_preset(big_corpus, "data.shard_tokens=1000", "train.max_steps=1000")
    held_at = stopped_after(p, gpt2, 0)
    lock = open(workspace / "data" / ".locks" / shard_key(p.data, gpt2), "a")
    fcntl.flock(lock, fcntl.LOCK_EX)  # the preparation waits for this lock: the run catches up and waits
    stop = threading.Event()
    events = []

    def on(e):
        events.append(e)
        if e["kind"] == "progress" and e["what"] in ("waiting for train shards", "waiting for val shards"):
            stop.set()

    try:
        assert pretrain.fit(p, workspace / "run", ListLog(on), stop) is None
    finally:
        lock.close()
    steps = [e["step"] for e in events if e["kind"] == "train"]
    assert steps and max(steps) <= (held_at["train_tokens"] - 1) // 128
    assert any("preparation paused" in e.get("message", "") for e in events)
    assert last_commit(partial_folder(shard_key(p.data, gpt2)))["part"] == held_at["part"]
