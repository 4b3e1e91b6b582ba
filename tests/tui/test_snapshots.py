"""Snapshots of each part-1 screen at 100x30 with fixed data (runs written by hand, a fixed clock).
Update with `pytest tests/tui/test_snapshots.py --snapshot-update` and look at the SVGs."""

from __future__ import annotations

import json

import pytest
from conftest import FIXED_NOW, wait_for

from core import config

RUN = "20260101-000000-small-pretrain"
OLD = "20251231-230000-small-pretrain"


def write_run(root, name: str, state: str, started: float, losses: list[float]) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "preset.toml").write_text(config.dump(config.load("tiny")))
    (d / "status.json").write_text(json.dumps({"state": state, "stage": "pretrain", "preset": "small", "pid": None,
                                               "host": "test", "started": started}))
    events = [{"t": started, "kind": "status", "state": "running"}]
    for i, loss in enumerate(losses, 1):
        events.append({"t": started + i, "kind": "train", "step": i * 10, "loss": loss, "lr": 1e-3 * (1 - i / 50),
                       "grad_norm": 0.5, "tokens": i * 40960, "tokens_per_s": 4096.0, "mfu": 0.02,
                       "step_ms": 250.0, "eta_s": 100 - i})
        if i % 5 == 0:
            events.append({"t": started + i, "kind": "val", "step": i * 10, "val_loss": loss + 0.1,
                           "val_ppl": 2.718 ** (loss + 0.1)})
    events.append({"t": started + 50, "kind": "sample", "step": len(losses) * 10, "prompt": "Once upon a time",
                   "text": ", Mia went to the park with her dog."})
    events.append({"t": started + 51, "kind": "status", "state": state})
    (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


@pytest.fixture
def fixed_runs(lab):
    root = lab / "runs"
    write_run(root, RUN, "finished", FIXED_NOW - 600, [6.0 * 0.93 ** i + 1.5 for i in range(40)])
    write_run(root, OLD, "failed", FIXED_NOW - 7200, [6.2 * 0.95 ** i + 1.7 for i in range(20)])
    return root


def test_runs_screen(snap_compare, make, fixed_runs):
    async def before(pilot):
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#runs-table").row_count == 2)
        await pilot.press("o")
        await wait_for(pilot, lambda: "finished" in str(pilot.app.screen.query_one("#run-title").render()))
        await pilot.pause(0.3)

    assert snap_compare(make(mode="runs"), terminal_size=(100, 30), run_before=before)


def test_pretrain_screen(snap_compare, make, fixed_runs):
    async def before(pilot):
        screen = pilot.app.screen
        screen.attach(RUN)
        await wait_for(pilot, lambda: screen.state.startswith("finished"))
        screen.load_overlay(OLD)
        chart = screen.query_one("LossChart")
        await wait_for(pilot, lambda: chart.overlays and len(chart.train) > 0)
        await pilot.pause(0.8)  # the chart redraws twice a second
        await wait_for(pilot, lambda: not chart._dirty)

    assert snap_compare(make(mode="pretrain"), terminal_size=(100, 30), run_before=before)


def test_model_screen(snap_compare, make):
    async def before(pilot):
        await pilot.pause(0.3)

    assert snap_compare(make(mode="model"), terminal_size=(100, 30), run_before=before)


def test_data_screen(snap_compare, make):
    async def before(pilot):
        await wait_for(pilot, lambda: pilot.app.screen.loaded is not None, 30)
        await pilot.pause(0.5)

    assert snap_compare(make(mode="data"), terminal_size=(100, 30), run_before=before)


def test_tokenizer_screen(snap_compare, make):
    async def before(pilot):
        await wait_for(pilot, lambda: pilot.app.screen.query_one("#tok-view").spans, 30)
        pilot.app.screen.query_one("#tok-view").focus()
        await pilot.press("right", "right", "right")
        await pilot.pause(0.3)

    assert snap_compare(make(preset="gpt2tok.toml", mode="tokenizer"), terminal_size=(100, 30), run_before=before)
