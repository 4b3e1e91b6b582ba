"""Snapshots (100x30, fixed runs and checkpoints) of every wizard step, the finetuning view, the
eval report and the chat pane. Update with `pytest tests/tui/model_screens --snapshot-update` after
looking at the SVGs."""

from __future__ import annotations

import pytest
from conftest import settle, wait_for
from model_screens_helpers import app_with, models  # noqa: F401
from textual.widgets import Input

from tui.screens.finetune_steps import BaseStep, DataStep, HyperStep, MethodStep, ReviewStep, TrainableStep

SIZE = (100, 30)


async def _freeze(pilot) -> None:
    """No blinking cursors, every worker done, the screen settled."""
    await settle(pilot, 0.3)
    for inp in pilot.app.screen.query(Input):
        inp.cursor_blink = False
    await pilot.pause(0.6)  # charts redraw on their interval


def _wizard_to(step_cls, models):
    """Open the step straight on a prepared preset (walking the steps is tested in test_finetune_wizard)."""
    async def run_before(pilot) -> None:
        from core import config
        from tui.screens.finetune_steps import STEPS, edit

        app = pilot.app
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "FinetuneScreen")
        # the Finetune screen's charts show at the dialog's edges: drawn first, or the edges race the redraw
        charts = [w for w in app.screen.query("*") if hasattr(w, "_dirty")]
        await wait_for(pilot, lambda: not any(c._dirty for c in charts))
        await pilot.pause(0.6)
        preset = edit(config.load("tiny-classify"), {"finetune.base": str(models["pretrain"])})
        app.screen.open_step(STEPS.index(step_cls), preset)
        await wait_for(pilot, lambda: isinstance(app.screen, step_cls))
        await settle(pilot, 0.2)
        if step_cls is BaseStep:
            await wait_for(pilot, lambda: app.screen.query_one("#wizard-models").row_count > 0)
        if step_cls is DataStep:
            await wait_for(pilot, lambda: app.screen.records)
        if step_cls is TrainableStep:
            await wait_for(pilot, lambda: app.screen.arch)
        if step_cls is ReviewStep:
            app.screen.query_one("#wizard-save-path").value = "tiny-classify.toml"
        await _freeze(pilot)
    return run_before


@pytest.mark.parametrize("step", [MethodStep, BaseStep, DataStep, TrainableStep, HyperStep, ReviewStep],
                         ids=lambda c: c.__name__)
def test_wizard_step(snap_compare, make, models, step):
    app = app_with(make, "finetune", preset="tiny-classify")
    assert snap_compare(app, terminal_size=SIZE, run_before=_wizard_to(step, models))


def test_finetune_view(snap_compare, make, models):
    app = app_with(make, "finetune")

    async def run_before(pilot) -> None:
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "points", 0) > 0)
        await _freeze(pilot)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_eval_report(snap_compare, make, models):
    app = app_with(make, "eval", preset="tiny")

    async def run_before(pilot) -> None:
        screen = pilot.app.screen
        screen.show_model(str(models["instruct"]))
        await wait_for(pilot, lambda: screen.card is not None and "sft" in screen.card["checkpoint"])
        await _freeze(pilot)
        screen.query_one("#ev-left").scroll_to(y=8, animate=False)  # the evaluation tables and bars
        await pilot.pause(0.2)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_chat_pane(snap_compare, make, models):
    app = app_with(make, "chat")

    async def run_before(pilot) -> None:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.panes["a"].conv is not None)
        screen.query_one("#chat-system").text = "You tell short stories."
        log = screen.query_one("#chat-log-a")
        log.add_message("user", "Tell me about Lucy.")
        log.add_message("assistant", "Lucy went to the beach with her dog.", "9 tokens, 150.0 tokens/s, first token 12 ms")
        screen.query_one("#chat-input").value = "Where did she go next?"
        await _freeze(pilot)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
