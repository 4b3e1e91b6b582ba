"""The Compare screen: runs marked on the Runs screen, one metric overlaid, a sortable table of
results and differing settings; a run with a damaged preset is named and left out."""

from __future__ import annotations

from conftest import settle, wait_for
from textual.widgets import DataTable

from core import config, runs as core_runs


def _run(lab, name: str, lr: float, losses: list[float]) -> core_runs.Run:
    preset = config.load(lab / "small.toml", [f"train.lr={lr}"])
    run = core_runs.create_run(name, "pretrain", config.dump(preset), root=lab / "runs")
    log = core_runs.EventLog(run.events_path)
    for i, loss in enumerate(losses, 1):
        log.log({"kind": "train", "step": 10 * i, "loss": loss, "tokens": 640 * i, "train_s": 0.5 * i})
        log.log({"kind": "val", "step": 10 * i, "val_loss": loss - 0.1})
    log.close()
    run.write_status(state="finished")
    return run


async def test_mark_runs_and_compare_them(make, lab):
    from tui.screens.compare import CompareScreen
    from tui.widgets.compare_chart import CompareChart

    _run(lab, "fast", 3e-3, [3.0, 2.2, 1.6])
    _run(lab, "slow", 1e-3, [3.2, 2.8, 2.4])
    broken = _run(lab, "broken", 1e-3, [3.0])
    (broken.path / "preset.toml").write_text("[train\n")
    app = make(mode="runs")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for _ in range(3):
            await pilot.press("space", "down")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.sums, 10)
        screen = app.screen
        assert sorted(s.name for s in screen.sums) == sorted(r.name for r in core_runs.list_runs(lab / "runs")
                                                             if "broken" not in r.name)
        chart = screen.query_one(CompareChart)
        assert chart.metric == "val_loss" and len(chart.curves) == 2
        table = screen.query_one("#compare-table", DataTable)
        labels = [str(c.label) for c in table.columns.values()]
        assert "train.lr" in labels and "train.seed" not in labels and "to val<=2.5 (s) ^" in labels
        first = str(table.get_row_at(0)[0])
        assert "fast" in first  # sorted by time to target: fast reached 2.5 first
        await pilot.press("S")
        assert "slow" in str(table.get_row_at(0)[0])
        await pilot.press("n", "t", "l", "m")
        assert chart.metric == "loss" and chart.x_axis == "tokens" and chart.log_y and chart.smoothing > 0
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)
