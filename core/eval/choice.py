"""Multiple choice, scored the way EleutherAI's lm-evaluation-harness scores it.

Each option is a continuation of the question: the model's log-likelihood of the continuation's
tokens given the context, summed. `acc` takes the option with the highest sum; `acc_norm` divides
each sum by the option's length in characters first (the harness's `completion_len`), so long
options are not punished for having more tokens. The context and continuation are tokenized as
the harness does (trailing spaces of the context move to the continuation; the continuation's ids
are the tail of the encoded whole), options are joined to the context by " ", k-shot examples by
"\n\n", drawn from the training split with a seeded `random.Random(1234)`. Chance (the mean of
1 / number of options) is reported beside every score.

Tasks: the embedded `tinyworld-choice` set, and MMLU-, HellaSwag- and ARC-shaped rows from the hub
or a local JSONL file; `normalise_row` recognises each shape and builds its harness prompt.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from core.errors import UserError
from core.model.gpt import GPT
from core.eval.metrics import mean_ci, proportion_ci

if TYPE_CHECKING:
    from core.tokenizer.protocol import TextTokenizer

TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
FEWSHOT_SEED = 1234  # the harness's default fewshot seed
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class ChoiceExample:
    """One question in harness terms: doc_to_text (`context`), doc_to_choice, the gold index."""
    context: str
    choices: list[str]
    answer: int
    where: str = ""
    description: str = ""  # put before the few-shot examples (MMLU's subject line)
    kind: str = ""  # a breakdown key (the embedded set's question kinds, MMLU's subject)

    @property
    def target(self) -> str:
        return self.choices[self.answer]


# ------------------------------------------------------------------------------------- reading

def _answer_index(value: Any, n: int, where: str, labels: Sequence[str] | None = None) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UserError(f"{where}: the answer is missing (a multiple-choice row needs the index of the right option)")
    if isinstance(value, bool):
        raise UserError(f"{where}: answer {value!r} is not an option index")
    if isinstance(value, str):
        v = value.strip()
        if labels is not None and v in labels:
            return list(labels).index(v)
        if v.lstrip("-").isdigit():
            value = int(v)
        elif len(v) == 1 and v.upper() in LETTERS:
            value = LETTERS.index(v.upper())
        else:
            raise UserError(f"{where}: answer {value!r} is not an option index, a letter or an option label")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise UserError(f"{where}: answer {value!r} is not an option index")
    if not 0 <= value < n:
        raise UserError(f"{where}: answer {value} is out of range for {n} options (valid: 0..{n - 1}); "
                        f"answers are 0-based indices into the choices")
    return value


def _choices_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise UserError(f"{where}: choices must be a list of at least two options, got {value!r}"[:300])
    return [str(c) for c in value]


def _hellaswag_preprocess(text: str) -> str:
    # the harness's hellaswag preprocessing: WikiHow "[title]" markers become sentence breaks
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def normalise_row(row: dict, where: str) -> ChoiceExample:
    """A row of any supported shape -> ChoiceExample with the harness prompt of that shape.

    - HellaSwag: ctx (or ctx_a, ctx_b), endings, label [, activity_label]
    - ARC: question, choices {text: [...], label: [...]}, answerKey
    - MMLU: question, choices [...], answer, subject -> lettered options, "Answer:", options A..D
    - generic / embedded: question, choices [...], answer (index, digit or letter): the options
      continue the question
    """
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected an object with question, choices and answer")
    if "endings" in row:
        choices = [_hellaswag_preprocess(e) for e in _choices_list(row["endings"], where)]
        ctx = row.get("ctx") or f"{row.get('ctx_a', '')} {str(row.get('ctx_b', '')).capitalize()}"
        label = row.get("activity_label")
        context = _hellaswag_preprocess(f"{label}: {ctx}" if label else str(ctx))
        return ChoiceExample(context, choices, _answer_index(row.get("label"), len(choices), where), where,
                             kind=str(label or ""))
    if "question" not in row:
        raise UserError(f"{where}: no 'question' field; the row has: {', '.join(map(str, row)) or '(none)'}")
    question = str(row["question"])
    raw = row.get("choices")
    if isinstance(raw, dict):  # ARC
        choices = _choices_list(raw.get("text"), where)
        labels = [str(x) for x in raw.get("label") or []]
        answer = _answer_index(row.get("answerKey", row.get("answer")), len(choices), where, labels or None)
        return ChoiceExample(f"Question: {question}\nAnswer:", choices, answer, where)
    if raw is None:
        raise UserError(f"{where}: no 'choices' field (a list of options)")
    choices = _choices_list(raw, where)
    if "answer" not in row and "label" not in row:
        raise UserError(f"{where}: the answer is missing (a multiple-choice row needs 'answer', "
                        f"the 0-based index of the right option)")
    answer = _answer_index(row.get("answer", row.get("label")), len(choices), where)
    if "subject" in row:  # MMLU
        lettered = "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(choices))
        subject = str(row["subject"]).replace("_", " ")
        return ChoiceExample(f"{question.strip()}{lettered}\nAnswer:", list(LETTERS[:len(choices)]), answer, where,
                             description=f"The following are multiple choice questions (with answers) about {subject}.\n\n",
                             kind=str(row["subject"]))
    return ChoiceExample(question, choices, answer, where, kind=str(row.get("kind", "")))


def _iter_jsonl_lines(path: Path) -> list[tuple[str, dict]]:
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            out.append((where, row))
    return out


def load_task(spec: str, split: str = "test", *, hf_config: str = "", limit: int = 0) -> list[ChoiceExample]:
    """The examples of a multiple-choice set: embedded:tinyworld-choice, hf:NAME, or a local file.

    Embedded and hub sets have splits (core.data.load_records); a local file is one set, read whole
    (JSONL here, so every error names the file and line). `limit` keeps the first N (the harness's
    --limit)."""
    rows: list[tuple[str, dict]]
    if spec.startswith(("embedded:", "hf:")):
        from core.data import load_records

        recs = load_records(spec, split, hf_config=hf_config)
        rows = [(f"{spec} ({split} split) row {i + 1}", r) for i, r in enumerate(recs)]
    elif Path(spec).expanduser().suffix.lower() != ".jsonl":
        from core.data.sources import iter_rows

        rows = list(iter_rows(spec))
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise UserError(f"{spec}: no such multiple-choice file")
        rows = _iter_jsonl_lines(path)
    if limit:
        rows = rows[:limit]
    examples = [normalise_row(r, where) for where, r in rows]
    if not examples:
        raise UserError(f"{spec}: the {split} split has no multiple-choice examples")
    return examples


# ---------------------------------------------------------------------------------- prompting

def fewshot_context(example: ChoiceExample, shots: Sequence[ChoiceExample]) -> str:
    """description + k solved examples + the question, joined as the harness joins them."""
    solved = "".join(s.context + TARGET_DELIMITER + s.target + FEWSHOT_DELIMITER for s in shots)
    return example.description + solved + example.context


class FewshotSampler:
    """The harness's default sampler: one seeded Random per task, k + 1 drawn when the pool holds
    the evaluated example itself (which is then dropped)."""

    def __init__(self, pool: Sequence[ChoiceExample], seed: int = FEWSHOT_SEED):
        self.pool = list(pool)
        self.rnd = random.Random(seed)

    def sample(self, k: int, example: ChoiceExample) -> list[ChoiceExample]:
        if k <= 0:
            return []
        if k > len(self.pool):
            raise UserError(f"num_fewshot = {k} but the few-shot pool has only {len(self.pool)} examples")
        same = [p for p in self.pool if p.context == example.context and p.choices == example.choices]
        draw = self.rnd.sample(self.pool, min(len(self.pool), k + 1 if same else k))
        return [d for d in draw if not (d.context == example.context and d.choices == example.choices)][:k]


def encode_pair(tokenizer: TextTokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as the harness's `_encode_pair`: trailing whitespace of the
    context moves to the continuation, and the continuation's ids are whatever follows the context's
    ids in the encoding of the whole (so a merge across the boundary is not split apart). An empty
    context becomes the end-of-text token, the harness's prefix token."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    if not context:
        return [tokenizer.eot_id], tokenizer.encode(continuation)
    whole = tokenizer.encode(context + continuation)
    ctx = tokenizer.encode(context)
    return ctx, whole[len(ctx):]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def loglikelihoods(model: GPT, requests: Sequence[tuple[list[int], list[int]]], *,
                   batch_size: int = 16, stop: threading.Event | None = None) -> list[float]:
    """Summed log-probability of each continuation given its context (harness `loglikelihood`).

    The input is (context + continuation)[-(T + 1):][:-1], truncated on the left to the model's
    context; the continuation's log-probabilities are read at its last len(continuation) positions.
    Requests are batched longest first with right padding, which does not change any result."""
    T = model.config.context_length
    device = _device(model)
    out: list[float] = [0.0] * len(requests)
    order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][0]) + len(requests[i][1])))
    was_training = model.training
    model.eval()
    try:
        for b in range(0, len(order), batch_size):
            if stop is not None and stop.is_set():
                raise InterruptedError("stopped")
            idxs = order[b:b + batch_size]
            inps, conts = [], []
            for i in idxs:
                ctx, cont = requests[i]
                if not cont:
                    raise ValueError("a continuation with no tokens")
                inps.append((list(ctx) + list(cont))[-(T + 1):][:-1])
                conts.append(list(cont)[-T:])  # a continuation longer than the context keeps its tail
            L = max(len(x) for x in inps)
            x = torch.zeros((len(inps), L), dtype=torch.long)
            for r, inp in enumerate(inps):
                x[r, :len(inp)] = torch.tensor(inp, dtype=torch.long)
            logits, _ = model(x.to(device))  # (B, L, V)
            logp = F.log_softmax(logits.float(), dim=-1)
            for r, i in enumerate(idxs):
                n, c = len(inps[r]), len(conts[r])
                target = torch.tensor(conts[r], dtype=torch.long, device=device)
                out[i] = float(logp[r, n - c:n].gather(-1, target[:, None]).sum())
    finally:
        model.train(was_training)
    return out


# ---------------------------------------------------------------------------------- evaluate

@dataclass
class ChoiceResult:
    """Per-example outcome; the summary is in `summarize`."""
    lls: list[float]
    pred: int
    pred_norm: int
    answer: int
    n_choices: int
    kind: str = ""
    context: str = ""
    choices: list[str] = field(default_factory=list)


def _argmax(xs: Sequence[float]) -> int:
    # first maximum, as np.argmax
    best = 0
    for i, v in enumerate(xs):
        if v > xs[best]:
            best = i
    return best


def score_example(lls: Sequence[float], example: ChoiceExample) -> ChoiceResult:
    completion_len = [float(len(c)) for c in example.choices]  # characters, as the harness
    return ChoiceResult(list(lls), _argmax(lls), _argmax([ll / n for ll, n in zip(lls, completion_len)]),
                        example.answer, len(example.choices), example.kind, example.context, list(example.choices))


def summarize(results: Sequence[ChoiceResult]) -> dict:
    """acc and acc_norm with their standard errors (the harness's mean_stderr), chance, per kind."""
    def block(rs: Sequence[ChoiceResult]) -> dict:
        acc = mean_ci([float(r.pred == r.answer) for r in rs])
        norm = mean_ci([float(r.pred_norm == r.answer) for r in rs])
        chance = sum(1.0 / r.n_choices for r in rs) / len(rs) if rs else float("nan")
        ci = proportion_ci(sum(r.pred == r.answer for r in rs), len(rs))
        return {"acc": acc["mean"], "acc_stderr": acc["stderr"], "acc_ci_low": ci["ci_low"], "acc_ci_high": ci["ci_high"],
                "acc_norm": norm["mean"],
                "acc_norm_stderr": norm["stderr"], "chance": chance, "n": len(rs)}

    out = block(results)
    kinds = sorted({r.kind for r in results if r.kind})
    if kinds:
        out["by_kind"] = {k: block([r for r in results if r.kind == k]) for k in kinds}
    return out


def evaluate(model: GPT, tokenizer: TextTokenizer, examples: Sequence[ChoiceExample], *,
             num_fewshot: int = 0, fewshot_pool: Sequence[ChoiceExample] | None = None, limit: int = 0,
             batch_size: int = 16, stop: threading.Event | None = None,
             progress: Callable[[int, int], None] | None = None, samples: int = 5,
             fewshot_seed: int = FEWSHOT_SEED) -> dict:
    """acc / acc_norm / chance (+ stderr, per kind) of the model on the examples, with settings.

    `fewshot_pool` defaults to the examples themselves (the evaluated one is never its own shot)."""
    examples = list(examples)
    sampler = FewshotSampler(fewshot_pool if fewshot_pool is not None else examples, fewshot_seed)
    if limit:
        examples = examples[:limit]
    results: list[ChoiceResult] = []
    chunk = max(1, batch_size // 2)  # questions per forward group (each has several options)
    for start in range(0, len(examples), chunk):
        if stop is not None and stop.is_set():
            break
        group = examples[start:start + chunk]
        requests: list[tuple[list[int], list[int]]] = []
        spans: list[tuple[int, int]] = []
        for ex in group:
            ctx = fewshot_context(ex, sampler.sample(num_fewshot, ex))
            spans.append((len(requests), len(ex.choices)))
            requests.extend(encode_pair(tokenizer, ctx, TARGET_DELIMITER + c) for c in ex.choices)
        try:
            lls = loglikelihoods(model, requests, batch_size=batch_size, stop=stop)
        except InterruptedError:
            break
        for ex, (s, n) in zip(group, spans):
            results.append(score_example(lls[s:s + n], ex))
        if progress is not None:
            progress(len(results), len(examples))
    out = summarize(results)
    out["settings"] = {"num_fewshot": num_fewshot, "limit": limit, "target_delimiter": TARGET_DELIMITER,
                       "fewshot_delimiter": FEWSHOT_DELIMITER, "fewshot_seed": fewshot_seed,
                       "normalisation": "characters"}
    out["complete"] = len(results) == len(examples)
    out["correct"] = [int(r.pred == r.answer) for r in results]  # per question, for paired comparisons
    out["samples"] = [{"context": r.context, "choices": r.choices, "answer": r.answer, "pred": r.pred,
                       "pred_norm": r.pred_norm, "lls": [round(x, 4) for x in r.lls]} for r in results[:samples]]
    return out
