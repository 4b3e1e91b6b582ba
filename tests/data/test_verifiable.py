"""The verifiable set (core.data.verifiable): answers follow from the stories, splits are disjoint, the checker."""

from __future__ import annotations

import re

import pytest

from core.data import load_records
from core.data.verifiable import SFT_SHARE, extract_answer, is_correct, parse_number, verifiable_set, well_formed


def solve(rec: dict) -> str:
    """An independent solver of the five kinds, reading only the story and the question."""
    story, q = rec["input"], rec["instruction"]
    if q.startswith("Who had the"):
        return re.findall(r"gave the [a-z ]+ to (\w+)\.", story)[-1]
    if q.startswith("How many things"):
        return str(story.count(" a ") + story.startswith("A "))
    nums = [int(n) for n in re.findall(r"\d+", story)]
    return str(nums[0] - nums[1] if "gave" in story else sum(nums))


def test_every_answer_follows_from_its_story_and_the_kinds_are_balanced():
    rows = verifiable_set("all")
    assert len(rows) > 2500
    assert all(solve(r) == r["answer"] == r["output"] for r in rows)
    kinds = {r["kind"] for r in rows}
    assert kinds == {"found", "left", "together", "listed", "holder"}


def test_splits_are_disjoint_and_seeded():
    keys = {s: {r["instruction"] + r["input"] for r in verifiable_set(s)} for s in ("train", "val", "test")}
    assert not (keys["train"] & keys["test"]) and not (keys["train"] & keys["val"]) and not (keys["val"] & keys["test"])
    assert verifiable_set("test") == verifiable_set("test") and verifiable_set("test", seed=2) != verifiable_set("test")
    assert load_records("embedded:tinyworld-verify", "test", limit=3) == verifiable_set("test")[:3]


def test_the_instruction_set_holds_training_questions_only():
    test_q = {r["instruction"] + r["input"] for r in verifiable_set("test")}
    train = load_records("embedded:tinyworld-instruct", "train")
    assert sum("answer" in r for r in train) == SFT_SHARE
    assert not any(r["instruction"] + r["input"] in test_q for r in load_records("embedded:tinyworld-instruct", "all"))


@pytest.mark.parametrize("completion, gold, right", [
    ("5", "5", True), ("5.", "5", True), (" five", "5", True), ("Tom", "tom", True), ("Tom.", "Tom", True),
    ("55", "5", False), ("Tom and Mia", "Tom", False), ("", "5", False), ("5 or 6", "5", False),
    ("She had 3 + 4 = 7 dolls.\n#### 7", "Lily had 7.\n#### 7", True), ("#### 1,200", "#### 1200", True),
    ("the answer is\n7", "8", False),
])
def test_the_checker_compares_the_final_answer(completion, gold, right):
    assert is_correct(completion, gold) is right


def test_extraction_number_parsing_and_format():
    assert extract_answer("work\n#### 42\n") == "42" and extract_answer("a\n\nb.") == "b"
    assert parse_number("x = 3.5 apples") == 3.5 and parse_number("seven") == 7 and parse_number("none") is None
    assert well_formed("7") and well_formed("steps...\n#### 7") and not well_formed("7\n8") and not well_formed("")
