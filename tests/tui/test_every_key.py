"""No key ends the workbench: every key each screen's footer shows, pressed on every screen, and
every key of every modal those keys open; the app still runs and nothing failed (tui.log absent).
The safety net itself (an action that raises becomes a notification) is tested on its own."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import settle, wait_for
from textual.binding import Binding
from textual.screen import ModalScreen

from core import runs as core_runs
from tui import failures
from tui.screens import MODE_SCREENS
from tui.widgets.priority_footer import PriorityFooter


def first_key(b: Binding) -> str:
    return b.key.split(",")[0].strip()


def stop_runs(root) -> None:
    """End the runs the keys started (their processes are this test's)."""
    for run in core_runs.list_runs(root):
        pid = run.status().get("pid")
        if run.state in ("running", "created") and pid:
            try:
                os.killpg(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass


async def unwind(pilot, depth: int) -> None:
    """Escape back down to `depth` screens (a modal may open another)."""
    for _ in range(6):
        if len(pilot.app.screen_stack) <= depth:
            return
        await pilot.press("escape")
        await pilot.pause(0.1)


async def press_modal_keys(pilot, depth: int) -> None:
    """Every key of the modal on top (Pilot presses them one by one); each may dismiss it."""
    modal = pilot.app.screen
    for b in [b for b in modal.BINDINGS if isinstance(b, Binding)]:
        if pilot.app.screen is not modal:
            break
        await pilot.press(first_key(b))
        await pilot.pause(0.15)
        await unwind(pilot, depth + 1) if pilot.app.screen is not modal and len(pilot.app.screen_stack) > depth + 1 else None


@pytest.mark.slow
async def test_every_footer_key_on_every_screen_and_modal_leaves_the_app_running(make, lab):
    app = make(mode="data")
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            for mode in MODE_SCREENS:
                await app.switch_mode(mode)
                await pilot.pause(0.3)
                pilot.app.screen.set_focus(None)
                await pilot.pause(0.1)
                keys = [first_key(b) for b, _ in app.screen.query_one(PriorityFooter).shown_bindings()
                        if b.action != "quit"]  # the one key meant to end it (tested last)
                assert keys, mode
                for key in keys:
                    if app.current_mode != mode:
                        await app.switch_mode(mode)
                    app.screen.set_focus(None)
                    depth = len(app.screen_stack)
                    await pilot.press(key)
                    await pilot.pause(0.2)
                    if isinstance(app.screen, ModalScreen):
                        await press_modal_keys(pilot, depth)
                    await unwind(pilot, depth)
                    assert app.is_running and app.return_code is None, f"{mode}: {key} ended the app"
            await settle(pilot)
            assert app.is_running
            await pilot.press("q")
            await pilot.pause(0.2)
            assert app.return_code == 0
    finally:
        stop_runs(lab / "runs")
    log = failures.log_path()
    assert not log.exists(), log.read_text()[-3000:]


async def test_an_action_that_raises_is_a_notification_with_the_detail_in_the_log(make, lab):
    app = make(mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        def broken() -> None:
            raise RuntimeError("the disk caught fire")
        app.screen.action_broken = broken  # an action of our own that raises, as a bug would
        await app.run_action("screen.broken")
        await pilot.pause(0.1)
        assert app.is_running
        notes = list(app._notifications)
        assert any("RuntimeError: the disk caught fire" in n.message and str(failures.log_path()) in n.message
                   for n in notes), [n.message for n in notes]
    assert "the disk caught fire" in failures.log_path().read_text()
    assert "Traceback" in failures.log_path().read_text()


async def test_a_worker_that_raises_is_a_notification(make, lab):
    app = make(mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        def boom() -> None:
            raise ValueError("bad row 7")
        app.screen.run_worker(boom, thread=True, exit_on_error=False, group="test-boom")
        await wait_for(pilot, lambda: any("bad row 7" in n.message for n in app._notifications), 10)
        assert app.is_running
