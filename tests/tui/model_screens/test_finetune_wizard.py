"""The finetuning wizard step by step (back and next, problems as typed), and end to end: the
wizard on the embedded classification set launches a real run whose accuracy reaches the chart."""

from __future__ import annotations

import pytest
from conftest import settle, wait_for
from model_screens_helpers import CLASSIFY, app_with, models  # noqa: F401

from core import config
from tui.screens.finetune import FinetuneScreen
from tui.screens.finetune_steps import (BaseStep, DataStep, HyperForm, HyperStep, MethodStep, ReviewStep,
                                        TrainableStep)
from tui.widgets.confusion import ConfusionMatrix
from tui.widgets.metric_chart import MetricChart
from tui.widgets.token_view import TokenView


async def _to_step(pilot, cls, timeout: float = 20.0):
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, cls), timeout)
    await settle(pilot, 0.1)
    return pilot.app.screen


async def test_screen_shows_the_newest_finetuning_run(make, models):
    app = app_with(make, "finetune")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, FinetuneScreen)
        await wait_for(pilot, lambda: screen.run_name == CLASSIFY and screen.points > 0)
        assert screen.method == "classify"
        chart = screen.query_one(MetricChart)
        assert chart.points[("val", "accuracy")][1] == pytest.approx([0.625, 0.7, 0.775, 0.85])
        cm = screen.query_one(ConfusionMatrix)
        assert cm.matrix == [[41, 9], [10, 40]]  # the test split's, the newest


async def test_wizard_steps_back_next_and_checks(make, models, lab):
    app = app_with(make, "finetune")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("n")
        step = await _to_step(pilot, MethodStep)
        await pilot.press("up", "enter")  # from instruct (the preset's) to classify
        step = await _to_step(pilot, BaseStep)
        assert step.preset.name == "tiny-classify" and step.preset.finetune.method == "classify"
        await wait_for(pilot, lambda: step.query_one("#wizard-models").row_count > 0)
        assert step.query_one("#wizard-models").row_count == 3 + 4  # our three models and the GPT-2 sizes
        step.query_one("#wizard-base").value = "no-such-model"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, BaseStep) and "not a checkpoint" in str(step.query_one("#wizard-problem").render())
        step.query_one("#wizard-base").value = str(models["pretrain"])
        await pilot.press("ctrl+n")
        step = await _to_step(pilot, DataStep)
        assert step.preset.finetune.base == str(models["pretrain"])
        await wait_for(pilot, lambda: step.records)
        view = step.query_one("#wizard-tokens-0", TokenView)
        # classification: only the last token is scored
        assert view.loss_mask[-1] == 1 and sum(view.loss_mask) == 1
        assert "class balance" in str(step.query_one("#wizard-balance").render())
        await pilot.press("ctrl+r")  # back keeps the choice
        step = await _to_step(pilot, BaseStep)
        assert step.preset.finetune.base == str(models["pretrain"])
        await pilot.press("ctrl+n")
        step = await _to_step(pilot, DataStep)
        await wait_for(pilot, lambda: step.records)
        await pilot.press("ctrl+n")
        step = await _to_step(pilot, TrainableStep)
        await wait_for(pilot, lambda: step.arch)
        step.query_one("#wizard-mode-lora").value = True
        step.query_one("#wizard-lora-rank").value = "4"
        await pilot.pause()
        assert "lora" in str(step.query_one("#wizard-sizes").render())
        await pilot.press("ctrl+n")
        step = await _to_step(pilot, HyperStep)
        assert step.preset.finetune.trainable == "lora" and step.preset.finetune.lora.rank == 4
        form = step.query_one(HyperForm)
        form.set_value("train.lr", "-1")
        await pilot.pause()
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert isinstance(app.screen, HyperStep) and "problem" in str(step.query_one("#wizard-problem").render())
        form.set_value("train.lr", "5e-4")
        await pilot.pause()
        await pilot.press("ctrl+n")
        step = await _to_step(pilot, ReviewStep)
        toml = step.query_one("#wizard-toml").text
        assert config.loads(toml).finetune.trainable == "lora" and config.loads(toml).train.lr == 5e-4
        step.query_one("#wizard-save-path").value = str(lab / "mine.toml")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert config.load(lab / "mine.toml").finetune.lora.rank == 4
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, FinetuneScreen)


def test_trainable_estimates_match_the_model(models):
    """The estimates against the real model's counts (all, head) for the tiny base."""
    import torch  # noqa: F401  (a core test of the numbers shown)

    from core.checkpoint import load_model
    from core.lookup import model_config, read_meta
    from core.model.stats import trainable_params

    model, _, meta = load_model(models["pretrain"])
    p = config.load("tiny-classify", ["finetune.num_classes=2"])
    est = trainable_params(model_config(read_meta(models["pretrain"])), p.finetune)
    model.set_head(2, bias=True, kind="classify")
    assert est["head"] == sum(x.numel() for x in model.lm_head.parameters())
    assert est["all"] == sum(x.numel() for x in model.parameters())


@pytest.mark.slow
async def test_wizard_end_to_end_classification_run_updates_the_accuracy_chart(make, models):
    app = app_with(make, "finetune", preset="tiny-classify")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await pilot.press("n")
        await _to_step(pilot, MethodStep)
        await pilot.press("enter")
        step = await _to_step(pilot, BaseStep)
        step.query_one("#wizard-base").value = str(models["pretrain"])
        await pilot.press("ctrl+n")
        step = await _to_step(pilot, DataStep)
        await wait_for(pilot, lambda: step.records)
        await pilot.press("ctrl+n")
        await _to_step(pilot, TrainableStep)
        await pilot.press("ctrl+n")
        step = await _to_step(pilot, HyperStep)
        form = step.query_one(HyperForm)
        for key, value in (("train.max_steps", "12"), ("train.epochs", "0"), ("train.micro_batch_size", "8"),
                           ("train.log_every", "2"), ("train.eval_every", "4"), ("train.checkpoint_every", "12"),
                           ("train.device", "cpu")):
            form.set_value(key, value)
        await pilot.pause()
        await pilot.press("ctrl+n")
        await _to_step(pilot, ReviewStep)
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, FinetuneScreen) and screen.run_name
                       and screen.run_name != CLASSIFY, 20)
        chart = screen.query_one(MetricChart)
        await wait_for(pilot, lambda: screen.state == "finished", 90)
        await settle(pilot, 0.5)
        assert chart.points[("val", "accuracy")][0] == [4, 8, 12]
        assert all(0 <= a <= 1 for a in chart.points[("train", "accuracy")][1])
        assert screen.query_one(ConfusionMatrix).matrix is not None
        first_val = next(e for e in screen.feed.run.events() if e.get("kind") == "val")
        assert first_val["class_names"] and not first_val["class_names"][0].isdigit()  # named before a checkpoint
