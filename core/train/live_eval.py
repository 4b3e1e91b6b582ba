"""Downstream evaluations inside a training run, and early stopping on any logged metric.

The stage builds a `LiveEval` from train.eval_tasks (functions from core.stages.eval.live_tasks),
train.eval_budget_s and train.early_stop; the loop calls `after_validation` at every validation.
Each task runs until its time budget is spent (the stop event it gets is set by a timer) and logs
an `eval` event; `EarlyStop` watches val_loss or TASK.KEY and says when the run should end and
which step was best. Evaluation time is kept apart, so the report shows its share of the run.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.config import EarlyStopConfig
from core.runs import Logger

Task = Callable[[Any, threading.Event], dict]


@dataclass
class EarlyStop:
    """Patience over evaluations: `observe` returns True when the value improved on the best."""

    metric: str
    mode: str = "min"
    patience: int = 3
    min_delta: float = 0.0
    best: float | None = None
    best_step: int | None = None
    waited: int = 0                      # evaluations since the last improvement

    @classmethod
    def of(cls, cfg: EarlyStopConfig) -> EarlyStop | None:
        return cls(cfg.metric, cfg.mode, cfg.patience, cfg.min_delta) if cfg.metric else None

    def observe(self, value: float, step: int) -> bool:
        if not math.isfinite(value):
            self.waited += 1
            return False
        better = self.best is None or (value < self.best - self.min_delta if self.mode == "min"
                                       else value > self.best + self.min_delta)
        if better:
            self.best, self.best_step, self.waited = value, step, 0
        else:
            self.waited += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.waited >= self.patience

    def state_dict(self) -> dict:
        """What trainer.pt keeps, so that a resumed run stops at the step an unbroken one would."""
        return {"metric": self.metric, "best": self.best, "best_step": self.best_step, "waited": self.waited}

    def load_state_dict(self, saved: dict | None) -> None:
        """Continue a saved rule; a rule saved for another metric (the preset changed it) starts afresh."""
        if saved and saved.get("metric") == self.metric:
            self.best, self.best_step, self.waited = saved["best"], saved["best_step"], int(saved["waited"])


@dataclass
class LiveEval:
    tasks: dict[str, Task]
    budget_s: float
    early: EarlyStop | None = None
    eval_s: float = 0.0                  # seconds spent in the tasks (validation loss not included)
    stopped_at: int | None = None        # the step early stopping ended the run
    last: dict[str, float] = field(default_factory=dict)

    def state_dict(self) -> dict:
        return {"eval_s": self.eval_s, "rule": self.early.state_dict() if self.early else None}

    def load_state_dict(self, saved: dict | None) -> None:
        """Evaluation seconds and the early-stopping rule of a resumed run (absent in older checkpoints)."""
        if not saved:
            return
        self.eval_s = float(saved.get("eval_s") or 0.0)
        if self.early is not None:
            self.early.load_state_dict(saved.get("rule"))

    def run_tasks(self, model: Any, step: int, log: Logger) -> dict[str, float]:
        """Every task once, each within the budget; returns {"TASK.KEY": value}."""
        out: dict[str, float] = {}
        was = model.training
        model.eval()
        for name, task in self.tasks.items():
            stop = threading.Event()
            timer = threading.Timer(self.budget_s, stop.set)
            t0 = time.perf_counter()
            timer.start()
            try:
                metrics = task(model, stop)
            finally:
                timer.cancel()
            seconds = time.perf_counter() - t0
            self.eval_s += seconds
            log.log({"kind": "eval", "step": step, "task": name, **metrics, "seconds": round(seconds, 3),
                     "budget_hit": stop.is_set()})
            out.update({f"{name}.{k}": float(v) for k, v in metrics.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
        model.train(was)
        self.last = out
        return out

    def after_validation(self, model: Any, step: int, val: dict, log: Logger, main: bool = True) -> bool:
        """Run the tasks (rank 0) and feed the early-stopping rule; True when this step is the best so far."""
        metrics = {**{k: float(v) for k, v in val.items() if isinstance(v, (int, float))},
                   **(self.run_tasks(model, step, log) if main and self.tasks else {})}
        if self.early is None or self.early.metric not in metrics:
            return False
        improved = self.early.observe(metrics[self.early.metric], step)
        if self.early.should_stop and self.stopped_at is None:
            self.stopped_at = step
            e = self.early
            log.log({"kind": "log", "level": "info",
                     "early_stop": {"metric": e.metric, "best": e.best, "best_step": e.best_step, "step": step},
                     "message": f"early stop at step {step}: {e.metric} has not improved by more than {e.min_delta:g} "
                                f"for {e.patience} evaluations; best {e.best:.4g} at step {e.best_step} "
                                f"(checkpoints/best)"})
        return improved
