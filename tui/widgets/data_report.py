"""DataReport: what the data stage read, removed, repeated and left unread, per source, and the
relevance, quality and diversity of each source, as core.data.report words it.

The Data screen shows it in place of the row text (`v`); the report is the prepared shards'
meta.json (the run's numbers), or, before shards exist, the rows read for browsing, said as such.
"""

from __future__ import annotations

from rich.markup import escape
from textual.containers import VerticalScroll
from textual.widgets import Static

from core.data.report import filter_lines, quality_lines, source_lines


def report_text(report: dict | None, browsed_filter: dict | None = None, rows: int = 0) -> str:
    """Markup for a report: sources, filters and quality from the shards, else the browsed rows' filters."""
    if not report:
        lines = ["[b]no prepared shards yet[/]: press [b]s[/] to prepare them; until then only the rows read for "
                 "browsing are known"]
        if browsed_filter:
            fl = filter_lines(browsed_filter)
            fl[0] = fl[0].replace("filters:", f"filters (the first {rows:,} rows read):", 1)
            lines += [escape(x) for x in fl]
        return "\n".join(lines)
    names = [s["source"] for s in report["source_report"].get("sources", [])]
    lines = ["[b]the prepared shards[/] (the data run's numbers)"]
    lines += [escape(x) for x in source_lines(report["source_report"])]
    lines += [escape(x) for x in filter_lines(report["filter_report"], names)]
    if report.get("quality"):
        lines += [escape(x) for x in quality_lines(report["quality"])]
    return "\n".join(lines)


class DataReport(VerticalScroll):
    """A scrollable panel of the data report."""

    DEFAULT_CSS = """
    DataReport { height: 1fr; padding: 0 1; }
    DataReport > Static { width: 1fr; }
    """

    def compose(self):
        yield Static("", id="data-report-text")

    def show(self, report: dict | None, browsed_filter: dict | None = None, rows: int = 0) -> None:
        self.query_one("#data-report-text", Static).update(report_text(report, browsed_filter, rows))
