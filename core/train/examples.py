"""Finetuning examples: reading a set with the fields a method needs, and resumable batches of it.

Every finetuning method (classification, instruction, preference) reads its set through
`read_split`, which names the missing field and the row when a record lacks one, and feeds the
shared loop through an `ExampleLoader`: shuffled once per epoch by a seed of its own (so the
training RNG stream does not move it) with a position that a checkpoint saves and a resume
restores exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from core.errors import UserError


def read_split(spec: str, split: str, required: Sequence[str | tuple[str, ...]], method: str, *,
               seed: int = 1337, hf_config: str = "", test_fraction: float = 0.1, **field_names: str) -> list[dict]:
    """Records of one split; each needs every field of `required` (a tuple: any one of those names).

    A dataset without the split's rows gives an empty list; a record that lacks a field raises a
    UserError saying which field the method needs, where, and which fields the rows do have."""
    from core.data import load_records

    records = load_records(spec, split, seed=seed, hf_config=hf_config, val_fraction=test_fraction,
                           test_fraction=test_fraction, **field_names)  # type: ignore[arg-type]  # str fields only
    for i, rec in enumerate(records):
        for need in required:
            names = (need,) if isinstance(need, str) else need
            if not any(n in rec and rec[n] is not None for n in names):
                have = ", ".join(map(str, rec)) or "(none)"
                want = " or ".join(repr(n) for n in names)
                raise UserError(f"{spec} ({split} split) record {i + 1}: no field {want}, which {method} needs; "
                                f"the records have: {have} (map the dataset's own names with finetune.text_field / "
                                f"finetune.label_field, or convert the file)")
    return records


class ExampleLoader:
    """Batches of encoded examples, reshuffled every epoch; `next_batch()` never runs dry.

    The order of epoch e is a permutation drawn from torch.Generator(seed + e), so it depends on
    the seed and the epoch alone; `state_dict()` (two ints) puts a resumed run at the same place.
    """

    def __init__(self, examples: Sequence[Any], batch_size: int, collate: Callable[[list[Any]], Any],
                 seed: int = 1337, shuffle: bool = True, drop_last: bool = True):
        if not examples:
            raise UserError("the finetuning set has no training examples")
        self.examples = list(examples)
        self.batch_size = min(batch_size, len(self.examples))
        self.collate = collate
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch, self.pos = 0, 0
        self._order = self._order_of(0)

    def _order_of(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.examples)))
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(len(self.examples), generator=g).tolist()

    @property
    def batches_per_epoch(self) -> int:
        n = len(self.examples)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def next_batch(self) -> Any:
        end = self.pos + self.batch_size
        if end > len(self.examples) and (self.drop_last or self.pos >= len(self.examples)):
            self.epoch, self.pos = self.epoch + 1, 0
            self._order = self._order_of(self.epoch)
            end = self.batch_size
        idx = self._order[self.pos:end]
        self.pos = end
        return self.collate([self.examples[i] for i in idx])

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._order_of(self.epoch)


def fixed_batches(examples: Sequence[Any], batch_size: int, collate: Callable[[list[Any]], Any]) -> Iterator[Any]:
    """Batches in order, the last one short: validation and test sets."""
    for i in range(0, len(examples), batch_size):
        yield collate(list(examples[i:i + batch_size]))


class Batches:
    """A method's training and validation examples and how they batch: what the stage asks of a task."""

    def __init__(self, train: Sequence[Any], val: Sequence[Any], collate: Callable[[list[Any]], Any], cfg: Any):
        self.train, self.val, self.collate, self.cfg = train, val, collate, cfg

    @property
    def n_train(self) -> int:
        return len(self.train)

    def train_loader(self) -> ExampleLoader:
        return ExampleLoader(self.train, self.cfg.micro_batch_size, self.collate, seed=self.cfg.seed)

    def val_batches(self) -> Callable[[], Iterator[Any]] | None:
        """Validation as a fresh iterable per call (the loop's contract); None without examples."""
        val = self.val[: self.cfg.eval_batches * self.cfg.micro_batch_size]
        if not val:
            return None
        return lambda: fixed_batches(val, self.cfg.micro_batch_size, self.collate)


def plan_finetune_steps(cfg: Any, examples_per_step: int, n_train: int) -> int:
    """Optimizer steps: the first reached of train.max_steps and train.epochs passes over the set."""
    limits = []
    if cfg.max_steps:
        limits.append(cfg.max_steps)
    if cfg.epochs:
        limits.append(math.ceil(cfg.epochs * n_train / examples_per_step))
    if not limits:
        raise UserError("train: finetuning stops after train.max_steps or train.epochs; set one of them "
                        "(train.max_tokens alone is not a finetuning rule)")
    return max(1, min(limits))
