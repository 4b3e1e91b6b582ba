"""Words as overlap checks count them: lower-case letter and digit runs, and the n of the long n-grams
(13, as the GPT-3 paper's contamination check). The contamination check (core.eval.contamination) and the
embedded world's clean-by-construction eval sets (core.data.world_sets) share them.
"""

from __future__ import annotations

import re

NGRAM = 13
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lowercased alphanumeric words: punctuation and case do not hide an overlap."""
    return _WORD.findall(text.lower())
