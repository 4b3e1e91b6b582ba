"""The finetune wizard's base-model picker at 80x24: every column, "size" last, is whole on screen."""

from __future__ import annotations

from conftest import settle, wait_for
from model_screens_helpers import app_with, models  # noqa: F401
from screen_text import screen_text

from tui.screens.finetune_steps import BaseStep


async def test_the_base_model_picker_shows_every_size_at_80_columns(make, models):
    app = app_with(make, "finetune")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n", "ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, BaseStep))
        # the two language models (an instruct finetune starts from one) and the four GPT-2 sizes
        await wait_for(pilot, lambda: app.screen.query_one("#wizard-models").row_count == 2 + 4)
        await settle(pilot, 0.1)
        text = screen_text(app)
        assert "size" in text and "124M (download)" in text and "1.5B (download)" in text, text
        table = app.screen.query_one("#wizard-models")
        lines = text.splitlines()
        for i in range(table.row_count):  # each row's name and size on one screen line, neither cut
            label, *_, size = (str(c) for c in table.get_row_at(i))
            assert any(label in line and size in line for line in lines), (label, size, text)
