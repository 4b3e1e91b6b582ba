"""Finetuning formats: prompt templates and the collate functions that batch and mask examples.

Used by finetuning (classification, instruction, preference), evaluation and chat. Instruction
and preference examples are rendered with the Alpaca template or the tokenizer's chat template
(`tokenizer.chat.render`), then masked so only response tokens count in the loss (-100 elsewhere,
the ignore index of `F.cross_entropy`). Labels are returned shifted, like pretraining batches:
`y[t]` is the token that follows `x[t]`, so `model(x, targets=y)` computes the finetuning loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer

IGNORE_INDEX = -100

ALPACA_HEADER = ("Below is an instruction that describes a task. "
                 "Write a response that appropriately completes the request.")


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The Alpaca prompt up to and including "### Response:\\n"; the response follows it directly."""
    text = f"{ALPACA_HEADER}\n\n### Instruction:\n{instruction}"
    if input:
        text += f"\n\n### Input:\n{input}"
    return text + "\n\n### Response:\n"


def user_message(instruction: str, input: str = "") -> str:
    """Instruction and input as one chat message."""
    return f"{instruction}\n\n{input}" if input else instruction


def _prompt_and_response(tokenizer: TextTokenizer, instruction: str, input: str, response: str,
                         template: str) -> tuple[list[int], list[bool]]:
    """Token ids of prompt + response (+ end token) and a mask that is True on the response tokens."""
    if template == "chat":
        messages = [{"role": "user", "content": user_message(instruction, input)},
                    {"role": "assistant", "content": response}]
        ids, mask = tokenizer.chat.render(messages)
        return list(ids), [bool(m) for m in mask]
    if template != "alpaca":
        raise ValueError(f"unknown template {template!r}; use alpaca or chat")
    prompt = tokenizer.encode(alpaca_prompt(instruction, input))
    answer = tokenizer.encode(response) + [tokenizer.eot_id]  # the model learns to stop
    return prompt + answer, [False] * len(prompt) + [True] * len(answer)


def encode_prompt(record: dict, tokenizer: TextTokenizer, template: str = "alpaca") -> list[int]:
    """Token ids that ask for the response to an {"instruction", "input"} record (for generation)."""
    instruction, input = record["instruction"], record.get("input", "") or ""
    if template == "chat":
        ids, _ = tokenizer.chat.render([{"role": "user", "content": user_message(instruction, input)}],
                                       add_generation_prompt=True)
        return list(ids)
    return tokenizer.encode(alpaca_prompt(instruction, input))


def encode_instruction(record: dict, tokenizer: TextTokenizer, template: str = "alpaca", max_len: int = 0) -> dict:
    """{"ids", "mask", "truncated"} for an {"instruction", "input", "output"} record.

    max_len bounds the model input (x); ids keep one more token because y is x shifted by one."""
    ids, mask = _prompt_and_response(tokenizer, record["instruction"], record.get("input", "") or "",
                                     record["output"], template)
    truncated = bool(max_len) and len(ids) > max_len + 1
    if truncated:
        ids, mask = ids[: max_len + 1], mask[: max_len + 1]
    return {"ids": ids, "mask": mask, "truncated": truncated}


def encode_preference(record: dict, tokenizer: TextTokenizer, template: str = "alpaca", max_len: int = 0) -> dict:
    """{"chosen": {ids, mask, truncated}, "rejected": {...}} for a {"prompt"|"instruction"/"input", "chosen",
    "rejected"} record; the prompt part is masked in both."""
    instruction = record.get("instruction") or record["prompt"]
    input = record.get("input", "") if record.get("instruction") else ""
    out = {}
    for side in ("chosen", "rejected"):
        rec = {"instruction": instruction, "input": input, "output": record[side]}
        out[side] = encode_instruction(rec, tokenizer, template, max_len)
    return out


def encode_classify(record: dict, tokenizer: TextTokenizer, max_len: int = 0) -> dict:
    """{"ids", "label", "truncated"}; a text longer than max_len keeps its first max_len tokens."""
    ids = tokenizer.encode(record["text"])
    truncated = bool(max_len) and len(ids) > max_len
    if truncated:
        ids = ids[:max_len]
    return {"ids": ids or [tokenizer.eot_id], "label": int(record["label"]), "truncated": truncated}


# -------------------------------------------------------------------------------------- collate


def collate_instruction(batch: list[dict], pad_id: int) -> tuple[Any, Any]:
    """(x, y) torch.long (B, T): x padded with pad_id; y = next token on response positions, -100 elsewhere."""
    import torch

    T = max(len(ex["ids"]) for ex in batch) - 1
    x = torch.full((len(batch), T), pad_id, dtype=torch.long)
    y = torch.full((len(batch), T), IGNORE_INDEX, dtype=torch.long)
    for i, ex in enumerate(batch):
        ids = torch.tensor(ex["ids"], dtype=torch.long)
        mask = torch.tensor(ex["mask"], dtype=torch.bool)
        n = len(ids) - 1
        x[i, :n] = ids[:-1]
        y[i, :n] = torch.where(mask[1:], ids[1:], torch.tensor(IGNORE_INDEX))
    return x, y


def collate_preference(batch: list[dict], pad_id: int) -> dict[str, Any]:
    """{"chosen_x", "chosen_y", "rejected_x", "rejected_y"}: each side collated like instruction data
    (to one common length, so the two sides can run as one batch of 2B)."""
    sides = [ex["chosen"] for ex in batch] + [ex["rejected"] for ex in batch]
    x, y = collate_instruction(sides, pad_id)
    B = len(batch)
    return {"chosen_x": x[:B], "chosen_y": y[:B], "rejected_x": x[B:], "rejected_y": y[B:]}


def collate_classify(batch: list[dict], pad_id: int) -> tuple[Any, Any, Any]:
    """(x (B, T) right-padded, last (B,) index of each row's last real token, labels (B,))."""
    import torch

    T = max(len(ex["ids"]) for ex in batch)
    x = torch.full((len(batch), T), pad_id, dtype=torch.long)
    for i, ex in enumerate(batch):
        x[i, : len(ex["ids"])] = torch.tensor(ex["ids"], dtype=torch.long)
    last = torch.tensor([len(ex["ids"]) - 1 for ex in batch], dtype=torch.long)
    labels = torch.tensor([ex["label"] for ex in batch], dtype=torch.long)
    return x, last, labels
