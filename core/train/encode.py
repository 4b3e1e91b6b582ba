"""One finetuning record -> token ids and a loss mask, per method (torch-free; training and the wizard).

What training encodes and what the finetuning wizard previews go through these same functions, so
the preview shows the mask that training applies. The templates themselves are core.data.formats'
and the tokenizer's chat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.config import Preset
from core.data.formats import encode_classify, encode_instruction, encode_preference

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer


@dataclass
class ExamplePart:
    """One sequence of an example as the model trains on it (a preference pair has two)."""

    title: str
    ids: list[int]
    mask: list[int]     # 1 where the token carries loss; for classification, the token the head reads
    truncated: bool


def encode_record(rec: dict, tokenizer: TextTokenizer, template: str, max_len: int) -> dict:
    """{"ids", "mask", "truncated"} of an Alpaca record or a {"messages": [...]} conversation."""
    if "messages" in rec and rec["messages"]:
        ids, mask = tokenizer.chat.render(rec["messages"])
        ids, mask = list(ids), [bool(m) for m in mask]
        truncated = len(ids) > max_len + 1
        return {"ids": ids[: max_len + 1], "mask": mask[: max_len + 1], "truncated": truncated}
    return encode_instruction(rec, tokenizer, template, max_len)


def encode_classify_record(rec: dict, tokenizer: TextTokenizer, max_len: int) -> dict:
    """{"ids", "label", "truncated"} of a {"text", "label"} record (its first max_len tokens)."""
    return encode_classify({"text": str(rec["text"]), "label": int(rec["label"])}, tokenizer, max_len)


def preview_example(record: dict, preset: Preset, tokenizer: TextTokenizer, max_len: int) -> list[ExamplePart]:
    """`record` encoded as preset.finetune.method trains on it, each part with its loss mask."""
    ft = preset.finetune
    if ft.method == "classify":
        ex = encode_classify_record(record, tokenizer, max_len)
        ids = list(ex["ids"])
        label = record.get("label_name", record["label"])
        cut = " (cut to the context)" if ex["truncated"] else ""
        # the head reads the last token: that position alone is scored against the label
        return [ExamplePart(f"label {label}{cut}", ids, [0] * (len(ids) - 1) + [1], bool(ex["truncated"]))]
    if ft.method == "instruct":
        ex = encode_record(record, tokenizer, ft.template, max_len)
        title = "conversation" if record.get("messages") else "example"
        return [ExamplePart(title + (" (cut)" if ex["truncated"] else ""), list(ex["ids"]),
                            [int(m) for m in ex["mask"]], bool(ex["truncated"]))]
    if ft.method == "rl":  # the question as RL asks it; the gold answer shown where the model samples its own
        from core.data.verifiable import question_of

        instruction, inp = question_of(record, ft.prompt_field)
        ex = encode_record({"instruction": instruction, "input": inp, "output": str(record.get(ft.rl.answer_field, ""))},
                           tokenizer, "chat", max_len)
        return [ExamplePart("question, gold answer (RL samples its own)", list(ex["ids"]),
                            [int(m) for m in ex["mask"]], bool(ex["truncated"]))]
    ex = encode_preference(record, tokenizer, ft.template, max_len)
    return [ExamplePart(side, list(ex[side]["ids"]), [int(m) for m in ex[side]["mask"]], bool(ex[side]["truncated"]))
            for side in ("chosen", "rejected")]
