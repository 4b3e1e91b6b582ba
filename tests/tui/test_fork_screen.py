"""`f` on the Pretrain screen: pick a checkpoint of the attached run, edit the preset, and the fork
starts from it (core.fork); an architecture change is refused with a notification, nothing launches."""

from __future__ import annotations

import threading

import pytest
from conftest import settle, wait_for

from core import config, runs as core_runs


def _parent(lab) -> core_runs.Run:
    from core.stages import pretrain

    preset = config.load(lab / "small.toml", ["train.max_steps=20", "train.sample_every=0"])
    run = core_runs.create_run(preset.name, "pretrain", config.dump(preset), root=lab / "runs")
    pretrain.run(preset, run.path, core_runs.EventLog(run.events_path), threading.Event())
    run.write_status(state="finished")
    return run


@pytest.mark.slow  # a real parent run and a launched fork
async def test_f_forks_the_attached_run_from_a_checkpoint(make, lab):
    from tui.screens.dialogs import PresetEditor
    from tui.screens.fork import CheckpointPicker

    parent = _parent(lab)
    app = make(mode="pretrain")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.screen.attach(parent.name)
        await settle(pilot)
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckpointPicker), 5)
        assert [s for s, _ in app.screen.rows] == [20, 10]
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PresetEditor), 5)
        assert app.screen.preset.train.fork_from.endswith("@10")
        app.screen.dismiss(config.from_dict(config.apply_overrides(config.to_dict(app.screen.preset),
                                                                   {"model.n_layer": 3}), "edited"))
        await wait_for(pilot, lambda: any("a fork keeps the model" in n.message for n in app._notifications), 10)
        assert len(core_runs.list_runs(lab / "runs")) == 1
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, CheckpointPicker), 5)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PresetEditor), 5)
        app.screen.dismiss(app.screen.preset)
        await wait_for(pilot, lambda: len(core_runs.list_runs(lab / "runs")) == 2, 10)
        fork = next(r for r in core_runs.list_runs(lab / "runs") if r.name != parent.name)
        await wait_for(pilot, lambda: fork.raw_status().get("parent") == parent.name, 120)
        assert fork.raw_status()["fork_step"] == 10
        core_runs.stop(fork)
        await wait_for(pilot, lambda: not core_runs.is_live(fork), 120)
