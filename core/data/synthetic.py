"""The embedded synthetic world "tinyworld": seeded short stories and the sets derived from them.

It is the corpus of a fresh, offline machine. A small world (20 children with fixed pronouns, 10
places each with its own activities and things, good and bad events with the feelings they cause)
is told through a few hundred sentence templates, so a ~1M-parameter GPT trained for minutes on a
CPU learns grammatical, coherent text. The world's rules are what the derived sets test:
  classify    story -> mood at the end (0 = sad, 1 = happy), decided by its event and feeling words
  instruct    questions about a 2-3 sentence story (who, where, what, how) and rewrites; exact answers
  preference  the same questions: chosen is correct and polite, rejected is wrong or rude
  choice      continuations where exactly one option keeps the world's rules (place, feeling, pronoun)
The stories contain the same patterns (dialogue questions and answers, lists of things, feelings
that follow events), so pretraining helps every later stage. Everything is deterministic for a seed.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

# ------------------------------------------------------------------------------------ the world


@dataclass(frozen=True)
class Child:
    name: str
    kind: str  # boy | girl

    @property
    def he(self) -> str:
        return "he" if self.kind == "boy" else "she"

    @property
    def his(self) -> str:
        return "his" if self.kind == "boy" else "her"

    @property
    def him(self) -> str:
        return "him" if self.kind == "boy" else "her"


BOYS = ("Tom", "Ben", "Sam", "Max", "Leo", "Jack", "Tim", "Dan", "Finn", "Noah")
GIRLS = ("Lily", "Mia", "Anna", "Sue", "Emma", "Lucy", "Kate", "Zoe", "Amy", "Ella")
CHILDREN = tuple(Child(n, "boy") for n in BOYS) + tuple(Child(n, "girl") for n in GIRLS)


@dataclass(frozen=True)
class Place:
    name: str
    acts: tuple[tuple[str, str], ...]  # (base form, past tense): what children do there
    things: tuple[str, ...]  # what children find there
    spots: tuple[str, ...]  # where a lost thing turns up
    prep: str = "at"

    @property
    def at(self) -> str:
        return f"{self.prep} the {self.name}"


# The rule "each place has its own activities and things" is what the choice set tests.
PLACES = (
    Place("park", (("play on the swings", "played on the swings"), ("go down the slide", "went down the slide"),
                   ("fly a kite", "flew a kite")), ("ball", "kite", "leaf"), ("under a tree", "near the bench")),
    Place("beach", (("build a sand castle", "built a sand castle"), ("swim in the sea", "swam in the sea"),
                    ("look for shells", "looked for shells")), ("shell", "bucket", "crab"), ("in the sand", "near the water")),
    Place("forest", (("climb a tree", "climbed a tree"), ("pick berries", "picked berries"),
                     ("listen to the birds", "listened to the birds")), ("stick", "pinecone", "mushroom"),
          ("behind a rock", "under some leaves"), "in"),
    Place("garden", (("plant seeds", "planted seeds"), ("water the flowers", "watered the flowers"),
                     ("watch the bees", "watched the bees")), ("flower", "worm", "carrot"), ("by the fence", "under a bush"), "in"),
    Place("kitchen", (("bake a cake", "baked a cake"), ("make cookies", "made cookies"),
                      ("wash the cups", "washed the cups")), ("cup", "spoon", "cookie"), ("on the table", "under a chair"), "in"),
    Place("library", (("read a book", "read a book"), ("look at pictures", "looked at pictures"),
                      ("sit very quietly", "sat very quietly")), ("book", "map", "pencil"), ("on a shelf", "under a desk")),
    Place("farm", (("feed the chickens", "fed the chickens"), ("ride a horse", "rode a horse"),
                   ("milk the cow", "milked the cow")), ("egg", "feather", "apple"), ("in the barn", "near the gate")),
    Place("pond", (("feed the ducks", "fed the ducks"), ("sail a toy boat", "sailed a toy boat"),
                   ("watch the fish", "watched the fish")), ("frog", "boat", "stone"), ("in the grass", "by the water")),
    Place("school", (("draw a picture", "drew a picture"), ("sing a song", "sang a song"),
                     ("learn to count", "learned to count")), ("crayon", "ruler", "sticker"), ("in a box", "under a desk")),
    Place("market", (("buy some bread", "bought some bread"), ("look at the fruit", "looked at the fruit"),
                     ("carry the bags", "carried the bags")), ("orange", "basket", "coin"), ("near a stall", "under a cart")),
)
PLACE_BY_NAME = {p.name: p for p in PLACES}

# Things a child owns and carries around (the lost-and-found plot uses these).
TOYS = ("ball", "kite", "doll", "teddy bear", "toy car", "hat", "book", "red bag", "drum", "robot")
COLORS = ("red", "blue", "green", "yellow", "big", "little", "new", "shiny")
TRAITS = ("little", "kind", "brave", "small", "curious", "clever", "funny", "quiet")
HOMES = ("a small house", "a big town", "a little village", "a house by the hill")
FAMILY = ("mom", "dad", "grandma", "grandpa", "sister", "brother")
PETS = ("dog", "cat", "puppy", "kitten")

# The mood rule: bad events make a child sad, good events make a child happy.
HAPPY = ("happy", "glad", "excited", "proud")
SAD = ("sad", "upset", "unhappy", "lonely")
HAPPY_SIGNS = ("smiled", "laughed", "clapped")
SAD_SIGNS = ("cried", "frowned", "sighed")
CHOICE_FEELINGS = ("happy", "glad", "excited", "sad", "upset", "unhappy")
RUDE = ("Figure it out yourself.", "That is a silly question.", "I do not care.", "Stop asking me.",
        "Read it yourself.", "Go away.")
NUMBERS = ("zero", "one", "two", "three", "four")


def a(noun: str) -> str:
    """The noun with its indefinite article."""
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def cap(s: str) -> str:
    return s[0].upper() + s[1:]


def join_list(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ----------------------------------------------------------------------------------- the stories


class StoryTeller:
    """Tells one story: picks a hero, a friend, a place and a plot, and keeps every reference consistent."""

    def __init__(self, rng: random.Random):
        self.r = rng
        self.hero, self.friend = rng.sample(CHILDREN, 2)
        self.place = rng.choice(PLACES)
        self.toy = rng.choice(TOYS)
        self.color = rng.choice(COLORS)
        self.out: list[str] = []

    def say(self, *variants: str) -> None:
        self.out.append(self.r.choice(variants))

    def story(self) -> str:
        r, h = self.r, self.hero
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

    def ending(self, happy: bool) -> None:
        h = self.hero
        if happy:
            self.say("It was a good day.", f"Then {h.he} went home with {h.his} {self.r.choice(FAMILY)}.", f"That night, {h.name} went to sleep with a smile.", "The end.",
                     f"{h.name} could not wait to go back to the {self.place.name}.")
        else:
            self.say(f"{h.name} went home. {cap(h.he)} was still sad.",
                     f"That night, {h.name} went to sleep feeling {self.r.choice(SAD)}.", "The end.")


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


def classify_example(r: random.Random, i: int) -> dict:
    """A short story; its label (0 sad, 1 happy) follows from its event and, mostly, a feeling word."""
    happy = i % 2 == 1
    h, f = r.sample(CHILDREN, 2)
    p = r.choice(PLACES)
    toy = r.choice(TOYS)
    s = [r.choice((f"{h.name} went to the {p.name}.", f"{h.name} and {f.name} went to the {p.name}.",
                   f"One day, {h.name} took {h.his} {toy} to the {p.name}.",
                   f"{cap(p.at)}, {h.name} {r.choice(p.acts)[1]}."))]
    if happy:
        s.append(r.choice((f"{cap(h.he)} found {a(r.choice(p.things))} {r.choice(p.spots)}.",
                           f"{f.name} gave {h.him} {a(r.choice(TOYS))}.", "The sun was warm and bright.",
                           f"{cap(h.he)} won a prize.", f"{f.name} played with {h.him} all day.")))
    else:
        s.append(r.choice((f"Then {h.he} lost {h.his} {toy}.", f"Then {h.his} {toy} broke.",
                           "Then it started to rain.", f"{cap(h.he)} fell down and hurt {h.his} knee.",
                           f"{f.name} did not want to play with {h.him}.")))
    if r.random() < 0.8:
        word = r.choice(HAPPY if happy else SAD)
        sign = r.choice(HAPPY_SIGNS if happy else SAD_SIGNS)
        s.append(r.choice((f"{h.name} was very {word}.", f"{cap(h.he)} felt {word}.", f"{cap(h.he)} {sign}.")))
    return {"text": " ".join(s), "label": int(happy), "label_name": "happy" if happy else "sad"}


def _two_trips(r: random.Random) -> tuple[list[str], list[tuple[Child, Place]]]:
    kids = r.sample(CHILDREN, 2)
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


def preference_example(r: random.Random, i: int) -> dict:
    """A question about a tiny story; chosen answers correctly and politely, rejected is wrong or rude."""
    sents, trips = _two_trips(r)
    (c, p), (other, other_p) = trips if r.random() < 0.5 else trips[::-1]
    if i % 2 == 0:
        instruction, right, wrong = f"Who went to the {p.name}?", c.name, other.name
        chosen = r.choice((f"{right} went to the {p.name}.", f"It was {right}."))
        wrong_polite = r.choice((f"{wrong} went to the {p.name}.", f"It was {wrong}."))
    else:
        instruction, right, wrong = f"Where did {c.name} go?", p.name, other_p.name
        chosen = r.choice((f"{c.name} went to the {right}.", f"To the {right}."))
        wrong_polite = r.choice((f"{c.name} went to the {wrong}.", f"To the {wrong}."))
    flavour = i // 2 % 3  # wrong, rude, or both
    rude = r.choice(RUDE)
    rejected = wrong_polite if flavour == 0 else f"{rude} {chosen}" if flavour == 1 else f"{wrong_polite} {rude}"
    text = " ".join(sents)
    return {"prompt": f"{instruction}\n\n{text}", "instruction": instruction, "input": text,
            "chosen": chosen, "rejected": rejected}


def choice_example(r: random.Random, i: int) -> dict:
    """A context and four continuations; only one keeps the world's rules."""
    kind = ("activity", "feeling", "pronoun", "thing")[i % 4]
    h = r.choice(CHILDREN)
    p = r.choice(PLACES)
    if kind == "activity":
        others = r.sample([q for q in PLACES if q is not p], 3)
        right = r.choice(p.acts)[1]
        wrong = [r.choice(q.acts)[1] for q in others]
        question = f"{h.name} went to the {p.name}. {cap(p.at)}, {h.he}"
    elif kind == "feeling":
        toy = r.choice(TOYS)
        happy = r.random() < 0.5
        event = f"{h.name} found {a(r.choice(p.things))} {p.at}." if happy \
            else f"{h.name} lost {h.his} {toy} {p.at}."
        right = r.choice(HAPPY[:3] if happy else SAD[:3])
        wrong = list(r.sample(SAD[:3] if happy else HAPPY[:3], 3))
        question = f"{event} {cap(h.he)} was very"
    elif kind == "pronoun":
        act, fam = r.choice(p.acts)[1], r.choice(FAMILY)
        he, she = h.he, ("she" if h.kind == "boy" else "he")
        right = f"{he} {act}. Then {he} went home."
        wrong = [f"{she} {act}. Then {she} went home.", f"{he} {act}. Then {she} went home.",
                 f"{she} {act}. Then {he} went home."]
        question = f"{h.name} went to the {p.name} with {h.his} {fam}. {cap(p.at)},"
    else:
        others = r.sample([q for q in PLACES if q is not p], 3)
        right = f"{a(r.choice(p.things))} {r.choice(p.spots)}."
        wrong = [f"{a(r.choice(q.things))} {r.choice(p.spots)}." for q in others]
        question = f"{h.name} went to the {p.name}. {cap(h.he)} found"
    choices = [right, *wrong]
    r.shuffle(choices)
    return {"question": question, "choices": choices, "answer": choices.index(right), "kind": kind}


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
