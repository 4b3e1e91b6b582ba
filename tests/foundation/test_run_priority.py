"""A launched stage runs below the launcher's scheduling priority (so typing in the workbench stays
instant while it trains on the same cores)."""

from __future__ import annotations

import os
import signal

import pytest

from core import config
from core import runs as core_runs


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no scheduling priorities on this OS")
def test_a_launched_run_is_nicer_than_its_launcher(workspace):
    preset = config.load("tiny")
    handle = core_runs.launch("data", preset, root=workspace / "runs")
    try:
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        theirs = os.getpriority(os.PRIO_PROCESS, handle.pid)
        assert theirs == min(19, mine + core_runs.RUN_NICENESS)
    finally:
        os.killpg(handle.pid, signal.SIGKILL)
        handle.process.wait()
