"""Token shards decode back to the kept text, are cached and atomic; the loader is seeded and resumable."""

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from core.config import from_dict
from core.data import TokenLoader, prepare_shards, read_meta, shard_key
from core.errors import Stopped, UserError
from core.tokenizer.encodings import get_tokenizer


@pytest.fixture(scope="module")
def gpt2(gpt2_cache):
    return get_tokenizer("gpt2")


def preset(source, **data):
    return from_dict({"data": {"source": str(source), "val_fraction": 0.2, "workers": 1, **data},
                      "tokenizer": {"kind": "tiktoken", "encoding": "gpt2"}, "model": {"context_length": 16}})


def corpus(tmp_path, n=40):
    docs = [f"Document {i}: Lily went to the park and found {i} shells. Ünïcödé ✓ {i * 7}" for i in range(n)]
    rows = docs[:10] + [docs[3]] + docs[10:]  # one planted exact duplicate
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in rows))
    return tmp_path / "c.jsonl", docs


def split_docs(folder, tok):
    out = {}
    for split in ("train", "val"):
        ids = np.fromfile(folder / f"{split}.bin", dtype=np.uint16).tolist()
        assert ids[0] == tok.eot_id
        docs, cur = [], []
        for t in ids[1:] + [tok.eot_id]:
            if t == tok.eot_id:
                docs.append(tok.decode(cur))
                cur = []
            else:
                cur.append(t)
        out[split] = docs
    return out


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def test_shards_decode_back_to_the_kept_text(workspace, tmp_path, gpt2):
    src, docs = corpus(tmp_path)
    folder = prepare_shards(preset(src), gpt2)
    assert folder.parent == workspace / "data"
    parts = split_docs(folder, gpt2)
    assert sorted(parts["train"] + parts["val"]) == sorted(docs)  # duplicate gone, nothing else lost
    assert parts["train"] == [d for d in docs if d in parts["train"]]  # document order kept
    assert 2 <= len(parts["val"]) <= 16
    meta = read_meta(folder)
    assert meta["dtype"] == "uint16" and meta["train_docs"] == len(parts["train"])
    assert meta["filter_report"]["rules"]["dedup_exact"]["docs"] == 1
    assert meta["train_tokens"] + meta["val_tokens"] == sum(len(gpt2.encode(d)) + 1 for d in docs)
    assert meta["chars"] == sum(map(len, docs))


def test_two_processes_write_the_same_bytes_as_one(workspace, tmp_path, gpt2, monkeypatch):
    src, _ = corpus(tmp_path, 300)
    one = digest(prepare_shards(preset(src, workers=1), gpt2))
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path / "other"))
    import core.data.shards as shards

    monkeypatch.setattr(shards, "CHUNK_DOCS", 16)  # many chunks, so order across processes matters
    two = digest(prepare_shards(preset(src, workers=2), gpt2))
    assert {k: v for k, v in one.items() if k != "meta.json"} == {k: v for k, v in two.items() if k != "meta.json"}


def test_unchanged_preset_reuses_the_shards(workspace, tmp_path, gpt2):
    src, _ = corpus(tmp_path)
    events = []

    class Log:
        def log(self, e):
            events.append(e)

    a = prepare_shards(preset(src), gpt2, Log())
    before = digest(a), (a / "train.bin").stat().st_mtime_ns
    b = prepare_shards(preset(src, workers=2), gpt2, Log())
    assert a == b and (digest(b), (b / "train.bin").stat().st_mtime_ns) == before
    assert "reusing" in events[-1]["message"]
    assert any(e["kind"] == "progress" and e["unit"] == "bytes" for e in events)
    c = prepare_shards(preset(src, val_fraction=0.3), gpt2)
    assert c != a


def test_failures_leave_prepared_shards_untouched(workspace, tmp_path, gpt2):
    src, _ = corpus(tmp_path)
    good = prepare_shards(preset(src), gpt2)
    before = digest(good)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n"just a string"\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: expected a JSON object"):
        prepare_shards(preset(bad), gpt2)
    small = tmp_path / "small.txt"
    small.write_text("Too short for a window.")
    with pytest.raises(UserError, match=r"fewer than one context window"):
        prepare_shards(preset(small), gpt2)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        prepare_shards(preset(src, seed=5), gpt2, stop=stop)
    assert digest(good) == before
    # no temporary leftovers; the stopped preparation stays, to continue after its last commit
    assert sorted(p.name for p in (workspace / "data").iterdir() if p.name != ".locks") == \
        sorted([good.name, f".partial-{shard_key(preset(src, seed=5).data, gpt2)}"])


def test_duck_typed_tokenizer_with_a_large_vocabulary_gets_uint32(workspace, tmp_path, gpt2):
    class Big:
        enc, eot_id, n_vocab, name = gpt2.enc, gpt2.eot_id, 70_000, "gpt2-wide"

    src, docs = corpus(tmp_path)
    folder = prepare_shards(preset(src), Big())
    assert read_meta(folder)["dtype"] == "uint32"
    small = prepare_shards(preset(src), gpt2)
    np.testing.assert_array_equal(np.fromfile(folder / "train.bin", dtype=np.uint32),
                                  np.fromfile(small / "train.bin", dtype=np.uint16))


def test_token_loader_is_seeded_resumable_and_sequential_for_eval(tmp_path):
    data = np.arange(1000, dtype=np.uint16)
    (tmp_path / "meta.json").write_text(json.dumps({"dtype": "uint16"}))
    data.tofile(tmp_path / "train.bin")
    a, b = TokenLoader(tmp_path / "train.bin", 8, 4, seed=3), TokenLoader(tmp_path / "train.bin", 8, 4, seed=3)
    xa, ya = a.next_batch()
    assert xa.dtype.is_floating_point is False and tuple(xa.shape) == (4, 8) and str(xa.dtype) == "torch.int64"
    assert (ya[:, :-1] == xa[:, 1:]).all() and (ya[:, -1] == xa[:, -1] + 1).all()
    assert (b.next_batch()[0] == xa).all()
    assert not (TokenLoader(tmp_path / "train.bin", 8, 4, seed=4).next_batch()[0] == xa).all()
    for _ in range(3):
        a.next_batch()
    state = a.state_dict()
    want = [a.next_batch()[0] for _ in range(2)]
    c = TokenLoader(tmp_path / "train.bin", 8, 4, seed=99)
    c.load_state_dict(state)
    assert all((c.next_batch()[0] == w).all() for w in want)
    batches = list(TokenLoader(tmp_path / "train.bin", 8, 3).eval_batches(100))  # 999 // 8 = 124 windows
    assert [tuple(x.shape) for x, _ in batches] == [(3, 8)] * 41 + [(1, 8)]
    assert batches[0][0][1].tolist() == list(range(8, 16)) and batches[0][1][0].tolist() == list(range(1, 9))
    assert batches[-1][0][0].tolist() == list(range(984, 992))
    assert len(list(a.eval_batches(2))) == 2
    with pytest.raises(UserError, match="fewer than one context window"):
        TokenLoader(tmp_path / "train.bin", 1000, 1)


def test_non_utf8_bytes_are_counted_in_meta(workspace, tmp_path, gpt2):
    f = tmp_path / "latin1.txt"
    f.write_bytes(("Le café était très bon et la crème aussi. " * 3).encode("latin-1") + b"\n\n" +
                  b"\n\n".join(b"Plain block number %d of ordinary text that is long enough." % i for i in range(8)))
    meta = read_meta(prepare_shards(preset(f, txt_mode="block", val_fraction=0.3), gpt2))
    assert meta["source_report"]["bad_utf8"] == 12 and meta["source_report"]["bad_utf8_files"] == [str(f)]
