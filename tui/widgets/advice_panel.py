"""AdvicePanel: the rules of thumb of one stage, checked against the current preset (core.advice).

Each finding is a level mark, the title and the reason with its numbers; a warning to act on adds
what to change, a rule the preset accepts shows the preset's reason instead, and a rule of a stage
the preset does not run says so, dimmed. The mark differs by shape, not only by colour (16 colours,
NO_COLOR). The panel shows what `core.advice.advise(preset, facts, stage)` returns and computes
nothing itself; `update_with_corpus_facts` fetches the facts from core.data.facts in a worker.
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
        self.border_title = f"rules of thumb: {stage}"

    def update_for(self, preset, facts: Facts | None = None) -> list[Finding]:
        self.findings = advise(preset, facts, stage=self.stage)
        self.update(findings_text(self.findings))
        return self.findings

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
        text = findings_text(self.findings)
        self.update(Text(line + "\n", style="dim") + text if line else text)
