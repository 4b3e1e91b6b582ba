"""What the eval stage and `llmlab compare` share: a model loaded for evaluation with its own tokenizer,
and a classifier's predictions on a split of its finetuning data (per example, so they pair).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import torch

from core.errors import UserError

if TYPE_CHECKING:
    from core.model.gpt import GPT


def load_for_eval(spec: str, device: torch.device) -> tuple[GPT, Any, dict]:
    """(model, tokenizer, meta) of a model name; a checkpoint without a tokenizer is refused clearly."""
    from core.checkpoint import load_model
    from core.lookup import resolve_checkpoint

    ckpt = resolve_checkpoint(spec)
    model, tokenizer, meta = load_model(ckpt, device=device)
    if tokenizer is None:
        raise UserError(f"{ckpt}: the checkpoint has no tokenizer (model.json names none or its tokenizer/ folder is "
                        f"missing), so its text cannot be encoded for evaluation; save checkpoints with their "
                        f"tokenizer (core.checkpoint.save_checkpoint(..., tokenizer=...)), as pretraining and "
                        f"finetuning do")
    return model, tokenizer, meta


def classify_fields(ft: Any) -> dict:
    return {"text_field": ft.text_field if ft.text_field != "text" else "",
            "label_field": ft.label_field if ft.label_field != "label" else ""}


def classify_predictions(model: GPT, tokenizer: Any, preset: Any, stop: threading.Event | None = None,
                         progress: Any = None, split: str = "test") -> tuple[list[dict], list[int], list[int]]:
    """(records of `split`, true labels, predicted labels) of a classifier on the preset's finetune.data."""
    from core.data.formats import collate_classify, encode_classify
    from core.train.classify import class_logits
    from core.train.examples import read_split

    ft = preset.finetune
    records = read_split(ft.data, split, ("text", "label"), "classification", seed=preset.train.seed,
                         hf_config=ft.hf_config, test_fraction=ft.test_fraction, **classify_fields(ft))
    if preset.eval.limit:
        records = records[:preset.eval.limit]
    if not records:
        raise UserError(f"{ft.data}: the {split} split is empty; nothing to classify")
    T, B = model.config.context_length, preset.train.micro_batch_size
    device = next(model.parameters()).device
    y_true: list[int] = []
    y_pred: list[int] = []
    with torch.inference_mode():
        for i in range(0, len(records), B):
            if stop is not None and stop.is_set():
                break
            batch = [encode_classify({"text": str(r["text"]), "label": int(r["label"])}, tokenizer, T)
                     for r in records[i:i + B]]
            x, last, labels = collate_classify(batch, tokenizer.eot_id)
            logits = class_logits(model, x.to(device), last.to(device))
            y_true += labels.tolist()
            y_pred += logits.argmax(-1).tolist()
            if progress is not None:
                progress(len(y_true), len(records))
    return records[:len(y_true)], y_true, y_pred


def classify_outcomes(model: GPT, tokenizer: Any, preset: Any, stop: threading.Event | None = None) -> list[float]:
    """1.0 / 0.0 per test example: whether the classifier got it right (for paired comparisons)."""
    _, y_true, y_pred = classify_predictions(model, tokenizer, preset, stop)
    return [float(t == p) for t, p in zip(y_true, y_pred)]
