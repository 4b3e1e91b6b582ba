"""Fault tests of finetuning against real processes: an instruction finetune with LoRA and a DPO run,
each SIGKILLed at random moments (inside checkpoint writes too) and resumed with
`llmlab finetune tiny --set ... --resume RUN`, end with the weights of an uninterrupted run.

The base is a committed checkpoint of a tiny seeded GPT written in-process; the data are small local
JSONL files of the embedded instruction and preference sets.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from core import config, runs

from faultkit import (stderr_of, FAULT_KILLS, alive, assert_same_weights, committed_steps, events_size, expected_resume,
                      final_weights, kill, resume_detached, resumed_from, set_args, cli, time_window_s,
                      verify_committed, wait_exit, wait_for_checkpoint_write, wait_for_train_step)

pytestmark = pytest.mark.fault

MAX_STEPS = max(16, 4 * FAULT_KILLS)
SEED = 7
CASES = {"instruct-lora": ("instruct", "lora"), "dpo-lora": ("preference", "lora")}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> SimpleNamespace:
    """A committed base checkpoint (tiny GPT + its BPE) and local instruction and preference files."""
    from core.checkpoint import save_checkpoint
    from core.data.formats import ALPACA_HEADER
    from core.data.synthetic import derived_set, iter_stories
    from core.model.gpt import GPT
    from core.tokenizer import train_bpe

    d = tmp_path_factory.mktemp("ft-base")
    texts = list(iter_stories(1, 60_000))
    texts += [" ".join(str(r[k]) for k in ("instruction", "input", "output")) for r in derived_set("instruct", "train")[:200]]
    texts += [ALPACA_HEADER + "\n\n### Instruction:\n### Input:\n### Response:\n"] * 20
    tok = train_bpe(texts, 320, name="fault-ft-bpe")
    torch.manual_seed(0)
    model = GPT(config.ModelConfig(n_layer=1, n_head=2, n_embd=16, context_length=160, vocab_size=tok.n_vocab))
    ckpt = save_checkpoint(d / "base-run", 0, model, tokenizer=tok, lineage={"stage": "pretrain"})
    files = {}
    for kind, keys in (("instruct", ("instruction", "input", "output")), ("preference", ("prompt", "chosen", "rejected"))):
        rows = [{k: r[k] for k in keys} for r in derived_set(kind, "train")[:48]]
        files[kind] = d / f"{kind}.jsonl"
        files[kind].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return SimpleNamespace(ckpt=ckpt, files=files)


def overrides(base: SimpleNamespace, method: str, trainable: str) -> list[str]:
    return [  # the architecture (and its context) comes from the base checkpoint
        "train.device=cpu", "train.micro_batch_size=4", "train.lr=3e-3", "train.min_lr=3e-4", "train.warmup_steps=2",
        "train.log_every=1", "train.checkpoint_every=2", "train.sample_every=0", "train.keep_last=2",
        f"train.max_steps={MAX_STEPS}", "train.eval_every=4", "train.eval_batches=2", "train.seed=7",
        "train.batch_tokens=0", "train.dtype=float32", "train.compile=false", "model.dropout=0.0",
        f"finetune.method={method}", f'finetune.base="{base.ckpt}"', f'finetune.data="{base.files[method]}"',
        f"finetune.trainable={trainable}", "finetune.lora.rank=4",
        "tokenizer.kind=model"]  # the base's own tokenizer (tiny's [tokenizer] names the BPE of its pretraining)


def launch(ov: list[str], home: Path | None = None) -> runs.Handle:
    extra = {"LLMLAB_HOME": str(home)} if home else None
    return runs.launch("finetune", config.load("tiny", ov), root=(home / "runs") if home else None, extra_env=extra)


@pytest.fixture(scope="module")
def references(base, tmp_path_factory) -> dict:
    """Uninterrupted runs, one per case, started together (each is one process)."""
    out, handles = {}, {}
    for case, (method, trainable) in CASES.items():
        home = tmp_path_factory.mktemp(f"ref-{case}")
        handles[case] = (launch(overrides(base, method, trainable), home), time.monotonic())
    for case, (h, t0) in handles.items():
        h.wait(timeout=300)
        st = h.run.status()
        assert st["state"] == "finished", (case, st, stderr_of(h.run))
        assert committed_steps(h.run.path)[-1] == MAX_STEPS
        out[case] = SimpleNamespace(run=h.run, weights=final_weights(h.run.path), wall_s=time.monotonic() - t0,
                                    time_window_s=time_window_s(h.run, FAULT_KILLS))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_sigkill_and_resume_a_finetune_gives_the_same_weights(case, base, references, workspace):
    method, trainable = CASES[case]
    ov = overrides(base, method, trainable)
    ref = references[case]
    rng = random.Random(f"{SEED}-{case}")
    h = launch(ov)
    run, pid, proc = h.run, h.pid, h.process
    kills, where, expected = 0, [], []
    for i in range(FAULT_KILLS):
        offset = events_size(run) if i else 0
        mode = ["checkpoint", "step", "time"][i] if i < 3 else rng.choice(["time", "step", "checkpoint"])
        done = committed_steps(run.path)
        if mode == "time":
            deadline = time.monotonic() + rng.uniform(0.0, ref.time_window_s)
            while time.monotonic() < deadline and alive(pid):
                time.sleep(0.005)
            landed = alive(pid)
        elif mode == "step":
            landed = wait_for_train_step(run, min((done[-1] if done else 0) + rng.randint(1, 4), MAX_STEPS - 2),
                                         pid, offset)
            time.sleep(rng.uniform(0.0, 0.02))
        else:
            landed = wait_for_checkpoint_write(run.path, pid)
        if not landed:
            break
        kill(pid, proc)
        kills += 1
        steps = verify_committed(run.path)
        where.append((mode, steps[-1] if steps else None))
        expected.append((f"step-{steps[-1]:08d}" if steps else None, expected_resume(run.path)))
        pid, proc = resume_detached("finetune", "tiny", ov, run), None
    wait_exit(pid, 300)
    if run.status()["state"] != "finished":
        r = cli("finetune", "tiny", *set_args(ov), "--resume", run.name, timeout_s=300)
        assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert run.status()["state"] == "finished", (run.status(), stderr_of(run))
    assert kills == FAULT_KILLS, where
    got = resumed_from(run)
    allowed = {n for pair in expected for n in pair if n}
    assert set(got) <= allowed, (got, expected)
    assert json.loads((run.path / "base.json").read_text())["path"] == str(Path(base.ckpt).resolve())
    report = json.loads((run.path / "report.json").read_text())
    assert report["steps"] == MAX_STEPS and report["trainable"] == trainable
    if trainable == "lora":  # adapter checkpoints name their base and load merged into it
        meta = json.loads((run.path / "checkpoints" / f"step-{MAX_STEPS:08d}" / "model.json").read_text())
        assert meta.get("adapter"), meta
    assert_same_weights(final_weights(run.path), ref.weights)
    print(f"{case}: kills (mode, last committed step): {where}")
