"""Modal screens of the shell: help for the current screen, a yes/no confirmation, the preset
picker, the preset editor (a PresetForm with problems beside the fields) and save-as."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Markdown, OptionList, Static
from textual.widgets.option_list import Option

from core import config
from tui.widgets.advice_panel import findings_text
from tui.text import plain
from tui.widgets.preset_form import PresetForm
from tui.widgets.priority_footer import PriorityFooter


class HelpScreen(ModalScreen[None]):
    """The help of one screen: what it is for, its keys, and the rules of thumb of its stage."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss(None)", "close")]

    def __init__(self, title: str, help_md: str, keys: list[tuple[str, str]], findings=()) -> None:
        super().__init__()
        self.title_text, self.help_md, self.keys, self.findings = title, help_md, keys, list(findings)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Label(f"[b]{plain(self.title_text)}[/]  (esc closes)")
            yield Markdown(self.help_md or "")
            keys = "\n".join(f"  [b]{plain(f'{k:<10}')}[/] {plain(d)}" for k, d in self.keys)
            yield Static("[b]Keys[/]\n" + keys)
            if self.findings:
                yield Static("[b]Rules of thumb for the current preset[/]")
                yield Static(findings_text(self.findings))


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape,n", "dismiss(False)", "no"), Binding("y", "dismiss(True)", "yes")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Label(self.question, markup=False)
            with Horizontal():
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class PresetPicker(ModalScreen[str | None]):
    """Built-in presets and TOML files in the working directory; returns the chosen spec."""

    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, choices: list[tuple[str, str]], current: str) -> None:
        super().__init__()
        self.choices, self.current = choices, current

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Label("[b]Preset[/]  (enter: switch, esc: cancel)")
            yield OptionList(*[Option(plain(label), id=spec) for label, spec in self.choices], id="preset-options")

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        for i, (_, spec) in enumerate(self.choices):
            if spec == self.current:
                ol.highlighted = i
        ol.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


SECTION_SETTLE_S = 0.15  # how long the section list must rest before the form is rebuilt
SECTIONS = ("preset", "data", "tokenizer", "model", "train", "finetune", "eval", "generate", "chat")


class PresetEditor(ModalScreen[config.Preset | None]):
    """The preset one section at a time (a whole preset is several hundred widgets: slow to draw);
    problems show beside their fields, and a section with problems cannot be left. ctrl+g applies (ctrl+a is GNU screen's prefix),
    ctrl+s saves as TOML and applies, esc discards."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "discard"),
        Binding("ctrl+s", "save", "save as TOML"),
        Binding("ctrl+g", "apply", "apply"),
    ]

    def __init__(self, preset: config.Preset, save_dir: Path, sections: list[str] | None = None) -> None:
        super().__init__()
        self.preset, self.save_dir = preset, save_dir
        self.sections = list(sections or SECTIONS)
        self.section = self.sections[0] if sections else "model"

    def compose(self) -> ComposeResult:
        with Vertical(id="editor-box"):
            yield Label(f"[b]Edit preset {plain(self.preset.name)}[/]  ctrl+g apply, ctrl+s save as TOML, esc discard")
            with Horizontal(id="editor-main"):
                yield OptionList(*[Option(s, id=s) for s in self.sections], id="editor-sections")
                yield PresetForm(self.preset, [self.section], id=f"editor-form-{self.section}", classes="editor-form")
            with Horizontal(id="editor-save"):
                yield Label("save to ")
                yield Input(str(self.save_dir / f"{self.preset.name or 'preset'}.toml"), id="save-path")
                yield Button("Apply", id="apply", variant="primary")
                yield Button("Save", id="save", variant="success")
            yield Label("", id="editor-status")
        yield PriorityFooter()  # over the screen's own, whose keys would type into the fields here

    def on_mount(self) -> None:
        ol = self.query_one("#editor-sections", OptionList)
        ol.highlighted = self.sections.index(self.section)

    @property
    def form(self) -> PresetForm:
        return self.query_one(f"#editor-form-{self.section}", PresetForm)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        # arrow keys only move the highlight; the form follows once they pause, so keys queued on a
        # busy machine land on the section they were meant for, and only it is built
        self.wanted = str(event.option.id)
        if getattr(self, "switch_timer", None) is not None:
            self.switch_timer.stop()
        self.switch_timer = self.set_timer(SECTION_SETTLE_S, self._switch_to_wanted)

    async def _switch_to_wanted(self) -> None:
        self.switch_timer = None
        await self.show_section(self.wanted)

    async def show_section(self, section: str) -> None:
        """Switch the form to another section, keeping what was typed (the section must be valid)."""
        if section == self.section:
            return
        p = self._valid()
        if p is None:
            self.query_one("#editor-sections", OptionList).highlighted = self.sections.index(self.section)
            return
        self.form.display = False
        self.preset, self.section = p, section
        # a section's form is built once and kept: coming back only shows it again (90-140 ms of CPU on
        # this 2-core machine, building one 200-550 ms); its fields hold what `p` holds for them (a
        # section is left only when valid), so only the rest of the preset it edits against moves to `p`
        kept = self.query(f"#editor-form-{section}")
        if kept:
            form = kept.first(PresetForm)
            form.base = form.preset = p
            form.display = True
        else:
            await self.query_one("#editor-main").mount(
                PresetForm(p, [section], id=f"editor-form-{section}", classes="editor-form"))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.run_action(event.button.id)

    def _valid(self) -> config.Preset | None:
        form = self.form
        p = form.check()
        if p is None:
            n = len(form.problems)
            why = f"{n} problem{'s' * (n != 1)}: {', '.join(sorted(form.problems))}"
            self.query_one("#editor-status", Label).update(f"[red]{plain(why)}: fix the marked fields[/]")
            self.notify(why, title="not applied", severity="warning", markup=False)
        else:
            self.query_one("#editor-status", Label).update("")
        return p

    def action_apply(self) -> None:
        p = self._valid()
        if p is not None:
            self.dismiss(p)

    def action_save(self) -> None:
        p = self._valid()
        if p is None:
            return
        path = Path(self.query_one("#save-path", Input).value).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(config.dump(p))
        except OSError as e:
            self.query_one("#editor-status", Label).update(f"[red]cannot save {plain(path)}: {plain(e.strerror)}[/]")
            return
        self.app.preset_saved(path, p)
        self.dismiss(p)
