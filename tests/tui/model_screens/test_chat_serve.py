"""Chat's "serve this model" (ctrl+r): a serve run of model A, its URL in the header, answering the
openai client, ended by a stop request like any run."""

from __future__ import annotations

import pytest
from conftest import SMALL, wait_for
from model_screens_helpers import INSTRUCT, app_with, models, wait_until  # noqa: F401
from openai import OpenAI

from core import runs
from tui.screens.chat import ChatScreen


@pytest.mark.slow
async def test_ctrl_r_serves_the_chat_model_and_shows_its_url(make, models, lab):
    (lab / "served.toml").write_text(SMALL.replace('name = "small"', 'name = "served"') + "\n[serve]\nport = 0\n")
    app = app_with(make, "chat", preset="served.toml")
    async with app.run_test(size=(120, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await wait_for(pilot, lambda: screen.panes["a"].conv is not None)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: bool(screen.serve_url), timeout=90, msg="the server URL")
        assert screen.serve_url.startswith("http://127.0.0.1:")
        assert screen.serve_url in str(screen.query_one("#chat-model").render())
    spec = screen.panes["a"].spec
    assert INSTRUCT in spec
    reply = OpenAI(base_url=screen.serve_url, api_key="none", max_retries=0, timeout=60).completions.create(
        model=spec, prompt="Once upon a time", max_tokens=3)
    assert reply.usage.completion_tokens == 3
    (run,) = [r for r in runs.list_runs(lab / "runs") if r.stage == "serve"]
    assert run.state == "running"  # the server outlives the workbench, like every run
    runs.stop(run)
    wait_until(lambda: run.state == "stopped", 30)
