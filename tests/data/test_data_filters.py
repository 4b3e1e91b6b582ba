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


def test_markup_aware_non_letter_share_keeps_documentation_pages():
    """reST pages with code blocks, doctests, tables and roles: their prose is ordinary text."""
    import random

    from tests.data.corpus_kit import JUNK, rst_page

    rng = random.Random(0)
    pages = [rst_page(rng, f"Module {i}") for i in range(10)]
    junk = [j * 3 for j in JUNK]
    aware, _ = run(FilterConfig(max_non_letter_frac=0.2), pages + junk)
    naive, rep = run(FilterConfig(max_non_letter_frac=0.2, markup_aware=False), pages + junk)
    assert aware == pages  # every page kept, the junk still removed
    assert naive == [] and rep["rules"]["max_non_letter_frac"]["docs"] == 12
    assert non_letter_frac(pages[0]) > 0.2 > 0.05 > non_letter_frac(pages[0], markup_aware=True)


def test_repeated_lines_ignore_refrains_and_code_but_catch_boilerplate():
    song = "\n".join(["The river runs along the quiet valley floor", "Oh my", "The wind is singing in the old oak trees",
                      "Oh my", "And every stone remembers every rain", "Oh my"])
    code = "Loop twice:\n\n```\nfor i in range(2):\n    print('counting the items again')\n    print('counting the items again')\n```\n"
    spam = "\n".join(["Click here to subscribe to our newsletter"] * 3 + ["A real sentence about something."])
    kept, rep = run(FilterConfig(max_repeated_line_frac=0.3), [song, code, spam])
    assert kept == [song, code] and rep["rules"]["max_repeated_line_frac"]["examples"] == [spam[:200]]
    assert repeated_line_frac(song) == 2 / 6 and repeated_line_frac(song, min_chars=20) == 0.0


def test_near_dedup_defaults_catch_two_word_edits_of_short_texts():
    """The recall of the default near dedup on a planted set: 100 fortunes of 25-45 words, each
    with a copy that has two words changed, among 300 distinct ones."""
    import random

    from tests.data.corpus_kit import fortune, two_word_edit

    rng = random.Random(7)
    distinct = [fortune(rng) for _ in range(300)]
    edits = [two_word_edit(rng, d) for d in distinct[:100]]
    kept, rep = run(FilterConfig(dedup_near=True), distinct + edits)
    recall = (len(distinct) + len(edits) - len(kept)) / len(edits)
    assert kept[:300] == distinct  # no distinct text removed
    assert recall >= 0.95, recall
    old, _ = run(FilterConfig(dedup_near=True, shingle_size=3, near_threshold=0.8, minhash_perm=64), distinct + edits)
    assert (400 - len(old)) / 100 < 0.5  # the first build's word 3-grams at 0.8 missed most of them
    chars, _ = run(FilterConfig(dedup_near=True, shingle="char", shingle_size=5, near_threshold=0.6), distinct + edits)
    assert (400 - len(chars)) / 100 >= 0.9
    assert sum(c["clusters"] for c in rep["near_clusters"].values()) == 400 - len(kept)


def test_batched_verdicts_decide_as_one_document_at_a_time():
    """Judging in batches (the batch's signatures at once, a table that grows mid-batch) removes
    exactly what judging one document at a time removes."""
    import random

    from core.data.neardup import BandTable
    from tests.data.corpus_kit import fortune, two_word_edit

    rng = random.Random(11)
    distinct = [fortune(rng) for _ in range(600)]
    docs = distinct + [two_word_edit(rng, d) for d in distinct[:150]] + distinct[:50] + ["", "x", "two words"]
    rng.shuffle(docs)
    cfg = FilterConfig(dedup_near=True, min_words=3)
    one, many = DocumentFilter(cfg), DocumentFilter(cfg)
    for f in (one, many):
        f._near.table = BandTable(capacity=256)  # grows several times
    kept_one = [t for t in docs if one.keep(t)]
    assert list(many.apply(docs)) == kept_one
    assert many.report() == one.report() and one._near.table.generation >= 5
    assert one.report()["rules"]["dedup_near"]["docs"] >= 140 and one.report()["rules"]["dedup_exact"]["docs"] == 50


def test_band_table_answers_like_a_dict_across_growth():
    """The compiled table, storing key by key, agrees with a dict while it grows from 64 slots."""
    import numpy as np

    from core.data.neardup import BandTable

    rng = np.random.default_rng(0)
    pool = BandTable.slot_keys(rng.integers(0, 1 << 63, 4000, dtype=np.uint64))
    table, ref = BandTable(capacity=64), {}
    none = np.zeros(0, dtype=np.uint8)
    for doc in range(3000):
        keys = pool[rng.choice(len(pool), 3, replace=False)]
        found = [ref[k] for k in keys.tolist() if k in ref]
        expected = min(found) if found else None
        assert table.match_or_insert(keys, doc, none, none, 0.5) == expected, doc
        if expected is None:
            ref.update({k: doc for k in keys.tolist()})
    assert len(table) == len(ref) and table.generation >= 5
    assert table.slots.itemsize == 8  # a key and its document in one 8-byte slot


def test_near_dedup_verifies_band_collisions_between_templated_pages():
    """1,500 generated reST pages share templates (Jaccard ~0.16): some pairs collide in an LSH band,
    but the signature estimate rejects them all, while the planted two-word edits are still caught."""
    import random

    import numpy as np

    from core.data.filters import normalise
    from core.data.neardup import BandTable, NearDuplicates, batch_shingles
    from tests.data.corpus_kit import rst_page

    rng = random.Random(3)
    pages = [rst_page(rng, f"Module {rng.randrange(10**6)}") for _ in range(1500)]
    nd = NearDuplicates(0.55, 128)
    keys, _ = nd.batch_keys(*batch_shingles([normalise(p) for p in pages]))
    table, none = BandTable(), np.zeros(0, dtype=np.uint8)
    collisions = sum(table.match_or_insert(k, i, none, none, 0.55) is not None for i, k in enumerate(keys))
    assert collisions >= 3  # unverified, these pages would be removed
    kept, rep = run(FilterConfig(dedup_near=True), pages)
    assert kept == pages and "dedup_near" not in rep["rules"]
    assert np.all(keys & np.uint64((1 << 28) - 1) == 0)  # slot form: the document bits are free
    from tests.data.corpus_kit import fortune, two_word_edit

    distinct = [fortune(rng) for _ in range(200)]
    edits = [two_word_edit(rng, d) for d in distinct[:50]]
    few, _ = run(FilterConfig(dedup_near=True, minhash_perm=16), distinct + edits)  # fewer values than 64 marks
    assert few[:200] == distinct and len(few) <= 210


def test_shingle_hashes_are_the_documented_ones():
    """The compiled shingle kernels against their definition in plain Python: zlib's crc32 of each
    word (or the code point of each character), n-grams by Horner's rule, splitmix64's finaliser,
    32 bits; a text shorter than n has one shingle of all its units, an empty text one shingle 0."""
    import zlib

    from core.data.neardup import batch_shingles

    m64 = (1 << 64) - 1

    def mix(x: int) -> int:
        x ^= x >> 30
        x = x * 0xBF58476D1CE4E5B9 & m64
        x ^= x >> 27
        x = x * 0x94D049BB133111EB & m64
        return (x ^ (x >> 31)) & 0xFFFFFFFF

    def reference(norm: str, kind: str, n: int) -> list[int]:
        units = [ord(ch) for ch in norm] if kind == "char" else [zlib.crc32(w.encode()) for w in norm.split()]
        if not units:
            return [0]
        width = min(n, len(units))
        out = []
        for j in range(len(units) - width + 1):
            acc = units[j]
            for u in units[j + 1:j + width]:
                acc = (acc * 0x9E3779B97F4A7C15 + u) & m64
            out.append(mix(acc))
        return out

    norms = ["the cat sat on the mat", "", "one", "ünïcödé wörds €uro ü", "a b", "x " * 40 + "y"]
    for kind, n in (("word", 1), ("word", 2), ("word", 5), ("char", 1), ("char", 5)):
        hashes, starts = batch_shingles(norms, kind, n)
        ends = list(starts[1:]) + [len(hashes)]
        assert [hashes[s:e].tolist() for s, e in zip(starts, ends)] == [reference(t, kind, n) for t in norms]
