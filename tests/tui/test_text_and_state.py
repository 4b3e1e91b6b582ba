"""Text is text and panels agree with the state: names with markup in them show as typed, and the
stale panels of issue 17 (a search without hits, the token detail after new text, a run's state in
the runs list) follow what is true now."""

from __future__ import annotations

import json

import pytest
from conftest import FIXED_NOW, wait_for
from rich.text import Text
from screen_text import screen_text
from test_snapshots import write_run
from textual.content import Content
from textual.widgets import DataTable, Input, Static, TextArea

from tui.text import plain

TRICKY = ["[b]bold[/b]", "([ and ] page)", "[/] prev page", "[auto]", "a [link=x]y[/link] \\ b", "[", "x]"]


@pytest.mark.parametrize("s", TRICKY)
def test_plain_prints_every_string_as_it_is_in_textual_and_rich_markup(s):
    assert Content.from_markup(f"[b]{plain(s)}[/b]").plain == s
    assert Text.from_markup(f"[b]{plain(s)}[/b]").plain == s


async def test_a_preset_and_a_dataset_named_with_markup_show_as_named(make, lab):
    (lab / "odd.toml").write_text('extends = "small.toml"\nname = "[red]odd[/red] [x]"\n')
    (lab / "stories.txt").write_text("One day [b]Sam[/b] went to the park.\n\nThen it rained.\n")
    app = make(preset="odd.toml", mode="data")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded is not None, 30)
        assert "[red]odd[/red] [x]" in screen_text(app).splitlines()[0]
        typed = app.screen.query_one("#data-typed", Input)
        typed.value = str(lab / "stories.txt")
        typed.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.loaded.source.endswith("stories.txt"), 30)
        assert "One day [b]Sam[/b] went" in screen_text(app)
        # a source whose name is markup (core reads `[` as a glob, so it names no file): said as typed
        typed.value = "[b]shelf[/b]/*.txt"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "[b]shelf[/b]/*.txt" in screen_text(app), 30)


async def test_a_search_without_hits_clears_the_preview(make):
    app = make(mode="data")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded is not None, 30)
        preview = app.screen.query_one("#data-text", Static)
        assert "Once" in str(preview.render()) or len(str(preview.render())) > 20
        app.screen.query_one("#data-search", Input).value = "zzzz-no-such-text"
        await pilot.pause(0.2)
        assert app.screen.query_one("#data-table", DataTable).row_count == 0
        assert "no rows match" in str(preview.render())


async def test_the_token_detail_follows_the_text(make):
    app = make(preset="gpt2tok.toml", mode="tokenizer")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.query_one("#tok-view").spans, 30)
        screen.query_one("#tok-view").focus()
        await pilot.press("right", "right")
        await wait_for(pilot, lambda: "token #1" in str(screen.query_one("#tok-detail", Static).render()), 10)
        screen.query_one("#tok-input", TextArea).text = "Completely different words now"
        await wait_for(pilot, lambda: "".join(s.text for s in screen.query_one("#tok-view").spans).startswith("Completely"), 20)
        assert str(screen.query_one("#tok-detail", Static).render()) == ""
        assert screen.query_one("#tok-view").cursor == -1


async def test_the_runs_list_follows_status_json(make, lab):
    root = lab / "runs"
    name = "20260101-000000-small-pretrain"
    write_run(root, name, "running", FIXED_NOW - 60, [3.0, 2.5])
    app = make(mode="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "running" in screen_text(app), 10)
        status = json.loads((root / name / "status.json").read_text())
        (root / name / "status.json").write_text(json.dumps({**status, "state": "finished"}))
        await wait_for(pilot, lambda: "finished" in screen_text(app) and "running" not in screen_text(app), 10)


async def test_a_burst_typed_into_a_model_field_loses_no_key(make):
    """Keys queued faster than the app handles them (a fast typist on a busy box): every digit lands,
    in order, in the field typed into, and the preset follows."""
    from textual import events

    app = make(mode="model")
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.screen.query_one("#f-model--n_embd", Input)
        field.focus()
        await pilot.pause()
        for value in ("96", "160", "64"):
            for key in ("ctrl+u", *value):
                ev = events.Key(key, key if len(key) == 1 else None)
                ev.set_sender(app)
                app._driver.send_message(ev)
            await pilot.pause(0.3)
            assert app.screen.query_one("#f-model--n_embd", Input).value == value
            # the preset follows once the keys rest (a timer; slow on a loaded machine)
            await wait_for(pilot, lambda v=value: app.preset.model.n_embd == int(v), 10)


async def test_while_a_field_has_focus_the_footer_shows_only_keys_that_work_there(make):
    from tui.widgets.priority_footer import PriorityFooter

    app = make(mode="model")
    async with app.run_test(size=(80, 24)) as pilot:
        footer = app.screen.query_one(PriorityFooter)
        await pilot.pause(0.2)
        idle = {b.key for b, _ in footer.shown_bindings()}
        assert {"f", "question_mark", "q"} <= idle
        await pilot.press("f")  # the fields key: the cursor goes into the first field
        await pilot.pause(0.2)
        assert isinstance(app.focused, Input)
        typing = {b.key for b, _ in footer.shown_bindings()}
        assert not typing & {"f", "T", "question_mark", "q", "p", "e"}
        assert {"f1", "ctrl+q"} <= typing
        await pilot.press("f1")
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "HelpScreen"


@pytest.mark.parametrize("damage", [b"\xff\xfe not utf-8", b"[1, 2]", b'{"state": 7}'], ids=["bytes", "list", "type"])
async def test_a_damaged_status_json_is_marked_invalid_among_good_runs(make, lab, damage):
    from tui.screens.pretrain import PretrainScreen
    from tui.widgets.run_picker import RunPicker

    root = lab / "runs"
    write_run(root, "20260101-000001-small-pretrain", "finished", FIXED_NOW - 600, [3.0, 2.5])
    write_run(root, "20260101-000002-small-pretrain", "stopped", FIXED_NOW - 300, [3.0, 2.6])
    write_run(root, "20260101-000003-small-pretrain", "finished", FIXED_NOW - 60, [3.0, 2.4])
    (root / "20260101-000002-small-pretrain" / "status.json").write_bytes(damage)
    app = make(mode="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "invalid" in screen_text(app), 10)
        table = app.screen.query_one("#runs-table", DataTable)
        states = [str(table.get_row_at(i)[3]) for i in range(table.row_count)]
        assert states == ["finished", "invalid", "finished"]  # one bad run hides no other
        await pilot.press("down", "o")  # open the damaged one: its problem is shown, its events follow
        await wait_for(pilot, lambda: "status.json" in screen_text(app) and "step" in screen_text(app), 10)
        assert app.is_running
        app.switch_mode("pretrain")
        await wait_for(pilot, lambda: isinstance(app.screen, PretrainScreen), 10)
        await pilot.press("a")  # the attach picker lists it too, marked
        await wait_for(pilot, lambda: isinstance(app.screen, RunPicker) and "invalid" in screen_text(app), 10)
        assert app.is_running and "Traceback" not in screen_text(app)
