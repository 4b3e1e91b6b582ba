"""Real-shaped test corpora, generated (seeded) on the spot: nothing downloaded, nothing committed.

fortunes (`%`-separated), a Project Gutenberg e-book with its licence header and footer,
reStructuredText documentation pages with code blocks, directives and tables, JSONL rows; with
planted exact duplicates, near duplicates (two words changed) and junk. Used by tests/data and by
tests/bench/data_filters.py.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ("time people year way day man thing woman life child world school state family student group country "
         "problem hand part place case week company system program question work government number night point "
         "home water room mother area money story fact month lot right study book eye job word business issue "
         "side kind head house service friend father power hour game line end member law car city community name "
         "president team minute idea kid body information back parent face others level office door health person "
         "art war history party result change morning reason research girl guy moment air teacher force education "
         "good new first last long great little own other old right big high different small large next early young "
         "important few public bad same able always never often quietly slowly finally together again").split()
CODE_WORDS = ("self value result items index count buffer path name data config parser token").split()


def sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + rng.choice(".!?.")


def paragraph(rng: random.Random, sentences: int = 4) -> str:
    return " ".join(sentence(rng, rng.randint(8, 18)) for _ in range(sentences))


def fortune(rng: random.Random, min_words: int = 25) -> str:
    n = rng.randint(min_words, min_words + 20)
    words = [rng.choice(WORDS) for _ in range(n)]
    lines, line = [], []
    for w in words:
        line.append(w)
        if len(line) >= 9:
            lines.append(" ".join(line))
            line = []
    if line:
        lines.append(" ".join(line))
    return "\n".join(lines).capitalize() + "."


def two_word_edit(rng: random.Random, text: str) -> str:
    """The same text with two different words replaced by other words."""
    words = text.split(" ")
    for i in rng.sample(range(1, len(words) - 1), 2):
        words[i] = rng.choice([w for w in WORDS if w != words[i]])
    return " ".join(words)


def code_line(rng: random.Random, i: int) -> str:
    a, b = rng.sample(CODE_WORDS, 2)
    return f'{a}[{i}] = {{"{b}": ({b}[{i}] * 2 + 1) % 7, "n": [{i}, {i + 1}]}}  # {a}/{b}'


def rst_page(rng: random.Random, title: str, code_lines: int = 14) -> str:
    """A documentation page: title with adornment, prose with roles and literals, a literal block,
    a code-block directive, a doctest, a table and a note; lots of markup and code, real prose."""
    fn = rng.choice(CODE_WORDS)
    parts = [title, "=" * len(title), "", f".. module:: {fn}", "",
             paragraph(rng) + f" See :func:`{fn}.open` and ``{fn}.close()`` for details.", "",
             "Example::", "", *("    " + code_line(rng, i) for i in range(code_lines)), "",
             paragraph(rng, 2), "", "Usage", "-----", "",
             ".. code-block:: python", "", f"   >>> {fn}.count([1, 2, 3])", "   3", f"   >>> {fn}.path('/tmp/x')",
             "   '/tmp/x'", "", "+--------+-------+", "| name   | value |", "+========+=======+",
             f"| {fn[:6]:<6} | {rng.randint(0, 99):<5} |", "+--------+-------+", "", ".. note::", "",
             "   " + paragraph(rng, 2), "", paragraph(rng, 3), ""]
    return "\n".join(parts)


def gutenberg_book(rng: random.Random, title: str, chapters: int = 3) -> str:
    header = [f"The Project Gutenberg eBook of {title}", "", "This ebook is for the use of anyone anywhere in the "
              "United States and most other parts of the world at no cost.", "", f"Title: {title}", "",
              f"*** START OF THE PROJECT GUTENBERG EBOOK {title.upper()} ***", ""]
    body = []
    for c in range(1, chapters + 1):
        body += [f"CHAPTER {c}", ""] + [paragraph(rng) + "\n" for _ in range(4)]
    footer = [f"*** END OF THE PROJECT GUTENBERG EBOOK {title.upper()} ***", "", "Section 1. General Terms of Use "
              "and Redistributing Project Gutenberg electronic works", "PLEASE READ THIS BEFORE YOU DISTRIBUTE"]
    return "\n".join(header + body + footer) + "\n"


JUNK = ("$$$ ### 123 456 !!! @@@ %%% 789 &&& *** 000 ^^^ ||| ~~~ 42 $$$", "0x3f 0x41 0x7e | 12:34:56 | 9999 | ==> <== ##")


def fortunes_file(path: Path, rng: random.Random, n: int, near: int = 0, exact: int = 0,
                  junk: int = 0) -> dict:
    """`n` fortunes separated by `%` lines, plus planted copies; returns what was planted."""
    docs = [fortune(rng) for _ in range(n)]
    originals = rng.sample(range(n), near + exact)
    near_pairs = [(docs[i], two_word_edit(rng, docs[i])) for i in originals[:near]]
    exact_copies = [docs[i] for i in originals[near:]]
    junk_docs = [JUNK[i % len(JUNK)] + f" {i}" for i in range(junk)]
    allx = docs + [b for _, b in near_pairs] + exact_copies + junk_docs
    path.write_text("\n%\n".join(allx) + "\n%\n")
    return {"docs": docs, "near": near_pairs, "exact": exact_copies, "junk": junk_docs, "total": len(allx)}


def doc_folder(folder: Path, rng: random.Random, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    pages = []
    for i in range(n):
        page = rst_page(rng, f"Module {i:03d} {rng.choice(WORDS)}")
        (folder / f"page{i:03d}.txt").write_text(page)
        pages.append(page)
    return pages


def jsonl_file(path: Path, rng: random.Random, n: int) -> list[str]:
    texts = [paragraph(rng, rng.randint(1, 5)) for _ in range(n)]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return texts


def mixed_corpus(root: Path, seed: int = 0, scale: int = 1) -> dict:
    """docs/ (reST pages), fortunes.txt (% separated, planted), book.txt (Gutenberg), rows.jsonl."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {"pages": doc_folder(root / "docs", rng, 20 * scale)}
    out["fortunes"] = fortunes_file(root / "fortunes.txt", rng, 200 * scale, near=20 * scale, exact=5 * scale,
                                    junk=5 * scale)
    (root / "book.txt").write_text(gutenberg_book(rng, "A Quiet Year", chapters=2 * scale))
    out["rows"] = jsonl_file(root / "rows.jsonl", rng, 100 * scale)
    return out
