"""Classification finetuning: a head of `num_classes` outputs read at the last real token.

The language-model head is replaced by a linear classifier (`GPT.set_head`); with right padding
and causal attention the hidden state at a row's last real token has seen the whole text and no
padding, so that position's logits are the prediction. Metrics at every validation: loss,
accuracy, per-class precision, recall and F1, and the confusion matrix; the test split is scored
once at the end for the report.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

from core.errors import UserError
from core.train.examples import Batches, fixed_batches, read_split
from core.runs import Logger

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer


def class_logits(model: torch.nn.Module, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Logits (B, num_classes) at each row's last real token; x (B, T) right-padded, last (B,)."""
    logits, _ = model(x)  # (B, T, num_classes): the head is tiny, so every position costs little
    return logits[torch.arange(x.size(0), device=x.device), last]  # (B, num_classes)


def classification_metrics(y_true: list[int], y_pred: list[int], num_classes: int,
                           class_names: list[str] | None = None) -> dict:
    """accuracy, per-class precision/recall/F1 lists, macro F1, confusion matrix [true][pred]."""
    from core.eval.metrics import classification_report

    r = classification_report(y_true, y_pred, num_classes, class_names)
    return {
        "accuracy": r["accuracy"],
        "precision": [c["precision"] for c in r["per_class"]],
        "recall": [c["recall"] for c in r["per_class"]],
        "f1": [c["f1"] for c in r["per_class"]],
        "macro_f1": r["macro"]["f1"],
        "confusion_matrix": r["confusion_matrix"],
        "class_names": [c["name"] for c in r["per_class"]],  # the live matrix is labelled before any checkpoint
    }


class ClassifyObjective:
    """Cross-entropy at the last real token; `evaluate` adds the classification metrics."""

    def __init__(self, num_classes: int, class_names: list[str] | None = None):
        self.num_classes = num_classes
        self.class_names = class_names

    def __call__(self, model: torch.nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        x, last, labels = batch
        logits = class_logits(model, x, last)
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(-1) == labels).float().mean()
        return loss, {"accuracy": accuracy, "tokens": int(last.sum().item()) + x.size(0)}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, batches: Any) -> dict:
        loss_sum, n = 0.0, 0
        y_true: list[int] = []
        y_pred: list[int] = []
        for x, last, labels in batches:
            logits = class_logits(model, x, last).float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            n += labels.numel()
            y_true += labels.tolist()
            y_pred += logits.argmax(-1).tolist()
        if not n:
            return {}
        return {"val_loss": loss_sum / n, **classification_metrics(y_true, y_pred, self.num_classes, self.class_names)}


# ---------------------------------------------------------------------------------------- data

@dataclass
class ClassifyData:
    train: list[dict]
    val: list[dict]
    test: list[dict]
    class_names: list[str]
    truncated: int = 0
    counts: dict = field(default_factory=dict)


def balance(examples: list[dict], seed: int) -> list[dict]:
    """Undersample every class to the size of the smallest one (seeded)."""
    by_class: dict[int, list[dict]] = {}
    for ex in examples:
        by_class.setdefault(ex["label"], []).append(ex)
    n = min(len(v) for v in by_class.values())
    rng = random.Random(seed)
    out = [ex for c in sorted(by_class) for ex in rng.sample(by_class[c], n)]
    rng.shuffle(out)
    return out


def prepare_data(ft: Any, tokenizer: TextTokenizer, max_len: int, seed: int, log: Logger) -> ClassifyData:
    """Read and encode train/val/test; check labels against num_classes; truncate or refuse long texts."""
    from core.train.encode import encode_classify_record

    fields = {"text_field": ft.text_field if ft.text_field != "text" else "",
              "label_field": ft.label_field if ft.label_field != "label" else ""}
    splits = {s: read_split(ft.data, s, ("text", "label"), "classification", seed=seed, hf_config=ft.hf_config,
                            test_fraction=ft.test_fraction, **fields) for s in ("train", "val", "test")}
    names: dict[int, str] = {}
    encoded: dict[str, list[dict]] = {}
    truncated = 0
    for split, records in splits.items():
        out = []
        for i, rec in enumerate(records):
            label = rec["label"]
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < ft.num_classes:
                raise UserError(f"{ft.data} ({split} split) record {i + 1}: label {label!r} is outside "
                                f"0..{ft.num_classes - 1}; set finetune.num_classes to the number of classes")
            if "label_name" in rec:
                names[label] = str(rec["label_name"])
            ex = encode_classify_record(rec, tokenizer, max_len)
            truncated += ex["truncated"]
            if ex["truncated"] and ft.truncate == "refuse":
                n_tok = len(tokenizer.encode(str(rec["text"])))
                raise UserError(f"{ft.data} ({split} split) record {i + 1}: {n_tok} tokens, longer than the "
                                f"context ({max_len}); set finetune.truncate = \"truncate\" to cut long texts")
            out.append(ex)
        encoded[split] = out
    if not encoded["train"]:
        raise UserError(f"{ft.data}: the train split is empty")
    if ft.balance_classes:
        encoded["train"] = balance(encoded["train"], seed)
    counts = {s: dict(sorted(Counter(ex["label"] for ex in v).items())) for s, v in encoded.items()}
    class_names = [names.get(c, str(c)) for c in range(ft.num_classes)]
    if truncated:
        log.log({"kind": "log", "level": "warning",
                 "message": f"{truncated} texts were longer than the context ({max_len} tokens) and were cut"})
    return ClassifyData(encoded["train"], encoded["val"], encoded["test"], class_names, truncated, counts)


class ClassifyTask:
    """What the finetuning stage needs for classification: the head, the objective, the batches."""

    method = "classify"

    def __init__(self, preset: Any, tokenizer: TextTokenizer, log: Logger, max_len: int):
        from core.data.formats import collate_classify

        self.ft, self.train_cfg = preset.finetune, preset.train
        self.tokenizer = tokenizer
        self.data = prepare_data(self.ft, tokenizer, max_len, preset.train.seed, log)
        self.objective = ClassifyObjective(self.ft.num_classes, self.data.class_names)
        pad = tokenizer.eot_id
        self.collate = lambda batch: collate_classify(batch, pad)
        self.batches = Batches(self.data.train, self.data.val or self.data.test, self.collate, preset.train)
        log.log({"kind": "log", "level": "info",
                 "message": f"classification: {len(self.data.train)} train / {len(self.data.val)} val / "
                            f"{len(self.data.test)} test texts; classes {self.data.class_names}; "
                            f"train counts {self.data.counts['train']}"})

    def adapt_model(self, model: Any) -> None:
        """Replace the language-model head by the classifier (before trainable parts are chosen)."""
        if getattr(model, "head_kind", "lm") == "classify" and model.lm_head.out_features == self.ft.num_classes:
            return  # a classifier already (finetuning a finetuned classifier)
        model.set_head(self.ft.num_classes, bias=True, kind="classify")

    def checkpoint_extra(self) -> dict:
        return {"finetune": {"method": "classify", "num_classes": self.ft.num_classes,
                             "class_names": self.data.class_names}}

    sample = None

    @torch.no_grad()
    def final_report(self, model: torch.nn.Module, device: torch.device) -> dict:
        """Test-split metrics (val when the set has no test rows)."""
        from core.train.device import to_device

        split, examples = ("test", self.data.test) if self.data.test else ("val", self.data.val)
        was = model.training
        model.eval()
        batches = (to_device(b, device) for b in fixed_batches(examples, self.train_cfg.micro_batch_size, self.collate))
        metrics = self.objective.evaluate(model, batches)
        model.train(was)
        return {"split": split, "n": len(examples), "class_names": self.data.class_names,
                "truncated": self.data.truncated, "class_counts": self.data.counts, **metrics}
