"""The data report in words: per-source accounts and the filter report as short text lines.

The data stage logs these (so `llmlab data` prints them and the run's events.jsonl keeps them) and
the TUI's Data screen shows the same lines: one wording of what was read, removed, repeated and
left unread, per source, and of what each filter rule removed, with examples.
"""

from __future__ import annotations

EXAMPLE_CHARS = 72


def _mb(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.2f} MB" if n >= 10_000 else f"{n:,} B"


def _count(docs: int | None, size: int | None) -> str:
    return "not counted (hub source)" if docs is None else f"{docs:,} docs / {_mb(size)}"


def source_lines(report: dict) -> list[str]:
    """One line per source: read, removed by filters, used (train/val), repeated, left unread."""
    rows = report.get("sources", [])
    end = report.get("mixture_end")
    lines = [f"sources ({len(rows)}{', mixture ends: ' + end if end else ''}; shares of the bytes used):"]
    for r in rows:
        line = (f"  {r['source']}: read {r['docs_read']:,} docs / {_mb(r['bytes_read'])}, removed {r['docs_removed']:,}, "
                f"used {r['docs_used']:,} ({r['train_docs']:,} train, {r['val_docs']:,} val) = "
                f"{r['share_bytes']:.1%} (weight {r['weight']:.1%})")
        if r.get("docs_repeated"):
            line += f", repeated {_count(r['docs_repeated'], r['bytes_repeated'])} ({r['epochs']} epochs)"
        if r.get("docs_unread") is None or r.get("docs_unread"):
            line += f", LEFT UNREAD {_count(r.get('docs_unread'), r.get('bytes_unread'))}"
            if r.get("stopped_by"):
                line += f" ({r['stopped_by']})"
        lines.append(line)
    if report.get("limited_by"):
        lines.append(f"  reading stopped at data.{report['limited_by']}")
    return lines


def filter_lines(report: dict, names: list[str] | None = None, examples: int = 1) -> list[str]:
    """The filter report: totals, then per rule the documents removed, per source and an example."""
    lines = [f"filters: removed {report.get('docs_removed', 0):,} of {report.get('docs_in', 0):,} documents "
             f"({report.get('chars_removed', 0):,} of {report.get('chars_in', 0):,} characters)"]
    by_source = report.get("by_source", {})
    for rule, v in report.get("rules", {}).items():
        per = [(int(s), r[rule]["docs"]) for s, r in by_source.items() if rule in r]
        where = ""
        if names and len(names) > 1 and per:
            where = " (" + ", ".join(f"{names[s] if s < len(names) else s}: {n:,}" for s, n in per) + ")"
        lines.append(f"  {rule}: {v['docs']:,} docs, {v['chars']:,} chars{where}")
        for ex in v.get("examples", [])[:examples]:
            text = ex.replace("\n", " ")
            lines.append(f"    e.g. {text[:EXAMPLE_CHARS]!r}{'...' if len(text) > EXAMPLE_CHARS else ''}")
    clusters = report.get("near_clusters", {})
    if clusters:
        n = sum(c["clusters"] for c in clusters.values())
        docs = sum(c["docs"] for c in clusters.values())
        lines.append(f"  near-duplicate clusters: {n:,} holding {docs:,} documents")
    return lines


def token_line(meta: dict) -> str:
    """Tokens in the shards, the end-of-text separators counted apart (they are in the .bin files)."""
    docs = meta["train_docs"] + meta["val_docs"]
    total = meta["train_tokens"] + meta["val_tokens"]
    return (f"{docs:,} documents: {total - docs:,} text tokens + {docs:,} end-of-text = {total:,} tokens in the "
            f"shards ({meta['train_tokens']:,} train / {meta['val_tokens']:,} val)")


def quality_lines(quality: dict) -> list[str]:
    """Per source and overall: languages, lengths, distinct n-grams, vocabulary growth, near-duplicate
    clusters and relevance (when a reference is set)."""
    rows = dict(quality.get("sources", {}))
    if "overall" in quality:
        rows["all sources"] = quality["overall"]
    lines = [f"quality and diversity (a sample of up to {quality.get('sample_docs_per_source', 0):,} documents per source):"]
    for name, q in rows.items():
        langs = ", ".join(f"{k} {v:.0%}" for k, v in q.get("languages", {}).items()) or "-"
        ln = q.get("length", {})
        g = q.get("vocab_growth", {})
        growth = f"; distinct words after {'/'.join(f'{int(k):,}' for k in g)} words: {'/'.join(f'{v:,}' for v in g.values())}"
        line = (f"  {name}: {langs}; chars p10/p50/p90 {ln.get('p10_chars', 0):,}/{ln.get('p50_chars', 0):,}/"
                f"{ln.get('p90_chars', 0):,}; distinct 1/2/3-grams {q.get('distinct_1', 0):.2f}/"
                f"{q.get('distinct_2', 0):.2f}/{q.get('distinct_3', 0):.2f}{growth if g else ''}")
        nd = q.get("near_duplicates")
        if nd and nd.get("clusters"):
            line += f"; near-duplicate clusters {nd['clusters']:,} ({nd['share_in_clusters']:.1%} of documents)"
        if "relevance" in q:
            line += f"; relevance {q['relevance']:.3f}"
        lines.append(line)
    return lines
