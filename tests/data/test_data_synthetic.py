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


GOOD = ("found his", "found her", "fixed the", "sun came out", "got better")
BAD = ("lost his", "lost her", "broke", "began to rain", "hurt", "could not find")


def test_classify_labels_follow_from_the_order_of_events_and_are_balanced():
    rows = load_records("embedded:tinyworld-classify", "all")
    assert abs(sum(r["label"] for r in rows) / len(rows) - 0.5) < 0.03
    for r in rows:
        sents = r["text"].split(". ")
        first, last = sents[1], sents[3]
        assert last.startswith("Later, ") and r["text"].split()[0] in first + last
        good_last = any(g in last for g in GOOD) and not any(b in last for b in BAD)
        good_first = any(g in first for g in GOOD) and not any(b in first for b in BAD)
        assert good_last != good_first, r  # one good and one bad event: only their order differs
        assert r["label"] == int(good_last), r
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


def _solve_preference(q: str, text: str) -> str:
    if q.startswith("Who has the "):
        thing = q.removeprefix("Who has the ").removesuffix(" now?")
        m = re.search(rf"gave the {thing} to (\w+)", text) or re.search(rf"(\w+) got the {thing} from", text)
        return m.group(1)
    if q.startswith("Where is "):
        name = q.split()[2]
        m = re.search(rf"Then {name} went to the (\w+)", text) or re.search(rf"{name} went to the (\w+) after", text)
        return m.group(1)
    m = re.search(r"(\w+) went home\. Then", text) or re.search(r"(\w+) went home before", text) \
        or re.search(r"went home after (\w+)", text)
    return m.group(1)


def test_preference_chosen_is_right_rejected_wrong_in_the_same_words():
    rows = load_records("embedded:tinyworld-preference", "all")
    diffs = []
    for r in rows:
        assert r["prompt"] == f"{r['instruction']}\n\n{r['input']}"
        right = _solve_preference(r["instruction"], r["input"])
        assert right in r["chosen"].split()[0] + r["chosen"].split()[-1].rstrip("."), r
        assert right not in r["rejected"].rstrip(".").split()[-1] + r["rejected"].split()[0] or \
            r["rejected"].split()[0] == right and r["instruction"].startswith("Where"), r
        a, b = r["chosen"].split(), r["rejected"].split()
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1  # one word differs
        diffs.append(len(r["chosen"]) - len(r["rejected"]))
    assert abs(sum(diffs) / len(diffs)) < 0.3  # as long on average (characters)


def test_choice_answers_follow_from_facts_that_span_sentences():
    rows = load_records("embedded:tinyworld-choice", "all")
    assert {r["kind"] for r in rows} == {"owner", "place", "count", "order", "feeling"}
    answers = [r["answer"] for r in rows]
    assert all(answers.count(k) > len(rows) / 8 for k in range(4))  # not always the same position
    for r in rows:
        assert len(r["choices"]) == 4 and len(set(r["choices"])) == 4
        right = r["choices"][r["answer"]].rstrip(".")
        solved = _solve_choice(r["question"], r["kind"])
        assert (right in HAPPY) == (solved == "happy") if r["kind"] == "feeling" else right == solved, r
        names = set(re.findall(r"\b[A-Z][a-z]+\b", r["question"])) & set(BY_NAME)
        assert len(names) == 2  # two children; the stem alone does not say which value is whose
        if r["kind"] in ("owner", "place", "order"):  # the other child's value is a wrong option
            assert sum(c.rstrip(".") in r["question"] for c in r["choices"]) >= 2, r


def _solve_choice(q: str, kind: str) -> str:
    """An independent reader of the world's facts (the last fact's sentences and its stem)."""
    sents = q.split(". ")
    stem = sents[-1]
    if kind == "owner":
        thing = re.search(r"looked at the (.+)$", sents[-2]).group(1)
        owner = None
        for s in sents:
            m = re.fullmatch(rf"(\w+) had an? {thing}", s)
            owner = m.group(1) if m else owner
            m = re.fullmatch(rf"(\w+) gave the {thing} to (\w+)", s)
            owner = m.group(2) if m else owner
            m = re.fullmatch(rf"(\w+) got the {thing} from (\w+)", s)
            owner = m.group(1) if m else owner
        return owner
    if kind == "place":
        name = stem.split()[2]
        return [re.fullmatch(rf"{name} went to the (\w+)", s).group(1) for s in sents
                if re.fullmatch(rf"{name} went to the (\w+)", s)][-1]
    if kind == "count":
        name = stem.split()[-2]
        i = max(k for k, s in enumerate(sents) if s.endswith(f"went to the {s.split()[-1]}") and " and " in s)
        n = sum(s.startswith(f"{name} found ") for s in sents[i:])
        thing = next(s.split()[-1] for s in sents[i:] if s.startswith(f"{name} found a"))
        from core.data.world import plural
        return f"{('one', 'two', 'three')[n - 1]} {thing if n == 1 else plural(thing)}"
    if kind == "order":
        told = ". ".join(sents[-3:-1])
        if m := re.search(r"(\w+) went home\. Then (\w+) went home", told):
            first, second = m.group(1), m.group(2)
        elif m := re.search(r"(\w+) went home before (\w+)$", told):
            first, second = m.group(1), m.group(2)
        else:
            m = re.search(r"(\w+) went home after (\w+)$", told)
            first, second = m.group(2), m.group(1)
        return first if " first one " in stem else second
    name = stem.split()[-2]
    event = next(s for s in sents[-3:-1] if s.startswith(name))
    happy = any(w in event for w in ("found", "won", "got"))
    assert re.search(r"felt (\w+) and", stem).group(1) in (SAD if happy else HAPPY)
    return "happy" if happy else "sad"
