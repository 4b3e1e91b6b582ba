"""The tokenizer stage and tokenizer_for: training from the preset's corpus, the cache folder and
its key, atomic saving, the run report, bad presets and stopping."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import core.data
from core.config import load
from core.errors import UserError
from core.tokenizer import Tokenizer, tokenizer_dir, tokenizer_for, tokenizer_key, train_bpe
from core.stages.tokenizer import run


class Events:
    def __init__(self):
        self.events: list[dict] = []

    def log(self, event: dict) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


@pytest.fixture
def corpus_file(tmp_path, corpus) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(corpus) + "\n")
    return path


@pytest.fixture
def documents(monkeypatch):
    """core.data.iter_documents (helper D's); until it exists, a stand-in that reads a .txt file
    one document per line, which is what the real one does with txt_mode = "line"."""
    if not hasattr(core.data, "iter_documents"):
        def iter_documents(preset):
            with open(preset.data.source, encoding="utf-8") as f:
                yield from (line.rstrip("\n") for line in f if line.strip())
        monkeypatch.setattr(core.data, "iter_documents", iter_documents, raising=False)


def preset_for(corpus_file: Path, **over):
    return load("tiny", {"data.source": str(corpus_file), "data.txt_mode": "line",
                         "tokenizer.vocab_size": 400, "tokenizer.train_max_bytes": 200_000, **over})


def test_trains_once_then_loads_from_the_cache(workspace, corpus_file, documents):
    preset = preset_for(corpus_file)
    log = Events()
    tok = tokenizer_for(preset, log)
    folder = workspace / "tokenizers" / tokenizer_key(preset)
    assert tokenizer_dir(preset) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["llmlab_tokenizer.json", "tokenizer.tiktoken"]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folders left
    assert tok.n_vocab == 400 and tok.chat_template == "chatml"
    progress = [e for e in log.events if e["kind"] == "progress"]
    assert progress[0]["done"] == 0 and progress[-1]["done"] == progress[-1]["total"] == 200_000

    log2 = Events()
    again = tokenizer_for(preset, log2)
    assert log2.events == []  # loaded, not trained
    assert again.fingerprint == tok.fingerprint


def test_key_follows_what_changes_the_tokenizer(corpus_file):
    base = preset_for(corpus_file)
    assert tokenizer_key(preset_for(corpus_file, **{"data.workers": 8})) == tokenizer_key(base)
    for change in ({"tokenizer.vocab_size": 512}, {"tokenizer.train_max_bytes": 100_000},
                   {"data.seed": 1}, {"tokenizer.pattern": r"\S+|\s+"}):
        assert tokenizer_key(preset_for(corpus_file, **change)) != tokenizer_key(base), change


def test_a_stale_folder_without_metadata_is_retrained(workspace, corpus_file, documents):
    preset = preset_for(corpus_file)
    folder = tokenizer_dir(preset)
    folder.mkdir(parents=True)
    (folder / "tokenizer.tiktoken").write_text("half written")
    tok = tokenizer_for(preset)
    assert Tokenizer.load(folder).fingerprint == tok.fingerprint


def test_stage_writes_tokenizer_and_compression_report(workspace, corpus_file, documents, gpt2_cache, monkeypatch):
    monkeypatch.setenv("LLMLAB_OFFLINE", "1")  # cl100k_base and o200k_base: unavailable, not fatal
    preset = preset_for(corpus_file)
    run_dir = workspace / "runs" / "r1"
    run_dir.mkdir(parents=True)
    log = Events()
    run(preset, run_dir, log, threading.Event())
    report = json.loads((run_dir / "report.json").read_text())
    t = report["tokenizer"]
    assert t["trained"] is True and t["n_vocab"] == 400 and t["path"] == str(tokenizer_dir(preset))
    assert Tokenizer.load(run_dir / "tokenizer").fingerprint == t["fingerprint"]
    rows = {r["name"]: r for r in report["compression"]}
    assert list(rows) == [f"bpe400-{tokenizer_key(preset)[:8]}", "gpt2", "cl100k_base", "o200k_base"]
    assert rows["gpt2"]["available"] and not rows["o200k_base"]["available"]
    assert report["sample_bytes"] == rows["gpt2"]["n_bytes"] > 0
    assert any("compression on" in e.get("message", "") and "bytes/token" in e["message"] for e in log.events)

    run_dir2 = workspace / "runs" / "r2"
    run_dir2.mkdir()
    run(preset, run_dir2, Events(), threading.Event())
    assert json.loads((run_dir2 / "report.json").read_text())["tokenizer"]["trained"] is False


def test_stage_stopped_saves_nothing(workspace, corpus_file, documents):
    preset = preset_for(corpus_file)
    stop = threading.Event()
    stop.set()
    run(preset, workspace, Events(), stop)
    assert not (workspace / "report.json").exists()
    assert not tokenizer_dir(preset).exists()


@pytest.mark.parametrize("over, match", [
    ({"tokenizer.vocab_size": 258}, "use at least 259"),
    ({"tokenizer.train_max_bytes": 2000, "tokenizer.vocab_size": 4096}, "merges were possible of the 3837 needed"),
    ({"tokenizer.kind": "tiktoken", "tokenizer.encoding": "cl100k"}, "known encodings: gpt2, r50k_base"),
])
def test_stage_bad_input(workspace, corpus_file, documents, over, match):
    with pytest.raises(UserError, match=match):
        run(preset_for(corpus_file, **over), workspace, Events(), threading.Event())


def test_tiktoken_kind_uses_the_named_encoding(corpus_file, gpt2_cache, tmp_path, trained):
    assert tokenizer_for(preset_for(corpus_file, **{"tokenizer.kind": "tiktoken"})).name == "gpt2"
    folder = trained.save(tmp_path / "saved")
    tok = tokenizer_for(preset_for(corpus_file, **{"tokenizer.kind": "tiktoken", "tokenizer.encoding": str(folder)}))
    assert tok.fingerprint == trained.fingerprint


def test_embedded_corpus_round_trip(tmp_path):
    from core.data.synthetic import iter_stories
    stories = list(iter_stories(seed=1, max_bytes=300_000))
    tok = train_bpe(stories, 768, name="tinyworld")
    back = Tokenizer.load(tok.save(tmp_path / "tok"))
    ids = back.encode_batch(stories[:100])
    assert ids == tok.encode_batch(stories[:100])
    assert [back.decode(x) for x in ids] == stories[:100]
    assert sum(map(len, ids)) < sum(len(s.encode()) for s in stories[:100]) / 3  # > 3 bytes per token
