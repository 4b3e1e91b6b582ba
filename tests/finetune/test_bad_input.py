"""Bad input stops a finetuning run before it starts, with a message that says what and where."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.errors import UserError
from core.stages import finetune

from ft_helpers import Recorder, make_preset
from conftest import write_jsonl


def run_stage(preset, run_dir: Path) -> Recorder:
    rec = Recorder()
    run_dir.mkdir(parents=True, exist_ok=True)
    finetune.run(preset, run_dir, rec, threading.Event())
    return rec


def test_missing_base(tmp_path, workspace, data_files):
    preset = make_preset("classify", "run:nothing:pretrain", data_files["classify"])
    with pytest.raises(UserError, match=r"finetune.base: run:nothing:pretrain: no finished pretrain run"):
        run_stage(preset, tmp_path / "r")
    preset = make_preset("classify", tmp_path / "no-such-checkpoint", data_files["classify"])
    with pytest.raises(UserError, match="finetune.base"):
        run_stage(preset, tmp_path / "r2")


def test_tokenizer_mismatch(tmp_path, base_ckpt, data_files, gpt2_cache):
    preset = make_preset("classify", base_ckpt, data_files["classify"])
    preset.tokenizer.kind, preset.tokenizer.encoding = "tiktoken", "gpt2"
    with pytest.raises(UserError, match=r"trained with tokenizer 'test-bpe'.*tokenizer.encoding = 'gpt2'"):
        run_stage(preset, tmp_path / "r")


@pytest.mark.parametrize("method,rows,field", [
    ("classify", [{"text": "a", "lbl": 1}], "'label'"),
    ("classify", [{"body": "a", "label": 1}], "'text'"),
    ("instruct", [{"instruction": "a", "answer": "b"}], "'output'"),
    ("instruct", [{"question": "a", "output": "b"}], "'instruction' or 'messages'"),
    ("preference", [{"prompt": "a", "chosen": "b", "worse": "c"}], "'rejected'"),
])
def test_dataset_missing_a_field(tmp_path, base_ckpt, method, rows, field):
    data = write_jsonl(tmp_path / "d.jsonl", rows * 30)
    preset = make_preset(method, base_ckpt, data)
    with pytest.raises(UserError, match=f"no field {field}.*the records have"):
        run_stage(preset, tmp_path / "r")


def test_label_outside_num_classes(tmp_path, base_ckpt):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": f"story {i}", "label": i % 3} for i in range(40)])
    preset = make_preset("classify", base_ckpt, data)
    with pytest.raises(UserError, match=r"label 2 is outside 0..1; set finetune.num_classes"):
        run_stage(preset, tmp_path / "r")


def test_long_examples_are_cut_and_counted_or_refused(tmp_path, base_ckpt):
    long = " ".join(["Tom went to the park and played with the ball."] * 40)  # far beyond 160 tokens
    rows = [{"text": long if i % 4 == 0 else "Mia was sad.", "label": i % 2} for i in range(40)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    rec = run_stage(make_preset("classify", base_ckpt, data, train__max_steps=1), tmp_path / "r")
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["test"]["truncated"] == 10
    assert any("10 texts were longer than the context (160 tokens)" in e.get("message", "") for e in rec.of("log"))
    with pytest.raises(UserError, match=r"longer than the context \(160\); set finetune.truncate"):
        run_stage(make_preset("classify", base_ckpt, data, finetune__truncate="refuse"), tmp_path / "r2")


def test_chosen_equal_to_rejected_is_counted_and_skipped(tmp_path, base_ckpt, data_files):
    rows = [json.loads(line) for line in data_files["preference"].read_text().splitlines()]
    for r in rows[::3]:
        r["rejected"] = r["chosen"]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    rec = run_stage(make_preset("preference", base_ckpt, data, train__max_steps=1), tmp_path / "r")
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["test"]["skipped_same"] == 20
    assert any("skipped 20 pairs whose chosen equals rejected" in e.get("message", "") for e in rec.of("log"))


def test_cli_exits_2_when_the_run_cannot_start(tmp_path, data_files):
    preset = tmp_path / "bad.toml"
    preset.write_text(f'[finetune]\nmethod = "classify"\nbase = "run:nothing:pretrain"\ndata = "{data_files["classify"]}"\n'
                      f'[train]\nmax_steps = 2\ndevice = "cpu"\n')
    env = {**os.environ, "LLMLAB_HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "core.cli", "finetune", str(preset)], capture_output=True, text=True,
                       env=env, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 2, p.stdout + p.stderr
    assert "no finished pretrain run" in p.stdout + p.stderr
