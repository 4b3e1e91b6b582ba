"""The chat pane: a model picked by default, a reply streamed from a real tiny checkpoint, stopped
midway, sampling fields checked as typed, the template on request, compare mode, new/clear/save."""

from __future__ import annotations

import json

from conftest import settle, wait_for
from model_screens_helpers import INSTRUCT, app_with, models  # noqa: F401
from screen_text import screen_text

from tui.screens.chat import UI_BATCH_S, ChatScreen, TemplateScreen
from tui.widgets.chat_log import ChatLog, ChatMessage




async def test_reply_streams_and_stops_midway(make, models):
    app = app_with(make, "chat")
    seen = []
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await wait_for(pilot, lambda: screen.panes["a"].conv is not None)
        # the newest finetuned language model is picked (the classifier is not a chat model)
        assert INSTRUCT in screen.panes["a"].spec
        screen.query_one("#chat-max_new_tokens").value = "2000"
        screen.query_one("#chat-temperature").value = "1.0"
        await pilot.click("#chat-input")
        await pilot.press(*"hello", "enter")
        await wait_for(pilot, lambda: screen.panes["a"].tokens >= 5)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.panes["a"].streaming)
        conv = screen.panes["a"].conv
        assert conv.last_stats.ended == "cancelled"
        assert 5 <= conv.last_stats.tokens < 2000
        log = screen.query_one("#chat-log-a", ChatLog)
        replies = [m for m in log.query(ChatMessage) if m.role == "assistant"]
        assert replies[-1].text == conv.messages[-1]["content"]
        assert "tokens/s" in replies[-1].footer and "stopped" in replies[-1].footer
        # the hook sees a message at the screen and again where it bubbles: count each once
        streamed = list({id(m): m for m in seen if isinstance(m, ChatScreen.ReplyStreamed)}.values())
        # coalesced: at most one UI update per batch window (and never more than one per token)
        assert 1 <= len(streamed) <= conv.last_stats.tokens
        assert len(streamed) <= conv.last_stats.seconds / UI_BATCH_S + 2


async def test_bad_sampling_value_blocks_sending(make, models):
    app = app_with(make, "chat")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.panes["a"].conv is not None)
        screen.query_one("#chat-top_p").value = "1.5"
        await pilot.click("#chat-input")
        await pilot.press(*"hi", "enter")
        await pilot.pause()
        assert not screen.panes["a"].streaming and not screen.panes["a"].conv.messages
        assert "top_p: must be <= 1, got" in screen_text(app)


async def test_template_new_clear_and_save(make, models, lab):
    app = app_with(make, "chat")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.panes["a"].conv is not None)
        screen.query_one("#chat-max_new_tokens").value = "3"
        screen.query_one("#chat-temperature").value = "0"
        screen.query_one("#chat-system").text = "You are a storyteller."
        await pilot.click("#chat-input")
        await pilot.press(*"hi", "enter")
        await wait_for(pilot, lambda: not screen.panes["a"].streaming and screen.panes["a"].conv.messages)
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert isinstance(app.screen, TemplateScreen)
        shown = app.screen.text
        assert shown.startswith("<|endoftext|><|im_start|>system\nYou are a storyteller.<|im_end|>\n<|im_start|>user\nhi")
        assert shown.endswith("<|im_start|>assistant\n")
        await pilot.press("escape")
        await pilot.press("ctrl+s")
        await pilot.pause()
        path = lab / "chat.jsonl"
        app.screen.query_one("#save-path").value = str(path)
        await pilot.press("enter")
        await pilot.pause()
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        assert [r.get("role") for r in rows[1:]] == ["system", "user", "assistant"]
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert screen.panes["a"].conv.messages == []
        assert screen.query_one("#chat-system").text == "You are a storyteller."  # clear keeps settings
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert screen.query_one("#chat-system").text == ""  # new: back to the preset's
        await pilot.press("ctrl+f")  # load the saved conversation back: turns, system prompt, sampling
        await pilot.pause()
        app.screen.query_one("#save-path").value = str(path)
        await pilot.press("enter")
        await pilot.pause()
        assert [m["role"] for m in screen.panes["a"].conv.messages] == ["user", "assistant"]
        assert screen.query_one("#chat-system").text == "You are a storyteller."
        assert screen.query_one("#chat-max_new_tokens").value == "3"
        assert len([m for m in screen.query_one("#chat-log-a", ChatLog).query(ChatMessage)]) == 2
        (lab / "bad.jsonl").write_text('{"role": "user", "content": "hi"}\n{"role": "wizard"}\n')
        await pilot.press("ctrl+f")
        await pilot.pause()
        app.screen.query_one("#save-path").value = str(lab / "bad.jsonl")
        await pilot.press("enter")
        await pilot.pause()
        assert len(screen.panes["a"].conv.messages) == 2  # a bad file changes nothing
        assert any("bad.jsonl:2" in n.message for n in app._notifications)


async def test_compare_mode_two_models_answer_the_same_message(make, models):
    app = app_with(make, "chat")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.panes["a"].conv is not None)
        await pilot.press("ctrl+g")
        await pilot.pause(0.5)
        picker = app.screen
        await settle(pilot)
        picker.query_one("#picker-spec").value = str(models["pretrain"])
        picker.query_one("#picker-spec").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.panes["b"].conv is not None)
        assert screen.compare and screen.query_one("#chat-pane-b").display
        assert screen.query_one("#chat-sampling-b").display
        screen.query_one("#chat-max_new_tokens").value = "4"
        screen.query_one("#chat-temperature").value = "0"
        screen.query_one("#chat-b-max_new_tokens").value = "2"  # each side keeps its own sampling
        screen.query_one("#chat-b-temperature").value = "0"
        await pilot.click("#chat-input")
        await pilot.press(*"hi", "enter")
        await wait_for(pilot, lambda: not screen.panes["a"].streaming and not screen.panes["b"].streaming)
        a, b = screen.panes["a"].conv, screen.panes["b"].conv
        assert a.messages[0] == b.messages[0] == {"role": "user", "content": "hi"}
        assert a.messages[1]["role"] == b.messages[1]["role"] == "assistant"
        assert a.sampling.max_new_tokens == 4 and b.sampling.max_new_tokens == 2
        assert a.last_stats.tokens <= 4 and b.last_stats.tokens <= 2
        assert "B" in screen_text(app)
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert not screen.compare and not screen.query_one("#chat-pane-b").display
