"""Relevance, quality and diversity per source: languages, lengths, diversity, near-duplicate
clusters and TF-IDF relevance to a reference, on planted data; the data stage's report and bad input."""

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

from core.config import DataConfig, FilterConfig, SourceConfig, load
from core.data import Documents
from core.data.quality import QualitySampler, Relevance, diversity, quality_report, row_measures
from tests.data.corpus_kit import fortune, fortunes_file, paragraph

ROOT = Path(__file__).resolve().parents[2]
GERMAN = ("Der alte Mann ging langsam durch den stillen Wald und dachte an die Tage seiner Kindheit, "
          "als die Welt noch groß und voller Wunder war.")


def test_report_per_source_on_planted_sources(tmp_path):
    rng = random.Random(5)
    fortunes_file(tmp_path / "f.txt", rng, 120, near=20)
    (tmp_path / "de.txt").write_text("\n%\n".join(f"{GERMAN} ({i})" for i in range(30)))
    d = DataConfig(mixture=[SourceConfig(source=str(tmp_path / "f.txt"), separator="^%$"),
                            SourceConfig(source=str(tmp_path / "de.txt"), separator="^%$")],
                   mixture_end="largest", filters=FilterConfig(dedup_near=True))
    docs = Documents(d)
    sampler = QualitySampler(2, sample_docs=50)
    list(sampler.observe(docs.tagged()))
    ref = [fortune(random.Random(9)) for _ in range(5)]
    q = quality_report(sampler, docs.source_names(), docs.filter_report(), ref)
    f, de = q["sources"][str(tmp_path / "f.txt")], q["sources"][str(tmp_path / "de.txt")]
    assert f["languages"] == {"en": 1.0} and de["languages"] == {"de": 1.0}
    n = f["near_duplicates"]["clusters"]  # MinHash LSH is probabilistic: 19 or 20 of the 20 planted pairs
    assert n >= 18 and f["near_duplicates"]["sizes"] == {"2": n}
    assert abs(f["near_duplicates"]["share_in_clusters"] - 2 * n / 140) < 1e-3
    assert de["distinct_3"] < 0.2 < f["distinct_3"]  # the same sentence thirty times is not diverse
    assert f["relevance"] > 5 * de["relevance"]  # English fortunes resemble English fortunes
    assert len(sampler.samples[0]) == 50 and f["length"]["docs"] == sampler.seen[0]
    assert "overall" in q


def test_diversity_and_row_measures():
    rng = random.Random(1)
    varied = [paragraph(rng) for _ in range(20)]
    same = ["the cat sat on the mat"] * 100
    dv, ds = diversity(varied), diversity(same)
    assert dv["distinct_2"] > 0.5 > ds["distinct_2"] and ds["vocab_growth"] == {}  # fewer than 1,000 words
    rel = Relevance(["the cat sat on the mat"], same[:3] + varied[:3])
    assert row_measures("the cat sat", rel)["relevance"] > row_measures(varied[0], rel)["relevance"]
    assert row_measures("ab 12")["non_letter"] == 0.4


def test_stage_reports_quality_and_an_unreadable_reference_exits_2(workspace, tmp_path, gpt2_cache):
    fortunes_file(tmp_path / "f.txt", random.Random(2), 80)
    preset = tmp_path / "p.toml"
    preset.write_text(f'name = "p"\nextends = "tiny"\n[data]\nsource = "{tmp_path / "f.txt"}"\nseparator = "^%$"\n'
                      f'relevance_reference = "{tmp_path / "missing.txt"}"\n[tokenizer]\nkind = "tiktoken"\n'
                      f'[model]\ncontext_length = 16\n')
    env = {**os.environ, "LLMLAB_HOME": str(workspace), "COLUMNS": "300"}
    p = subprocess.run([sys.executable, "-m", "core.cli", "data", str(preset)], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 2 and "data.relevance_reference:" in p.stdout and "missing.txt" in p.stdout, p.stdout
    (tmp_path / "missing.txt").write_text(fortune(random.Random(3)))
    from core.stages.data import run

    run_dir = workspace / "r"
    run_dir.mkdir()
    from tests.tokenizer.test_tokenizer_stage import Events

    log = Events()
    run(load(str(preset)), run_dir, log, threading.Event())
    report = json.loads((run_dir / "report.json").read_text())
    q = report["quality"]["sources"][str(tmp_path / "f.txt")]
    assert q["languages"] == {"en": 1.0} and q["relevance"] > 0
    assert report["shard_tokens"] == report["tokens"] + report["eot_tokens"]
    text = "\n".join(e.get("message", "") for e in log.events)
    assert "quality and diversity" in text and "LEFT UNREAD" not in text and "end-of-text" in text
