"""The embedded synthetic world "tinyworld": seeded short stories, and the registry of derived sets.

It is the corpus of a fresh, offline machine. The world (core.data.world: 20 children, 10 places
with their own activities and things, good and bad events) is told through a few hundred sentence
templates, so a ~1M-parameter GPT trained for minutes on a CPU learns grammatical, coherent text.
Half the stories are about one child (a plot: lost and found, broken and fixed, rain, a gift, ...);
the other half about two friends and facts that span sentences: who has what after a gift, where
each one went, how many things each found, who went home first, and how each felt, often followed
by a recap sentence stating the fact. The derived sets (core.data.world_sets, and the instruction
set here) ask about those facts, so pretraining helps every later stage:
  classify    story -> how it ends for the first child (0 = sad, 1 = happy): the order of events decides
  instruct    questions about a 2-3 sentence story (who, where, what, how) and rewrites; exact answers
  preference  who has what / where is someone now / who went first: chosen right, rejected the other one
  choice      a fact that spans sentences, four continuations, one true
Everything is deterministic for a seed.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterator

from core.data.world import (CHILDREN, COLORS, EVAL_PAIRS, FAMILY, HAPPY, HAPPY_SIGNS, HOMES, PETS, PLACE_BY_NAME,
                             PLACES, SAD, SAD_SIGNS, STORY_PAIRS, TOYS, TRAITS, Child, Place, a, cap, join_list, plural)
from core.data.world_sets import FACTS, choice_example, classify_example, preference_example

__all__ = ["CHILDREN", "HAPPY", "PLACES", "PLACE_BY_NAME", "SAD", "SPLITS", "StoryTeller", "derived_set",
           "iter_stories", "split_of"]

# ----------------------------------------------------------------------------------- the stories


class StoryTeller:
    """Tells one story: picks a hero, a friend, a place and a plot, and keeps every reference consistent."""

    def __init__(self, rng: random.Random):
        self.r = rng
        self.hero, self.friend = rng.choice(STORY_PAIRS)  # never a pair reserved for evaluation
        self.place = rng.choice(PLACES)
        self.toy = rng.choice(TOYS)
        self.color = rng.choice(COLORS)
        self.out: list[str] = []

    def say(self, *variants: str) -> None:
        self.out.append(self.r.choice(variants))

    def story(self) -> str:
        r, h = self.r, self.hero
        if r.random() < FACTS_SHARE:
            return self.facts_story()
        self.intro()
        self.journey()
        self.activity()
        plot = r.choice(("lost", "lost", "broke", "rain", "gift", "found", "sad"))
        getattr(self, "plot_" + plot)()
        if r.random() < 0.4:
            self.dialogue()
        self.ending(plot != "sad")
        assert h.name in self.out[0]
        return " ".join(self.out)

    # ----------------------------------------------------------------------------- sentences
    def intro(self) -> None:
        h, p, trait = self.hero, self.place, self.r.choice(TRAITS)
        self.say(f"Once upon a time, there was {a(trait)} {h.kind} named {h.name}.",
                 f"There was once {a(trait)} {h.kind} called {h.name}.",
                 f"{h.name} was {a(trait)} {h.kind} who lived in {self.r.choice(HOMES)}.",
                 f"Once upon a time, {a(trait)} {h.kind} named {h.name} lived in {self.r.choice(HOMES)}.")
        base = self.r.choice(p.acts)[0]
        self.say(f"{cap(h.he)} loved to {base}.", f"{h.name} liked to {base} {p.at}.",
                 f"{cap(h.his)} favorite place was the {p.name}.",
                 f"{cap(h.he)} had {a(self.color)} {self.toy}.",
                 f"{h.name} had {a(self.color)} {self.toy} and {a(self.r.choice(PETS))}.",
                 f"{h.name} had {join_list([a(t) for t in self.r.sample(TOYS, 3)])}.")

    def journey(self) -> None:
        h, f, p = self.hero, self.friend, self.place
        day = self.r.choice(("sunny", "warm", "cold", "windy", "bright"))
        self.say(f"One day, {h.name} went to the {p.name}.",
                 f"One {day} morning, {h.name} went to the {p.name} with {h.his} {self.toy}.",
                 f"One day, {h.name} and {h.his} friend {f.name} went to the {p.name}.",
                 f"One {day} day, {h.name} went to the {p.name} with {h.his} {self.r.choice(FAMILY)}.",
                 f"One day, {h.name} took {h.his} {self.toy} to the {p.name}.")

    def activity(self) -> None:
        h, p = self.hero, self.place
        (_, act1), (_, act2) = self.r.sample(p.acts, 2)
        self.say(f"{cap(p.at)}, {h.he} {act1}.", f"{h.name} {act1} and {act2}.",
                 f"{cap(p.at)}, {h.name} {act1}. Then {h.he} {act2}.",
                 f"{cap(h.he)} {act1} {p.at}.")

    def feel(self, happy: bool, again: bool = False) -> None:
        h = self.hero
        word = self.r.choice(HAPPY if happy else SAD)
        sign = self.r.choice(HAPPY_SIGNS if happy else SAD_SIGNS)
        very = self.r.choice(("", "very ", "so "))
        more = " again" if again else ""
        self.say(f"{h.name} was {very}{word}{more}.", f"{cap(h.he)} felt {very}{word}{more}.",
                 f"{h.name} {sign}. {cap(h.he)} was {word}{more}.")

    def plot_lost(self) -> None:
        h, f, p, toy = self.hero, self.friend, self.place, self.toy
        self.say(f"Then {h.name} could not find {h.his} {toy}.", f"Oh no! {h.name} lost {h.his} {toy}.",
                 f"Then {h.his} {toy} was gone.")
        self.feel(False)
        self.say(f"{f.name} helped {h.him} look for the {toy}.", f"{h.name} and {f.name} looked for the {toy}.",
                 f"{cap(h.he)} asked {f.name} to help {h.him}.")
        self.say(f"They found the {toy} {self.r.choice(p.spots)}.",
                 f"{f.name} found the {toy} {self.r.choice(p.spots)}.")
        self.say(f"{h.name} said, \"Thank you, {f.name}!\"", f"{h.name} hugged {f.name}.",
                 f"{f.name} gave the {toy} back to {h.name}.")
        self.feel(True, again=True)

    def plot_broke(self) -> None:
        h, toy, fam = self.hero, self.toy, self.r.choice(FAMILY)
        self.say(f"Then {h.name} dropped {h.his} {toy} and it broke.", f"Oh no! {cap(h.his)} {toy} broke.")
        self.feel(False)
        self.say(f"{cap(h.his)} {fam} fixed the {toy}.", f"{h.name} asked {h.his} {fam} to fix the {toy}. "
                 f"{cap(h.his)} {fam} fixed it.")
        self.feel(True, again=True)

    def plot_rain(self) -> None:
        h, f = self.hero, self.friend
        self.say("Then it started to rain.", "Then dark clouds came and it began to rain.")
        self.feel(False)
        self.say("Soon the sun came out again.", f"{f.name} shared {f.his} umbrella with {h.him}.")
        self.feel(True, again=True)

    def plot_gift(self) -> None:
        h, f = self.hero, self.friend
        thing = self.r.choice(TOYS)
        self.say(f"{f.name} gave {h.name} {a(thing)}.", f"{h.name} got {a(thing)} from {f.name}.")
        self.feel(True)
        self.say(f"{h.name} said, \"Thank you, {f.name}!\"", f"{cap(h.he)} played with the {thing} all day.")

    def plot_found(self) -> None:
        h, p = self.hero, self.place
        thing, spot = self.r.choice(p.things), self.r.choice(p.spots)
        self.say(f"{h.name} found {a(thing)} {spot}.", f"Then {h.he} saw {a(thing)} {spot}.")
        self.feel(True)
        self.say(f"{cap(h.he)} showed the {thing} to {h.his} friend {self.friend.name}.",
                 f"{cap(h.he)} took the {thing} home.")

    def plot_sad(self) -> None:
        h, toy = self.hero, self.toy
        self.say(f"Then a big dog ran by and took {h.his} {toy}.", f"Then {h.name} fell down and hurt {h.his} knee.",
                 f"Then {h.his} friend {self.friend.name} had to go home.")
        self.feel(False)

    def dialogue(self) -> None:
        h, p, fam = self.hero, self.place, self.r.choice(FAMILY)
        self.say(f"When {h.name} came home, {h.his} {fam} asked, \"Where did you go?\" "
                 f"{h.name} said, \"I went to the {p.name}.\"",
                 f"{cap(h.his)} {fam} asked, \"Who went to the {p.name}?\" \"I did!\" said {h.name}.",
                 f"{cap(h.his)} {fam} asked, \"What did you do {p.at}?\" "
                 f"{h.name} said, \"I {self.r.choice(p.acts)[1]}.\"")

    # ------------------------------------------------------------- facts that span sentences
    def facts_story(self) -> str:
        h, f = self.hero, self.friend
        self.say(f"{h.name} and {f.name} were friends.", f"Once upon a time, there were two friends, {h.name} and {f.name}.",
                 f"{h.name} and {f.name} lived in {self.r.choice(HOMES)}.")
        pair = (h, f) if self.r.random() < 0.5 else (f, h)
        for fact in self.r.sample(FACTS, self.r.choice((2, 3))):
            self.out.extend(fact(self.r, *pair).told(recap=self.r.random() < RECAP_SHARE))
        self.ending(True)
        assert h.name in self.out[0]
        return " ".join(self.out)

    def ending(self, happy: bool) -> None:
        h = self.hero
        if happy:
            self.say("It was a good day.", f"Then {h.he} went home with {h.his} {self.r.choice(FAMILY)}.", f"That night, {h.name} went to sleep with a smile.", "The end.",
                     f"{h.name} could not wait to go back to the {self.place.name}.")
        else:
            self.say(f"{h.name} went home. {cap(h.he)} was still sad.",
                     f"That night, {h.name} went to sleep feeling {self.r.choice(SAD)}.", "The end.")


FACTS_SHARE = 0.5  # of the stories: two friends and facts that span sentences
RECAP_SHARE = 0.7  # of those facts: followed by the sentence that states them (what the choice set asks)


def iter_stories(seed: int = 1337, max_bytes: int = 4_000_000) -> Iterator[str]:
    """Stories until their UTF-8 size reaches max_bytes; a stream, so any size runs in flat memory."""
    rng = random.Random(f"tinyworld-stories-{seed}")
    size = 0
    while size < max_bytes:
        text = StoryTeller(rng).story()
        size += len(text) + 1  # the text is ASCII; +1 for the separator a text file would have
        yield text


# ------------------------------------------------------------------------------- derived sets

SPLITS = ("train", "val", "test")
SET_SIZES = {"classify": 4000, "instruct": 8000, "preference": 4000, "choice": 2000}


def split_of(key: str) -> str:
    """80/10/10 by a hash of the example's text: the same text always lands in the same split."""
    x = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") / 2**64
    return "train" if x < 0.8 else "val" if x < 0.9 else "test"


def _two_trips(r: random.Random) -> tuple[list[str], list[tuple[Child, Place]]]:
    kids = list(r.choice(EVAL_PAIRS))
    places = r.sample(PLACES, 2)
    trips = list(zip(kids, places))
    sents = [r.choice((f"{c.name} went to the {p.name}.", f"{c.name} walked to the {p.name}.",
                       f"{c.name} went to the {p.name} with {c.his} {r.choice(FAMILY)}."))
             for c, p in trips]
    return sents, trips


def instruct_example(r: random.Random, i: int) -> dict:
    """A question or rewrite about a tiny story whose answer is a short exact string."""
    kind = ("who", "where", "what", "list", "feel", "pronoun", "past")[i % 7]
    if kind in ("who", "where"):
        sents, trips = _two_trips(r)
        c, p = r.choice(trips)
        if kind == "who":
            return {"instruction": f"Who went to the {p.name}?", "input": " ".join(sents), "output": c.name}
        return {"instruction": f"Where did {c.name} go?", "input": " ".join(sents), "output": f"the {p.name}"}
    h = r.choice(CHILDREN)
    p = r.choice(PLACES)
    if kind == "what":
        thing, spot = r.choice(p.things), r.choice(p.spots)
        text = f"{h.name} went to the {p.name}. {cap(h.he)} found {a(thing)} {spot}."
        return {"instruction": f"What did {h.name} find?", "input": text, "output": a(thing)}
    if kind == "list":
        things = r.sample(TOYS, r.choice((2, 2, 3)))
        text = r.choice((f"{h.name} had {join_list([a(t) for t in things])}.",
                         f"{h.name} took {join_list([a(t) for t in things])} to the {p.name}."))
        return {"instruction": "List the things in the story.", "input": text, "output": ", ".join(things)}
    if kind == "feel":
        happy = r.random() < 0.5
        word = r.choice(HAPPY if happy else SAD)
        event = r.choice((f"{cap(h.he)} found {a(r.choice(p.things))}.", f"{cap(h.he)} won a prize.")) if happy \
            else r.choice((f"{cap(h.he)} lost {h.his} {r.choice(TOYS)}.", "Then it started to rain."))
        text = f"{h.name} went to the {p.name}. {event} {h.name} was {word}."
        return {"instruction": f"How did {h.name} feel?", "input": text, "output": word}
    act_base, act_past = r.choice(p.acts)
    if kind == "pronoun":
        sentence = f"{h.name} went to the {p.name} and {act_past}."
        return {"instruction": f"Rewrite the sentence with \"{h.he}\" instead of the name.", "input": sentence,
                "output": f"{cap(h.he)} went to the {p.name} and {act_past}."}
    # past: "<name> likes to <act> at the <place>." -> "<name> liked to <act> at the <place>."
    return {"instruction": "Rewrite the sentence in the past tense.",
            "input": f"{h.name} likes to {act_base} {p.at}.",
            "output": f"{h.name} liked to {act_base} {p.at}."}


MAKERS = {"classify": classify_example, "instruct": instruct_example,
          "preference": preference_example, "choice": choice_example}
KEYS = {"classify": ("text",), "instruct": ("instruction", "input"), "preference": ("prompt",),
        "choice": ("question", "choices")}


@functools.lru_cache(maxsize=16)
def _derived(kind: str, seed: int) -> dict[str, tuple[dict, ...]]:
    rng = random.Random(f"tinyworld-{kind}-{seed}")
    make, seen = MAKERS[kind], set()
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for i in range(SET_SIZES[kind]):
        ex = make(rng, i)
        key = "\n".join(str(ex[k]) for k in KEYS[kind])
        if key in seen:  # the world is small: equal texts happen, and must not straddle splits
            continue
        seen.add(key)
        out[split_of(key)].append(ex)
    return {s: tuple(v) for s, v in out.items()}


def derived_set(kind: str, split: str = "train", seed: int = 1337) -> list[dict]:
    """The derived set `kind` (classify, instruct, preference, choice), one split, as fresh dicts."""
    if kind not in MAKERS:
        raise KeyError(kind)
    if split == "all":
        return [dict(x) for s in SPLITS for x in _derived(kind, seed)[s]]
    return [dict(x) for x in _derived(kind, seed)[split]]
