"""The Finetune screen on a live GRPO run: a real short run (its own process, launched as the wizard
does) whose rewards, held-out pass@1 and rollouts reach the metrics panel, the chart and the viewer."""

from __future__ import annotations

import json

import pytest
from conftest import settle, wait_for
from model_screens_helpers import app_with, models  # noqa: F401
from screen_text import screen_text

from core import config
from core import runs as core_runs
from tui.screens.finetune import FinetuneScreen
from tui.widgets.metric_chart import MetricChart
from tui.widgets.rollout_view import RolloutView

RL = """extends = "tiny-rl"
name = "small-rl"
[finetune]
base = "{base}"
data = "{data}"
test_fraction = 0.1
[finetune.rl]
group_size = 3
prompts = 2
max_new_tokens = 3
eval_questions = 3
eval_samples = 2
[train]
device = "cpu"
max_steps = 4
log_every = 1
eval_every = 2
checkpoint_every = 4
"""


@pytest.mark.slow
async def test_a_live_rl_run_shows_its_rewards_pass_rates_and_rollouts(make, models, lab):
    from core.data.verifiable import verifiable_set

    data = lab / "verify.jsonl"
    data.write_text("".join(json.dumps({k: r[k] for k in ("instruction", "input", "answer")}) + "\n"
                            for r in verifiable_set("train")[:30]))
    (lab / "small-rl.toml").write_text(RL.format(base=models["instruct"], data=data))
    app = app_with(make, "finetune", preset="small-rl.toml")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, FinetuneScreen)
        await settle(pilot)
        screen.launch(config.load(lab / "small-rl.toml"))
        await wait_for(pilot, lambda: screen.method == "rl" and screen.run_name and "small-rl" in screen.run_name, 30)
        view = screen.query_one(RolloutView)
        assert view.display
        await wait_for(pilot, lambda: screen.state in ("finished", "failed", "crashed"), 120)
        await settle(pilot, 0.5)
        assert screen.state == "finished"
        events = core_runs.open_run(screen.run_name, lab / "runs").events()
        train = [e for e in events if e["kind"] == "train"]
        val = [e for e in events if e["kind"] == "val"]
        rollouts = [e for e in events if e["kind"] == "rollout"]
        chart = screen.query_one(MetricChart)
        assert chart.points[("train", "reward")][0] == [e["step"] for e in train] == [1, 2, 3, 4]
        assert chart.points[("val", "pass_at_1")] == ([e["step"] for e in val], [e["pass_at_1"] for e in val])
        assert [e["step"] for e in view.events] == [e["step"] for e in rollouts] == [1, 2, 3, 4]
        text = screen_text(app)
        assert f"reward      {train[-1]['reward']:.3f}" in text and f"val pass@1  {val[-1]['pass_at_1']:.3f}" in text
        first = rollouts[-1]["completions"][0]
        assert "step 4" in text and f"r {first['reward']:.2f} A {first['advantage']:+.2f}" in text  # the newest on top
        shown = str(view.render())
        assert shown.index("step 4") < shown.index("step 3") < shown.index("step 1")
        await pilot.press("z")
        assert view.paused and "paused" in screen_text(app)
