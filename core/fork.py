"""Forking a run: a new run that starts from another run's committed checkpoint at a step.

`llmlab pretrain|finetune PRESET --fork RUN[@STEP]` sets train.fork_from. `plan_fork` (torch-free,
so the CLI and the TUI check before launching) finds the parent's checkpoint, refuses changes of
what the model is, and decides what carries over: the optimizer state and data position carry
unless the batch or the data changed. The stage calls `seed_fork`, which copies the checkpoint
into the new run so that the loop's resume continues from it, and records the parent in status.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import config
from core.errors import UserError
from core.lookup import COMMITTED, committed_checkpoints, read_pointer, split_choice, step_name
from core.runs import Logger, Run, open_run

# what the model is: a fork that changes one of these is a new model, not a branch of this one
IDENTITY_PREFIXES = ("model.", "tokenizer.", "finetune.method", "finetune.base", "finetune.trainable",
                     "finetune.last_blocks", "finetune.lora.", "finetune.num_classes")
NOT_IDENTITY = ("model.dropout", "model.init_from")
# what Adam's moments and the data position were measured on: a change starts them afresh
FRESH_OPTIMIZER = ("train.micro_batch_size", "train.batch_tokens", "data.", "finetune.")
FRESH_DATA = ("data.", "finetune.")
IGNORED = ("name", "description", "accepted", "train.fork_from")


@dataclass
class ForkPlan:
    parent: Path                 # the parent run's folder
    checkpoint: Path             # its committed checkpoint the fork starts from
    step: int
    keep_optimizer: bool
    keep_data: bool
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # key -> (parent's value, this run's)

    def summary(self) -> str:
        what = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in ((k, *v) for k, v in self.changed.items())) or "nothing"
        state = "kept" if self.keep_optimizer else "fresh (" + ", ".join(
            k for k in self.changed if k.startswith(FRESH_OPTIMIZER)) + " changed)"
        return (f"fork of {self.parent.name} at step {self.step}: changed {what}; optimizer state {state}, "
                f"data position {'kept' if self.keep_data else 'from the start'}")


def _split_spec(spec: str) -> tuple[str, str | None]:
    """`RUN@500` -> (RUN, "500"); `RUN@best` -> (RUN, "best"); `RUN` -> (RUN, None)."""
    name, choice = split_choice(spec)
    if choice is None and "@" in spec:
        head, _, tail = spec.rpartition("@")
        if tail.isdigit():
            return head, tail
        raise UserError(f"--fork {spec}: expected RUN or RUN@STEP (a step number, best or latest)")
    return name, choice


def _parent_checkpoint(run: Run, choice: str | None, spec: str) -> Path:
    committed = committed_checkpoints(run.path)
    if not committed:
        raise UserError(f"--fork {spec}: {run.name} has no committed checkpoint to fork from "
                        f"(it saves one every train.checkpoint_every steps and at its end)")
    steps = ", ".join(str(int(c.name.removeprefix("step-"))) for c in committed)
    if choice is None or choice in ("latest", "best"):
        found = read_pointer(run.path / "checkpoints", choice or "latest")
        if found is None and choice == "best":
            raise UserError(f"--fork {spec}: {run.name} has no best checkpoint; committed steps: {steps}")
        return found or committed[-1]
    ckpt = run.path / "checkpoints" / step_name(int(choice))
    if not (ckpt / COMMITTED).is_file():
        raise UserError(f"--fork {spec}: {run.name} has no committed checkpoint at step {int(choice)} (rotated away "
                        f"or never saved; train.keep_last keeps the newest); committed steps: {steps}")
    return ckpt


def _changes(parent: config.Preset, child: config.Preset) -> dict[str, tuple[Any, Any]]:
    a, b = config.flat_dict(parent), config.flat_dict(child)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k not in IGNORED}


def plan_fork(preset: config.Preset, stage: str) -> ForkPlan:
    """What forking train.fork_from into a `stage` run of `preset` does; UserError when it cannot."""
    spec = preset.train.fork_from
    name, choice = _split_spec(spec)
    run = open_run(name)
    if run.stage != stage:
        raise UserError(f"--fork {spec}: {run.name} is a {run.stage} run; fork it with `llmlab {run.stage}`")
    ckpt = _parent_checkpoint(run, choice, spec)
    try:
        parent = config.load(run.preset_path)
    except config.PresetError as e:
        raise UserError(f"--fork {spec}: the parent's preset cannot be read, so its settings are unknown:\n{e}") from None
    changed = _changes(parent, preset)
    identity = [k for k in changed if k.startswith(IDENTITY_PREFIXES) and k not in NOT_IDENTITY]
    if identity:
        raise UserError(f"--fork {spec}: a fork keeps the model; "
                        + "; ".join(f"{k} is {changed[k][0]!r} in the parent, {changed[k][1]!r} here" for k in identity)
                        + ". Start a new run (model.init_from or finetune.base start from a checkpoint) instead")
    return ForkPlan(parent=run.path, checkpoint=ckpt, step=int(ckpt.name.removeprefix("step-")),
                    keep_optimizer=not any(k.startswith(FRESH_OPTIMIZER) for k in changed),
                    keep_data=not any(k.startswith(FRESH_DATA) for k in changed), changed=changed)


def lineage_of(run_dir: Path) -> dict:
    """The `fork` entry of a forked run's checkpoint lineage ({} for a run that is no fork)."""
    st = Run(Path(run_dir)).raw_status()
    return {"fork": {"parent": st["parent"], "step": st.get("fork_step")}} if st.get("parent") else {}


def seed_fork(preset: config.Preset, stage: str, run_dir: Path, log: Logger) -> ForkPlan | None:
    """Copy the parent's checkpoint into a new fork's folder (once: a resumed fork already has its own
    checkpoints) and record the parent; None when the preset forks nothing."""
    if not preset.train.fork_from or committed_checkpoints(run_dir):
        return None
    plan = plan_fork(preset, stage)
    from core.checkpoint import copy_checkpoint, load_trainer_state

    trainer = load_trainer_state(plan.checkpoint)
    trainer.pop("live_eval", None)  # a fork's early stopping and evaluation time start afresh
    if not plan.keep_optimizer:  # Adam's moments start at zero; the groups' settings follow the preset
        trainer["optimizer"] = {"state": {}, "param_groups": trainer["optimizer"]["param_groups"]}
    if not plan.keep_data:
        trainer["data"] = None
    copy_checkpoint(plan.checkpoint, run_dir, trainer)
    Run(Path(run_dir)).write_status(parent=plan.parent.name, fork_step=plan.step)
    log.log({"kind": "log", "level": "info", "message": plan.summary(),
             "fork": {"parent": plan.parent.name, "step": plan.step, "optimizer": "kept" if plan.keep_optimizer
                      else "fresh", "data": "kept" if plan.keep_data else "fresh", "changed": sorted(plan.changed)}})
    return plan


def parent_events(run: Run) -> list[dict]:
    """The train and val events of a fork's ancestors up to its fork step (each marked `parent`),
    for charts that draw the parent's curve before the fork point; [] for a run that is no fork."""
    out: list[dict] = []
    st, seen = run.raw_status(), {run.path.resolve()}
    while st.get("parent") and isinstance(st.get("fork_step"), int):
        try:
            parent = open_run(st["parent"])
        except UserError:
            break
        if parent.path.resolve() in seen:
            break
        seen.add(parent.path.resolve())
        step = st["fork_step"]
        out = [{**e, "parent": parent.name} for e in parent.events()
               if e.get("kind") in ("train", "val", "eval") and isinstance(e.get("step"), int) and e["step"] <= step
               and (not out or e["step"] < out[0]["step"])] + out
        st = parent.raw_status()
    return out
