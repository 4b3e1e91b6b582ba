"""The last clipped panels of the keyboard walk at 80x24: the Data statistics reachable by keyboard,
the Compare table's target column whole, Model numbers never broken across lines, and help listing
only the keys this app offers (none of Textual's own, such as super+c)."""

from __future__ import annotations

from conftest import settle, wait_for
from screen_text import screen_text
from test_compare_screen import _run
from textual.widgets import DataTable, Static


async def test_the_data_statistics_scroll_by_keyboard_to_their_last_line(make):
    app = make(preset="gpt2tok.toml", mode="data")  # a tokenizer: token counts, top tokens, more than fits
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded is not None, 30)
        await settle(pilot)
        box = app.screen.query_one("#data-stats-box")
        last = str(app.screen.query_one("#data-stats", Static).render()).splitlines()[-1].split()[-1]
        for _ in range(12):  # tab reaches it
            if app.focused is box:
                break
            await pilot.press("tab")
        assert app.focused is box
        await pilot.press("end")
        await settle(pilot, 0.1)
        assert box.max_scroll_y > 0 and box.scroll_y == box.max_scroll_y  # more than fits, and it scrolled
        assert last in screen_text(app), screen_text(app)


async def test_the_compare_table_shows_the_target_column_whole_at_80_columns(make, lab):
    from tui.screens.compare import CompareScreen

    _run(lab, "fast", 3e-3, [3.0, 2.2, 1.6])
    _run(lab, "slow", 1e-3, [3.2, 2.8, 2.4])
    app = make(mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("space", "down", "space", "c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.sums, 10)
        await settle(pilot, 0.1)
        assert "to val<=2.5 (s) ^" in screen_text(app)
        first = str(app.screen.query_one("#compare-table", DataTable).get_row_at(0)[0])
        assert first.endswith("fast-pretrain") and len(first) <= 22


async def test_model_numbers_never_break_across_lines(make):
    app = make(mode="model")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, 0.3)
        text = screen_text(app)
        assert "weights / grads" in text
        line = next(x for x in text.splitlines() if "weights / grads" in x)
        assert line.rstrip().endswith("KiB"), line  # "95.38 KiB / 95.38 KiB", not "... / 95.38" then "KiB"
        assert not any(x.rstrip().endswith(("/", "│ KiB", "MiB /")) for x in text.splitlines())


async def test_help_lists_only_keys_this_app_offers(make):
    app = make(mode="model")
    async with app.run_test(size=(80, 24)) as pilot:
        for mode in ("data", "model", "chat", "runs"):
            await app.switch_mode(mode)
            await settle(pilot, 0.2)
            await pilot.press("question_mark")
            await settle(pilot)
            keys = [k for k, _ in app.screen.keys]
            descriptions = " ".join(d for _, d in app.screen.keys)
            assert not any(k.startswith("super+") for k in keys), keys
            assert "Copy selected text" not in descriptions and "Scroll Up" not in descriptions
            assert "Cursor up" not in descriptions and len(keys) == len(set(keys)), keys  # each key once
            assert {"?", "p", "q", "ctrl+q", "tab"} <= set(keys), keys
            await pilot.press("escape")
