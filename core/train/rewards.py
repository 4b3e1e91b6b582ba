"""Reward functions for reinforcement learning with verifiable rewards, and their weighted sum.

A reward function is `fn(completion: str, record: dict) -> float`; `record` is the dataset row
(its "answer" field is the gold answer). Built in: `exact` (the extracted final answer equals the
gold one, core.data.verifiable.is_correct: the embedded world's checker), `number` (the answer's
number within finetune.rl.tolerance of the gold number), `format` (a well-formed final answer).
A user function is named `module:function` in finetune.rl.rewards and imported only then (code
from the preset's author runs in the training process: name only modules you trust). Each
component is logged on its own; the advantage uses the weighted sum (finetune.rl.weights).
"""

from __future__ import annotations

import functools
import importlib
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.data.verifiable import extract_answer, is_correct, parse_number, well_formed
from core.errors import StageFailed, UserError

RewardFn = Callable[[str, dict], float]
BUILT_IN = ("exact", "number", "format")


def exact_reward(completion: str, record: dict) -> float:
    return float(is_correct(completion, str(record["answer"])))


def number_reward(completion: str, record: dict, tolerance: float = 1e-6) -> float:
    """1 when the final answer's number is within `tolerance` (relative, at least absolute) of the gold one."""
    want = parse_number(extract_answer(str(record["answer"])))
    got = parse_number(extract_answer(completion))
    if want is None or got is None:
        return 0.0
    return float(abs(got - want) <= tolerance * max(1.0, abs(want)))


def format_reward(completion: str, record: dict) -> float:
    return float(well_formed(completion))


def load_user_reward(spec: str, where: str) -> RewardFn:
    """The function named `module:function`, imported now; a clear UserError if it cannot be."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise UserError(f"{where}: {spec!r} is not a built-in reward ({', '.join(BUILT_IN)}) nor module:function")
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # an import runs the module's code: any error is the user's module's
        raise UserError(f"{where}: cannot import module {module!r} for reward {spec!r}: {type(e).__name__}: {e}") from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise UserError(f"{where}: module {module!r} has no function {name!r} (reward {spec!r})")
    return fn


@dataclass
class Reward:
    """One named component of the reward."""

    name: str
    fn: RewardFn
    weight: float


class RewardSet:
    """The preset's reward components; `score` returns the weighted total and each component."""

    def __init__(self, names: Sequence[str], weights: Sequence[float], tolerance: float, where: str = "finetune.rl.rewards"):
        if not names:
            raise UserError(f"{where}: empty; name at least one of {', '.join(BUILT_IN)} or a module:function")
        if weights and len(weights) != len(names):
            raise UserError(f"finetune.rl.weights: {len(weights)} weights for {len(names)} rewards; give one per reward or none")
        self.parts: list[Reward] = []
        for i, spec in enumerate(names):
            fn: RewardFn
            if spec == "exact":
                fn = exact_reward
            elif spec == "number":
                fn = functools.partial(number_reward, tolerance=tolerance)
            elif spec == "format":
                fn = format_reward
            else:
                fn = load_user_reward(spec, f"{where}[{i}]")
            self.parts.append(Reward(spec, fn, float(weights[i]) if weights else 1.0))

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parts]

    def score(self, completion: str, record: dict) -> tuple[float, dict[str, float]]:
        """(weighted total, {component: value}); a failing or non-numeric user function fails the run by name."""
        parts: dict[str, float] = {}
        for p in self.parts:
            try:
                value: Any = p.fn(completion, record)
            except Exception as e:
                raise StageFailed(f"reward {p.name!r} raised {type(e).__name__}: {e} (on the completion "
                                  f"{completion[:80]!r})") from None
            if not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
                raise StageFailed(f"reward {p.name!r} returned {value!r} ({type(value).__name__}); a reward function "
                                  f"returns a finite number") from None
            parts[p.name] = float(value)
        return sum(p.weight * parts[p.name] for p in self.parts), parts

    def check(self, record: dict) -> None:
        """Call every component once on a sample record before training, so a broken user function
        is the user's error (exit 2) before any compute is spent."""
        try:
            self.score(str(record.get("answer", "")), record)
        except StageFailed as e:
            raise UserError(f"finetune.rl.rewards: {e}") from None
