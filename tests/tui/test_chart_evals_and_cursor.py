"""The live loss charts on real short runs: their live evaluations (`eval` events) are drawn against a
second axis at 80x24 on the Pretrain and Finetune screens, and `f` with the chart focused forks from
the checkpoint nearest at or before the cursor's step (without the picker)."""

from __future__ import annotations

import threading

import pytest
from conftest import settle, wait_for

from core import config, runs as core_runs


def _pretrain(lab, *overrides: str) -> core_runs.Run:
    """A finished real pretraining run of small.toml (20 steps unless `overrides` say otherwise)."""
    from core.stages import pretrain

    preset = config.load(lab / "small.toml", ["train.max_steps=20", "train.sample_every=0", *overrides])
    run = core_runs.create_run(preset.name, "pretrain", config.dump(preset), root=lab / "runs")
    pretrain.run(preset, run.path, core_runs.EventLog(run.events_path), threading.Event())
    run.write_status(state="finished")
    return run


async def _chart_with_evals(app, pilot, run: core_runs.Run, series: str, metric: str, evals: list[dict]):
    """The screen's loss chart attached to `run`, once it holds all of `evals` as `series` (their
    `metric` values) and has redrawn."""
    from tui.widgets.loss_chart import LossChart

    await settle(pilot)
    app.screen.attach(run.name)
    chart = app.screen.query_one(LossChart)
    await wait_for(pilot, lambda: len(chart.evals.get(series, ())) == len(evals), 20)
    assert chart.evals[series].values == [e[metric] for e in evals]
    await pilot.pause(1.2)  # the next redraw
    return chart


@pytest.mark.slow  # a real (small) pretraining run with live evaluations
async def test_evals_on_the_chart_and_f_at_the_cursor(make, lab):
    from tui.screens.dialogs import PresetEditor
    from tui.screens.fork import CheckpointPicker

    run = _pretrain(lab, 'train.eval_tasks=["choice"]', "eval.limit=8", "train.checkpoint_every=10", "train.eval_every=5")
    evals = [e for e in run.events() if e["kind"] == "eval"]
    assert [e["step"] for e in evals] == [5, 10, 15, 20]
    app = make(mode="pretrain")
    async with app.run_test(size=(80, 24)) as pilot:
        chart = await _chart_with_evals(app, pilot, run, "choice acc", "acc", evals)
        assert chart.evals["choice acc"].steps == [5, 10, 15, 20]
        legend = str(chart.render())
        assert "choice acc (right)" in legend and "val" in legend
        assert chart.cursor_step is None
        chart.focus()
        await pilot.press("end", "left", "left", "left")  # train points every 2 steps: 20 -> 14
        assert chart.cursor_step == 14
        await pilot.pause(1.2)
        assert "step 14: loss" in str(chart.render())
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, PresetEditor), 5)
        assert app.screen.preset.train.fork_from == f"{run.path}@10"  # checkpoints at 10 and 20
        app.screen.dismiss(None)
        await settle(pilot)
        chart.focus()
        await pilot.press("home", "f")  # step 1: before the first checkpoint, nothing opens
        assert chart.cursor_step == 1
        await wait_for(pilot, lambda: any("no committed checkpoint at or before step 1 " in n.message
                                          for n in app._notifications), 5)
        assert not isinstance(app.screen, PresetEditor)
        app.screen.set_focus(None)  # the chart without focus: `f` asks which checkpoint
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckpointPicker), 5)


def _classify_finetune(lab, base: core_runs.Run) -> core_runs.Run:
    from core.stages import finetune

    preset = config.load("tiny-classify", [f"finetune.base={base.path}", "train.max_steps=6", "train.epochs=0",
                                           "train.micro_batch_size=4", "train.eval_every=3", "train.checkpoint_every=3",
                                           "train.log_every=1", "train.eval_batches=2", "train.warmup_steps=1",
                                           'train.eval_tasks=["classify"]', "eval.limit=8", "train.device=cpu"])
    run = core_runs.create_run(preset.name, "finetune", config.dump(preset), root=lab / "runs")
    finetune.run(preset, run.path, core_runs.EventLog(run.events_path), threading.Event())
    run.write_status(state="finished")
    return run


@pytest.mark.slow  # a real small pretraining run and a classification finetune of it with live evaluations
async def test_the_finetune_chart_draws_classify_evals(make, lab):
    run = _classify_finetune(lab, _pretrain(lab, "train.max_steps=10"))
    evals = [e for e in run.events() if e["kind"] == "eval"]
    assert [(e["step"], e["task"]) for e in evals] == [(3, "classify"), (6, "classify")]
    app = make(mode="finetune")
    async with app.run_test(size=(80, 24)) as pilot:
        chart = await _chart_with_evals(app, pilot, run, "classify accuracy", "accuracy", evals)
        assert "classify accuracy (right)" in str(chart.render())
