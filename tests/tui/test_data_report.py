"""The Data screen's report panel (v) and row sorting (o): the prepared run's per-source account,
filter report and quality, not the browsed rows' counts."""

from __future__ import annotations

import random

from conftest import wait_for
from textual.widgets import Static

from core.config import load
from core.data import prepare_shards
from core.tokenizer import get_tokenizer
from tests.data.corpus_kit import fortunes_file
from tui.widgets.data_report import DataReport


async def test_report_shows_the_prepared_run_and_rows_sort(make, lab, gpt2_cache):
    fortunes_file(lab / "f.txt", random.Random(1), 120, exact=4, junk=3)
    (lab / "rows.jsonl").write_text("".join(f'{{"text": "row number {i} says hello"}}\n' for i in range(40)))
    (lab / "mix.toml").write_text(
        'name = "mix"\nextends = "gpt2tok.toml"\n[data]\nmixture_end = "largest"\nworkers = 1\n'
        '[[data.mixture]]\nsource = "f.txt"\nseparator = "^%$"\n[[data.mixture]]\nsource = "rows.jsonl"\nweight = 0.1\n'
        '[data.filters]\nmax_non_letter_frac = 0.3\n[model]\ncontext_length = 32\n')
    prepare_shards(load(lab / "mix.toml"), get_tokenizer("gpt2"))
    app = make(preset="mix.toml", mode="data")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded is not None, 60)
        screen = app.screen
        assert screen.loaded.report is not None and screen.loaded.facts.origin.startswith("prepared shards")
        await pilot.press("v")
        report = screen.query_one(DataReport)
        assert report.display and not screen.query_one("#data-text-box").display
        text = str(screen.query_one("#data-report-text", Static).render())
        assert "the prepared shards" in text and "repeated" in text and "f.txt" in text
        assert "dedup_exact: 4 docs" in text and "max_non_letter_frac: 3 docs" in text and "f.txt: en 100%" in text
        await pilot.press("o")
        assert screen.sort_key == "chars" and "sorted by chars" in str(screen.query_one("#data-page").render())
        lengths = [r["chars"] for r in screen.shown_rows]
        assert lengths == sorted(lengths, reverse=True) and lengths[0] > lengths[-1]
