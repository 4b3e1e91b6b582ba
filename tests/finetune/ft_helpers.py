"""Helpers shared by the finetuning tests: an event recorder that can stop a run, a preset builder."""

from __future__ import annotations

import json
import threading


class Recorder:
    """An event logger that keeps events and can ask the stage to stop after a given step."""

    def __init__(self, stop: threading.Event | None = None, stop_after: int = 0):
        self.events: list[dict] = []
        self.stop, self.stop_after = stop, stop_after

    def log(self, event: dict) -> None:
        self.events.append(json.loads(json.dumps(event, default=str)))  # what an events.jsonl would hold
        if self.stop is not None and event.get("kind") == "train" and event.get("step") == self.stop_after:
            self.stop.set()

    def close(self) -> None:
        pass

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["kind"] == kind]


def make_preset(method: str, base, data, **over):
    from core import config

    doc = {
        "name": f"test-{method}",
        "model": {"dropout": 0.0},
        "train": {"device": "cpu", "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2, "micro_batch_size": 4,
                  "max_steps": 6, "log_every": 1, "eval_every": 3, "eval_batches": 2, "checkpoint_every": 3,
                  "sample_every": 0, "seed": 7},
        "finetune": {"method": method, "base": str(base), "data": str(data), "trainable": "all"},
    }
    for key, value in over.items():
        section, _, name = key.partition("__")
        if "__" in name:
            sub, _, leaf = name.partition("__")
            doc[section].setdefault(sub, {})[leaf] = value
        else:
            doc.setdefault(section, {})[name] = value
    return config.from_dict(doc, "<test>")
