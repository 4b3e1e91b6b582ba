"""A stop during tokenizer training is prompt: a real detached `tokenizer` run, a real SIGTERM sent
while rustbpe is inside its merge loop (one native call that ran on for the whole merge phase before),
and the run ends `stopped` with nothing saved, well before the merges could have finished."""

from __future__ import annotations

import os
import random
import signal
import string
import time
from pathlib import Path

import pytest

from core import config, runs

from faultkit import alive, stderr_of, wait_exit, wait_for_event

STOP_BOUND_S = 4.0  # the merges below take ~8 s on a quiet machine; a stop is honoured at a poll (measured 0.6 s)


def _corpus(path: Path) -> int:
    """About 30 MB of random words: so many distinct pieces that 65,000 merges take far longer than the
    1.5 s the test waits, even on a quiet machine (34 MB: 10.4 s in all; 3 MB took only 1.4 s)."""
    rng = random.Random(0)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 12))) for _ in range(1_000_000)]
    text = "\n\n".join(" ".join(rng.choices(words, k=200)) for _ in range(20_000))
    path.write_text(text)
    return len(text)


@pytest.mark.slow
def test_sigterm_while_rustbpe_merges_stops_the_run_promptly(workspace):
    size = _corpus(workspace / "words.txt")
    preset = config.load("tiny", [f'data.source="{workspace / "words.txt"}"', "data.workers=1",
                                  "tokenizer.vocab_size=65000"])
    h = runs.launch("tokenizer", preset)
    try:
        # the corpus has been read (almost) whole: what remains is the merge loop in Rust
        assert wait_for_event(h.run, lambda e: e.get("kind") == "progress" and e.get("done", 0) >= 0.8 * size,
                              h.pid, timeout_s=300), stderr_of(h.run)
        time.sleep(1.5)  # into the native call: the merges take ~8 s more on a quiet machine
        assert alive(h.pid), "training ended before the signal: the test proves nothing"
        sent = time.monotonic()
        os.kill(h.pid, signal.SIGTERM)
        wait_exit(h.pid, STOP_BOUND_S, h.process)
        waited = time.monotonic() - sent
    finally:
        if alive(h.pid):
            os.kill(h.pid, signal.SIGKILL)
    status = h.run.status()
    assert status["state"] == "stopped", (status, stderr_of(h.run))
    assert not (h.run.path / "tokenizer").exists()  # nothing half-trained is saved
    assert waited < STOP_BOUND_S
