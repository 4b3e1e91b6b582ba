"""The embedded world: deterministic for a seed, and every label or answer follows from its text."""

import itertools
import random
import re

from core.data import load_records
from core.data.synthetic import (CHILDREN, HAPPY, PLACE_BY_NAME, PLACES, SAD, SPLITS, StoryTeller, derived_set,
                                 iter_stories)

BY_NAME = {c.name: c for c in CHILDREN}


def stories(seed, n):
    return list(itertools.islice(iter_stories(seed, 10**9), n))


def test_stories_are_deterministic_and_seeded():
    assert stories(1, 50) == stories(1, 50)
    assert stories(1, 50) != stories(2, 50)
    assert stories(1337, 1)[0] == next(iter_stories(1337, 1000))


def test_stream_stops_at_its_size():
    texts = list(iter_stories(3, 20_000))
    size = sum(len(t) + 1 for t in texts)
    assert 20_000 <= size < 20_000 + max(len(t) + 1 for t in texts)
    assert all(t.isascii() and "\n" not in t for t in texts)


def test_stories_keep_pronouns_consistent_with_the_hero():
    rng = random.Random(5)
    mixed = 0
    for _ in range(300):
        teller = StoryTeller(rng)
        text = teller.story()
        assert text.startswith(("Once", "There", teller.hero.name))
        assert teller.hero.name in text.split(".")[0]
        subjects = {w.lower() for w in re.findall(r"\b(he|she|He|She)\b", text)}
        assert subjects <= {teller.hero.he}, text  # every subject pronoun is the hero's
        mixed += teller.hero.kind != teller.friend.kind and teller.friend.name in text
    assert mixed > 50


def test_the_vocabulary_is_small():
    words = {w.lower() for t in stories(7, 2000) for w in re.findall(r"[A-Za-z]+", t)}
    assert 200 < len(words) < 500


def test_derived_sets_are_deterministic_with_disjoint_splits():
    for kind in ("classify", "instruct", "preference", "choice"):
        a = derived_set(kind, "train", seed=11)
        assert a == derived_set(kind, "train", seed=11)
        assert a != derived_set(kind, "train", seed=12)
        keys = {s: {repr(sorted(x.items())) for x in derived_set(kind, s, seed=11)} for s in SPLITS}
        assert not keys["train"] & keys["test"] and not keys["train"] & keys["val"] and not keys["val"] & keys["test"]
        sizes = [len(keys[s]) for s in SPLITS]
        assert sizes[0] > 6 * sizes[2] > 0


def test_classify_labels_follow_from_the_text_and_are_balanced():
    rows = load_records("embedded:tinyworld-classify", "all")
    assert abs(sum(r["label"] for r in rows) / len(rows) - 0.5) < 0.03
    happy_words = set(HAPPY) | {"smiled", "laughed", "clapped", "found", "gave", "won", "warm", "played"}
    for r in rows:
        words = set(re.findall(r"[a-z]+", r["text"].lower()))
        has_sad = bool(words & set(SAD) | words & {"cried", "frowned", "sighed", "lost", "broke", "rain", "hurt"})
        has_happy = bool(words & happy_words)
        assert (r["label"] == 1) == (has_happy and not has_sad), r
        assert r["label_name"] == ("happy" if r["label"] else "sad")


def test_instruct_answers_follow_from_the_input():
    rows = load_records("embedded:tinyworld-instruct", "test")
    kinds = set()
    for r in rows:
        q, text, out = r["instruction"], r["input"], r["output"]
        if q.startswith("Who went to the "):
            place = q.removeprefix("Who went to the ").rstrip("?")
            sent = next(s for s in text.split(". ") if f"the {place}" in s)
            assert sent.split()[0] == out
        elif q.startswith("Where did "):
            name = q.split()[2]
            sent = next(s for s in text.split(". ") if s.startswith(name))
            assert re.search(r"to (the \w+)", sent).group(1) == out
        elif q == "List the things in the story.":
            assert [x.strip() for x in out.split(",")] == re.findall(r"\ban? ((?:\w+ )?\w+?)(?= and|,|\.| to)", text)
        elif q.startswith("How did"):
            assert text.rstrip(".").split()[-1] == out
        elif q.startswith("What did"):
            assert f"found {out} " in text
        elif "past tense" in q:
            assert out == text.replace(" likes ", " liked ")
        else:
            name = text.split()[0]
            assert out == BY_NAME[name].he.capitalize() + text[len(name):]
        kinds.add(q.split()[0])
        assert len(out.split()) <= 12
    assert kinds >= {"Who", "Where", "List", "How", "What", "Rewrite"}


def test_preference_chosen_is_right_and_polite_rejected_is_wrong_or_rude():
    for r in load_records("embedded:tinyworld-preference", "val"):
        assert r["prompt"] == f"{r['instruction']}\n\n{r['input']}"
        assert r["chosen"] != r["rejected"]
        q = r["instruction"]
        sents = r["input"].split(". ")
        if q.startswith("Who"):
            place = q.removeprefix("Who went to the ").rstrip("?")
            right = next(s for s in sents if f"the {place}" in s).split()[0]
        else:
            name = q.split()[2]
            right = re.search(r"to the (\w+)", next(s for s in sents if s.startswith(name))).group(1)
        assert right in r["chosen"]
        rude = any(x in r["rejected"] for x in ("yourself", "silly", "care", "Stop", "Go away"))
        assert rude or right not in r["rejected"].replace(q.split()[2], "") if not q.startswith("Who") else \
            rude or right not in r["rejected"]


def test_choice_answers_keep_the_world_rules():
    rows = load_records("embedded:tinyworld-choice", "test")
    assert {r["kind"] for r in rows} == {"activity", "feeling", "pronoun", "thing"}
    answers = [r["answer"] for r in rows]
    assert all(answers.count(k) > len(rows) / 8 for k in range(4))  # not always the same position
    for r in rows:
        assert len(r["choices"]) == 4 and len(set(r["choices"])) == 4
        right = r["choices"][r["answer"]]
        place = PLACE_BY_NAME[re.search(r"went to the (\w+)|at the (\w+)|in the (\w+)", r["question"]).group(1) or
                              re.search(r"(?:at|in) the (\w+)", r["question"]).group(1)]
        if r["kind"] == "activity":
            assert right in [p for _, p in place.acts]
            assert all(c not in [p for _, p in place.acts] for c in r["choices"] if c != right)
        elif r["kind"] == "thing":
            assert any(right.startswith(f"a {t} ") or right.startswith(f"an {t} ") for t in place.things)
        elif r["kind"] == "feeling":
            happy = " found " in r["question"]
            assert (right in HAPPY) == happy and (right in SAD) != happy
        else:
            he = BY_NAME[r["question"].split()[0]].he
            assert right.split()[0] == he and right.split()[-3] == he
    assert len(PLACES) == 10
