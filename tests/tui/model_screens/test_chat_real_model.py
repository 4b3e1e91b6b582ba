"""The chat pane on a real model's checkpoint: its own tokenizer and Llama-3 template, a reply streamed."""

from __future__ import annotations

import pytest
from conftest import SMALL, wait_for
from hf_tokenizer_files import real_checkpoint
from model_screens_helpers import app_with

from tui.screens.chat import TemplateScreen

pytest.importorskip("transformers")


async def test_chat_with_a_real_models_template(make, lab, tmp_path_factory):
    ckpt = real_checkpoint(tmp_path_factory.mktemp("real-chat"), "llama3")
    (lab / "real.toml").write_text(SMALL + f'\n[chat]\nmodel = "{ckpt}"\nsystem_prompt = "Be brief."\n')
    app = app_with(make, "chat", preset="real.toml")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.panes["a"].conv is not None)
        screen.query_one("#chat-max_new_tokens").value = "4"
        screen.query_one("#chat-temperature").value = "0"
        await pilot.click("#chat-input")
        await pilot.press(*"hi", "enter")
        await wait_for(pilot, lambda: not screen.panes["a"].streaming and len(screen.panes["a"].conv.messages) == 2)
        assert screen.panes["a"].conv.last_stats.tokens >= 1
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert isinstance(app.screen, TemplateScreen)
        shown = app.screen.text
        assert shown.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n")
        assert "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>" in shown
