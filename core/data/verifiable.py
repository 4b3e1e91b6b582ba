"""The verifiable set: questions about tiny stories whose answer a program checks, and the checker.

Seeded, procedural and offline like the rest of the embedded world (names, places and toys come
from core.data.synthetic, read-only): counts, sums of things in a story, what is left after a
gift, how many things a list holds, and who has a thing at the end after it changed hands.
Each record is an instruction example ({"instruction", "input", "output"}) and a verifiable one
({"answer"}), split 80/10/10 by a hash of its text. `extract_answer` takes the final answer out of
a completion (after GSM8K's "####" when present) and `is_correct` compares it with the gold one
(numbers numerically, words case-blind). Reinforcement learning (core.train.rl), its rewards
(core.train.rewards) and the eval task `verify` use these.
"""

from __future__ import annotations

import functools
import random
import re

from core.data.synthetic import CHILDREN, PLACES, SPLITS, TOYS, a, cap, join_list, split_of

SET_SIZE = 3000
SFT_SHARE = 1200  # training-split questions added to the instruction set, so tiny-sft can sometimes solve them
KINDS = ("found", "left", "together", "listed", "holder")
ANSWER_MARK = "####"  # GSM8K's final-answer marker
NUMBER_WORDS = {w: i for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"))}
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


# ------------------------------------------------------------------------------------ the set

def count_of(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")


def verifiable_example(r: random.Random, i: int) -> dict:
    """One question of kind KINDS[i % 5] about a two- or three-sentence story; the answer is short."""
    kind = KINDS[i % len(KINDS)]
    h, f, g = r.sample(CHILDREN, 3)
    p = r.choice(PLACES)
    toy = r.choice(TOYS)
    if kind == "found":
        n, m = r.randint(1, 4), r.randint(1, 4)
        story = f"{h.name} had {count_of(n, toy)}. At the {p.name}, {h.he} found {m} more."
        question, answer = f"How many {toy}s did {h.name} have then?", str(n + m)
    elif kind == "left":
        n = r.randint(2, 6)
        m = r.randint(1, n - 1)
        story = f"{h.name} had {count_of(n, toy)}. {cap(h.he)} gave {m} of them to {f.name}."
        question, answer = f"How many {toy}s did {h.name} have left?", str(n - m)
    elif kind == "together":
        n, m = r.randint(1, 4), r.randint(1, 4)
        story = f"{h.name} had {count_of(n, toy)} and {f.name} had {count_of(m, toy)}."
        question, answer = f"How many {toy}s did they have together?", str(n + m)
    elif kind == "listed":
        things = r.sample(TOYS, r.randint(2, 4))
        story = f"{h.name} took {join_list([a(t) for t in things])} to the {p.name}."
        question, answer = f"How many things did {h.name} take?", str(len(things))
    else:  # holder: the thing changes hands one to three times
        hands = [h, f, g][: r.randint(2, 3)]
        sents = [f"{h.name} had the {toy}."] + [f"{x.name} gave the {toy} to {y.name}." for x, y in zip(hands, hands[1:])]
        if r.random() < 0.5:  # sometimes it comes back
            sents.append(f"{hands[-1].name} gave the {toy} to {h.name}.")
            hands.append(h)
        story = " ".join(sents)
        question, answer = f"Who had the {toy} at the end?", hands[-1].name
    return {"instruction": question, "input": story, "output": answer, "answer": answer, "kind": kind}


@functools.lru_cache(maxsize=4)
def _splits(seed: int) -> dict[str, tuple[dict, ...]]:
    rng = random.Random(f"tinyworld-verify-{seed}")
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    for i in range(SET_SIZE):
        ex = verifiable_example(rng, i)
        key = ex["instruction"] + "\n" + ex["input"]
        if key in seen:  # the same question must not straddle splits
            continue
        seen.add(key)
        out[split_of(key)].append(ex)
    return {s: tuple(v) for s, v in out.items()}


def verifiable_set(split: str = "train", seed: int = 1337) -> list[dict]:
    """The verifiable set, one split (train, val, test or all), as fresh dicts."""
    if split == "all":
        return [dict(x) for s in SPLITS for x in _splits(seed)[s]]
    return [dict(x) for x in _splits(seed)[split]]


def sft_share(split: str, seed: int = 1337) -> list[dict]:
    """Verifiable questions the embedded instruction set includes (train: the first SFT_SHARE; the
    held-out splits: none, so the RL held-out questions were never seen in SFT either)."""
    return verifiable_set("train", seed)[:SFT_SHARE] if split in ("train", "all") else []


# -------------------------------------------------------------------------------- the checker

def question_of(record: dict, prompt_field: str = "") -> tuple[str, str]:
    """(instruction, input) of a verifiable record: its instruction and input, else its question or prompt."""
    if prompt_field and prompt_field in record:
        return str(record[prompt_field]), ""
    if "instruction" in record:
        return str(record["instruction"]), str(record.get("input", "") or "")
    for key in ("question", "prompt"):
        if key in record:
            return str(record[key]), ""
    raise KeyError("instruction")


def extract_answer(text: str) -> str:
    """The final answer of a completion: what follows the last "####", else its last line; trimmed
    of spaces, a final period and the template's leftovers."""
    text = str(text)
    if ANSWER_MARK in text:
        text = text.rsplit(ANSWER_MARK, 1)[1]
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip().rstrip(".").strip() if lines else ""


def parse_number(text: str) -> float | None:
    """The last number in `text` (digits with thousands commas, or a number word up to twelve), or None."""
    found = _NUMBER.findall(text)
    if found:
        try:
            return float(found[-1].replace(",", ""))
        except ValueError:
            return None
    words = [NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in NUMBER_WORDS]
    return float(words[-1]) if words else None


def normalize(answer: str) -> str:
    return " ".join(str(answer).lower().replace(ANSWER_MARK, " ").split()).strip(" .")


def is_correct(completion: str, gold: str) -> bool:
    """Whether the completion's final answer is the gold answer (a gold answer with "####" is
    reduced to what follows it): numerically for numbers, else as case-blind words."""
    got, want = extract_answer(completion), extract_answer(gold)
    want_n = parse_number(want) if _NUMBER.fullmatch(want.replace(" ", "")) or normalize(want) in NUMBER_WORDS else None
    if want_n is not None:
        got_n = parse_number(got) if _NUMBER.fullmatch(got.replace(" ", "")) or normalize(got) in NUMBER_WORDS else None
        return got_n is not None and abs(got_n - want_n) < 1e-9
    return normalize(got) == normalize(want)


def well_formed(completion: str) -> bool:
    """The format a verifiable answer takes: reasoning then "#### ANSWER" (GSM8K), or the short answer
    alone (a number or at most three words on one line, as the embedded set's answers are)."""
    got = extract_answer(completion)
    if ANSWER_MARK in completion:
        return bool(got) and len(got.split()) <= 3
    return bool(got) and len(got.split()) <= 3 and "\n" not in completion.strip()
