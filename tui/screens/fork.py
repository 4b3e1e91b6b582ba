"""Forking from the Pretrain and Finetune screens: `f` picks a committed checkpoint of the attached
run (the one nearest at or before the loss chart's cursor when the chart has focus and a cursor,
else through a picker), opens the run's own preset in the editor with train.fork_from set to it,
and launches the fork once core.fork.plan_fork accepts the changes (an architecture change is
refused by name).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from core import config
from core import runs as core_runs
from core.errors import UserError
from core.fork import plan_fork
from core.lookup import committed_checkpoints, read_meta
from tui.screens.dialogs import PresetEditor
from tui.screens.live_run import launch_run
from tui.text import plain


def checkpoint_rows(run: core_runs.Run) -> list[tuple[int, str]]:
    """(step, label) of a run's committed checkpoints, newest first, with their validation loss."""
    rows = []
    for ckpt in reversed(committed_checkpoints(run.path)):
        step = int(ckpt.name.removeprefix("step-"))
        meta = read_meta(ckpt) or {}
        val = meta.get("val_loss")
        rows.append((step, f"step {step:,}" + (f"   val loss {val:.4f}" if isinstance(val, float) else "")))
    return rows


class CheckpointPicker(ModalScreen[int | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, run_name: str, rows: list[tuple[int, str]]) -> None:
        super().__init__()
        self.run_name, self.rows = run_name, rows

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Label(f"[b]Fork {plain(self.run_name)}[/] from which checkpoint?  (enter: pick, esc: cancel)")
            yield OptionList(*[Option(plain(label), id=str(step)) for step, label in self.rows], id="fork-options")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id or 0))


def checkpoint_at_or_before(rows: list[tuple[int, str]], step: int) -> int | None:
    """The step of the newest committed checkpoint at or before `step`, or None."""
    return max((s for s, _ in rows if s <= step), default=None)


def start_fork(screen: Screen, stage: str, run_name: str | None, at_step: int | None = None) -> None:
    """The `f` key: checkpoint (the one at or before `at_step`, else picked) -> preset editor -> plan
    -> launch (each refusal is a notification)."""
    if not run_name:
        screen.notify("attach to a run first (a), then f forks it", severity="warning")
        return
    run = core_runs.open_run(run_name, screen.app.runs_root)  # type: ignore[attr-defined]
    rows = checkpoint_rows(run)
    if not rows:
        screen.notify(f"{run.name} has no committed checkpoint to fork from yet", severity="warning")
        return
    try:
        parent = config.load(run.preset_path)
    except config.PresetError as e:
        screen.notify(f"{run.name}: its preset cannot be read: {e.problems[0]}", severity="error")
        return

    def edited(preset: config.Preset | None) -> None:
        if preset is None:
            return

        def start() -> core_runs.Handle:
            plan_fork(preset, stage)  # a UserError here becomes the notification, nothing launches
            return core_runs.launch(stage, preset, root=screen.app.runs_root)  # type: ignore[attr-defined]
        launch_run(screen, stage, f"fork of {run.name}", start)

    def picked(step: int | None) -> None:
        if step is None:
            return
        fork = config.from_dict(config.apply_overrides(config.to_dict(parent), {"train.fork_from": f"{run.path}@{step}"}),
                                str(run.preset_path))
        screen.app.push_screen(PresetEditor(fork, screen.app.workdir, ["train", "data", "finetune", "eval"]),  # type: ignore[attr-defined]
                               edited)
    if at_step is None:
        screen.app.push_screen(CheckpointPicker(run.name, rows), picked)
        return
    step = checkpoint_at_or_before(rows, at_step)
    if step is None:
        screen.notify(f"{plain(run.name)} has no committed checkpoint at or before step {at_step:,} (the first is step "
                      f"{min(s for s, _ in rows):,})", severity="warning")
        return
    screen.notify(f"forking {plain(run.name)} from step {step:,}, the checkpoint nearest at or before step {at_step:,}")
    picked(step)
