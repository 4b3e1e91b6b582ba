"""Tokenizer: look inside the preset's tokenizer, compare encodings, and train it as a run.

Text typed or pasted (or a document of the corpus) shows as coloured token spans with ids;
selecting a token shows its id, bytes and merge parents. Tabs hold a second encoding side by side,
the vocabulary browser, the compression table over a corpus sample, and the chat template with
the tokens that carry loss marked. Everything comes from `core.tokenizer` in thread workers; the
preset's BPE is only ever trained by a run (`core.runs.launch("tokenizer", ...)`).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Label, ProgressBar, Select, Static, TabbedContent, TabPane, TextArea

from core import runs as core_runs
from core.errors import UserError
from tui.text import plain
from tui.widgets.tables import fill_table
from tui.feed import RunFeed
from tui.messages import MetricsArrived, RunEnded, RunStarted, WorkFailed
from tui.screens.base import StageScreen
from tui.screens.live_run import ProgressLine, follow, launch_run, new_events
from tui.screens.shared import preset_tokenizer
from tui.widgets.advice_panel import AdvicePanel
from tui.widgets.token_view import TokenView

SAMPLE_TEXT = "Once upon a time, Mia found a small red ball in the garden. She said: \"Let's play!\""
SAMPLE_CHAT = [{"role": "system", "content": "You are a kind helper."},
               {"role": "user", "content": "Where did Mia find the ball?"},
               {"role": "assistant", "content": "She found it in the garden."}]
OTHER_ENCODINGS = ("gpt2", "cl100k_base", "o200k_base", "r50k_base", "p50k_base")
VOCAB_PAGE = 200


@dataclass
class TokensReady(Message):
    """Spans and statistics of the text (and of the comparison encoding) were computed."""

    spans: list
    stats: object
    name: str
    other_spans: list | None = None
    other_stats: object | None = None
    other_name: str = ""


@dataclass
class TokenerLoaded(Message):
    tokenizer: object | None
    note: str


@dataclass
class TableReady(Message):
    """Rows for one of the tab tables (vocabulary, compression)."""

    table_id: str
    columns: list[str]
    rows: list[tuple]
    note: str = ""


def stats_line(st) -> str:
    if st is None:
        return ""
    return (f"{st.n_tokens:,} tokens  {st.n_chars:,} chars  {st.n_bytes:,} bytes  "
            f"{st.bytes_per_token:.2f} bytes/token  {st.tokens_per_word:.2f} tokens/word")


class TokenizerScreen(StageScreen):
    MODE = "tokenizer"
    HELP = """The current preset's tokenizer (for an untrained BPE, GPT-2's until you train it with **T**,
which runs as its own process and shows its progress here).
Type or paste in the text box (tab leaves it); **d** takes the next document of the corpus.
In the token view, left/right select a token: its id, bytes and the two tokens that merged into it
show below; **i** shows the ids inline. Tabs: Compare (a second encoding side by side), Vocabulary
(page with [ and ], search by text), Compression (bytes per token of several encodings over a
corpus sample), Chat template (the tokens that carry loss are bright, the rest dimmed)."""

    BINDINGS = [
        Binding("T", "train", "train (run)"),
        Binding("d", "next_document", "next document"),
        Binding("left_square_bracket", "vocab_page(-1)", "vocab page -", key_display="[", show=False),
        Binding("right_square_bracket", "vocab_page(1)", "vocab page +", key_display="]", show=False),
        Binding("z", "compression", "compression"),
    ]

    def compose_body(self) -> ComposeResult:
        yield Label("", id="tok-name")
        with TabbedContent(id="tok-tabs"):
            with TabPane("Text", id="tab-text"):
                yield TextArea(SAMPLE_TEXT, id="tok-input", soft_wrap=True)
                yield TokenView(id="tok-view")
                yield Static("", id="tok-detail")
                yield Static("", id="tok-stats")
            with TabPane("Compare", id="tab-compare"):
                yield Select([(e, e) for e in OTHER_ENCODINGS], value="gpt2", allow_blank=False, id="tok-other")
                with Horizontal(id="tok-compare"):
                    with Vertical():
                        yield Label("", id="cmp-a-name")
                        yield TokenView(id="cmp-a")
                        yield Static("", id="cmp-a-stats")
                    with Vertical():
                        yield Label("", id="cmp-b-name")
                        yield TokenView(id="cmp-b")
                        yield Static("", id="cmp-b-stats")
            with TabPane("Vocabulary", id="tab-vocab"):
                yield Input(placeholder="find tokens containing ... (enter)", id="vocab-find")
                yield DataTable(id="vocab-table", cursor_type="row")
                yield Label("", id="vocab-note")
            with TabPane("Compression", id="tab-compression"):
                yield DataTable(id="compression-table", cursor_type="row")
                yield Label("press z to measure over a corpus sample", id="compression-note")
            with TabPane("Chat template", id="tab-chat"):
                yield Label("", id="chat-note")
                yield TokenView(id="chat-view")
        with Horizontal(id="tok-run"):
            yield Label("", id="tok-run-status")
            yield ProgressBar(total=None, show_eta=True, id="tok-progress")
        yield AdvicePanel("tokenizer", id="advice")

    def on_mount(self) -> None:
        self.tok = None
        self.note = ""
        self.vocab_start = 0
        self.doc_index = 0
        self.feed: RunFeed | None = None
        self.progress = ProgressLine(self.query_one("#tok-run-status", Label),
                                     self.query_one("#tok-progress", ProgressBar))
        super().on_mount()
        self.watch(self.app, "live_runs", self._live_runs_changed, init=True)

    def preset_changed(self, preset) -> None:
        self.query_one(AdvicePanel).update_with_corpus_facts(preset)
        key = (preset.tokenizer, preset.data)  # the BPE's cache key; other edits keep the tokenizer
        if key != getattr(self, "tok_key", None):
            self.tok_key = key
            self.load_tokenizer()

    def _live_runs_changed(self, old, new) -> None:
        live = self.app.live_run("tokenizer")
        if live and self.feed is None:
            self.attach(live)

    # ------------------------------------------------------------------------ loading
    @work(thread=True, exclusive=True, exit_on_error=False, group="tok-load")
    def load_tokenizer(self) -> None:
        tok, note = preset_tokenizer(self.app.preset)
        if tok is None:
            from core.tokenizer import get_tokenizer
            try:
                tok, note = get_tokenizer("gpt2"), note + "; showing gpt2 meanwhile"
            except UserError as e:
                note = f"{note}; gpt2 unavailable too: {e}"
        self.post_message(TokenerLoaded(tok, note))

    def on_tokener_loaded(self, message: TokenerLoaded) -> None:
        self.tok, self.note = message.tokenizer, message.note
        name = getattr(self.tok, "name", "none")
        vocab = getattr(self.tok, "n_vocab", 0)
        self.query_one("#tok-name", Label).update(f"tokenizer [b]{plain(name)}[/] ({vocab:,} ids)  [dim]{plain(self.note)}[/]")
        self.vocab_start = 0
        self.encode()
        self.show_vocab()
        self.show_chat()

    # ------------------------------------------------------------------------- encode
    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        if event.text_area.id == "tok-input":
            self.encode()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "tok-other":
            self.encode()

    def encode(self) -> None:
        if self.tok is None:
            return
        text = self.query_one("#tok-input", TextArea).text
        other = self.query_one("#tok-other", Select).value
        self.encode_worker(self.tok, text, str(other))

    @work(thread=True, exclusive=True, exit_on_error=False, group="tok-encode")
    def encode_worker(self, tok, text: str, other: str) -> None:
        from core.tokenizer import get_tokenizer, spans, stats
        try:
            sp, st = spans(tok, text), stats(tok, text)
            try:
                ot = get_tokenizer(other)
                osp, ost, oname = spans(ot, text), stats(ot, text), ot.name
            except UserError as e:
                osp, ost, oname = [], None, f"{other}: {e}"
        except UserError as e:
            self.post_message(WorkFailed("tokenize", str(e)))
            return
        self.post_message(TokensReady(sp, st, tok.name, osp, ost, oname))

    def on_tokens_ready(self, message: TokensReady) -> None:
        view = self.query_one("#tok-view", TokenView)
        if [s.id for s in view.spans] != [s.id for s in message.spans]:  # new text: the old token is gone
            view.cursor = -1
            self.query_one("#tok-detail", Static).update("")
        view.set_spans(message.spans)
        self.query_one("#tok-stats", Static).update(stats_line(message.stats))
        self.query_one("#cmp-a-name", Label).update(f"[b]{plain(message.name)}[/]")
        self.query_one("#cmp-a", TokenView).set_spans(message.spans)
        self.query_one("#cmp-a-stats", Static).update(stats_line(message.stats))
        self.query_one("#cmp-b-name", Label).update(f"[b]{plain(message.other_name)}[/]")
        self.query_one("#cmp-b", TokenView).set_spans(message.other_spans or [])
        self.query_one("#cmp-b-stats", Static).update(stats_line(message.other_stats))

    def on_token_view_selected(self, message: TokenView.Selected) -> None:
        if message.view.id != "tok-view" or self.tok is None:
            return
        from core.tokenizer import vocab_entry
        e = vocab_entry(self.tok, message.token_id)
        parents = ""
        if e.parents:
            a, b = (vocab_entry(self.tok, p) for p in e.parents)
            parents = f"  merge of {a.id} {plain(repr(a.text))} + {b.id} {plain(repr(b.text))}"
        kind = "special" if e.special else (f"rank {e.rank}" if e.rank is not None else "")
        self.query_one("#tok-detail", Static).update(
            f"token #{message.index}: id [b]{e.id}[/]  {plain(repr(e.text))}  bytes {' '.join(f'{x:02x}' for x in e.bytes)}"
            f"  {kind}{parents}")

    # ------------------------------------------------------------------------- tables
    def show_vocab(self, query: str = "") -> None:
        if self.tok is not None:
            self.vocab_worker(self.tok, self.vocab_start, query)

    @work(thread=True, exclusive=True, exit_on_error=False, group="tok-vocab")
    def vocab_worker(self, tok, start: int, query: str) -> None:
        from core.tokenizer import find_tokens, vocab_page
        entries = find_tokens(tok, query, limit=VOCAB_PAGE) if query else vocab_page(tok, start, VOCAB_PAGE)
        # e.text is already printable (escapes spelled out): repr would double every backslash
        rows = [(str(e.id), f"'{e.text}'", "" if e.rank is None else str(e.rank),
                 "" if not e.parents else f"{e.parents[0]} + {e.parents[1]}", "special" if e.special else "")
                for e in entries]
        note = (f"{len(rows)} tokens containing {query!r}" if query
                else f"ids {start}-{start + len(rows) - 1} of {tok.n_vocab:,} ([ and ] page)")
        self.post_message(TableReady("vocab-table", ["id", "token", "rank", "parents", ""], rows, note))

    def action_compression(self) -> None:
        self.query_one(TabbedContent).active = "tab-compression"
        self.query_one("#compression-note", Label).update("measuring over a corpus sample ...")
        self.compression_worker()

    @work(thread=True, exclusive=True, exit_on_error=False, group="tok-compression")
    def compression_worker(self) -> None:
        from core.data import Documents
        from core.tokenizer import compression_table
        preset = self.app.preset
        try:
            # held-out validation text of every source: never what the tokenizer trained on
            texts = [t for docs in Documents(preset.data).held_out(200_000).values() for t in docs]
            n = sum(len(t) for t in texts)
            encs = [self.tok] if self.tok is not None else []
            rows = compression_table(texts, [*encs, "gpt2", "cl100k_base", "o200k_base"])
        except UserError as e:
            self.post_message(WorkFailed("compression table", str(e)))
            return
        fmt = lambda x: f"{x:.3f}" if x is not None else "-"  # noqa: E731
        out = [(r.name, f"{r.n_vocab:,}", f"{r.n_tokens:,}", f"{r.bytes_per_token:.3f}", fmt(r.vs_gpt2), fmt(r.vs_gpt4))
               if r.available else (r.name, "-", "-", "-", "-", r.error[:40]) for r in rows]
        self.post_message(TableReady("compression-table", ["encoding", "vocab", "tokens", "bytes/token", "vs gpt2",
                                                           "vs gpt4"], out, f"over {n:,} characters of held-out text (the validation split)"))

    def on_table_ready(self, message: TableReady) -> None:
        fill_table(self.query_one(f"#{message.table_id}", DataTable), message.columns, message.rows)
        note_id = "#vocab-note" if message.table_id == "vocab-table" else "#compression-note"
        self.query_one(note_id, Label).update(plain(message.note))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "vocab-find":
            self.show_vocab(event.value)

    def action_vocab_page(self, delta: int) -> None:
        if self.tok is None:
            return
        self.vocab_start = max(0, min(self.tok.n_vocab - 1, self.vocab_start + delta * VOCAB_PAGE))
        self.query_one(TabbedContent).active = "tab-vocab"
        self.show_vocab()

    def show_chat(self) -> None:
        if self.tok is None:
            return
        from core.tokenizer.inspect import Span, printable
        try:
            ids, mask = self.tok.chat.render(SAMPLE_CHAT)
        except (UserError, AttributeError, KeyError) as e:
            self.query_one("#chat-note", Label).update(f"no chat template: {plain(str(e))}")
            return
        sp = []
        for i in ids:
            b = self.tok.token_bytes(i)
            sp.append(Span(i, b, printable(b), 0, 0, False, self.tok.is_special(i)))
        self.query_one("#chat-view", TokenView).set_spans(sp, mask)
        self.query_one("#chat-note", Label).update(
            f"{self.tok.chat.name}: {sum(mask)} of {len(ids)} tokens carry loss (bright); the rest are masked (dim)")

    # ---------------------------------------------------------------------- documents
    def action_next_document(self) -> None:
        self.document_worker(self.doc_index)
        self.doc_index += 1

    @work(thread=True, exclusive=True, exit_on_error=False, group="tok-doc")
    def document_worker(self, index: int) -> None:
        from core.data import iter_documents
        try:
            for i, doc in enumerate(iter_documents(self.app.preset)):
                if i == index:
                    self.app.call_from_thread(self.query_one("#tok-input", TextArea).load_text, doc)
                    return
        except UserError as e:
            self.post_message(WorkFailed("read the corpus", str(e)))


    # ------------------------------------------------------------------- train as a run
    def action_train(self) -> None:
        self.launch()

    def launch(self) -> None:
        preset = self.app.preset
        launch_run(self, "tokenizer", "train tokenizer",
                   lambda: core_runs.launch("tokenizer", preset, root=self.app.runs_root))

    def on_run_started(self, message: RunStarted) -> None:
        if message.stage == "tokenizer":
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
            self.load_tokenizer()
