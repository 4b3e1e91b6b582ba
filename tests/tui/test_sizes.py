"""80x24 and 16 colours as first-class sizes: what every screen keeps visible at 80x24 (the preset
name, help and quit in the footer, nothing past the right edge), and snapshots of every screen at
80x24 and 120x40 plus one in the terminal's 16 colours. Update the snapshots with
`pytest tests/tui/test_sizes.py --snapshot-update` and look at the SVGs."""

from __future__ import annotations

import asyncio

import pytest
from conftest import wait_for
from screen_text import screen_text
from test_snapshots import RUN, fixed_runs  # noqa: F401 - the fixture, shared with the 100x30 snapshots

from tui.screens import MODE_SCREENS

SIZES = [(80, 24), (120, 40)]


async def ready(pilot, mode: str) -> None:
    """Wait until the screen shows its data (the same state in every snapshot)."""
    screen = pilot.app.screen
    if mode == "data":
        await wait_for(pilot, lambda: screen.loaded is not None, 30)
    elif mode == "tokenizer":
        await wait_for(pilot, lambda: screen.query_one("#tok-view").spans, 30)
    elif mode == "pretrain":
        screen.attach(RUN)
        await wait_for(pilot, lambda: screen.state.startswith("finished"), 20)
        chart = screen.query_one("#loss-chart")
        await wait_for(pilot, lambda: len(chart.train) > 0 and not chart._dirty, 20)  # the curve drawn
    elif mode == "runs":
        await wait_for(pilot, lambda: screen.query_one("#runs-table").row_count == 2, 20)
    # every worker done; one that a newer one of its group replaced (exclusive) ends cancelled, which is fine
    await asyncio.gather(*[w.wait() for w in pilot.app.workers], return_exceptions=True)
    await pilot.pause(0.6)  # charts redraw twice a second


async def test_every_screen_at_80x24_keeps_the_preset_help_and_quit_in_view(make, fixed_runs):  # noqa: F811
    app = make(mode="data")
    async with app.run_test(size=(80, 24)) as pilot:
        for mode in MODE_SCREENS:
            await app.switch_mode(mode)
            app.screen.set_focus(None)
            await ready(pilot, mode)
            await wait_for(pilot, lambda: "? help" in screen_text(app).rstrip("\n").splitlines()[-1], 10, msg=mode)
            lines = screen_text(app).rstrip("\n").splitlines()
            assert "preset small" in lines[0], (mode, lines[0])
            assert "? help" in lines[-1] and "q quit" in lines[-1], (mode, lines[-1])
            assert all(len(line.rstrip()) <= 80 for line in lines), mode


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("mode", list(MODE_SCREENS))
def test_screen_snapshot(snap_compare, make, fixed_runs, mode, size):  # noqa: F811
    preset = "gpt2tok.toml" if mode == "tokenizer" else "small.toml"

    async def before(pilot):
        pilot.app.screen.set_focus(None)
        await ready(pilot, mode)

    assert snap_compare(make(preset=preset, mode=mode), terminal_size=size, run_before=before)


def test_tokenizer_in_16_colours(snap_compare, make):
    """The terminal's own 16 colours: neighbouring tokens alternate an underline, not only a colour."""
    async def before(pilot):
        await ready(pilot, "tokenizer")

    assert snap_compare(make(preset="gpt2tok.toml", mode="tokenizer", ansi_color=True), terminal_size=(80, 24),
                        run_before=before)
