"""Facts that span sentences, and the classification, preference and choice sets built on them.

A fact is a few sentences about two children (who has what after a gift, where each one went, how
many things each found, who went home first, how each felt) plus the recap sentence that states
it. The pretraining stories (core.data.synthetic) tell facts with their recap most of the time;
the choice set tells a fact and asks for its recap's last words, with the other child's value
among the wrong options, so the last sentence alone does not answer it. The evaluation sets only
use pairs of children reserved for evaluation (core.data.world.EVAL_PAIRS) and alternate between
the two names, so no 13-gram of theirs occurs in a pretraining story.
  classify    how the story ends for the first child: the order of two events decides (the words
              of both orders are the same, so a bag of words sits near chance)
  preference  who has what / where is someone now / who went home first: chosen names the right
              one, rejected the other, in the same words (so both are about as long)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from core.data.world import CHILDREN, EVAL_PAIRS, FAMILY, HAPPY, PLACES, SAD, TOYS, Child, a, plural
from core.data.words import NGRAM, words

COUNT_WORDS = ("one", "two", "three", "four")


@dataclass(frozen=True)
class Fact:
    """Sentences, the recap's stem, its true ending and three false ones."""
    sentences: tuple[str, ...]
    stem: str
    answer: str
    wrong: tuple[str, ...]
    kind: str

    def told(self, recap: bool) -> list[str]:
        return [*self.sentences, f"{self.stem} {self.answer}"] if recap else list(self.sentences)


def _others(r: random.Random, kids: tuple[Child, ...], k: int = 2) -> list[str]:
    return [c.name for c in r.sample([c for c in CHILDREN if c not in kids], k)]


def fact_owner(r: random.Random, x: Child, y: Child) -> Fact:
    t1, t2 = r.sample(TOYS, 2)
    s = [f"{x.name} had {a(t1)}.", f"{y.name} had {a(t2)}."]
    owner = {t1: x, t2: y}
    move = r.randrange(5)
    if move == 0:
        s.append(f"{x.name} gave the {t1} to {y.name}.")
        owner[t1] = y
    elif move == 1:
        s.append(f"{x.name} got the {t2} from {y.name}.")
        owner[t2] = x
    elif move == 2:
        s.append(f"{y.name} gave the {t2} to {x.name}.")
        owner[t2] = x
    elif move == 3:
        s.append(f"{y.name} got the {t1} from {x.name}.")
        owner[t1] = y
    asked = r.choice((t1, t2))
    right = owner[asked]
    wrong = y if right is x else x
    u, v = (x, y) if r.random() < 0.5 else (y, x)
    return Fact(tuple(s), f"{u.name} and {v.name} looked at the {asked}. It belonged to", f"{right.name}.",
                (f"{wrong.name}.", *(f"{n}." for n in _others(r, (x, y)))), "owner")


def fact_place(r: random.Random, x: Child, y: Child) -> Fact:
    p, q, *rest = r.sample(PLACES, 4)
    s = [f"{x.name} went to the {p.name}.", f"{y.name} went to the {q.name}."]
    asked, place, other = (x, p, q) if r.random() < 0.5 else (y, q, p)
    return Fact(tuple(s), f"That day, {asked.name} was at the", f"{place.name}.",
                (f"{other.name}.", *(f"{o.name}." for o in rest)), "place")


def _count(n: int, thing: str) -> str:
    return f"{COUNT_WORDS[n - 1]} {thing if n == 1 else plural(thing)}"


def fact_count(r: random.Random, x: Child, y: Child) -> Fact:
    place = r.choice(PLACES)
    tx, ty = r.sample(place.things, 2)
    nx, ny = r.choice((1, 2, 3)), r.choice((1, 2))

    def finds(k: Child, t: str, n: int) -> list[str]:
        return [f"{k.name} found {a(t)}.", f"{k.name} found another {t}.", f"{k.name} found one more {t}."][:n]

    fx, fy = finds(x, tx, nx), finds(y, ty, ny)
    s = [f"{x.name} and {y.name} went to the {place.name}."]
    for i in range(3):  # alternate between the two children
        s += fx[i:i + 1] + fy[i:i + 1]
    (asked, t, n), (other, ot, on) = ((x, tx, nx), (y, ty, ny)) if r.random() < 0.5 else ((y, ty, ny), (x, tx, nx))
    wrong = tuple(f"{_count(m, t)}." for m in (1, 2, 3, 4) if m != n)
    return Fact(tuple(s), f"In the end, {other.name} had {_count(on, ot)} and {asked.name} had",
                f"{_count(n, t)}.", wrong, "count")


def fact_order(r: random.Random, x: Child, y: Child) -> Fact:
    first, second = (x, y) if r.random() < 0.5 else (y, x)
    s = r.choice(((f"{first.name} went home.", f"Then {second.name} went home."),
                  (f"{second.name} went home after {first.name}.",),
                  (f"{first.name} went home before {second.name}.",)))
    right, wrong = (first, second) if r.random() < 0.5 else (second, first)
    which = "first" if right is first else "last"
    u, v = (x, y) if r.random() < 0.5 else (y, x)  # both names in the stem: no 13-gram of it names one child
    return Fact(tuple(s), f"Of {u.name} and {v.name}, the {which} one to go home was", f"{right.name}.",
                (f"{wrong.name}.", *(f"{n}." for n in _others(r, (x, y)))), "order")


def _event(r: random.Random, k: Child, good: bool) -> str:
    if good:
        return r.choice((f"{k.name} found {a(r.choice(r.choice(PLACES).things))}.", f"{k.name} won a prize.",
                         f"{k.name} got {a(r.choice(TOYS))} from {k.his} {r.choice(FAMILY)}."))
    return r.choice((f"{k.name} lost {k.his} {r.choice(TOYS)}.", f"{k.name} fell and hurt {k.his} knee.",
                     f"{k.name}'s {r.choice(TOYS)} broke."))


def fact_feeling(r: random.Random, x: Child, y: Child) -> Fact:
    good = r.random() < 0.5  # for x; y gets the other kind of event
    s = (_event(r, x, good), _event(r, y, not good))
    (asked, happy), other = ((x, good), y) if r.random() < 0.5 else ((y, not good), x)
    right = r.choice(HAPPY[:3] if happy else SAD[:3])
    wrong = tuple(f"{w}." for w in (SAD[:3] if happy else HAPPY[:3]))
    said = r.choice(SAD[:3] if happy else HAPPY[:3])
    return Fact(s, f"That night, {other.name} felt {said} and {asked.name} felt", f"{right}.", wrong, "feeling")


FACTS: tuple[Callable[[random.Random, Child, Child], Fact], ...] = (
    fact_owner, fact_place, fact_count, fact_order, fact_feeling)


# ------------------------------------------------------------------------------ derived sets

def names_every_window(text: str, x: Child, y: Child, n: int = NGRAM) -> bool:
    """Whether every n-word window of text names both children. No story names both children of
    an evaluation pair, so such a text shares no n-gram with any pretraining corpus of tinyworld."""
    ws = words(text)
    names = (x.name.lower(), y.name.lower())
    last = {nm: -n for nm in names}  # where each name was seen last
    for i, w in enumerate(ws):
        if w in last:
            last[w] = i
        if i >= n - 1 and any(last[nm] <= i - n for nm in names):
            return False
    return True


def _clean(r: random.Random, make: Callable[[random.Random, int, Child, Child], tuple[dict, str]], i: int) -> dict:
    """make's example for a reserved pair, drawn again until every window names both children."""
    for _ in range(1000):  # a few draws suffice; the bound only guards against a template that never passes
        x, y = r.choice(EVAL_PAIRS)
        example, text = make(r, i, x, y)
        if names_every_window(text, x, y):
            return example
    raise RuntimeError(f"{make.__name__}: no example names both children in every {NGRAM}-word window")


def choice_example(r: random.Random, i: int) -> dict:
    """A fact (after another fact half the time) and four endings of its recap; one is true."""
    return _clean(r, _choice, i)


def _choice(r: random.Random, i: int, x: Child, y: Child) -> tuple[dict, str]:
    make = FACTS[i % len(FACTS)]
    lead: list[str] = []
    if r.random() < 0.5:
        lead = r.choice([f for f in FACTS if f is not make])(r, x, y).told(recap=True)
    fact = make(r, x, y)
    choices = [fact.answer, *fact.wrong]
    r.shuffle(choices)
    question = " ".join([*lead, *fact.sentences, fact.stem])
    return ({"question": question, "choices": choices, "answer": choices.index(fact.answer), "kind": fact.kind},
            f"{question} {fact.answer}")


def _reversible(r: random.Random, k: Child) -> tuple[str, str]:
    """(bad, good) events of a child in the same words, so their order alone says how it ends."""
    toy, fam = r.choice(TOYS), r.choice(FAMILY)
    return r.choice(((f"{k.name} lost {k.his} {toy}.", f"{k.name} found {k.his} {toy}."),
                     (f"{k.name}'s {toy} broke.", f"{k.name}'s {fam} fixed the {toy}."),
                     (f"it began to rain on {k.name}.", f"the sun came out for {k.name}."),
                     (f"{k.name} fell and hurt {k.his} knee.", f"{k.name}'s knee got better."),
                     (f"{k.name} could not find {k.his} {fam}.", f"{k.name} found {k.his} {fam}.")))


def _sentence(s: str) -> str:
    return s[0].upper() + s[1:]


def classify_example(r: random.Random, i: int) -> dict:
    """How it ends for the first child (1 happy, 0 sad): a bad and a good event in some order."""
    return _clean(r, _classify, i)


def _classify(r: random.Random, i: int, x: Child, y: Child) -> tuple[dict, str]:
    happy = i % 2 == 1
    p = r.choice(PLACES)
    bad, good = _reversible(r, x)
    first, last = (bad, good) if happy else (good, bad)
    s = [f"{x.name} and {y.name} went to the {p.name}.", _sentence(first), f"{y.name} {r.choice(p.acts)[1]}.",
         f"Later, {last}"]
    if r.random() < 0.5:  # the other child's ending, either way: the last sentence is not always the answer
        s.append(_sentence(_reversible(r, y)[r.random() < 0.5]))
    text = " ".join(s)
    return {"text": text, "label": int(happy), "label_name": "happy" if happy else "sad"}, text


def preference_example(r: random.Random, i: int) -> dict:
    """A question about a fact; chosen names the right child or place, rejected the other, alike."""
    return _clean(r, _preference, i)


def _preference(r: random.Random, i: int, x: Child, y: Child) -> tuple[dict, str]:
    kind = i % 3
    if kind == 0:
        t1, t2 = r.sample(TOYS, 2)
        s = [f"{x.name} had {a(t1)}.", f"{y.name} had {a(t2)}.", f"{x.name} gave the {t1} to {y.name}."] \
            if r.random() < 0.5 else [f"{y.name} had {a(t2)}.", f"{x.name} had {a(t1)}.", f"{y.name} got the {t1} from {x.name}."]
        instruction, chosen, rejected = f"Who has the {t1} now?", f"{y.name} has the {t1}.", f"{x.name} has the {t1}."
    elif kind == 1:
        p, q, o = r.sample(PLACES, 3)
        now, before = (o, p) if r.random() < 0.5 else (p, o)
        s = [f"{x.name} went to the {before.name}.", f"{y.name} went to the {q.name}.",
             f"Then {x.name} went to the {now.name}."] if r.random() < 0.5 else \
            [f"{y.name} went to the {q.name}.", f"{x.name} went to the {now.name} after the {before.name}."]
        instruction = f"Where is {x.name} now?"
        chosen, rejected = f"{x.name} is at the {now.name}.", f"{x.name} is at the {before.name}."
    else:
        first, second = (x, y) if r.random() < 0.5 else (y, x)
        s = list(r.choice(((f"{first.name} went home.", f"Then {second.name} went home."),
                           (f"{second.name} went home after {first.name}.",),
                           (f"{first.name} went home before {second.name}.",))))
        instruction = "Who went home first?"
        chosen, rejected = f"{first.name} went home first.", f"{second.name} went home first."
    text = " ".join(s)
    example = {"prompt": f"{instruction}\n\n{text}", "instruction": instruction, "input": text,
               "chosen": chosen, "rejected": rejected}
    return example, f"{instruction} {text}"  # the answers are in the present tense, which no story uses
