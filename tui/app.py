"""The llmlab workbench: one mode per lifecycle stage over the headless `core` package.

`make_app(...)` builds the app from its dependencies (runs folder, preset choices, clock), so tests
build the same app with test data; `main()` is what `llmlab` with no verb runs. Screens live in
tui/screens (one module each), reusable widgets in tui/widgets, styles in tui/styles/app.tcss.
Keys: 1-8 (or alt+1-8 from a text field) switch stage, ? help, ctrl+p every action, p preset, e edit preset, q quit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.reactive import var
from textual.worker import Worker, WorkerState

from core import config
from core import runs as core_runs
from core.advice import advise, worst
from tui import failures
from tui.text import plain
from tui.messages import PresetChanged, PresetSaved, RunsListed
from tui.screens import MODE_SCREENS
from tui.screens.dialogs import HelpScreen, PresetEditor, PresetPicker
from tui.widgets.mode_bar import MODES
from tui.widgets.run_picker import run_rows


ANSI_THEME = "ansi-dark"  # the terminal's own 16 colours


class WorkbenchCommands(Provider):
    """The command palette: every mode, every preset, and every screen's actions."""

    def commands(self) -> list[tuple[str, str, Callable]]:
        app: Workbench = self.app  # type: ignore[assignment]
        out: list[tuple[str, str, Callable]] = []
        for i, m in enumerate(MODES, 1):
            out.append((f"Go to {m.capitalize()}", f"switch to the {m} screen (key {i})", partial(app.switch_mode, m)))
        for label, spec in app.preset_choices():
            out.append((f"Preset: {label}", f"make {spec} the current preset", partial(app.load_preset, spec)))
        out += [("Edit preset", "edit every field of the current preset (e)", app.action_edit_preset),
                ("Switch preset", "pick a built-in preset or a TOML file (p)", app.action_pick_preset),
                ("Help", "help for this screen (?)", app.action_help)]
        for mode, cls in MODE_SCREENS.items():
            for b in getattr(cls, "BINDINGS", []):
                if isinstance(b, Binding) and b.description:
                    out.append((f"{mode.capitalize()}: {b.tooltip or b.description}", f"on the {mode} screen (key {b.key})",
                                partial(app.run_screen_action, mode, b.action)))
        return out

    def commands_safe(self) -> list[tuple[str, str, Callable]]:
        app: Workbench = self.app  # type: ignore[assignment]
        return [(title, help_text, partial(app.call_safely, title, cb)) for title, help_text, cb in self.commands()]

    async def discover(self) -> Hits:
        for title, help_text, cb in self.commands_safe():
            yield DiscoveryHit(title, cb, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, cb in self.commands_safe():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), cb, help=help_text)


class Workbench(App[int]):
    """The workbench. Build it with `make_app`."""

    TITLE = "llmlab"
    CSS_PATH = "styles/app.tcss"
    MODES = {m: cls for m, cls in MODE_SCREENS.items()}  # noqa: RUF012
    COMMANDS = App.COMMANDS | {WorkbenchCommands}
    # screens get -narrow/-wide and -short/-tall: app.tcss gives 80x24 its compact layout
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]  # noqa: RUF012
    BINDINGS = [
        *(Binding(str(i), f"switch_mode('{m}')", m.capitalize(), show=False) for i, m in enumerate(MODES, 1)),
        # alt+N works while a text field has focus (and is what esc-then-N becomes in a fast terminal)
        *(Binding(f"alt+{i}", f"switch_mode('{m}')", m.capitalize(), show=False, priority=True)
          for i, m in enumerate(MODES, 1)),
        Binding("question_mark", "help", "help", key_display="?", show=False),
        Binding("f1", "help", "help", show=False),  # works while a text field has focus
        Binding("p", "pick_preset", "preset"),
        Binding("e", "edit_preset", "edit preset"),
        Binding("q", "quit", "quit"),
    ]

    preset: var[config.Preset] = var(config.Preset, always_update=True)
    live_runs: var[tuple] = var(tuple)

    def __init__(self, preset: config.Preset, preset_source: str, *, runs_root: Path | None = None,
                 presets: Sequence[str | Path] = (), clock: Callable[[], float] = time.time,
                 workdir: Path | None = None, mode: str = "data", poll_s: float = 0.5,
                 ansi_color: bool | None = None) -> None:
        super().__init__(ansi_color=ansi_color)
        self.runs_root = runs_root
        self.extra_presets = [str(p) for p in presets]
        self.clock = clock
        self.workdir = Path(workdir) if workdir is not None else Path.cwd()
        self.start_mode = mode
        self.poll_s = poll_s
        self.preset_source = preset_source
        self.set_reactive(Workbench.preset, preset)

    # ------------------------------------------------------------------------ lifecycle
    def on_mount(self) -> None:
        self.switch_mode(self.start_mode)
        self.list_live_runs()

    @work(thread=True, exclusive=True, exit_on_error=False, group="live-runs")
    def list_live_runs(self) -> None:
        self.post_message(RunsListed(run_rows(self.runs_root, live_only=True)))

    def on_runs_listed(self, message: RunsListed) -> None:
        self.live_runs = tuple(message.rows)
        if message.rows:
            names = ", ".join(f"{r['stage']} {r['name']}" for r in message.rows[:3])
            self.notify(f"{len(message.rows)} live run(s): {names}", title="attached")

    def live_run(self, stage: str) -> str | None:
        """The newest live run of `stage` found at start, if any."""
        return next((r["name"] for r in self.live_runs if r["stage"] == stage), None)

    # ------------------------------------------------------------------ no key ends the app
    async def run_action(self, action, default_namespace=None, namespaces=None) -> bool:  # type: ignore[override]
        """Every key, footer click and palette entry runs an action through here: an exception
        becomes a notification (detail in logs/tui.log) instead of ending the app."""
        try:
            return await super().run_action(action, default_namespace, namespaces)
        except Exception as e:  # noqa: BLE001 - the point is that nothing escapes
            self.report_failure(f"action {action if isinstance(action, str) else action[1]}", e)
            return True

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = False) -> None:  # type: ignore[override]
        """Notifications carry run, file and preset names: text, never markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def call_safely(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            self.report_failure(what, e)

    def report_failure(self, what: str, error: BaseException) -> None:
        self.notify(failures.report(what, error), title=f"{what} failed", severity="error", timeout=10)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that raised (its state message does not bubble: screens and modals that run
        workers forward theirs here)."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.report_failure(f"{event.worker.name or event.worker.group} (background work)", event.worker.error)

    # -------------------------------------------------------------------------- presets
    def preset_choices(self) -> list[tuple[str, str]]:
        """(label, spec) of the built-in presets, the ones given to make_app, and *.toml in workdir."""
        out = [(f"{n} (built-in)", n) for n in config.builtin_names()]
        seen = {spec for _, spec in out}
        files = [*self.extra_presets, *(str(p) for p in sorted(self.workdir.glob("*.toml")))]
        for f in files:
            if f not in seen:
                seen.add(f)
                out.append((Path(f).name if f.endswith(".toml") else f, f))
        return out

    def preset_label(self) -> str:
        level = worst(advise(self.preset))
        mark = {"ok": "[green]\u2713[/]", "warn": "[yellow]![/]", "bad": "[red]\u2717[/]"}[level]
        src = self.preset_source if "/" not in self.preset_source else Path(self.preset_source).name
        return f"preset [b]{plain(self.preset.name)}[/] ({plain(src)}) {mark}"

    def load_preset(self, spec: str) -> bool:
        try:
            p = config.load(spec)
        except config.PresetError as e:
            self.notify(str(e), title=f"cannot load {spec}", severity="error", timeout=10)
            return False
        self.set_preset(p, spec)
        return True

    def set_preset(self, preset: config.Preset, source: str) -> None:
        self.preset_source = source
        self.preset = preset
        self.post_message(PresetChanged(preset.name, source))

    def preset_saved(self, path: Path, preset: config.Preset) -> None:
        self.notify(f"saved {path}", title="preset")
        self.post_message(PresetSaved(str(path)))
        self.set_preset(preset, str(path))

    def action_pick_preset(self) -> None:
        def done(spec: str | None) -> None:
            if spec:
                self.load_preset(spec)
        self.push_screen(PresetPicker(self.preset_choices(), self.preset_source), done)

    def action_edit_preset(self, sections: list[str] | None = None) -> None:
        def done(p: config.Preset | None) -> None:
            if p is not None and p != self.preset:
                self.set_preset(p, "<edited>" if self.preset_source != "<edited>" else self.preset_source)
        self.push_screen(PresetEditor(self.preset, self.workdir, sections), done)

    # ----------------------------------------------------------------------------- help
    def action_help(self) -> None:
        screen = self.screen
        if isinstance(screen, HelpScreen):
            return
        mode = getattr(screen, "MODE", "")
        findings = advise(self.preset, stage=mode) if mode else []
        title = f"{mode.capitalize()} screen" if mode else "llmlab"
        self.push_screen(HelpScreen(title, getattr(screen, "HELP", ""), help_keys(screen), findings))

    def run_screen_action(self, mode: str, action: str) -> None:
        """Switch to `mode` and run one of its screen's actions (for the command palette)."""
        self.switch_mode(mode)
        self.call_after_refresh(lambda: self.screen.run_action(action))


# Textual's own keys that this app offers too; the rest of Textual's (super+c copy, scroll and cursor
# keys of its widgets) are left out of help: super never reaches an app over SSH
TEXTUAL_KEYS_SHOWN = {"ctrl+q": "quit", "ctrl+p": "every action (command palette)"}


def declared_here(node) -> set[str]:
    """The actions that this app's own classes bind on `node` (not those Textual's classes bring)."""
    return {b.action if isinstance(b, Binding) else b[1] for cls in type(node).__mro__
            if cls.__module__.split(".")[0] == "tui" for b in cls.__dict__.get("BINDINGS", [])}


def help_keys(screen) -> list[tuple[str, str]]:
    """The keys help lists for `screen`: those bound by this app, each once, and the few of Textual's it offers."""
    # number keys are characters: a focused text field types them (the footer then shows esc)
    keys = [("1-8", "switch stage when no text field has focus (from one: esc, or alt+1-8)"),
            ("tab", "next field or panel (shift+tab: previous)")]
    for key, (node, binding, _enabled, _tooltip) in screen.active_bindings.items():
        shown = binding.key_display or key
        if key in TEXTUAL_KEYS_SHOWN:
            keys.append((shown, TEXTUAL_KEYS_SHOWN[key]))
        elif (binding.description and not binding.action.startswith("switch_mode")
              and binding.action in declared_here(node)):
            keys.append((shown, binding.tooltip or binding.description))
    return list(dict.fromkeys(keys))


def make_app(runs_root: Path | None = None, presets: Sequence[str | Path] = (),
             clock: Callable[[], float] = time.time, preset: str | config.Preset = "tiny",
             workdir: Path | None = None, mode: str = "data", poll_s: float = 0.5,
             ansi_color: bool | None = None) -> Workbench:
    """The workbench with its dependencies: where runs live, extra preset files, the clock for
    "3m ago" labels, the starting preset (a name, a path, or a Preset) and the first mode;
    `ansi_color` draws in the terminal's own 16 colours (the ansi-dark theme)."""
    if isinstance(preset, config.Preset):
        p, source = preset, preset.name
    else:
        p, source = config.load(preset), str(preset)
    app = Workbench(p, source, runs_root=runs_root, presets=presets, clock=clock, workdir=workdir, mode=mode,
                    poll_s=poll_s, ansi_color=ansi_color)
    if ansi_color:
        app.theme = ANSI_THEME
    return app


def few_colour_terminal() -> bool:
    """A terminal of 16 colours (TERM=screen, linux) or NO_COLOR: draw in its own ANSI colours,
    which it shows as designed, rather than truecolor squeezed into 16."""
    from rich.console import Console

    return "NO_COLOR" in os.environ or Console().color_system in ("standard", "windows", None)


def main(preset: str = "tiny") -> int:
    """`llmlab` (no verb): open the workbench on `preset`; start on Pretrain when a pretraining run
    is live, so a reconnecting user sees it at once."""
    live = run_rows(None, live_only=True)
    mode = "pretrain" if any(r["stage"] == "pretrain" for r in live) else "data"
    app = make_app(preset=preset, mode=mode, ansi_color=few_colour_terminal() or None)
    app.run()
    return app.return_code or 0
