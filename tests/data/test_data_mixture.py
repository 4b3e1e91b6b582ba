"""Mixtures on a real-shaped corpus: how they end, the per-source account, the stratified split,
per-source readers (separator, txt_mode, Gutenberg) and thresholds, and their bad input."""

import random

import pytest

from core.config import DataConfig, FilterConfig, SourceConfig, SourceFilters, loads
from core.data import Documents
from core.data.report import filter_lines, source_lines
from core.data.textfiles import strip_gutenberg
from core.errors import UserError
from tests.data.corpus_kit import fortunes_file, gutenberg_book, mixed_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, mixed_corpus(root)


def _mix(root, end="smallest", **kw):
    return DataConfig(mixture=[SourceConfig(source=str(root / "docs"), weight=0.6),
                               SourceConfig(source=str(root / "fortunes.txt"), weight=0.4, separator="^%$")],
                      mixture_end=end, **kw)


def test_smallest_counts_what_it_leaves_unread(corpus):
    root, c = corpus
    docs = Documents(_mix(root))
    out = list(docs)
    rep = docs.source_report()
    pages, fortunes = rep["sources"]
    assert pages["docs_read"] == 20 and pages["docs_unread"] == 0 and rep["exhausted"] == str(root / "docs")
    # the rest of the fortunes is counted, not silently dropped: read + unread = every document in the file
    assert fortunes["docs_read"] + fortunes["docs_unread"] == c["fortunes"]["total"]
    assert fortunes["docs_unread"] > 0 and fortunes["bytes_unread"] > 0 and rep["left_unread"] == [str(root / "fortunes.txt")]
    assert len(out) == pages["docs_used"] + fortunes["docs_used"]
    text = "\n".join(source_lines(rep))
    assert f"LEFT UNREAD {fortunes['docs_unread']:,} docs" in text


def test_largest_repeats_the_smaller_source_and_counts_epochs(corpus):
    root, c = corpus
    docs = Documents(_mix(root, "largest"))
    out = list(docs.tagged())
    pages, fortunes = docs.source_report()["sources"]
    assert fortunes["docs_read"] == c["fortunes"]["total"] and fortunes["docs_unread"] == 0
    assert pages["epochs"] > 1 and pages["docs_repeated"] == pages["docs_used"] - (pages["docs_read"] - pages["docs_removed"])
    assert abs(pages["share_bytes"] - 0.6) < 0.03
    # repeats are training documents only: no validation text is ever repeated into training
    val_texts = {t for t, s, v in out if v}
    assert not any(t in val_texts for t, s, v in out if not v)


def test_budget_gives_each_source_its_share_of_tokens(corpus):
    root, _ = corpus
    docs = Documents(_mix(root, "budget", budget_tokens=60_000))
    list(docs)
    pages, fortunes = docs.source_report()["sources"]
    total = pages["measure"] + fortunes["measure"]
    assert 60_000 <= total < 61_500
    assert abs(pages["measure"] / total - 0.6) < 0.01 and fortunes["epochs"] >= 1



def test_budget_is_exact_in_real_tokens_and_the_estimate_only_moves_where_each_source_stops(corpus):
    """The shards' pass counts real tokens: each source reaches its quota within its last document.
    The tokenizer's pass (no tokenizer yet: ~4 bytes a token) gives each source the same document
    sequence, cut where the estimate says; the cut moves by the source's real bytes per token / 4."""
    from core.data.documents import estimated_tokens
    from core.tokenizer.encodings import get_tokenizer

    root, _ = corpus
    enc = get_tokenizer("gpt2").enc
    real = Documents(_mix(root, "budget", budget_tokens=60_000),
                     count_tokens=lambda t: len(enc.encode_ordinary(t)) + 1)
    est = Documents(_mix(root, "budget", budget_tokens=60_000))
    by_src: dict = {"real": ([], []), "est": ([], [])}
    for name, docs in (("real", real), ("est", est)):
        for text, src, _ in docs.tagged():
            by_src[name][src].append(text)
    for k, share in enumerate((0.6, 0.4)):
        a, b = by_src["real"][k], by_src["est"][k]
        n = min(len(a), len(b))
        assert a[:n] == b[:n]  # one sequence, two cut points
        tokens = [len(enc.encode_ordinary(t)) + 1 for t in a]
        assert sum(tokens) >= share * 60_000 > sum(tokens) - tokens[-1]  # exact: stops at the quota
        assert real.source_report()["sources"][k]["measure"] == sum(tokens)
        ratio = sum(map(estimated_tokens, a)) / sum(tokens)  # how far the estimate is from the truth here
        est_tokens = sum(len(enc.encode_ordinary(t)) + 1 for t in b)
        assert abs(est_tokens / sum(tokens) - 1 / ratio) < 0.05

def test_validation_split_is_stratified_by_source(tmp_path):
    rng = random.Random(3)
    fortunes_file(tmp_path / "a.txt", rng, 400)
    fortunes_file(tmp_path / "b.txt", rng, 100)
    d = DataConfig(mixture=[SourceConfig(source=str(tmp_path / "a.txt"), separator="^%$"),
                            SourceConfig(source=str(tmp_path / "b.txt"), separator="^%$")],
                   mixture_end="largest", val_fraction=0.1)
    docs = Documents(d)
    first = list(docs.tagged())
    a, b = docs.source_report()["sources"]
    assert a["val_docs"] == 40 and b["val_docs"] == 10  # exactly one in every ten documents of each source
    assert first == list(docs.tagged())  # seeded: the same split every pass


def test_fortunes_gutenberg_and_per_source_txt_mode(tmp_path):
    (tmp_path / "f.txt").write_text("one\nfortune\n%\ntwo\n%\n%\nthree\n")
    (tmp_path / "book.txt").write_text(gutenberg_book(random.Random(1), "Small Book", chapters=1))
    d = DataConfig(mixture=[SourceConfig(source=str(tmp_path / "f.txt"), separator="^%$"),
                            SourceConfig(source=str(tmp_path / "book.txt"), strip="gutenberg", txt_mode="block")],
                   mixture_end="largest", filters=FilterConfig(dedup_exact=False))
    out = [(t, s) for t, s, _ in Documents(d).tagged()]
    assert [t for t, s in out if s == 0][:3] == ["one\nfortune", "two", "three"]
    book = [t for t, s in out if s == 1]
    assert book[0] == "CHAPTER 1" and not any("Gutenberg" in t or "GUTENBERG" in t for t in book)
    assert list(strip_gutenberg(["no", "markers"])) == ["no", "markers"]


def test_per_source_thresholds(tmp_path):
    (tmp_path / "code.txt").write_text("x = [1, 2] * {3: 4}\n%\ny = (5 + 6) / 7.0 ** 8\n")
    (tmp_path / "prose.txt").write_text("x = [1, 2] * {3: 4}\n%\nplain words here\n")
    d = DataConfig(mixture=[SourceConfig(source=str(tmp_path / "code.txt"), separator="^%$",
                                         filters=SourceFilters(max_non_letter_frac=1.0)),
                            SourceConfig(source=str(tmp_path / "prose.txt"), separator="^%$")],
                   mixture_end="largest", filters=FilterConfig(max_non_letter_frac=0.3, dedup_exact=False))
    docs = Documents(d)
    kept = {(t, s) for t, s, _ in docs.tagged()}
    assert ("y = (5 + 6) / 7.0 ** 8", 0) in kept and ("x = [1, 2] * {3: 4}", 1) not in kept
    assert docs.filter_report()["by_source"] == {"1": {"max_non_letter_frac": {"docs": 1, "chars": 19}}}


def test_a_source_emptied_by_the_filters_is_named(corpus):
    root, _ = corpus
    d = _mix(root)
    d.mixture[1].filters.min_words = 10_000
    with pytest.raises(UserError, match=r"fortunes.txt: the filters removed all \d+ documents of this source "
                                        r"\(rule 'min_words'.*data.mixture\[1\].filters.min_words"):
        list(Documents(d))


def test_a_separator_that_does_not_compile_names_the_source(tmp_path):
    with pytest.raises(UserError, match=r"data.mixture\[0\].separator: '\(%' \(source f.txt\) is not a regular expression"):
        loads('[[data.mixture]]\nsource = "f.txt"\nseparator = "(%"\n')


def test_filter_report_lines_name_rules_sources_and_examples(corpus):
    root, c = corpus
    d = _mix(root, "largest", filters=FilterConfig(max_non_letter_frac=0.3, dedup_near=True))
    docs = Documents(d)
    list(docs)
    rep = docs.filter_report()
    lines = filter_lines(rep, docs.source_names())
    assert rep["rules"]["dedup_exact"]["docs"] == len(c["fortunes"]["exact"])
    assert rep["rules"]["max_non_letter_frac"]["docs"] == len(c["fortunes"]["junk"])
    assert "max_non_letter_frac" not in rep["by_source"].get("0", {})  # the reST pages are all kept
    assert any(ln.startswith("  dedup_near: ") and "fortunes.txt" in ln for ln in lines)
    assert any(ln.strip().startswith("e.g. '$$$") for ln in lines)
