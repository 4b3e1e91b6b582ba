"""Data: browse a corpus or a finetuning set, see its statistics, prepare the token shards as a run.

Rows come from `core.data` (`Documents` for a corpus, `load_records` for finetuning and evaluation
sets) in a thread worker; statistics are `core.data`'s (`shard_stats` once shards exist, else
`text_stats` of the rows read, `record_stats` for labelled sets) with the document-length histogram
drawn against the context length. Preparing the shards is a run (`core.runs.launch("data", ...)`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Input, Label, ProgressBar, Select, Static

from core import runs as core_runs
from core.advice import Facts
from core.data.facts import corpus_facts
from core.data.quality import Relevance, read_reference, row_measures
from core.errors import UserError
from tui.text import plain
from tui.widgets.tables import fill_table
from tui.feed import RunFeed
from tui.messages import MetricsArrived, RunEnded, RunStarted, WorkFailed
from tui.screens.base import StageScreen
from tui.screens.live_run import ProgressLine, follow, launch_run, new_events
from tui.screens.shared import preset_tokenizer
from tui.widgets.advice_panel import AdvicePanel
from tui.widgets.data_report import DataReport
from tui.widgets.histogram import Histogram

PAGE = 100
MAX_ROWS = 5000
EMBEDDED_SETS = ("embedded:tinyworld-classify", "embedded:tinyworld-instruct", "embedded:tinyworld-preference",
                 "embedded:tinyworld-choice")


@dataclass
class RowsLoaded(Message):
    """A source was read: its rows (dicts with a `text` or the set's fields) and its statistics."""

    source: str
    kind: str  # corpus | records
    rows: list[dict]
    stats: dict
    filter_report: dict | None
    note: str = ""
    report: dict | None = None  # the prepared shards' source, filter and quality reports
    measures: list[dict] | None = None  # per row: the numbers rows sort by (core.data.quality.row_measures)
    facts: Facts | None = None


def read_source(preset, source: str, max_rows: int = MAX_ROWS) -> RowsLoaded:
    """The blocking part: rows and statistics of `source` through core.data (run in a worker)."""
    from core import data as core_data

    tok, note = preset_tokenizer(preset)
    ctx = preset.model.context_length
    if source.startswith("embedded:tinyworld-") or source in (preset.finetune.data, preset.eval.choice_data):
        rows = core_data.load_records(source, "train")
        return RowsLoaded(source, "records", rows[:max_rows], core_data.record_stats(rows, tok), None, note)
    data = preset.data if source == preset.data.source else dataclasses.replace(preset.data, source=source, mixture=[])
    docs = core_data.Documents(data)
    rows = []
    for text in docs:
        rows.append({"text": text})
        if len(rows) >= max_rows:
            break
    stats, report, flt = None, None, docs.filter.report()
    if tok is not None and source == preset.data.source:
        folder = core_runs.workspace() / "data" / core_data.shard_key(data, tok)
        if (folder / "meta.json").exists():
            meta = core_data.read_meta(folder)
            stats = core_data.shard_stats(meta, ctx, tok)
            stats["from"] = "prepared shards"
            report = {k: meta.get(k) for k in ("source_report", "filter_report", "quality")}
            flt = meta["filter_report"]  # the run's counts, not those of the rows browsed
    if stats is None:
        stats = core_data.text_stats((r["text"] for r in rows), tok, ctx, max_docs=max_rows)
        stats["from"] = f"the first {len(rows):,} documents"
    rel = None
    if data.relevance_reference:
        try:
            rel = Relevance(read_reference(data.relevance_reference), [r["text"] for r in rows[:1000]])
        except UserError as e:
            note = f"{note}; {e}" if note else str(e)
    measures = [row_measures(r["text"], rel) for r in rows]
    facts = corpus_facts(preset) if source == preset.data.source else None
    return RowsLoaded(source, "corpus", rows, stats, flt, note, report, measures, facts)


def stats_text(msg: RowsLoaded) -> str:
    s = msg.stats
    lines = []
    if msg.kind == "records":
        lines.append(f"[b]{s.get('records', 0):,}[/] records (train split)")
        for c in s.get("classes", []):
            lines.append(f"  class {c['name']}: {c['count']:,} ({c['share']:.0%})")
        if "chance" in s:
            lines.append(f"  multiple choice, chance {s['chance']:.0%}")
        for f, v in s.get("fields", {}).items():
            tok = v.get("tokens")
            lines.append(f"  {f}: chars p50 {v['chars']['p50']}, max {v['chars']['max']}"
                         + (f"; tokens p50 {tok['p50']}, p95 {tok['p95']}" if tok else ""))
        return "\n".join(lines)
    lines.append(f"[b]{s.get('docs', 0):,}[/] documents, {s.get('chars', 0):,} characters (from {s.get('from', '?')})")
    if "tokens" in s:
        lines.append(f"{s['tokens']:,} tokens, {s.get('chars_per_token', 0):.2f} chars/token, "
                     f"mean {s.get('mean_doc_tokens', 0):.0f} tokens/document")
        lines.append(f"context {s.get('context_length')}: [b]{s.get('truncated_share', 0):.1%}[/] of documents longer")
        top = s.get("top_tokens", [])[:8]
        if top:
            lines.append("top tokens: " + "  ".join(plain(repr(t.get("text", t["id"]))) for t in top))
    else:
        lines.append(f"[dim]{plain(msg.note)}[/]")
    fr = msg.filter_report
    if fr:
        scope = "the prepared run" if msg.report else f"the first {len(msg.rows):,} rows read"
        lines.append(f"filters ({scope}): {fr.get('docs_removed', 0):,} of {fr.get('docs_in', 0):,} documents removed")
        for rule, v in fr.get("rules", {}).items():
            lines.append(f"  {rule}: {v['docs']:,} docs, {v['chars']:,} chars")
    return "\n".join(lines)


class DataScreen(StageScreen):
    MODE = "data"
    AUTO_FOCUS = "#data-table"
    HELP = """The data of the current preset. Pick a source (the preset's corpus, or a
finetuning/evaluation set) or type one (`embedded:NAME`, `hf:NAME`, a file or glob) and press enter.
Rows show in the table (**[** and **]** page, **/** searches); the highlighted row's full text is on
the right, with the statistics: documents, tokens, the length histogram against the context length
and the share truncated, what the filters removed, and the class balance of labelled sets.
**v** shows the data report instead of the row text: per source what was read, removed, used,
repeated and left unread, the filter report with examples, and languages, lengths, diversity,
near-duplicate clusters and relevance (from the prepared shards; before them, of the rows read).
**o** sorts the rows by length, words, non-letter share, distinct-word share or relevance.
**s** prepares the token shards as a run (it trains the tokenizer first when needed)."""

    BINDINGS = [
        Binding("s", "prepare", "prepare shards"),
        Binding("v", "toggle_report", "report"),
        Binding("o", "sort", "sort"),
        Binding("slash", "search", "search", key_display="/"),
        Binding("left_square_bracket", "page(-1)", "prev page", key_display="["),
        Binding("right_square_bracket", "page(1)", "next page", key_display="]"),
    ]

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="data-top"):
            yield Select([], prompt="source", id="data-source", allow_blank=True)
            yield Input(placeholder="or type a source, enter", id="data-typed")
            yield Input(placeholder="search rows", id="data-search")
        with Horizontal(id="data-main"):
            with Vertical(id="data-left"):
                yield DataTable(cursor_type="row", id="data-table")
                yield Label("", id="data-page")
            with Vertical(id="data-right"):
                with VerticalScroll(id="data-text-box"):
                    yield Static("", id="data-text")
                yield DataReport(id="data-report")
                yield Histogram("document length (tokens)", id="data-hist")
                with VerticalScroll(id="data-stats-box"):  # focusable: tab to it, arrows scroll at 80x24
                    yield Static("", id="data-stats")
        with Horizontal(id="data-run"):
            yield Label("", id="data-run-status")
            yield ProgressBar(total=None, show_eta=True, id="data-progress")
        yield AdvicePanel("data", id="advice")

    def on_mount(self) -> None:
        self.loaded: RowsLoaded | None = None
        self.shown_rows: list[dict] = []
        self.page = 0
        self.sort_key = ""
        self.query_one(DataReport).display = False
        self.feed: RunFeed | None = None
        self.progress = ProgressLine(self.query_one("#data-run-status", Label),
                                     self.query_one("#data-progress", ProgressBar), logs=True)
        super().on_mount()
        self.watch(self.app, "live_runs", self._live_runs_changed, init=True)

    def preset_changed(self, preset) -> None:
        p = preset
        self.query_one(AdvicePanel).update_for(preset)
        # an edit elsewhere (a model field, the learning rate) must not re-read the corpus
        key = (p.data, p.tokenizer, p.model.context_length, p.finetune.data, p.eval.choice_data)
        if key == getattr(self, "data_key", None):
            return
        self.data_key = key
        choices = [p.data.source, *EMBEDDED_SETS, p.finetune.data, p.eval.choice_data]
        seen: list[str] = []
        for c in choices:
            if c and c not in seen:
                seen.append(c)
        sel = self.query_one("#data-source", Select)
        sel.set_options([(plain(c) + ("  (corpus)" if c == p.data.source else ""), c) for c in seen])
        sel.value = p.data.source

    def on_screen_resume(self) -> None:
        """Back on Data: statistics read before the tokenizer existed are read again (it may have been
        trained meanwhile, here or from the CLI); a stat of one file, no reading on the UI thread."""
        from core.tokenizer.cache import tokenizer_dir
        from core.tokenizer.encodings import META_FILE

        p = self.app.preset
        loaded = getattr(self, "loaded", None)
        if (loaded is not None and loaded.kind == "corpus" and "tokens" not in loaded.stats
                and p.tokenizer.kind == "bpe" and (tokenizer_dir(p) / META_FILE).is_file()):
            self.load(loaded.source)

    def _live_runs_changed(self, old, new) -> None:
        live = self.app.live_run("data")
        if live and self.feed is None:
            self.attach(live)

    # --------------------------------------------------------------------------- rows
    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "data-source" and isinstance(event.value, str):
            self.load(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "data-typed" and event.value.strip():
            self.load(event.value.strip())
        elif event.input.id == "data-search":
            self.query_one("#data-table", DataTable).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "data-search" and self.loaded is not None:
            self.apply_search(event.value)

    def load(self, source: str) -> None:
        self.query_one("#data-page", Label).update(f"reading {plain(source)} ...")
        self.read(source)

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-read")
    def read(self, source: str) -> None:
        try:
            self.post_message(read_source(self.app.preset, source))
        except UserError as e:
            self.post_message(WorkFailed(f"cannot read {source}", str(e)))

    def on_work_failed(self, message: WorkFailed) -> None:
        super().on_work_failed(message)
        self.query_one("#data-page", Label).update(f"[red]{plain(message.message)}[/]")

    def on_rows_loaded(self, message: RowsLoaded) -> None:
        self.loaded = message
        self.apply_search(self.query_one("#data-search", Input).value)
        self.query_one("#data-stats", Static).update(stats_text(message))
        hist = self.query_one(Histogram)
        s = message.stats
        if message.kind == "records" and s.get("classes"):
            hist.set_bars([c["name"] for c in s["classes"]], [c["count"] for c in s["classes"]], "class balance")
        elif s.get("length_histogram"):
            h = s["length_histogram"]
            hist.set_bars([b["label"].replace(" ctx", "") for b in h], [b["docs"] for b in h],
                          f"documents by length (x ctx {s.get('context_length')})")
        else:  # no lengths without a tokenizer: the statistics' note says how to get one
            hist.set_bars([], [], "document length")
        hist.set_class(not hist.counts, "-empty")
        facts = message.facts or Facts(corpus_tokens=s.get("train_tokens"), val_tokens=s.get("val_tokens"))
        self.query_one(AdvicePanel).update_for(self.app.preset, facts)
        self.query_one(DataReport).show(message.report, message.filter_report, len(message.rows))

    def apply_search(self, query: str) -> None:
        rows = self.loaded.rows if self.loaded else []
        if self.loaded is not None and self.loaded.measures and self.sort_key:
            key = self.sort_key
            rows = [dict(r, **{key: m.get(key, 0)}) for r, m in zip(rows, self.loaded.measures)]
            rows.sort(key=lambda r: r[key], reverse=True)
        q = query.strip().lower()
        # the search filters the rows already read (display only; nothing is recomputed)
        self.shown_rows = [r for r in rows if q in " ".join(str(v) for v in r.values()).lower()] if q else rows
        self.page = 0
        self.show_page()

    def show_page(self) -> None:
        table = self.query_one("#data-table", DataTable)
        rows = self.shown_rows[self.page * PAGE:(self.page + 1) * PAGE]
        cols = [k for k in (self.shown_rows[0].keys() if self.shown_rows else ["text"]) if k != "label_name"][:4]
        first = self.page * PAGE
        fill_table(table, ["#", *cols],
                   [[str(i), *(str(r.get(c, "")).replace("\n", " ")[:60] for c in cols)] for i, r in enumerate(rows, first)],
                   keys=[str(i) for i in range(first, first + len(rows))], column_keys=["#", *cols])
        n = len(self.shown_rows)
        pages = max(1, -(-n // PAGE))
        src = self.loaded.source if self.loaded else ""
        order = f", sorted by {self.sort_key} (o)" if self.sort_key else ""
        read = len(self.loaded.rows) if self.loaded else 0
        # the table holds the rows read (at most MAX_ROWS), the statistics may cover the whole corpus
        what = (f"{n:,} rows" if read < MAX_ROWS else f"the first {read:,} rows" if n == read
                else f"{n:,} of the first {read:,} rows")
        self.query_one("#data-page", Label).update(f"{plain(src)}: {what}, page {self.page + 1}/{pages}{order}")
        if rows:
            self.show_row(self.page * PAGE)
        else:  # no hits: the preview must not keep showing the last row
            self.query_one("#data-text", Static).update("[dim]no rows match[/]" if self.loaded else "")

    def show_row(self, index: int) -> None:
        if 0 <= index < len(self.shown_rows):
            r = self.shown_rows[index]
            text = "\n".join(f"[b]{k}[/]: {plain(str(v))}" for k, v in r.items()) if len(r) > 1 else plain(r.get("text", ""))
            self.query_one("#data-text", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value is not None:
            self.show_row(int(event.row_key.value))

    def action_page(self, delta: int) -> None:
        pages = max(1, -(-len(self.shown_rows) // PAGE))
        self.page = max(0, min(pages - 1, self.page + delta))
        self.show_page()

    def action_search(self) -> None:
        self.query_one("#data-search", Input).focus()

    def action_toggle_report(self) -> None:
        report = self.query_one(DataReport)
        report.display = not report.display
        self.query_one("#data-text-box").display = not report.display

    def action_sort(self) -> None:
        """Cycle the row order: as read, then by each measure, largest first."""
        keys = ["", *((self.loaded.measures or [{}])[0].keys() if self.loaded and self.loaded.measures else [])]
        self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)] if self.sort_key in keys else ""
        self.apply_search(self.query_one("#data-search", Input).value)


    # ------------------------------------------------------------------ shards as a run
    def action_prepare(self) -> None:
        self.launch()

    def launch(self) -> None:
        preset = self.app.preset
        launch_run(self, "data", "prepare shards",
                   lambda: core_runs.launch("data", preset, root=self.app.runs_root))

    def on_run_started(self, message: RunStarted) -> None:
        if message.stage == "data":
            self.attach(message.run_name)

    def attach(self, name: str) -> None:
        self.feed = follow(self, core_runs.open_run(name, self.app.runs_root))
        self.progress.started(name)

    def on_metrics_arrived(self, message: MetricsArrived) -> None:
        events = new_events(self.feed, message)
        if events is not None:
            self.progress.show(message.run_name, events)

    def on_run_ended(self, message: RunEnded) -> None:
        if self.feed is None or message.run_name != self.feed.run.name:
            return
        self.progress.ended(message)
        if message.state == "finished":
            if self.loaded is not None:
                self.load(self.loaded.source)  # statistics of the prepared shards now
