"""AdvicePanel: the rules of thumb of one stage, checked against the current preset (core.advice).

Each finding is a level mark, the title and the reason with its numbers; a warning to act on adds
what to change, a rule the preset accepts shows the preset's reason instead, and a rule of a stage
the preset does not run says so, dimmed. The mark differs by shape, not only by colour (16 colours,
NO_COLOR). Where the findings do not fit (80x24), the panel lists them one mark and title each, with
the change to make for a warning, and `?` (help) shows them whole with their numbers. The panel
shows what `core.advice.advise(preset, facts, stage)` returns and computes nothing itself;
`update_with_corpus_facts` fetches the facts from core.data.facts in a worker.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import work
from textual.widgets import Static

from core.advice import Facts, Finding, advise

MARKS = {"ok": ("\u2713", "green"), "warn": ("!", "yellow"), "bad": ("\u2717", "red")}
ACCEPTED_MARK, NOT_APPLICABLE_MARK = ("\u2022", "cyan"), ("-", "")


def findings_text(findings: Sequence[Finding]) -> Text:
    out = Text()
    for i, f in enumerate(findings):
        if i:
            out.append("\n")
        if f.level != "ok" and f.accepted:
            mark, color = ACCEPTED_MARK
            out.append(f"{mark} ", style=f"bold {color}")
            out.append(f.title, style="bold")
            out.append(f": accepted by the preset: {f.accepted}")
            continue
        if f.level != "ok" and f.not_applicable:
            out.append(f"{NOT_APPLICABLE_MARK[0]} {f.title}: not for this preset ({f.not_applicable})", style="dim")
            continue
        mark, color = MARKS.get(f.level, ("?", ""))
        out.append(f"{mark} ", style=f"bold {color}")
        out.append(f.title, style="bold")
        out.append(f": {f.reason}")
        if f.fix:
            out.append("\n  change: ", style="bold")
            out.append(f.fix)
    if not findings:
        out.append("no rules of thumb apply here", style="dim")
    return out


def _mark(f: Finding) -> tuple[str, str]:
    if f.level != "ok" and f.accepted:
        return ACCEPTED_MARK
    if f.level != "ok" and f.not_applicable:
        return NOT_APPLICABLE_MARK
    return MARKS.get(f.level, ("?", ""))


def compact_text(findings: Sequence[Finding], detail: int = 2) -> Text:
    """All findings in a few lines, the ones to act on first. `detail` 2: those with what to change,
    then the others' titles; 1: those with what to change, then how many others; 0: every title;
    -1: the titles of those to act on and how many others."""
    act = [f for f in findings if f.level != "ok" and not f.accepted and not f.not_applicable]
    rest = [f for f in findings if f not in act]
    out = Text()
    if detail >= 1:
        for f in act:
            mark, color = _mark(f)
            out.append(f"{mark} ", style=f"bold {color}")
            out.append(f.title, style="bold")
            out.append(f": {f.fix or f.reason}\n")
    titles = {2: rest, 1: [], 0: act + rest, -1: act}[detail]
    for i, f in enumerate(titles):
        mark, color = _mark(f)
        out.append("  " if i else "")
        out.append(f"{mark} ", style=f"bold {color}" if color else "dim")
        out.append(f.title + (" (accepted)" if f.accepted and f.level != "ok" else ""))
    if detail in (1, -1) and rest:
        out.append(f"{'  ' if titles else ''}and {len(rest)} more", style="dim")
    if detail > 0:
        out.append("  (? shows them whole)", style="dim")
    return out


def text_lines(text: Text, width: int) -> int:
    from rich.console import Console

    return len(text.wrap(Console(width=max(1, width)), max(1, width)))


class AdvicePanel(Static):
    """Findings of one stage; call `update_for(preset, facts)` when either changes."""

    DEFAULT_CSS = """
    AdvicePanel { height: auto; max-height: 12; padding: 0 1; border: round $secondary 60%;
                  border-title-color: $text-muted; overflow-y: auto; }
    """

    def __init__(self, stage: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self.stage = stage
        self.findings: list[Finding] = []
        self.facts_line = ""
        self.shown = Text()
        self.border_title = f"rules of thumb: {stage}"

    def update_for(self, preset, facts: Facts | None = None) -> list[Finding]:
        self.findings = advise(preset, facts, stage=self.stage)
        self.facts_line = ""
        self._show()
        return self.findings

    def _show(self) -> None:
        """The findings whole where they fit, else compact (never cut mid-sentence)."""
        full = findings_text(self.findings)
        texts = [Text(self.facts_line + "\n", style="dim") + full] if self.facts_line else []
        texts += [full, *(compact_text(self.findings, d) for d in (2, 1, 0, -1))] if self.findings else [full]
        room = self.styles.max_height.cells if self.styles.max_height is not None else None
        width = self.content_size.width or self.app.size.width - 4
        fits = [t for t in texts if room is None or text_lines(t, width) <= room - 2]  # the border's two lines
        self.shown = fits[0] if fits else texts[-1]
        self.update(self.shown)

    def on_resize(self) -> None:
        if self.findings:
            self._show()

    def update_with_corpus_facts(self, preset) -> None:
        """update_for(preset) now, then again with the corpus facts (core.data.facts: prepared
        shards' meta or a scan of local files) once a thread worker has them, with their line."""
        self._preset = preset
        self.update_for(preset)
        self._load_facts(preset)

    @work(thread=True, exclusive=True, exit_on_error=False, group="advice-facts")
    def _load_facts(self, preset) -> None:
        from core.data.facts import corpus_facts, facts_line

        facts = corpus_facts(preset)
        self.app.call_from_thread(self._show_facts, preset, facts, facts_line(facts))

    def _show_facts(self, preset, facts: Facts, line: str) -> None:
        if preset is not getattr(self, "_preset", None):
            return  # the preset changed meanwhile: a newer worker brings its facts
        self.findings = advise(preset, facts, stage=self.stage)
        self.facts_line = line
        self._show()
