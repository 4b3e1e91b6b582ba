"""End to end with the real pretraining stage: the Pretrain screen runs the small preset and chart
points arrive; a workbench process killed mid-run leaves the run going, and a new one attaches and
sees it finish. (Data preparation and tokenizer training run inside the pretraining run.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HERE, wait_for

from core import runs as core_runs
from tui.messages import RunAttached, RunEnded
from tui.widgets.loss_chart import LossChart

ROOT = HERE.parent.parent


@pytest.mark.slow
async def test_pretrain_screen_trains_the_small_preset_and_points_arrive(make):
    seen = []
    app = make(mode="pretrain")
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await pilot.press("s")
        await wait_for(pilot, lambda: any(isinstance(m, RunEnded) for m in seen), 120)
        await pilot.pause(0.3)
        ended = next(m for m in seen if isinstance(m, RunEnded))
        assert ended.state == "finished", ended.error
        chart = app.screen.query_one(LossChart)
        assert [int(s) for s in chart.train.steps] == [1, *range(2, 31, 2)]  # the first step, then every 2nd
        assert chart.val.steps == [10, 20, 30]
        assert all(0 < v < 10 for v in chart.train.values)
        assert app.screen.last_train.get("tokens_per_s", 0) > 0


@pytest.mark.slow
async def test_killed_workbench_leaves_the_run_going_and_a_new_one_attaches(make, lab):
    (lab / "longer.toml").write_text('extends = "small.toml"\nname = "longer"\n[train]\nmax_steps = 150\n'
                                     'log_every = 5\neval_every = 50\nsample_every = 0\ncheckpoint_every = 50\n')
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"}
    proc = subprocess.Popen([sys.executable, str(HERE / "tui_process.py"), str(lab / "longer.toml"), str(lab / "runs")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=lab,
                            start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        name = line.split()[0]
        os.killpg(proc.pid, signal.SIGKILL)  # the terminal and everything in its session die
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    run = core_runs.open_run(name, lab / "runs")
    assert run.state == "running"  # the run lives on in its own session
    seen = []
    app = make(mode="pretrain")
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await wait_for(pilot, lambda: any(isinstance(m, RunAttached) for m in seen), 20)
        assert app.screen.run_name == name
        await wait_for(pilot, lambda: any(isinstance(m, RunEnded) for m in seen), 180)
        ended = next(m for m in seen if isinstance(m, RunEnded))
        assert ended.state == "finished", ended.error
        chart = app.screen.query_one(LossChart)
        assert [int(s) for s in chart.train.steps] == [1, *range(5, 151, 5)]  # every point, from the start
    assert (Path(run.path) / "checkpoints" / "latest").exists()
