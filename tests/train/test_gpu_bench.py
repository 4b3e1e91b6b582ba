"""tests/bench/gpu.sh end to end in its CPU dry mode: the real `llmlab pretrain gpt2-124m` (a small
shape) on shards prepared on the spot, its events read back, the bare loop beside it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_bench_dry_run_reports_the_stage_from_its_events(tmp_path):
    env = {**os.environ, "LLMLAB_HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    out = subprocess.run(["bash", str(ROOT / "tests/bench/gpu.sh"), "--device", "cpu", "--tiny"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    r = result["results"]["124m"]
    stage, bare = r["stage"], r["bare"]
    assert stage["last_step"] >= result["warmup_steps"] + result["steps"]
    assert stage["tokens_per_s"] > 0 and 0 < stage["mfu"] < 1 and stage["mem_bytes"] > 0
    assert bare["tokens_per_s"] > 0 and r["stage_vs_bare"] > 0
    assert "stage" in out.stdout and "bare" in out.stdout  # the table
