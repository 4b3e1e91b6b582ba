"""The `llmlab` command: one verb table over the stage functions and run directories.

`llmlab` alone opens the TUI. Stage verbs (`data`, `tokenizer`, `pretrain`, `finetune`, `eval`, `serve`) launch a
detached run and follow its events (Ctrl-C asks the run to stop at a step boundary; `--detach` returns at
once). Exit codes: 0 ok, 1 the run failed, 2 bad input. This is the only module in core that prints.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import time
from typing import Any
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core import config, lookup, runs
from core.errors import UserError, describe_os_error, input_fault
from core.stages import STAGES

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class ArgError(UserError):
    pass


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every bad input ends in one place (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ArgError(f"{self.prog}: {message} (see `{self.prog} --help`)")


# -------------------------------------------------------------------------------------- printing

class Console:
    """Renders run events for a terminal: progress bars with ETA, one line per logged step."""

    def __init__(self) -> None:
        from rich.console import Console as RichConsole
        self.out = RichConsole(highlight=False)
        self.progress = None
        self.tasks: dict[str, int] = {}

    def _progress(self):
        if self.progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), console=self.out, transient=False)
            self.progress.start()
        return self.progress

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def log(self, ev: dict) -> None:
        kind = ev.get("kind")
        if kind == "progress":
            p = self._progress()
            what = ev.get("what", "working")
            if what not in self.tasks:
                self.tasks[what] = p.add_task(what, total=ev.get("total"))
            p.update(self.tasks[what], completed=ev.get("done", 0), total=ev.get("total"))
            return
        line = format_event(ev)
        if line:
            self.out.print(line, soft_wrap=True)


def _fmt_num(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"


def _fmt_eta(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def format_event(ev: dict) -> str:
    """One line for an event; a field that is absent or not a number is left out (never a crash), and
    text from the file is escaped (a `[/]` in a sample is not markup)."""
    from rich.markup import escape

    kind = ev.get("kind")
    ev = {k: v for k, v in ev.items() if v is not None}
    step = ev.get("step", "?")
    if kind == "train":
        parts = [f"step {step:>6}", f"loss {ev['loss']:.4f}" if _is_num(ev.get("loss")) else ""]
        if _is_num(ev.get("lr")):
            parts.append(f"lr {ev['lr']:.2e}")
        if _is_num(ev.get("grad_norm")):
            parts.append(f"gnorm {ev['grad_norm']:.2f}")
        if _is_num(ev.get("tokens_per_s")):
            parts.append(f"{_fmt_num(ev['tokens_per_s'])} tok/s")
        if _is_num(ev.get("mfu")) and ev["mfu"]:
            parts.append(f"mfu {ev['mfu'] * 100:.1f}%")
        if _is_num(ev.get("eta_s")) and math.isfinite(ev["eta_s"]):
            parts.append(f"eta {_fmt_eta(ev['eta_s'])}")
        for k in ("accuracy", "reward_margin", "reward_accuracy", "reward"):
            if _is_num(ev.get(k)):
                parts.append(f"{k} {ev[k]:.3f}")
        return " | ".join(p for p in parts if p)
    if kind == "val":
        extra = " ".join(f"{k} {v:.4g}" for k, v in ev.items()
                         if k not in ("t", "kind", "step", "val_loss", "val_ppl") and _is_num(v))
        if not _is_num(ev.get("val_loss")):  # an objective without a validation loss (RL: pass@k)
            return f"[bold]val[/] step {step} | {extra}".rstrip()
        loss, ppl = (ev.get(k) if _is_num(ev.get(k)) else float("nan") for k in ("val_loss", "val_ppl"))
        return f"[bold]val[/] step {step} | loss {loss:.4f} | ppl {ppl:.2f} {extra}".rstrip()
    if kind == "sample":
        return f"[dim]sample[/] {escape(str(ev.get('prompt', '')))}[cyan]{escape(str(ev.get('text', '')))}[/]".replace("\n", " ")
    if kind in ("test", "eval"):
        name = escape(str(ev.get("task") or ("test" if kind == "test" else "eval")))
        nums = " | ".join(f"{k} {v:.4g}" for k, v in ev.items()
                          if k not in ("t", "kind", "step", "task") and isinstance(v, (int, float)) and not isinstance(v, bool))
        return f"[bold]{name}[/] {nums}"
    if kind == "checkpoint":
        return f"[green]checkpoint[/] {escape(str(ev.get('path')))}" + (f" (val {ev['val_loss']:.4f})" if _is_num(ev.get("val_loss")) else "")
    if kind == "log":
        level = escape(str(ev.get("level", "info")))
        style = {"warning": "yellow", "error": "red"}.get(level, "")
        msg = escape(str(ev.get("message", "")))
        return f"[{style}]{level}: {msg}[/]" if style else msg
    if kind == "serving":
        return f"[green]serving[/] {ev.get('model')} at [bold]{ev.get('url')}[/]" + (" (API key required)" if ev.get("auth") else "")
    if kind == "request":
        if ev.get("error"):
            return f"[yellow]{ev.get('status')}[/] {ev.get('endpoint')}: {ev['error']}"
        return f"{ev.get('status')} {ev.get('endpoint')} | {ev.get('prompt_tokens')} + {ev.get('completion_tokens')} tokens " \
               f"| {ev.get('finish_reason')} | first token {ev.get('first_token_s', 0):.3f} s | {ev.get('tokens_per_s', 0):.1f} tok/s"
    if kind == "status":
        return f"[bold]{escape(str(ev.get('state')))}[/]" + (f": {escape(str(ev['error']))}" if ev.get("error") else "")
    return ""


# ----------------------------------------------------------------------------------------- verbs

def _load_preset(args: argparse.Namespace) -> config.Preset:
    overrides = list(getattr(args, "set", None) or [])
    if getattr(args, "fork", None):
        overrides.append(f"train.fork_from={json.dumps(args.fork)}")
    if getattr(args, "nproc", None):
        overrides.append(f"train.nproc={args.nproc}")
    if getattr(args, "tasks", None):
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        overrides.append("eval.tasks=[" + ", ".join(f'"{t}"' for t in tasks) + "]")
    return config.load(args.preset, overrides)


def _follow(run: runs.Run, con: Console) -> int:
    """Print a run's events until it ends; Ctrl-C asks it to stop and keeps following."""
    stop_asked = False
    while True:
        try:
            for ev in runs.tail(run, follow=True):
                con.log(ev)
            break
        except KeyboardInterrupt:
            if stop_asked:
                con.close()
                con.out.print(f"left the run going: `llmlab runs tail {run.name}` follows it again")
                return EXIT_FAILED
            stop_asked = True
            runs.stop(run)
            con.out.print("[yellow]stop requested: the run saves a checkpoint at the next step (Ctrl-C again to leave it)[/]")
    con.close()
    st = run.status()
    if st.get("state") in ("finished", "stopped"):
        con.out.print(f"run: {run.path}")
        return EXIT_OK
    if st.get("error_kind") == "input":
        return EXIT_BAD_INPUT
    return EXIT_FAILED


def _eval_preset(args: argparse.Namespace) -> config.Preset:
    """`llmlab eval` takes a preset, or a model (checkpoint, run, run:PRESET:STAGE) evaluated with the
    preset it was trained with."""
    try:
        return _load_preset(args)
    except config.PresetError as preset_error:
        try:
            ckpt = lookup.resolve_checkpoint(args.preset)
        except UserError:
            raise preset_error from None
    run_preset = ckpt.parent.parent / "preset.toml"
    args.set = [*(args.set or []), f"eval.model={json.dumps(str(ckpt.resolve()))}"]
    args.preset = str(run_preset) if run_preset.exists() else "tiny"
    return _load_preset(args)


def cmd_stage(args: argparse.Namespace) -> int:
    stage = args.verb
    if getattr(args, "seeds", None) is not None:
        return cmd_seeds(args)
    preset = _eval_preset(args) if stage == "eval" else _load_preset(args)
    con = Console()
    if getattr(args, "fork", None) and args.resume:
        raise ArgError(f"llmlab {stage}: --fork starts a new run and --resume continues one; give one of them")
    if stage in ("pretrain", "finetune") and preset.train.fork_from and not args.resume:
        from core.fork import plan_fork
        con.out.print(plan_fork(preset, stage).summary(), soft_wrap=True)
    if args.resume:
        prev = args.resume_run and runs.open_run(args.resume_run) or runs.latest_run(preset.name, stage, state=None)
        if prev is None:
            raise UserError(f"{preset.name}: no earlier {stage} run to resume (see `llmlab runs list`)")
        handle = runs.relaunch(prev, preset)
    else:
        handle = runs.launch(stage, preset)
    con.out.print(f"{stage}: run {handle.run.name} (pid {handle.pid})")
    if args.detach:
        con.out.print(f"detached; follow with `llmlab runs tail {handle.run.name}`")
        return EXIT_OK
    return _follow(handle.run, con)


# ------------------------------------------------------------------- seeds and honest comparisons

def _seed_runs(args: argparse.Namespace) -> list[runs.Run]:
    """N runs of the stage, one after another, each with its own seed (train.seed or eval.seed)."""
    if args.seeds < 1:
        raise UserError(f"--seeds: {args.seeds}; give the number of seeds to run (1 or more)")
    if args.detach or args.resume:
        raise UserError("--seeds runs its seeds one after another in the foreground; leave out --detach and --resume")
    stage = args.verb
    base = _eval_preset(args) if stage == "eval" else _load_preset(args)
    key = "eval.seed" if stage == "eval" else "train.seed"
    first = base.eval.seed if stage == "eval" else base.train.seed
    done = []
    for i in range(args.seeds):
        preset = config.load(args.preset, [*(args.set or []), f"{key}={first + i}"])
        handle = runs.launch(stage, preset)
        con = Console()  # a fresh progress display per run (a closed one cannot be reused)
        con.out.print(f"{stage}: seed {i + 1}/{args.seeds} ({key}={first + i}): run {handle.run.name}")
        if _follow(handle.run, con) != EXIT_OK:
            raise UserError(f"--seeds: run {handle.run.name} did not finish; see `llmlab runs show {handle.run.name}`")
        done.append(handle.run)
    return done


def _seed_metrics(report: dict) -> dict[str, float]:
    """The scalar results of one run's report: finetune's held-out test, eval's task headlines."""
    out = {k: v for k, v in (report.get("test") or {}).items() if isinstance(v, float)}
    for task, r in (report.get("tasks") or {}).items():
        out.update({f"{task}.{k}": v for k, v in r.items() if isinstance(v, float) and not k.endswith(("_low", "_high"))})
    return out


def cmd_seeds(args: argparse.Namespace) -> int:
    """`llmlab finetune|eval ... --seeds N`: N runs, then each metric's mean and 95% interval."""
    from rich.console import Console as RichConsole
    from rich.table import Table

    from core.eval.compare import seed_summary

    done = _seed_runs(args)
    per_run = [_seed_metrics(runs.read_report(r.path) or {}) for r in done]
    keys = [k for k in per_run[0] if all(k in m for m in per_run)]
    table = Table(title=f"{args.verb} over {len(done)} seeds: mean and 95% interval")
    for col in ("metric", "mean", "95% interval", "values"):
        table.add_column(col)
    summary = {}
    for k in keys:
        s = summary[k] = seed_summary([m[k] for m in per_run])
        interval = "n/a (1 seed)" if len(done) < 2 else f"[{s['ci_low']:.4g}, {s['ci_high']:.4g}]"
        table.add_row(k, f"{s['mean']:.4g}", interval, ", ".join(f"{v:.4g}" for v in s["values"]))
    RichConsole().print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": [str(r.path) for r in done], "metrics": summary}, indent=1))
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    """`llmlab compare MODEL_A MODEL_B`: the same examples, a paired difference and its interval (the
    verdict line says "B is better" only when the interval excludes 0)."""
    from rich.console import Console as RichConsole
    from rich.table import Table

    from core.stages.compare import compare_models

    ckpt = lookup.resolve_checkpoint(args.model_a)
    run_preset = ckpt.parent.parent / "preset.toml"
    preset = config.load(args.preset or (str(run_preset) if run_preset.exists() else "tiny"), args.set or [])
    r = compare_models(args.model_a, args.model_b, preset)
    RichConsole().print(f"A {r['models']['A']['checkpoint']}\nB {r['models']['B']['checkpoint']}")
    table = Table(title="the same examples for both (paired bootstrap, 95% interval of B - A)")
    for col in ("task", "n", "A", "B", "B - A [95% interval]", "p"):
        table.add_column(col)
    for task, t in r["tasks"].items():
        table.add_row(task, str(t["n"]), f"{t['mean_a']:.3f}", f"{t['mean_b']:.3f}",
                      f"{t['difference']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]", f"{t['p_value']:.2g}")
    RichConsole().print(table)
    for task, t in r["tasks"].items():
        print(f"{task}: {t['verdict']} ({t['metric']}, {t['data']})")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return EXIT_OK


def _seeds_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seeds", type=int, metavar="N", help="run N seeds one after another; report each metric's mean and 95%% interval")
    p.add_argument("--json", metavar="FILE", help="with --seeds: also write the summary as JSON")


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_a", help="checkpoint, run, run:PRESET:STAGE or models/ name")
    p.add_argument("model_b", help="the model compared with A (B - A is reported)")
    p.add_argument("--preset", help="preset whose eval section names the examples (default: the one A was trained with)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a preset value, e.g. eval.limit=100")
    p.add_argument("--json", metavar="FILE", help="also write the comparison as JSON")


def cmd_serve(args: argparse.Namespace) -> int:
    """`llmlab serve MODEL`: a serve run (sampling defaults from the preset the model was trained with).
    A port in use or an unset key variable is refused here at once (the stage checks again)."""
    from core.serve.server import bind
    from core.stages.serve import api_key

    ckpt = lookup.resolve_checkpoint(args.model)
    api_key(args.api_key_env or "")
    if args.port:
        bind(args.host, args.port).close()
    run_preset = ckpt.parent.parent / "preset.toml"
    overrides = [*(args.set or []), f"serve.model={json.dumps(args.model)}", f"serve.host={json.dumps(args.host)}",
                 f"serve.port={args.port}", f"serve.api_key_env={json.dumps(args.api_key_env or '')}"]
    handle = runs.launch("serve", config.load(str(run_preset) if run_preset.exists() else "tiny", overrides))
    con = Console()
    con.out.print(f"serve: run {handle.run.name} (pid {handle.pid}); `llmlab runs stop {handle.run.name}` ends it")
    return EXIT_OK if args.detach else _follow(handle.run, con)


def cmd_execute(args: argparse.Namespace) -> int:
    """Hidden verb: the body of a launched run (runs in the detached child)."""
    run = runs.Run(Path(args.run_dir))
    stage = run.stage
    # a SIGTERM before execute() installs its handler (while the preset loads) is a stop request too
    signal.signal(signal.SIGTERM, lambda signum, frame: (run.path / runs.STOP_FILE).touch())
    try:
        preset = config.load(run.preset_path)
        state = runs.execute(run, stage, preset)
    except runs.RunLocked as e:  # the status belongs to the process that holds the lock
        print(str(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    except UserError as e:
        if run.raw_status().get("state") != "failed":  # failed before execute() could record it
            run.write_status(state="failed", error=str(e), ended=time.time())
        run.write_status(error_kind="input")
        print(str(e), file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK if state in ("finished", "stopped") else EXIT_FAILED


def cmd_presets(args: argparse.Namespace) -> int:
    from rich.console import Console as RichConsole
    out = RichConsole(highlight=False)
    action = args.action or "list"
    if action == "list":
        for name in config.builtin_names():
            try:
                p = config.load(name)
                out.print(f"[bold]{name:<16}[/] {p.description}")
            except UserError as e:
                out.print(f"[bold]{name:<16}[/] [red]invalid: {e}[/]")
        return EXIT_OK
    if not args.name:
        raise ArgError(f"llmlab presets {action}: needs a preset name or file")
    if action == "show":
        sys.stdout.write(config.dump(config.load(args.name, args.set or [])))
        return EXIT_OK
    p = config.load(args.name, args.set or [])  # check: raises with every problem
    out.print(f"{args.name}: ok")
    try:
        from core.advice import advise
    except ImportError:
        return EXIT_OK
    from core.data.facts import corpus_facts

    facts = corpus_facts(p)
    out.print(f"  corpus facts: {facts.origin}")
    for f in advise(p, facts):
        if f.level != "ok" and f.not_applicable:  # e.g. pretraining rules on a finetune preset: the base's concern
            out.print(f"  [dim]n/a {f.title}: not for this preset ({f.not_applicable})[/]")
            continue
        out.print(f"  [{ {'ok': 'green', 'warn': 'yellow', 'bad': 'red'}.get(f.level, '') }]{f.level}[/] {f.title}: {f.reason}")
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from rich.console import Console as RichConsole
    from rich import box
    from rich.table import Table
    out = RichConsole(highlight=False)
    action = args.action or "list"
    if action == "list":
        from rich.markup import escape
        listed = runs.list_runs()
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=True)
        # the name is what the other verbs take: shown whole (folded when longer than the terminal), never cut
        table.add_column("run", overflow="fold", ratio=1)
        for head in ("stage", "preset", "state", "started"):
            table.add_column(head, no_wrap=True)
        problems = []
        for r in listed:  # a run whose status.json is damaged is shown as invalid, the rest as ever
            st = r.status()
            if st.get("problem"):
                problems.append(st["problem"])
            started = time.strftime("%m-%d %H:%M", time.localtime(st["started"])) if st.get("started") else ""
            state = str(st.get("state"))
            color = {"running": "cyan", "finished": "green", "failed": "red", "crashed": "red", "stopped": "yellow",
                     "invalid": "red"}.get(state, "")
            cell = f"[{color}]{state}[/]" if color else state
            table.add_row(escape(r.name), escape(st.get("stage", "")), escape(st.get("preset", "")), cell, started)
        out.print(table)
        for problem in problems:
            out.print(f"[red]invalid[/] {escape(problem)}")
        if listed:
            out.print(f"[dim]any unique part of a name selects a run: llmlab runs show {escape(listed[0].name[9:15])}[/]")
        return EXIT_OK
    if not args.run:
        raise ArgError(f"llmlab runs {action}: needs a run name (see `llmlab runs list`)")
    if action == "diff":
        return cmd_runs_diff(args.run, out)
    if len(args.run) > 1:
        raise ArgError(f"llmlab runs {action}: takes one run, got {len(args.run)}")
    run = runs.open_run(args.run[0])
    if action == "show":
        out.print_json(json.dumps(run.status()))
        _print_targets(run, out)
        evs = run.events()
        for ev in evs[-10:]:
            line = format_event(ev)
            if line:
                out.print(line, soft_wrap=True)
        return EXIT_OK
    if action == "tail":
        con = Console()
        return _follow(run, con)
    if action == "stop":
        if not runs.is_live(run):
            out.print(f"{run.name}: not running ({run.state})")
            return EXIT_OK
        runs.stop(run)  # a run still starting sees the STOP file as soon as it watches for it
        out.print(f"{run.name}: stop requested")
        return EXIT_OK
    if action == "delete":
        if runs.is_live(run):
            raise UserError(f"{run.name}: its process (pid {run.raw_status().get('pid')}) is alive "
                            f"({run.state}); stop it first (`llmlab runs stop {run.name}`)")
        if not args.yes:
            raise UserError(f"{run.name}: add --yes to delete {run.path} and its checkpoints")
        # every folder checked first: a delete refused halfway would leave a run with half its checkpoints
        folders = [run.path.parent, run.path, *(p for p in run.path.rglob("*") if p.is_dir() and not p.is_symlink())]
        locked = next((d for d in folders if not os.access(d, os.W_OK | os.X_OK)), None)
        if locked is not None:
            raise UserError(f"{locked}: not writable, so {run.name} cannot be deleted; nothing was deleted")
        shutil.rmtree(run.path)
        out.print(f"deleted {run.path}")
        return EXIT_OK
    raise ArgError(f"llmlab runs: unknown action {action!r}")


def _fmt_hit(hit: Any) -> str:
    if hit is None:
        return "-"
    tok = f", {_fmt_num(hit.tokens)} tok" if hit.tokens is not None else ""
    secs = f", {hit.train_s:.1f} s" if hit.train_s is not None else ""
    return f"step {hit.step}{tok}{secs}"


def _print_targets(run: runs.Run, out: Any) -> None:
    """A run's time to target: when it first reached each validation-loss threshold."""
    from core.compare_runs import metric_events, metric_points, time_to_target
    hits = time_to_target(metric_points(metric_events(run.events_path)).get("val_loss", []))
    if hits:
        out.print("time to target (training time, evaluation excluded): "
                  + "; ".join(f"val_loss <= {h.loss:g} at {_fmt_hit(h)}" for h in hits[-4:]), soft_wrap=True)


def _fmt_cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def cmd_runs_diff(names: list[str], out: Any) -> int:
    """`llmlab runs diff A B ...`: the settings that differ, and the outcomes, side by side."""
    from rich.markup import escape
    from rich.table import Table

    from core.compare_runs import common_target, differing, lower_is_better, summarize
    if len(names) < 2:
        raise ArgError("llmlab runs diff: needs two or more runs, e.g. llmlab runs diff RUN_A RUN_B")
    sums = [summarize(runs.open_run(n)) for n in names]
    table = Table("", *(escape(s.name) for s in sums), title="settings that differ")
    for key, values in differing(sums).items():
        table.add_row(escape(key), *(escape(_fmt_cell(v)) for v in values))
    if not table.rows:
        table.add_row("(none)", *("" for _ in sums))
    out.print(table)
    res = Table("", *(escape(s.name) for s in sums), title="outcome")
    res.add_row("state", *(s.state for s in sums))
    res.add_row("fork of", *(f"{s.parent}@{s.fork_step}" if s.parent else "-" for s in sums))
    res.add_row("steps", *(_fmt_cell(s.steps) for s in sums))
    res.add_row("tokens", *(_fmt_num(s.tokens) if s.tokens else "-" for s in sums))
    res.add_row("training time", *(f"{s.train_s:.1f} s" if s.train_s is not None else "-" for s in sums))
    res.add_row("evaluation share", *(f"{100 * s.eval_share:.1f}%" if s.eval_share is not None else "-" for s in sums))
    metrics = sorted({m for s in sums for m in s.final if m == "loss" or m.startswith("val_") or "." in m})
    for m in metrics:
        best = "min" if lower_is_better(m) else "max"
        res.add_row(f"{m} final / {best}", *(f"{_fmt_cell(s.final.get(m))} / {_fmt_cell(s.best.get(m))}" for s in sums))
    target = common_target(sums)
    if target is not None:
        res.add_row(f"to val_loss <= {target:g}", *(_fmt_hit(s.time_to(target)) for s in sums))
    out.print(res)
    return EXIT_OK


def _loss_style(loss: float, high: float) -> str:
    """Green for an easy token, through yellow, to red for the hardest of the text."""
    from core.token_loss import loss_level
    return ("on dark_green", "on green4", "on yellow4", "on dark_orange3", "on red3")[loss_level(loss, high)]


def _print_token_losses(res: Any, out: Any, rows: int) -> None:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text
    high = max(t.loss for t in res.tokens)
    line = Text()
    for t in res.tokens:
        line.append(t.text, style=_loss_style(t.loss, high))
    out.print(line)
    out.print(f"mean loss {res.mean_loss:.3f} nats over {len(res.tokens)} tokens"
              + (" (cut to the model's context)" if res.truncated else ""))
    table = Table("#", "token", "loss", "p", "rank", "the model expected (top 5)")
    order = sorted(range(len(res.tokens)), key=lambda i: -res.tokens[i].loss)[:rows] if rows else range(len(res.tokens))
    for i in sorted(order):
        t = res.tokens[i]
        top = "  ".join(f"{escape(repr(s))} {p:.2f}" for s, p in t.top)
        table.add_row(str(i), escape(repr(t.text)), f"{t.loss:.2f}", f"{t.prob:.3f}", str(t.rank), top)
    out.print(table)


def cmd_inspect(args: argparse.Namespace) -> int:
    """`llmlab inspect MODEL "text"`: each token coloured by its loss, with the model's top-5 there;
    `--file` ranks the lines of a file (a dataset's rows) by loss and shows the hardest, `--held-out`
    the first documents of the validation shard of the checkpoint's run."""
    from rich.console import Console as RichConsole
    if not args.text and not args.file and not args.held_out:
        raise ArgError('llmlab inspect: give a text or --file FILE, e.g. llmlab inspect run:tiny:pretrain "Once upon a time"')
    ckpt = lookup.resolve_checkpoint(args.model)  # before torch loads: a wrong name is answered at once

    from core.token_loss import hardest, held_out_documents, load_scorer, token_losses
    model, tok, meta = load_scorer(ckpt)
    out = RichConsole(highlight=False)
    if args.file or args.held_out:
        try:
            lines = (held_out_documents(meta["path"], tok) if args.held_out
                     else Path(args.file).read_text(encoding="utf-8").splitlines())
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{args.file}: cannot read as UTF-8 text ({e})") from None
        for res in hardest(model, tok, lines, n=args.hardest):
            _print_token_losses(res, out, args.rows)
        return EXIT_OK
    res = token_losses(model, tok, " ".join(args.text))
    if not res.tokens:
        raise UserError("llmlab inspect: the text encodes to no tokens")
    _print_token_losses(res, out, args.rows)
    return EXIT_OK


def cmd_tokenizer_inspect(args: argparse.Namespace) -> int:
    from core.tokenizer import get_tokenizer
    from core.tokenizer.inspect import format_spans_ansi, spans
    if not args.text:
        raise ArgError('llmlab tokenizer inspect: give the text to tokenize, e.g. llmlab tokenizer inspect --encoding gpt2 "Hello world"')
    tok = get_tokenizer(args.encoding)
    text = " ".join(args.text)
    sys.stdout.write(format_spans_ansi(spans(tok, text)) + "\n")
    return EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    from core.checkpoint import load_model, require_tokenizer
    from core.generate import generate_text, sampling_options
    from core.sampling import check_sampling
    from core.tokenizer.chat import prompt_ids
    sampling = check_sampling({"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
                               "max_new_tokens": args.max_new_tokens, "seed": args.seed or 0}, "llmlab generate")
    model, tok, meta = load_model(args.checkpoint)
    tok = require_tokenizer(tok, meta, "generate text")
    head = (meta.get("head") or {}).get("kind", "lm")
    if head != "lm":
        raise UserError(f"{meta['path']}: a {head} checkpoint predicts labels, not text; "
                        f"use `llmlab eval` on it, or generate with a pretrained or instruction-tuned model")
    ids, stop_ids = prompt_ids(tok, args.prompt, chat=args.chat, system=args.system)
    ids = ids or [tok.eot_id]  # no prompt: a sample from the start of a document
    if not args.chat:
        sys.stdout.write(args.prompt)
        sys.stdout.flush()
    options = {**sampling_options(sampling), "seed": args.seed}  # --seed 0 is the seed 0, not "random"
    for piece in generate_text(model, tok, ids, stop_ids=stop_ids, **options):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return EXIT_OK


def _reads_of(spec: str) -> list[Path]:
    """The checkpoints a MODEL argument reads (a LoRA adapter's bases too), for refuse_unsafe_target."""
    from core.safety import model_inputs
    try:
        return model_inputs(lookup.resolve_checkpoint(spec))
    except UserError:
        return [Path(spec)] if Path(spec).exists() else []


def cmd_import(args: argparse.Namespace) -> int:
    from core.model.importer import import_model
    from core.safety import refuse_unsafe_target
    if '/' in args.name or args.name.startswith('.'):  # a path: never inside a run or checkpoint
        refuse_unsafe_target(Path(args.name), _reads_of(args.source), False)
    s = import_model(args.source, args.name)
    for w in s.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"imported {s.source} -> {s.path}\n  family {s.family}, {s.params:,} parameters, context {s.context_length:,}, "
          f"vocabulary {s.vocab_size:,}, tokenizer {s.tokenizer}, chat template {'found' if s.chat_template else 'none'}")
    return EXIT_OK


def cmd_export_hf(args: argparse.Namespace) -> int:
    from core.model.hf import export_hf
    out = export_hf(args.checkpoint, Path(args.out), force=args.force)
    print(f"exported {args.checkpoint} -> {out}")
    return EXIT_OK


def cmd_export_gguf(args: argparse.Namespace) -> int:
    from core.model.gguf_export import export_gguf
    r = export_gguf(args.checkpoint, Path(args.out), args.type, force=args.force, ollama=args.ollama,
                    eval_text=Path(args.eval_text) if args.eval_text else None,
                    measure=False if args.no_measure else None)
    if r.merged_adapter:
        print(f"merged the LoRA adapters into their base {r.merged_adapter}")
    print(f"wrote {r.path}: {r.gguf_type}, arch {r.arch}, {r.n_tensors} tensors, {r.bytes / 1e6:.1f} MB, "
          f"{r.seconds:.1f} s; pre-tokenizer {r.pre_tokenizer}; chat template {'yes' if r.chat_template else 'none'}")
    if r.perplexity:
        p = r.perplexity
        change = 100 * (p["after"] / p["before"] - 1)
        print(f"perplexity on {p['tokens']:,} held-out tokens: {p['before']:.3f} before, {p['after']:.3f} after "
              f"{r.gguf_type} ({change:+.2f}%)")
    if r.note:
        print(r.note)
    if r.modelfile:
        print(f"wrote {r.modelfile}; run it with: ollama create NAME -f {r.modelfile}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from core.eval.render import to_html, to_markdown
    from core.eval.report import model_card
    from core.runs import write_text_atomic
    from core.safety import refuse_unsafe_target
    if args.html:
        refuse_unsafe_target(Path(args.html), _reads_of(args.model), True, file=True)
    card = model_card(args.model)
    if args.html:
        write_text_atomic(Path(args.html), to_html(card))
        print(f"wrote {args.html}")
    else:
        sys.stdout.write(to_markdown(card))
    return EXIT_OK


def cmd_chat(args: argparse.Namespace) -> int:
    from core.cli_chat import chat_repl
    return chat_repl(args.model, args.set or [])


def cmd_tui(args: argparse.Namespace) -> int:
    from tui.app import main as tui_main

    return tui_main(preset=args.preset)


# ------------------------------------------------------------------------------------ verb table

@dataclass
class Verb:
    name: str
    help: str
    handler: Callable[[argparse.Namespace], int]
    setup: Callable[[argparse.ArgumentParser], None]
    hidden: bool = False


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint folder, run folder or name, run:PRESET:STAGE")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0: any free port)")
    p.add_argument("--api-key-env", metavar="NAME", help="environment variable with the key clients must send")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override generate.* (default sampling)")
    p.add_argument("--detach", action="store_true", help="start the server in the background and return")


def _stage_args(p: argparse.ArgumentParser, preset_help: str = "built-in preset name (e.g. tiny) or a TOML file") -> None:
    p.add_argument("preset", help=preset_help)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a preset value, e.g. train.lr=3e-4 (repeatable)")
    p.add_argument("--detach", action="store_true", help="start the run in the background and return")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN",
                   help="continue the latest run of this preset and stage (or RUN) from its last checkpoint")


def _pretrain_args(p: argparse.ArgumentParser) -> None:
    _stage_args(p)
    p.add_argument("--nproc", type=int, metavar="N", help="data-parallel processes on this machine (torchrun); same as --set train.nproc=N")
    p.add_argument("--fork", metavar="RUN[@STEP]", help="a new run from RUN's checkpoint at STEP (default: its latest), "
                   "with this preset's settings; same as --set train.fork_from=RUN@STEP")


def _finetune_args(p: argparse.ArgumentParser) -> None:
    _pretrain_args(p)
    _seeds_arg(p)


def _eval_args(p: argparse.ArgumentParser) -> None:
    _stage_args(p, "preset (its eval section), or a model to evaluate: a checkpoint folder, a run, run:PRESET:STAGE")
    p.add_argument("--tasks", metavar="T1,T2", help="comma-separated tasks (perplexity, classify, choice, judge, pairwise, verify, contamination, sensitivity)")
    _seeds_arg(p)


def _tokenizer_args(p: argparse.ArgumentParser) -> None:
    _stage_args(p)
    p.epilog = 'llmlab tokenizer inspect [--encoding NAME_OR_PATH] "text": coloured spans with ids'


def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", nargs="+", help="the text to tokenize")
    p.add_argument("--encoding", default="gpt2", help="tiktoken name (gpt2, cl100k_base, ...) or a saved tokenizer folder")


def _inspect_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint folder, run folder or name, run:PRESET:STAGE")
    p.add_argument("text", nargs="*", help="the text to score")
    p.add_argument("--file", metavar="FILE", help="score every line of a text file and show the hardest")
    p.add_argument("--held-out", action="store_true",
                   help="score the first documents of the validation shard of the checkpoint's run and show the hardest")
    p.add_argument("--hardest", type=int, default=3, metavar="N", help="with --file or --held-out: how many to show")
    p.add_argument("--rows", type=int, default=8, metavar="N", help="table rows: the N hardest tokens (0 = all)")


def _presets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["list", "show", "check"], help="list (default), show NAME, check FILE")
    p.add_argument("name", nargs="?", help="preset name or TOML file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a value before showing/checking")


def _runs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["list", "show", "tail", "stop", "delete", "diff"],
                   help="list (default), show, tail, stop, delete, diff RUN RUN ...")
    p.add_argument("run", nargs="*", help="run name (or a unique part of it); diff takes two or more")
    p.add_argument("--yes", action="store_true", help="with delete: do not ask")


def _generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint folder, run folder or run:PRESET:STAGE")
    p.add_argument("prompt", help="text to continue (with --chat: a user message to answer)")
    p.add_argument("--chat", action="store_true", help="render the prompt as one user turn through the model's chat template")
    p.add_argument("--system", default="", metavar="TEXT", help="a system message before the user turn (with --chat)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="hub name (owner/name, or gpt2 ... gpt2-xl), a local Hugging Face folder or a .gguf file")
    p.add_argument("name", help="NAME under $LLMLAB_HOME/models/ (or a folder path)")


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint folder, run folder or run:PRESET:STAGE")
    p.add_argument("out", help="folder for the Hugging Face model")
    p.add_argument("--force", action="store_true", help="replace OUT when it is an existing, non-empty folder")


def _export_gguf_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint folder, run folder or run:PRESET:STAGE")
    p.add_argument("out", help="the GGUF file to write, e.g. model.gguf")
    p.add_argument("--type", default="f16", choices=["f32", "f16", "bf16", "q8_0", "q4_0"],
                   help="weight type (default f16); q8_0/q4_0 report the perplexity change")
    p.add_argument("--ollama", action="store_true", help="also write an Ollama Modelfile beside the GGUF")
    p.add_argument("--eval-text", metavar="FILE", help="held-out UTF-8 text for the perplexity (default: embedded stories)")
    p.add_argument("--no-measure", action="store_true", help="skip the perplexity before and after quantization")
    p.add_argument("--force", action="store_true", help="replace OUT (and the Modelfile) when they exist")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint folder, run folder or run:PRESET:STAGE")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML page instead of Markdown")


def _chat_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint folder, run folder, run:PRESET:STAGE or a preset")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override generate.* or chat.* values")


def _tui_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("preset", nargs="?", default="tiny", help="preset to open (default: tiny)")


def _execute_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("--resume", action="store_true")


VERBS: list[Verb] = [
    Verb("tui", "open the workbench (the default when no verb is given)", cmd_tui, _tui_args),
    *[Verb(name, help_, cmd_serve if name == "serve" else cmd_stage,
           {"tokenizer": _tokenizer_args, "pretrain": _pretrain_args, "finetune": _finetune_args,
            "eval": _eval_args, "serve": _serve_args}.get(name, _stage_args))
      for name, (_mod, help_) in STAGES.items()],
    Verb("generate", "continue a prompt with a trained model", cmd_generate, _generate_args),
    Verb("chat", "chat with a model in the terminal", cmd_chat, _chat_args),
    Verb("inspect", "what the model finds hard: per-token loss and its top-5 predictions", cmd_inspect,
         _inspect_model_args),
    Verb("compare", "compare two models on the same examples: paired difference, bootstrap interval, p-value",
         cmd_compare, _compare_args),
    Verb("report", "the model card: every stage and evaluation of a model", cmd_report, _report_args),
    Verb("import", "import a model (GPT-2, Llama, Mistral, Qwen2/3, SmolLM2/3) from the hub, a folder or a GGUF file",
         cmd_import, _import_args),
    Verb("import-hf", "the same as import (kept for old scripts)", cmd_import, _import_args),
    Verb("export-hf", "export a checkpoint as a Hugging Face folder", cmd_export_hf, _export_args),
    Verb("export-gguf", "export a checkpoint as a GGUF file for llama.cpp and Ollama", cmd_export_gguf,
         _export_gguf_args),
    Verb("runs", "list, show, follow, stop or delete runs", cmd_runs, _runs_args),
    Verb("presets", "list, show or check presets", cmd_presets, _presets_args),
    Verb("_execute", argparse.SUPPRESS, cmd_execute, _execute_args, hidden=True),
]


def build_parser() -> Parser:
    parser = Parser(prog="llmlab", description="llmlab: a workbench for the whole lifecycle of a small language model")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    for v in VERBS:
        kw: dict[str, Any] = {} if v.hidden else {"help": v.help}
        p = sub.add_parser(v.name, description=None if v.hidden else v.help, **kw)
        v.setup(p)
        p.set_defaults(handler=v.handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["tui"]
    try:
        if argv[:2] == ["tokenizer", "inspect"]:  # a sub-verb with its own arguments
            p = Parser(prog="llmlab tokenizer inspect", description="tokenize text and show coloured spans with ids")
            _inspect_args(p)
            return cmd_tokenizer_inspect(p.parse_args(argv[2:]))
        args = build_parser().parse_args(argv)
        if hasattr(args, "resume"):
            args.resume_run = args.resume if isinstance(args.resume, str) else None
        return args.handler(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # a read-only $LLMLAB_HOME, an unwritable --html path; a full disk is exit 1
        if isinstance(e, BrokenPipeError):
            return EXIT_OK
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT if input_fault(e) else EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
