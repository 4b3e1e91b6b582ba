"""Instruction finetuning: next-token loss on the response tokens only.

Examples are {"instruction", "input", "output"} records (Alpaca form) rendered with the Alpaca
prompt or the tokenizer's chat template, or {"messages": [...]} conversations (always the chat
template, every assistant turn trained). Prompt and padding positions get -100, so only the
response and its end token count; `packing` concatenates examples into full-context rows. The
prompt format is saved in the checkpoint's model.json (`finetune.prompt_format`), and chat and
evaluation prompt the model the same way through `prompt_ids` / `answer`.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import torch

from core.errors import UserError
from core.train.encode import encode_record  # noqa: F401 (the instruct encoding; re-exported)
from core.train.examples import Batches, read_split

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer
    from core.model.gpt import GPT
from core.runs import Logger

EXACT_MATCH_LIMIT = 200  # held-out instructions scored by exact match before and after training, at most
SAMPLE_SEED = 4321


# ------------------------------------------------------------------------------ prompt formats

def prompt_format_of(meta: dict) -> str:
    """The prompt format a checkpoint was instruction-tuned with ("alpaca" or "chat"); "" if none."""
    return (meta.get("finetune") or {}).get("prompt_format", "")


def prompt_ids(tokenizer: TextTokenizer, prompt_format: str, instruction: str, input: str = "") -> list[int]:
    """Token ids that prompt a model for its answer, exactly as it saw prompts in training."""
    from core.data.formats import alpaca_prompt, user_message

    if prompt_format == "chat":
        ids, _ = tokenizer.chat.render([{"role": "user", "content": user_message(instruction, input)}],
                                       add_generation_prompt=True)
        return list(ids)
    return tokenizer.encode(alpaca_prompt(instruction, input))


def stop_ids(tokenizer: TextTokenizer, prompt_format: str) -> list[int]:
    """Ids that end an answer: the chat template's end of turn, or end-of-text after an Alpaca response."""
    return list(tokenizer.chat.stop_ids) if prompt_format == "chat" else [tokenizer.eot_id]


def answer(model: GPT, tokenizer: TextTokenizer, prompt_format: str, instruction: str, input: str = "", *,
           max_new_tokens: int = 64, temperature: float = 0.0, seed: int | None = None) -> str:
    """The model's answer to one instruction (greedy by default), without the stop token."""
    from core.generate import generate

    ids = prompt_ids(tokenizer, prompt_format, instruction, input)
    ctx = model.config.context_length
    ids = ids[-(ctx - 1):]
    out = list(generate(model, ids, max_new_tokens=max_new_tokens, temperature=temperature,
                        stop_ids=stop_ids(tokenizer, prompt_format), seed=seed))
    return tokenizer.decode(out)


def exact_answer(model: GPT, tokenizer: TextTokenizer, prompt_format: str, record: dict) -> tuple[bool, str]:
    """Whether the greedy answer to one instruction equals its reference output (whitespace-stripped), and the answer."""
    budget = len(tokenizer.encode(str(record["output"]))) + 8  # room to see the stop after a right answer
    got = answer(model, tokenizer, prompt_format, record["instruction"], record.get("input", "") or "",
                 max_new_tokens=budget).strip()
    return got == str(record["output"]).strip(), got


def exact_match(model: GPT, tokenizer: TextTokenizer, prompt_format: str, records: list[dict],
                limit: int = EXACT_MATCH_LIMIT) -> dict:
    """Share of instructions whose greedy answer equals the reference output (whitespace-stripped)."""
    rows = [r for r in records if "instruction" in r and "output" in r][:limit]
    hits = 0
    examples: list[dict] = []
    for r in rows:
        ok, got = exact_answer(model, tokenizer, prompt_format, r)
        hits += ok
        if len(examples) < 5:
            examples.append({"instruction": r["instruction"], "input": r.get("input", ""), "expected": r["output"],
                             "answer": got, "correct": ok})
    return {"exact_match": hits / len(rows) if rows else float("nan"), "n": len(rows), "examples": examples}


# --------------------------------------------------------------------------------------- data

def pack(examples: list[dict], max_len: int, seed: int) -> list[dict]:
    """Concatenate shuffled examples into rows of at most max_len + 1 ids (x and y are one shorter).

    Attention is not blocked across example borders (as in most packing implementations): each
    example is short, ends with its stop token, and the loss still covers response tokens only."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    rows: list[dict] = []
    ids: list[int] = []
    mask: list[bool] = []
    for i in order:
        ex = examples[i]
        if ids and len(ids) + len(ex["ids"]) > max_len + 1:
            rows.append({"ids": ids, "mask": mask})
            ids, mask = [], []
        ids, mask = ids + ex["ids"], mask + ex["mask"]
    if ids:
        rows.append({"ids": ids, "mask": mask})
    return rows


def prepare_split(ft: Any, split: str, tokenizer: TextTokenizer, max_len: int, seed: int) -> tuple[list[dict], list[dict], int, int]:
    """(records, encoded examples, truncated count, dropped count) of one split."""
    records = read_split(ft.data, split, (("instruction", "messages"),), "instruction finetuning", seed=seed,
                         hf_config=ft.hf_config, test_fraction=ft.test_fraction, instruction_field=ft.prompt_field)
    out, truncated, dropped = [], 0, 0
    for i, rec in enumerate(records):
        if "messages" not in rec and "output" not in rec:
            raise UserError(f"{ft.data} ({split} split) record {i + 1}: no field 'output', which instruction "
                            f"finetuning needs with 'instruction'; the records have: {', '.join(rec)}")
        ex = encode_record(rec, tokenizer, ft.template, max_len)
        if ex["truncated"]:
            if ft.truncate == "refuse":
                raise UserError(f"{ft.data} ({split} split) record {i + 1}: longer than the context ({max_len} "
                                f"tokens); set finetune.truncate = \"truncate\" to cut long examples")
            truncated += 1
        if not any(ex["mask"][1:]):  # the cut removed every response token: nothing to learn
            dropped += 1
            continue
        out.append(ex)
    return records, out, truncated, dropped


class InstructObjective:
    """Cross-entropy on response tokens; validation averages over tokens, not batches."""

    def __call__(self, model: torch.nn.Module, batch: tuple) -> tuple[torch.Tensor, dict]:
        x, y = batch
        _, loss = model(x, y)
        return loss, {}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, batches: Any) -> dict:
        import math

        total, n = 0.0, 0
        for x, y in batches:
            k = int((y != -100).sum().item())
            if k:
                total += model(x, y)[1].item() * k
                n += k
        if not n:
            return {}
        loss = total / n
        return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}


class InstructTask:
    """What the finetuning stage needs for instruction tuning."""

    method = "instruct"

    def __init__(self, preset: Any, tokenizer: TextTokenizer, log: Logger, max_len: int):
        from core.data.formats import collate_instruction

        self.ft, self.train_cfg, self.tokenizer, self.log = preset.finetune, preset.train, tokenizer, log
        seed = preset.train.seed
        self.max_len = max_len
        _, train, tr_cut, tr_drop = prepare_split(self.ft, "train", tokenizer, max_len, seed)
        _, self.val, va_cut, va_drop = prepare_split(self.ft, "val", tokenizer, max_len, seed)
        self.test_records, _, _, _ = prepare_split(self.ft, "test", tokenizer, max_len, seed)
        if not train:
            raise UserError(f"{self.ft.data}: no training examples with a response inside the context")
        self.truncated, self.dropped = tr_cut + va_cut, tr_drop + va_drop
        self.n_examples = len(train)
        self.train = pack(train, max_len, seed) if self.ft.packing else train
        self.prompt_format = "chat" if self.ft.template == "chat" else "alpaca"
        pad = tokenizer.eot_id
        self.collate = lambda batch: collate_instruction(batch, pad)
        self.batches = Batches(self.train, self.val, self.collate, preset.train)
        self.objective = InstructObjective()
        n_resp = sum(sum(ex["mask"][1:]) for ex in train)
        msg = (f"instruction tuning ({self.prompt_format} prompts): {len(train)} train / {len(self.val)} val examples, "
               f"{n_resp:,} response tokens" + (f", packed into {len(self.train)} rows" if self.ft.packing else ""))
        if self.truncated or self.dropped:
            msg += f"; {self.truncated} examples cut to the context, {self.dropped} dropped (no response left)"
        log.log({"kind": "log", "level": "warning" if self.truncated else "info", "message": msg})

    def adapt_model(self, model: torch.nn.Module) -> None:
        if getattr(model, "head_kind", "lm") != "lm":
            raise UserError("finetune.base: instruction tuning needs a language model, the base has a "
                            f"{model.head_kind} head")

    def checkpoint_extra(self) -> dict:
        return {"finetune": {"method": "instruct", "prompt_format": self.prompt_format}}

    def sample(self, model: GPT, step: int) -> tuple[str, str] | None:
        if not self.test_records:
            return None
        r = self.test_records[step // max(1, self.train_cfg.sample_every) % len(self.test_records)]
        prompt = r.get("instruction", "")
        if r.get("input"):
            prompt += f" | {r['input']}"
        return prompt + " -> ", answer(model, self.tokenizer, self.prompt_format, r.get("instruction", ""),
                                       r.get("input", "") or "", max_new_tokens=self.train_cfg.sample_tokens)

    def exact_match_limit(self) -> int:
        """As many held-out instructions as one validation reads (at most EXACT_MATCH_LIMIT): each is a
        greedy generation, so a real model on a CPU would otherwise spend hours here before step 1."""
        return max(1, min(EXACT_MATCH_LIMIT, self.train_cfg.eval_batches * self.train_cfg.micro_batch_size))

    def baseline_report(self, model: GPT) -> dict:
        """Exact match of the starting model on the held-out instructions (what tuning improves on)."""
        return exact_match(model, self.tokenizer, self.prompt_format, self.test_records, self.exact_match_limit())

    def final_report(self, model: GPT, device: torch.device) -> dict:
        out = exact_match(model, self.tokenizer, self.prompt_format, self.test_records, self.exact_match_limit())
        return {"split": "test", "prompt_format": self.prompt_format, "train_examples": self.n_examples,
                "truncated": self.truncated, "dropped": self.dropped, **out}
