"""Checkpoints: layout, commit marker, atomic pointers, rotation, refusal of corrupt folders, resume state."""

import json
import os
import random

import numpy as np
import pytest
import torch

from core import checkpoint as ck
from core.config import ModelConfig, TrainConfig
from core.errors import UserError
from core.model.gpt import GPT
from core.train.optim import build_optimizer

TINY = ModelConfig(n_layer=1, n_head=2, n_embd=32, context_length=16, vocab_size=64)


def model(seed: int = 0, cfg: ModelConfig = TINY) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg)


def logits(m: GPT) -> torch.Tensor:
    with torch.no_grad():
        return m.eval()(torch.arange(10).unsqueeze(0))[0]


def test_layout_and_round_trip(tmp_path):
    m = model()
    opt = build_optimizer(m, TrainConfig(weight_decay=0.1, lr=1e-3), "cpu")
    m(torch.arange(8).unsqueeze(0), torch.arange(8).unsqueeze(0))[1].backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "step": 1000, "rng": ck.capture_rng_state(), "data": {"pos": 12345}}
    path = ck.save_checkpoint(tmp_path, 1000, m, trainer_state=state, val_loss=2.5, lineage={"base": "scratch"})
    assert path == tmp_path / "checkpoints" / "step-00001000"
    assert sorted(p.name for p in path.iterdir()) == ["COMMITTED", "model.json", "model.safetensors", "trainer.pt"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-00001000"
    assert (tmp_path / "checkpoints" / "best").read_text().strip() == "step-00001000"
    meta = json.loads((path / "model.json").read_text())
    assert meta["architecture"]["n_embd"] == 32 and meta["step"] == 1000 and meta["lineage"] == {"base": "scratch"}
    assert meta["head"] == {"kind": "lm"}

    for where in (path, tmp_path, tmp_path / "checkpoints"):  # checkpoint folder, run dir, checkpoints/
        m2, tok, meta2 = ck.load_model(where)
        assert tok is None and meta2["path"] == str(path)
        assert m2.tied and not m2.training
        torch.testing.assert_close(logits(m2), logits(m), atol=0, rtol=0)

    ts = ck.load_trainer_state(tmp_path)
    assert ts["step"] == 1000 and ts["data"] == {"pos": 12345}
    opt2 = build_optimizer(model(1), TrainConfig(weight_decay=0.1, lr=1e-3), "cpu")
    opt2.load_state_dict(ts["optimizer"])


def test_rng_state_round_trips_through_weights_only_load(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = ck.capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ck.restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_rotation_keeps_last_k_and_best_and_latest(tmp_path):
    m = model()
    for step, loss in [(100, 3.0), (200, 1.0), (300, 2.0), (400, 2.5), (500, 2.2)]:
        ck.save_checkpoint(tmp_path, step, m, val_loss=loss, keep_last=2)
    names = [p.name for p in ck.committed_checkpoints(tmp_path)]
    assert names == ["step-00000200", "step-00000400", "step-00000500"]
    assert (tmp_path / "checkpoints" / "best").read_text().strip() == "step-00000200"
    ck.save_checkpoint(tmp_path, 600, m, keep_last=1)  # no val loss: best unchanged
    assert [p.name for p in ck.committed_checkpoints(tmp_path)] == ["step-00000200", "step-00000600"]
    assert ck.resolve_checkpoint(tmp_path).name == "step-00000600"


def test_same_step_saved_twice_replaces_it(tmp_path):
    ck.save_checkpoint(tmp_path, 7, model(0))
    ck.save_checkpoint(tmp_path, 7, model(1))
    m, _, _ = ck.load_model(tmp_path)
    torch.testing.assert_close(logits(m), logits(model(1)))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")] == []


def test_uncommitted_and_corrupt_checkpoints_are_refused(tmp_path):
    path = ck.save_checkpoint(tmp_path, 1, model(), trainer_state={"step": 1})
    good = ck.save_checkpoint(tmp_path, 2, model(), trainer_state={"step": 2})
    (good / "COMMITTED").unlink()
    with pytest.raises(UserError, match="not a committed checkpoint"):
        ck.load_model(good)
    # `latest` names step 2, which is no longer committed: the run dir resolves to the newest committed one
    assert ck.resolve_checkpoint(tmp_path) == path

    w = path / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-5] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256"):
        ck.load_model(path)
    w.write_bytes(bytes(data[:-10]))
    with pytest.raises(UserError, match="bytes"):
        ck.load_model(path)
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(UserError, match="no committed checkpoint"):
        ck.load_model(tmp_path / "empty-run")
    assert ck.resumable_checkpoint(tmp_path) is None


def test_resume_falls_back_past_a_corrupt_latest(tmp_path):
    first = ck.save_checkpoint(tmp_path, 10, model(), trainer_state={"step": 10})
    second = ck.save_checkpoint(tmp_path, 20, model(), trainer_state={"step": 20})
    assert ck.resumable_checkpoint(tmp_path) == second
    (second / "trainer.pt").write_bytes(b"garbage")
    assert ck.resumable_checkpoint(tmp_path) == first
    assert ck.load_trainer_state(first)["step"] == 10


def test_leftover_temp_folder_of_a_dead_save_is_ignored_and_cleaned(tmp_path):
    ck.save_checkpoint(tmp_path, 1, model())
    dead = tmp_path / "checkpoints" / ".tmp-step-00000002-999999999"
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"half")
    assert [p.name for p in ck.committed_checkpoints(tmp_path)] == ["step-00000001"]
    ck.save_checkpoint(tmp_path, 3, model())
    assert not dead.exists()


def test_classifier_head_and_llama_checkpoint_reload(tmp_path):
    cfg = ModelConfig(n_layer=1, n_head=4, n_kv_head=2, n_embd=32, context_length=16, vocab_size=64, norm="rmsnorm",
                      position="rope", mlp="swiglu", bias=False, tie_embeddings=False)
    m = model(cfg=cfg)
    m.set_head(3, bias=True)
    ck.save_checkpoint(tmp_path, 5, m)
    m2, _, meta = ck.load_model(tmp_path)
    assert meta["head"] == {"kind": "classify", "out_features": 3, "bias": True}
    torch.testing.assert_close(logits(m2), logits(m), atol=0, rtol=0)


def test_architecture_diff_names_fields(tmp_path):
    ck.save_checkpoint(tmp_path, 1, model())
    meta = ck.verify(ck.resolve_checkpoint(tmp_path))
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=32, context_length=16, vocab_size=0, dropout=0.3)
    assert ck.architecture_diff(meta, cfg) == ["model.n_layer: checkpoint 1, preset 2"]


def test_tokenizer_is_copied_into_the_checkpoint(tmp_path, gpt2_cache, monkeypatch):
    from core.tokenizer import get_tokenizer

    tok = get_tokenizer("gpt2")
    m = model(cfg=ModelConfig(n_layer=1, n_head=2, n_embd=32, context_length=16, vocab_size=tok.n_vocab))
    path = ck.save_checkpoint(tmp_path, 1, m, tokenizer=tok)
    assert (path / "tokenizer").is_dir()
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")  # the copy inside the checkpoint is all it needs
    _, tok2, meta = ck.load_model(path)
    assert tok2.encode("Hello world") == tok.encode("Hello world") and tok2.eot_id == tok.eot_id
    assert meta["tokenizer"]["name"] == "gpt2" and meta["chat_template"] == "chatml"


def test_remove_stale_clears_what_dead_processes_left_and_keeps_live_saves(tmp_path):
    import subprocess
    import sys

    from core.checkpoint import remove_stale

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for name in (f".tmp-step-00000010-{dead.pid}", f".old-step-00000004-{dead.pid}",
                     f".tmp-step-00000012-{live.pid}", "step-00000008"):
            (tmp_path / name).mkdir()
        remove_stale(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == [f".tmp-step-00000012-{live.pid}", "step-00000008"]
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("fails_after", [0, 3_000, 20_000, 70_000])
def test_a_write_that_fails_midway_raises_its_os_error_not_torchs(tmp_path, fails_after):
    """torch's zip writer swallows the exception of a file's write() and fails later with its own
    "unexpected pos" RuntimeError, which would hide a full disk. The trainer state goes through a FIFO
    whose reader stops after `fails_after` bytes (a write past it is EPIPE, as a full disk is ENOSPC
    at some byte): the save raises that OSError."""
    import threading
    fifo = tmp_path / "trainer.pt"
    os.mkfifo(fifo)

    def reader():
        with open(fifo, "rb", buffering=0) as f:
            got = 0
            while got < fails_after:
                chunk = f.read(min(4096, fails_after - got))
                if not chunk:
                    return
                got += len(chunk)

    t = threading.Thread(target=reader)
    t.start()
    state = {"optimizer": {i: torch.randn(1_000) for i in range(24)}, "step": 7}
    with pytest.raises(BrokenPipeError):
        ck._WriteAll.save(state, fifo)
    t.join(timeout=10)
