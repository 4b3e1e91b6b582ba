"""Quality rules, exact and near deduplication, and the filter report."""

import pytest

from core.config import DataConfig, FilterConfig
from core.data import Documents
from core.data.filters import DocumentFilter, non_letter_frac, repeated_line_frac
from core.data.synthetic import iter_stories
from core.errors import UserError


def run(cfg, docs):
    f = DocumentFilter(cfg)
    return list(f.apply(docs)), f.report()


def test_measures():
    assert non_letter_frac("ab 12") == 0.4
    assert repeated_line_frac("a\nb\na\na\n\n") == 0.5
    assert repeated_line_frac("single line") == 0.0


def test_each_rule_removes_what_it_should_and_reports_it():
    cfg = FilterConfig(min_chars=10, max_chars=60, min_words=3, max_non_letter_frac=0.3,
                       max_repeated_line_frac=0.3, repeated_line_min_chars=0, dedup_exact=False)
    docs = {"ok": "a fine sentence with words", "min_chars": "tiny", "max_chars": "long " * 20,
            "min_words": "onlytwo words!", "max_non_letter_frac": "$$$ ### 123 456 789 !!! ok",
            "max_repeated_line_frac": "menu item\nmenu item\nmenu item\nreal text", "empty": "   \n "}
    kept, rep = run(cfg, docs.values())
    assert kept == [docs["ok"]]
    assert set(rep["rules"]) == set(docs) - {"ok"}
    for rule, text in docs.items():
        if rule != "ok":
            assert rep["rules"][rule]["docs"] == 1 and rep["rules"][rule]["chars"] == len(text)
            assert rep["rules"][rule]["examples"] == ([] if rule == "empty" else [text])
    assert rep["docs_in"] == 7 and rep["docs_kept"] == 1 and rep["chars_kept"] == len(docs["ok"])
    assert rep["chars_removed"] == sum(map(len, docs.values())) - len(docs["ok"])


def test_planted_exact_and_near_duplicates_are_removed():
    stories = [s for s in iter_stories(9, 40_000)][:40]
    assert len(set(stories)) == 40
    exact = stories[3].upper().replace(" ", "  ")  # same text after normalisation
    near = stories[5].replace("One day,", "One fine day,", 1).replace(".", "!", 1)
    assert near != stories[5]
    docs = stories + [exact, near]
    kept, rep = run(FilterConfig(dedup_exact=True, dedup_near=True, near_threshold=0.7, minhash_perm=128), docs)
    assert kept == stories, rep
    assert rep["rules"]["dedup_exact"]["docs"] == 1 and rep["rules"]["dedup_near"]["docs"] == 1
    assert rep["rules"]["dedup_near"]["examples"] == [near[:200]]
    kept, rep = run(FilterConfig(dedup_exact=True, dedup_near=False), docs)
    assert kept == stories + [near]


def test_everything_filtered_names_the_rule(tmp_path):
    f = tmp_path / "d.txt"
    f.write_text("short\nlines\nonly\n")
    with pytest.raises(UserError, match=r"filters removed all 3 documents \(rule 'min_chars' removed 3.*data.filters.min_chars"):
        list(Documents(DataConfig(source=str(f), txt_mode="line", filters=FilterConfig(min_chars=100))))
    with pytest.raises(UserError, match="all 2 documents are empty"):
        (tmp_path / "e.jsonl").write_text('{"text": ""}\n{"text": " "}\n')
        list(Documents(DataConfig(source=str(tmp_path / "e.jsonl"))))


def test_hash_set_keeps_every_hash_across_merges():
    """The compact exact-dedup set answers like a Python set, before and after its buffer merges."""
    import random

    from core.data.filters import HashSet64

    rng = random.Random(0)
    values = [rng.getrandbits(64) for _ in range(5000)] + [0, 2**64 - 1, 2**63]
    hs, ref = HashSet64(capacity=256), set()
    for v in values:
        assert (v in hs) == (v in ref)
        hs.add(v)
        ref.add(v)
    assert len(hs) == len(ref)
    assert all(v in hs for v in values)
    assert not any(rng.getrandbits(64) in hs for _ in range(2000))
