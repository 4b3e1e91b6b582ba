"""The vocabulary of the embedded world "tinyworld": its children, places, things and feelings.

The stories (core.data.synthetic) and the sets derived from them (core.data.world_sets) draw from
these tuples, so a rule of the world (each place has its own activities and things, a child keeps
its pronoun) is written once. `eval_pair` reserves a share of the pairs of children for evaluation:
no pretraining story names both children of such a pair, so an evaluation example that alternates
between them shares no 13-gram with the corpus (clean by construction).
"""

from __future__ import annotations

import hashlib
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


def plural(noun: str) -> str:
    """'shell' -> 'shells', 'leaf' -> 'leaves'."""
    return noun[:-1] + "ves" if noun.endswith("f") else noun + "s"


EVAL_PAIR_SHARE = 0.3  # of the 190 unordered pairs of children


def eval_pair(x: Child, y: Child) -> bool:
    """Whether the pair {x, y} is reserved for evaluation sets (never together in a story)."""
    key = "|".join(sorted((x.name, y.name)))
    h = int.from_bytes(hashlib.blake2b(f"tinyworld-pair-{key}".encode(), digest_size=8).digest(), "little")
    return h / 2**64 < EVAL_PAIR_SHARE


STORY_PAIRS = tuple((x, y) for x in CHILDREN for y in CHILDREN if x is not y and not eval_pair(x, y))
EVAL_PAIRS = tuple((x, y) for x in CHILDREN for y in CHILDREN if x is not y and eval_pair(x, y))
