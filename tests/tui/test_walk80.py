"""What the keyboard walk through the lifecycle in tmux at 80x24 (TERM=screen) found, each pinned:
number keys typed in a text field stay text and the footer says how to get them back (esc); the
footer keeps the preset key; an edit applied from the preset editor while the Model screen is alive
keeps the app running (its form was rebuilt under a duplicate id), and a screen that fails to follow
a new preset is a notification, and one not on show follows once shown; the editor keeps each
section's form and the editor and wizard show their own keys; placeholders and the rules of thumb
fit at 80x24 (never cut mid-sentence)."""

from __future__ import annotations

from conftest import settle, wait_for
from screen_text import screen_text
from textual.widgets import Input, TextArea

from core import config
from core.advice import advise
from tui import failures
from tui.widgets.advice_panel import AdvicePanel, compact_text, text_lines


def footer(app) -> str:
    return screen_text(app).rstrip("\n").splitlines()[-1]


async def test_number_keys_type_in_a_text_area_and_esc_gives_them_back(make):
    app = make(preset="gpt2tok.toml", mode="tokenizer")
    async with app.run_test(size=(80, 24)) as pilot:
        area = app.screen.query_one(TextArea)
        area.focus()
        area.move_cursor((0, 0))
        await pilot.press("3")
        await settle(pilot)
        assert app.current_mode == "tokenizer" and area.text.startswith("3")
        assert "esc leave field" in footer(app) and "f1 help" in footer(app) and "^q quit" in footer(app)
        await pilot.press("escape", "3")
        await settle(pilot)
        assert app.current_mode == "model"


async def test_quit_survives_in_the_chat_footer_while_typing(make):
    app = make(mode="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("i")  # the message field: the footer has more keys than room
        await settle(pilot)
        line = footer(app)
        assert "^q quit" in line and "f1 help" in line and "^s save" in line, line


async def test_help_says_when_number_keys_switch_stages(make):
    app = make(mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await settle(pilot)
        keys = dict(app.screen.keys)
        assert "no text field" in keys["1-8"] and "alt+1-8" in keys["1-8"]
        assert not any(k.startswith("alt+") for k in keys)  # one line for the 16 stage keys


async def test_every_80x24_footer_keeps_the_preset_key_and_runs_keeps_compare(make, lab):
    app = make(mode="data")
    async with app.run_test(size=(80, 24)) as pilot:
        for mode in ("data", "tokenizer", "model", "pretrain", "finetune", "eval", "chat", "runs"):
            await app.switch_mode(mode)
            app.screen.set_focus(None)
            await wait_for(pilot, lambda: "? help" in footer(app), 15, msg=mode)
            await settle(pilot)
            line = footer(app)
            assert "p preset" in line and "? help" in line and "q quit" in line, (mode, line)
        assert "c compare" in line and "space mark" in line, line


async def test_an_edit_applied_from_the_editor_reaches_the_live_model_form(make):
    app = make(mode="model")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        edited = config.from_dict(config.apply_overrides(config.to_dict(app.preset), {"model.n_embd": 48}),
                                  "test", default_name="small")
        for _ in range(2):  # twice in a row: the old form's removal had not finished the second time
            app.set_preset(edited, "<edited>")
            edited = config.from_dict(config.apply_overrides(config.to_dict(edited), {"model.n_layer": 3}),
                                      "test", default_name="small")
        await settle(pilot)
        assert app.is_running and not failures.log_path().exists()
        assert app.screen.query_one("#f-model--n_layer", Input).value == "3"
        assert app.screen.query_one("#f-model--n_embd", Input).value == "48"


async def test_the_editor_keeps_each_sections_form_and_applies_every_edit(make):
    from tui.screens.dialogs import PresetEditor

    app = make(mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("e")
        await settle(pilot)
        editor = app.screen
        assert isinstance(editor, PresetEditor)
        model_form = editor.form
        model_form.set_value("model.n_embd", "48")
        await editor.show_section("train")
        editor.form.set_value("train.max_steps", "60")
        await editor.show_section("model")
        assert editor.form is model_form and not editor.query_one("#editor-form-train").display
        await pilot.press("ctrl+g")
        await settle(pilot)
        assert app.preset.model.n_embd == 48 and app.preset.train.max_steps == 60


async def test_the_editor_and_the_wizard_show_their_own_keys_in_the_footer(make):
    app = make(mode="pretrain")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("e")
        await settle(pilot)
        line = footer(app)
        assert "^g apply" in line and "^s save" in line and "esc discard" in line, line
        assert "s start" not in line and "edit preset" not in line, line  # the screen below's keys
        await pilot.press("escape", "5", "n")
        await settle(pilot)
        line = footer(app)
        assert "^n next" in line and "esc cancel" in line and "n new" not in line, line


async def test_a_screen_not_on_show_follows_the_preset_once_shown(make):
    app = make(mode="model")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await app.switch_mode("runs")
        await settle(pilot)
        app.set_preset(config.from_dict(config.apply_overrides(config.to_dict(app.preset), {"model.n_embd": 48}),
                                        "test", default_name="small"), "<edited>")
        await settle(pilot)
        await app.switch_mode("model")
        await settle(pilot)
        assert app.screen.query_one("#f-model--n_embd", Input).value == "48"
        assert "<edited>" in screen_text(app).splitlines()[0]


async def test_a_screen_failing_to_show_a_new_preset_is_a_notification(make, monkeypatch):
    from tui.screens.runs import RunsScreen

    def broken(self, preset) -> None:
        raise RuntimeError("a screen failed")

    app = make(mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        monkeypatch.setattr(RunsScreen, "preset_changed", broken)  # a stand-in for any screen's bug
        app.set_preset(app.preset, "<edited>")
        await settle(pilot)
        assert app.is_running and "a screen failed" in failures.log_path().read_text()
        assert any("RuntimeError" in n.message for n in app._notifications)


async def test_placeholders_and_rules_of_thumb_fit_at_80x24(make):
    app = make(mode="data")
    async with app.run_test(size=(80, 24)) as pilot:
        for mode in ("data", "tokenizer", "model", "pretrain", "chat"):
            await app.switch_mode(mode)
            app.screen.set_focus(None)
            await settle(pilot, 0.4)
            for field in app.screen.query(Input):
                if field.region.width and field.placeholder and not field.value:  # shown: laid out
                    assert len(field.placeholder) <= field.content_region.width, (mode, field.id, field.placeholder)
            for panel in app.screen.query(AdvicePanel):
                assert text_lines(panel.shown, panel.content_region.width) <= panel.content_region.height, mode


def test_compact_advice_puts_what_to_act_on_first():
    p = config.load("tiny")
    edited = config.from_dict(config.apply_overrides(config.to_dict(p), {"train.max_steps": 60}), "t", default_name="t")
    text = compact_text(advise(edited, stage="pretrain")).plain
    first = text.splitlines()[0]
    assert first.startswith("! ") and "train." in first  # a warning with the key to change
    assert "Tokens per parameter" in text and "(? shows them whole)" in text
    assert "and 7 more" in compact_text(advise(p, stage="pretrain"), 1).plain  # none to act on
    titles = compact_text(advise(edited, stage="pretrain"), 0).plain
    assert len(titles.splitlines()) == 1 and titles.startswith("! ")  # every title, the warnings first
