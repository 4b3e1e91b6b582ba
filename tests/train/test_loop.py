"""The shared loop through the pretrain stage: events, checkpoints, exact resume, failures.

Every run is real: a 0.1 MB synthetic corpus, a trained 512-id BPE, a 2-layer GPT on CPU.
"""

from __future__ import annotations

import json
import math
import resource
import signal
import threading

import pytest
import torch
from safetensors.torch import load_file

from core import checkpoint as ckpt_io
from core.errors import StageFailed, UserError
from core.stages import pretrain
from core.train.loop import lm_objective, train

from train_helpers import ListLog, stop_at, tiny_preset

TRAIN_KEYS = {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mfu", "step_ms", "eta_s", "mem_bytes"}


def losses(log: ListLog) -> dict[int, tuple[float, float]]:
    return {e["step"]: (e["loss"], e["lr"]) for e in log.kind("train")}


def test_events_checkpoints_and_report(workspace):
    preset = tiny_preset("train.sample_every=6")
    run_dir = workspace / "run"
    run_dir.mkdir()
    log = ListLog()
    pretrain.run(preset, run_dir, log, threading.Event())

    train = log.kind("train")
    assert [e["step"] for e in train] == list(range(1, 13))
    assert all(TRAIN_KEYS <= set(e) for e in train)
    assert train[0]["loss"] == pytest.approx(math.log(512), abs=0.15)  # uniform over the vocabulary at init
    assert train[-1]["loss"] < train[0]["loss"] - 0.3
    assert [e["tokens"] for e in train] == [128 * s for s in range(1, 13)]
    assert train[1]["lr"] == pytest.approx(3e-3) and train[-1]["lr"] == pytest.approx(3e-4)

    val = log.kind("val")
    assert [e["step"] for e in val] == [4, 8, 12]
    assert all(e["val_ppl"] == pytest.approx(math.exp(e["val_loss"])) for e in val)
    assert [e["step"] for e in log.kind("sample")] == [6, 12]
    assert all(s["prompt"] == "Once upon a time" and len(s["text"]) > 10 for s in log.kind("sample"))

    assert [e["step"] for e in log.kind("checkpoint")] == [4, 8, 12]
    kept = ckpt_io.committed_checkpoints(run_dir)
    assert [p.name for p in kept] == ["step-00000008", "step-00000012"]  # keep_last = 2; 12 is also best
    root = run_dir / "checkpoints"
    assert (root / "latest").read_text().strip() == "step-00000012"
    best = min(val, key=lambda e: e["val_loss"])["step"]
    assert (root / "best").read_text().strip() == ckpt_io.step_name(best)

    report = json.loads((run_dir / "report.json").read_text())
    assert report["steps"] == 12 and report["tokens"] == 12 * 128 and not report["stopped"]
    assert report["val_loss"] == pytest.approx(val[-1]["val_loss"])

    model, tok, meta = ckpt_io.load_model(root / "step-00000012")
    assert meta["architecture"]["n_layer"] == 2 and meta["architecture"]["vocab_size"] == 512
    assert tok.n_vocab == 512 and meta["lineage"]["init"] == "random"


def test_stop_request_saves_at_the_step_boundary(workspace):
    preset = tiny_preset()
    run_dir = workspace / "run"
    run_dir.mkdir()
    stop, log = stop_at(5)
    pretrain.run(preset, run_dir, log, stop)
    assert log.kind("train")[-1]["step"] == 5
    assert log.kind("checkpoint")[-1]["step"] == 5
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step-00000005"
    assert json.loads((run_dir / "report.json").read_text())["stopped"] is True


@pytest.mark.parametrize("stop_step", [6])
def test_resume_equals_the_uninterrupted_run(workspace, stop_step):
    # dropout and gradient accumulation on: the RNG state and the data position must both be restored
    extra = ("model.dropout=0.1", "train.batch_tokens=256")
    full_dir, part_dir = workspace / "full", workspace / "part"
    full_dir.mkdir(), part_dir.mkdir()
    full = ListLog()
    pretrain.run(tiny_preset(*extra), full_dir, full, threading.Event())

    stop, first = stop_at(stop_step)
    pretrain.run(tiny_preset(*extra), part_dir, first, stop)
    assert max(losses(first)) == stop_step
    second = ListLog()
    pretrain.run(tiny_preset(*extra), part_dir, second, threading.Event())
    assert any("resumed from step-00000006" in e.get("message", "") for e in second.kind("log"))

    a, b = losses(full), losses(second)
    assert sorted(b) == list(range(stop_step + 1, 13))
    for s in b:
        assert b[s][0] == pytest.approx(a[s][0], abs=1e-5), f"loss at step {s}"
        assert b[s][1] == pytest.approx(a[s][1], abs=1e-12), f"lr at step {s}"
    wa = load_file(full_dir / "checkpoints" / "step-00000012" / "model.safetensors")
    wb = load_file(part_dir / "checkpoints" / "step-00000012" / "model.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


def test_resume_falls_back_past_a_corrupt_checkpoint(workspace):
    full_dir, part_dir = workspace / "full", workspace / "part"
    full_dir.mkdir(), part_dir.mkdir()
    full = ListLog()
    pretrain.run(tiny_preset(), full_dir, full, threading.Event())
    stop, first = stop_at(6)
    pretrain.run(tiny_preset(), part_dir, first, stop)
    weights = part_dir / "checkpoints" / "step-00000006" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100:] = bytes(100)  # damaged after the commit: the manifest's hash no longer matches
    weights.write_bytes(bytes(data))

    second = ListLog()
    pretrain.run(tiny_preset(), part_dir, second, threading.Event())
    warnings = [e["message"] for e in second.kind("log") if e["level"] == "warning"]
    assert any("step-00000006" in w and "sha256" in w for w in warnings)
    b, a = losses(second), losses(full)
    assert min(b) == 5  # resumed from step 4
    assert all(b[s][0] == pytest.approx(a[s][0], abs=1e-5) for s in b)


def test_resume_refuses_a_changed_architecture_or_tokenizer(workspace):
    run_dir = workspace / "run"
    run_dir.mkdir()
    stop, log = stop_at(4)
    pretrain.run(tiny_preset(), run_dir, log, stop)
    with pytest.raises(UserError) as e:
        pretrain.run(tiny_preset("model.n_layer=3", "model.n_embd=64"), run_dir, ListLog(), threading.Event())
    assert "model.n_layer: checkpoint 2, preset 3" in str(e.value)
    assert "model.n_embd: checkpoint 32, preset 64" in str(e.value)
    with pytest.raises(UserError) as e:
        pretrain.run(tiny_preset("tokenizer.vocab_size=600"), run_dir, ListLog(), threading.Event())
    assert "model.vocab_size: checkpoint 512, preset 600" in str(e.value) and "tokenizer:" in str(e.value)
    # a training choice such as the learning rate may change on resume
    pretrain.run(tiny_preset("train.lr=1e-3", "train.min_lr=1e-4"), run_dir, ListLog(), threading.Event())


# ------------------------------------------------------------------------------- failures

def _setup(preset):
    """The pieces of pretrain.fit, for driving loop.train with another objective."""
    from core.data import TokenLoader

    log = ListLog()
    tok, folder = pretrain.prepare(preset, log, threading.Event())
    torch.manual_seed(0)
    model, _ = pretrain.build_model(preset, tok, log)
    loader = TokenLoader(folder / "train.bin", 32, 4, seed=1)
    val = TokenLoader(folder / "val.bin", 32, 4, seed=1)
    return model, tok, loader, lambda: val.eval_batches(2)


def test_non_finite_loss_stops_before_the_optimizer_step(workspace):
    preset = tiny_preset()
    model, tok, loader, val = _setup(preset)
    calls = {"n": 0}

    def poisoned(m, batch):  # the 6th training batch's loss turns NaN, as a diverging run's would
        calls["n"] += m.training
        loss, metrics = lm_objective(m, batch)
        return (loss * float("nan") if calls["n"] == 6 else loss), metrics

    log = ListLog()
    run_dir = workspace / "run"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(StageFailed) as e:
        train(model, poisoned, loader, val, preset.train, log, threading.Event(), run_dir, total_steps=12,
              tokenizer=tok)
    assert "non-finite loss at step 6" in str(e.value) and "step-00000004 is the last good checkpoint" in str(e.value)
    assert log.kind("train")[-1]["step"] == 6 and math.isnan(log.kind("train")[-1]["loss"])
    assert any(ev["level"] == "error" for ev in log.kind("log"))
    assert [p.name for p in ckpt_io.committed_checkpoints(run_dir)] == ["step-00000004"]
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step-00000004"
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step was not applied
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_non_finite_between_read_backs_fails_at_the_next_one_and_saves_nothing_bad(workspace):
    # log_every = 4: steps 2, 3, 5, 6, 7 never wait for the device; the NaN of step 6 is flagged
    # there and reported at step 8, whose checkpoint is not written
    preset = tiny_preset("train.log_every=4")
    model, tok, loader, val = _setup(preset)
    calls = {"n": 0}

    def poisoned(m, batch):
        calls["n"] += m.training
        loss, metrics = lm_objective(m, batch)
        return (loss * float("nan") if calls["n"] == 6 else loss), metrics

    log, run_dir = ListLog(), workspace / "run"
    with pytest.raises(StageFailed) as e:
        train(model, poisoned, loader, val, preset.train, log, threading.Event(), run_dir, total_steps=12,
              tokenizer=tok)
    assert "at step 6" in str(e.value) and "found at step 8" in str(e.value), str(e.value)
    assert [ev["step"] for ev in log.kind("train")] == [1, 4, 8]
    assert [p.name for p in ckpt_io.committed_checkpoints(run_dir)] == ["step-00000004"]


def test_out_of_memory_suggests_a_smaller_micro_batch(workspace):
    preset = tiny_preset()
    model, tok, loader, val = _setup(preset)

    def too_big(m, batch):  # what CUDA raises when the activations do not fit
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    with pytest.raises(StageFailed) as e:
        train(model, too_big, loader, val, preset.train, ListLog(), threading.Event(), workspace / "run",
              total_steps=3, tokenizer=tok)
    assert "out of memory" in str(e.value) and "train.micro_batch_size (e.g. 2)" in str(e.value)


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(workspace):
    # a file-size limit makes the second checkpoint's weights fail to write, as a full disk would
    preset = tiny_preset()
    model, tok, loader, val = _setup(preset)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def on(ev):
        if ev["kind"] == "checkpoint":
            resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, hard))

    run_dir = workspace / "run"
    try:
        with pytest.raises(StageFailed) as e:
            train(model, lm_objective, loader, val, preset.train, ListLog(on), threading.Event(), run_dir,
                  total_steps=12, tokenizer=tok)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert "step 8" in str(e.value) and "step-00000004 stays the last committed checkpoint" in str(e.value)
    assert [p.name for p in ckpt_io.committed_checkpoints(run_dir)] == ["step-00000004"]
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step-00000004"
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    ckpt_io.verify(run_dir / "checkpoints" / "step-00000004")


def test_init_from_an_earlier_run(workspace):
    first = workspace / "first"
    first.mkdir()
    a = ListLog()
    pretrain.run(tiny_preset(), first, a, threading.Event())
    second = workspace / "second"
    second.mkdir()
    b = ListLog()
    pretrain.run(tiny_preset(f"model.init_from={first}", "train.max_steps=2"), second, b, threading.Event())
    # it starts where the first run ended, far below the loss of a fresh model
    assert b.kind("train")[0]["loss"] < a.kind("train")[0]["loss"] - 0.3
    meta = ckpt_io.verify(second / "checkpoints" / "step-00000002")
    assert meta["lineage"]["init"] == str(first / "checkpoints" / "step-00000012")
    with pytest.raises(UserError, match="tokenizer"):
        pretrain.run(tiny_preset(f"model.init_from={first}", "tokenizer.vocab_size=600"), workspace / "third",
                     ListLog(), threading.Event())
