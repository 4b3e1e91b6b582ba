"""The shell: modes by number and by mouse, help, the command palette, presets (switch, edit with
problems beside the fields, save as TOML), and `llmlab` opening it."""

from __future__ import annotations

from conftest import settle, wait_for
from screen_text import screen_text

from textual.widgets import Input, Select, TextArea

from core import config
from tui.messages import PresetChanged, PresetSaved
from tui.screens import MODE_SCREENS
from tui.screens.dialogs import HelpScreen, PresetEditor, PresetPicker
from tui.widgets.preset_form import PresetForm

MODES = list(MODE_SCREENS)
WITHOUT_MODELS = ("data", "tokenizer", "model", "pretrain", "runs")


async def test_every_mode_by_number_key_at_80x24_with_help_in_the_footer(make):
    app = make(mode="runs")
    async with app.run_test(size=(80, 24)) as pilot:
        for i, mode in enumerate(MODES, 1):
            if app.current_mode not in WITHOUT_MODELS:  # the screens over trained models may hold focus in a field
                await app.switch_mode("runs")
            await pilot.press("escape", str(i))
            await pilot.pause(0.2)
            assert app.current_mode == mode
            assert isinstance(app.screen, MODE_SCREENS[mode])
            assert app.screen.query_one(f"#mode-{mode}").has_class("-current")
            if mode in WITHOUT_MODELS:  # finetune, eval and chat are tested in tests/tui/model_screens
                await wait_for(pilot, lambda: screen_text(app).rstrip("\n").splitlines()[-1].startswith("? help"),
                               10, msg=mode)
                assert not isinstance(app.focused, (Input, TextArea, Select))  # digits must reach the app
        text = screen_text(app)
        # at 80 columns the other stages show as their numbers, so the preset label keeps its room
        assert text.startswith(" 1  2  3") and "8 Runs" in text and "preset small" in text
        await settle(pilot)


async def test_modes_by_mouse(make):
    app = make(mode="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.click("#mode-eval")
        await pilot.pause()
        assert app.current_mode == "eval"
        await pilot.click("#mode-runs")
        await pilot.pause()
        assert app.current_mode == "runs"


async def test_help_shows_the_screens_text_keys_and_rules(make):
    app = make(mode="pretrain")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        assert "Pretrain screen" in text and "resumes the latest" in text
        help_screen = app.screen
        assert ("s", "start") in help_screen.keys and ("?", "help") in help_screen.keys
        assert [f.title for f in help_screen.findings][:2] == ["Tokens per parameter", "Repeated data"]
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_command_palette_lists_modes_presets_and_screen_actions(make):
    from tui.app import WorkbenchCommands

    app = make(mode="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        titles = [t for t, _, _ in WorkbenchCommands(app.screen).commands()]
        for mode in MODES:
            assert f"Go to {mode.capitalize()}" in titles
        # "delete run" is the binding's tooltip (the footer says "delete")
        assert "Pretrain: start" in titles and "Runs: delete run" in titles and "Data: prepare shards" in titles
        assert "Preset: small.toml" in titles and "Preset: tiny (built-in)" in titles
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"go to chat")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.current_mode == "chat"


async def test_switching_preset_posts_preset_changed_and_updates_the_label(make):
    seen = []
    app = make(mode="runs")
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, PresetPicker)
        labels = [str(o.prompt) for o in app.screen.query_one("#preset-options").options]
        assert "tiny (built-in)" in labels and "small.toml" in labels and "gpt2tok.toml" in labels
        app.screen.dismiss("tiny")
        await pilot.pause()
        assert app.preset.name == "tiny"
        assert any(isinstance(m, PresetChanged) and m.name == "tiny" for m in seen)
        assert "preset tiny (tiny)" in screen_text(app)


async def test_editor_shows_problems_beside_fields_and_saves_toml(make, lab):
    seen = []
    app = make(mode="runs")
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await pilot.press("e")
        await pilot.pause(0.5)
        assert isinstance(app.screen, PresetEditor)
        editor = app.screen
        form = editor.query_one(PresetForm)
        form.set_value("model.n_head", 3)
        form.set_value("model.context_length", "-1")
        await pilot.pause()
        assert form.problems["model.n_embd"] == "32 is not divisible by model.n_head = 3"
        assert form.problems["model.context_length"] == "must be >= 1, got -1"
        shown = editor.query_one("#f-model--context_length-problem")
        assert shown.has_class("-shown") and "must be >= 1" in str(shown.render())
        await pilot.press("ctrl+s")  # refused while there are problems
        await pilot.pause()
        assert isinstance(app.screen, PresetEditor)
        await editor.show_section("train")  # refused too: the section stays
        assert editor.section == "model"
        form.set_value("model.n_head", 4)
        form.set_value("model.context_length", "128")
        await pilot.pause()
        assert form.problems == {}
        await editor.show_section("train")
        await pilot.pause()
        form = editor.form  # the train section's form (the model one is kept, hidden)
        assert [s.key for s in form.specs][0] == "train.device"
        form.set_value("train.lr", "-1")
        await pilot.pause()
        assert form.problems["train.lr"].startswith("must be > 0")
        form.set_value("train.lr", "0.003")
        await pilot.pause()
        app.screen.query_one("#save-path").value = str(lab / "mine.toml")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, PresetEditor)
    saved = config.load(lab / "mine.toml")
    assert saved.model.n_head == 4 and saved.train.lr == 0.003 and saved.model.context_length == 128
    assert saved.model.n_layer == 1
    assert app.preset == saved
    assert any(isinstance(m, PresetSaved) and m.path.endswith("mine.toml") for m in seen)


def test_llmlab_without_a_verb_opens_the_workbench():
    import inspect

    from tui.app import main

    assert inspect.signature(main).parameters["preset"].default == "tiny"


async def test_chat_opens_with_no_field_focused_so_digits_switch_stages(make):
    app = make(mode="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.2)
        assert not isinstance(app.focused, (Input, TextArea, Select))
        message = app.screen.query_one("#chat-input", Input)
        await pilot.press("i")
        assert app.focused is message
        await pilot.press("1")  # typed into the message, not a stage switch
        assert message.value == "1" and app.current_mode == "chat"
        await pilot.press("escape")
        assert app.focused is None
        await pilot.press("enter")
        assert app.focused is message
        system = app.screen.query_one("#chat-system", TextArea)
        system.focus()
        await pilot.press("enter")  # a new line in the system prompt, not a jump to the message
        assert app.focused is system and "\n" in system.text
        await pilot.press("escape", "1")
        await pilot.pause(0.2)
        assert app.current_mode == "data"
        await settle(pilot)
