"""Comparing runs: the settings where their resolved presets differ, their outcomes, and curves.

Everything here reads run folders only (preset.toml, report.json, events.jsonl; no torch), so it
works for runs started from the CLI, the TUI or copied in from another machine. `summarize(run)`
gives a run's final and best metrics, tokens, time and its time to target: when it first reached
each validation-loss threshold of TARGETS (training time only, evaluation excluded, as the
modded-nanogpt and nanochat speedruns count it). `series` gives one metric's curve by step, tokens
or training time for the Compare screen; `differing` the settings that differ between runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import config
from core.errors import UserError
from core.runs import Run, read_report

# validation-loss thresholds: round numbers, denser where small models spend their time
TARGETS = (6.0, 5.0, 4.0, 3.5, 3.0, 2.75, 2.5, 2.25, 2.0, 1.75, 1.5, 1.25, 1.0, 0.9, 0.8, 0.75, 0.7, 0.65,
           0.6, 0.55, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2)
X_AXES = ("step", "tokens", "time")


@dataclass(frozen=True)
class TargetHit:
    """The first validation at or below `loss`: its step, tokens seen and training seconds."""

    loss: float
    step: int
    tokens: int | None
    train_s: float | None


@dataclass
class Point:
    step: int
    tokens: int | None
    train_s: float | None
    value: float


@dataclass
class RunSummary:
    name: str
    stage: str
    state: str
    settings: dict[str, Any]                    # the resolved preset, by dotted key
    points: dict[str, list[Point]] = field(default_factory=dict, repr=False)  # every metric's curve
    final: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)
    steps: int | None = None
    tokens: int | None = None
    train_s: float | None = None
    eval_share: float | None = None
    targets: list[TargetHit] = field(default_factory=list)
    parent: str | None = None
    fork_step: int | None = None

    def time_to(self, loss: float) -> TargetHit | None:
        return next((h for h in self.targets if h.loss == loss), None)


def lower_is_better(metric: str) -> bool:
    return any(w in metric for w in ("loss", "ppl", "perplexity", "grad_norm", "bits_per_byte"))


def _num(v: Any) -> bool:
    return (type(v) is float or type(v) is int) and math.isfinite(v)


_WANTED = (b'"train"', b'"val"', b'"eval"', b'"resumed_step"')  # any JSON spacing
_NOT_METRICS = frozenset(("t", "kind", "step", "tokens", "train_s", "seconds", "n", "chance", "majority_baseline",
                          "task", "budget_hit"))


def metric_events(path: Path) -> list[dict]:
    """The train, val and eval events (and resume marks) of an events.jsonl, read fast: only lines
    that can be one are parsed, a line that is not a JSON object is skipped, and every value used
    later is checked where it is used (a comparison reads thousands of lines per run)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return []
    out = []
    for line in data.split(b"\n"):
        if any(w in line for w in _WANTED):
            try:
                ev = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(ev, dict):
                out.append(ev)
    return out


def clean_events(events: list[dict]) -> list[dict]:
    """Events without the steps a killed process logged after its last checkpoint (a `resumed_step`
    log says where the run continued)."""
    out: list[dict] = []
    for e in events:
        if isinstance(e.get("resumed_step"), int):
            out = [x for x in out if not isinstance(x.get("step"), int) or x["step"] <= e["resumed_step"]
                   or x.get("kind") not in ("train", "val", "eval", "checkpoint")]
        out.append(e)
    return out


def metric_points(events: list[dict]) -> dict[str, list[Point]]:
    """Every logged metric as points: train fields by name (loss, lr ...), val fields (val_loss ...),
    eval events as TASK.KEY. Tokens and training time of a val or eval point are those of the train
    event at or before its step."""
    out: dict[str, list[Point]] = {}
    tokens: int | None = None
    train_s: float | None = None
    acc_s, last_step = 0.0, 0
    for e in clean_events(events):
        kind, step = e.get("kind"), e.get("step")
        if kind not in ("train", "val", "eval") or not isinstance(step, int):
            continue
        if kind == "train":
            tokens = e["tokens"] if _num(e.get("tokens")) else tokens
            if _num(e.get("train_s")):
                train_s = float(e["train_s"])
            elif _num(e.get("step_ms")):  # runs from before train_s was logged
                acc_s += e["step_ms"] / 1000 * max(1, step - last_step)
                train_s = acc_s
            last_step = step
        prefix = f"{e.get('task')}." if kind == "eval" else ""
        for k, v in e.items():
            if k not in _NOT_METRICS and _num(v):
                out.setdefault(prefix + k, []).append(Point(step, tokens, train_s, float(v)))
    return out


def time_to_target(points: list[Point], targets: tuple[float, ...] = TARGETS) -> list[TargetHit]:
    """The first point at or below each target the curve reached (val_loss points)."""
    hits = []
    for target in targets:
        p = next((p for p in points if p.value <= target), None)
        if p is not None:
            hits.append(TargetHit(target, p.step, p.tokens, p.train_s))
    return hits


def _settings(run: Run) -> dict[str, Any]:
    if not run.preset_path.is_file():
        raise UserError(f"{run.preset_path}: missing; the run's settings are unknown")
    try:
        return config.flat_dict(config.load(run.preset_path))
    except config.PresetError as e:
        raise UserError(f"{run.name}: its preset.toml cannot be read ({e.problems[0]})") from None


def summarize(run: Run) -> RunSummary:
    """What a run was set to and what came of it; UserError for a run whose preset.toml is damaged."""
    st = run.status()
    s = RunSummary(run.name, run.stage, str(st.get("state")), _settings(run),
                   parent=st.get("parent"), fork_step=st.get("fork_step"))
    s.points = points = metric_points(metric_events(run.events_path))
    for metric, pts in points.items():
        s.final[metric] = pts[-1].value
        s.best[metric] = (min if lower_is_better(metric) else max)(p.value for p in pts)
    last = points.get("loss", [])
    if last:
        s.steps, s.tokens, s.train_s = last[-1].step, last[-1].tokens, last[-1].train_s
    s.targets = time_to_target(points.get("val_loss", []))
    report = read_report(run.path) or {}
    s.eval_share = report.get("eval_share") if _num(report.get("eval_share")) else None
    return s


def xy(points: list[Point], x: str = "step") -> tuple[list[float], list[float]]:
    """(xs, ys) of a metric's points; x is step, tokens or (training) time in seconds."""
    attr = {"step": "step", "tokens": "tokens", "time": "train_s"}[x]
    keep = [p for p in points if getattr(p, attr) is not None]
    return [float(getattr(p, attr)) for p in keep], [p.value for p in keep]


def series(run: Run, metric: str, x: str = "step") -> tuple[list[float], list[float]]:
    """(xs, ys) of one metric of a run (see `xy`)."""
    return xy(metric_points(metric_events(run.events_path)).get(metric, []), x)


def metric_order(names: set[str]) -> list[str]:
    """Metrics in the order a comparison offers them: losses first, then evaluations, then the rest."""
    first = [m for m in ("val_loss", "loss") if m in names]
    evals = sorted(m for m in names if "." in m or m.startswith("val_") and m not in first)
    return first + evals + sorted(names - set(first) - set(evals))


def differing(summaries: list[RunSummary]) -> dict[str, list[Any]]:
    """Settings whose values are not the same in every run: key -> each run's value (None: absent)."""
    keys = sorted({k for s in summaries for k in s.settings})
    rows = {k: [s.settings.get(k) for s in summaries] for k in keys}
    return {k: v for k, v in rows.items() if any(x != v[0] for x in v) and k not in ("name", "description")}


def common_target(summaries: list[RunSummary]) -> float | None:
    """The lowest target every run reached: the one to rank them by."""
    reached = [{h.loss for h in s.targets} for s in summaries]
    both = set.intersection(*reached) if reached else set()
    return min(both) if both else None
