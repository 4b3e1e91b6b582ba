"""Plain-text files as documents: a separator line per document, and known boilerplate removed.

Part of reading (core/data/sources.py reads the other formats). A `separator` is a regex for a line
that ends a document (`^%$` in fortune files, `^-{3,}$` in many dumps); `strip = "gutenberg"`
drops a Project Gutenberg e-book's licence header and footer (the lines up to `*** START OF ...`
and from `*** END OF ...`). Both stream line by line, so a large file never sits in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from core.data.sources import ReadCounts, iter_txt, split_by_mode

STRIP_KINDS = ("gutenberg",)
_GUTENBERG_START = re.compile(r"^\s*\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG", re.IGNORECASE)
_GUTENBERG_END = re.compile(r"^\s*\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG", re.IGNORECASE)
HEADER_LINES = 2000  # a Gutenberg header is ~30-400 lines; no marker in this many: the file has none


def decoded_lines(path: Path, counts: ReadCounts) -> Iterator[str]:
    """The file's lines without their line ends, non-UTF-8 bytes replaced and counted."""
    where = str(path)
    with open(path, "rb") as f:
        for raw in f:
            yield counts.decode(raw, where).rstrip("\r\n")


def strip_gutenberg(lines: Iterable[str]) -> Iterator[str]:
    """The lines between the START and END markers; a file without a START marker is kept whole."""
    it = iter(lines)
    head: list[str] = []
    for line in it:
        if _GUTENBERG_START.match(line):
            head = []
            break
        head.append(line)
        if len(head) >= HEADER_LINES:
            break
    else:  # the file ended before a START marker: nothing was boilerplate
        yield from head
        return
    for line in [*head, *it]:
        if _GUTENBERG_END.match(line):
            return
        yield line


def split_by_separator(lines: Iterable[str], separator: re.Pattern[str]) -> Iterator[str]:
    """Documents ended by a line matching `separator` (the line itself belongs to neither)."""
    doc: list[str] = []
    for line in lines:
        if separator.search(line):
            text = "\n".join(doc).strip("\n")
            if text:
                yield text
            doc = []
        else:
            doc.append(line)
    text = "\n".join(doc).strip("\n")
    if text:
        yield text


def iter_text_file(path: Path, counts: ReadCounts, mode: str = "file", separator: str = "",
                   strip: str = "") -> Iterator[str]:
    """Documents of one .txt file under the source's reading options (the regex is checked when the
    preset loads; an invalid one raises re.error here)."""
    if not separator and not strip:
        yield from iter_txt(path, mode, counts)  # the plain reader keeps a whole file byte-exact
        return
    lines: Iterable[str] = decoded_lines(path, counts)
    if strip == "gutenberg":
        lines = strip_gutenberg(lines)
    if separator:
        yield from split_by_separator(lines, re.compile(separator))
    else:
        yield from split_by_mode(lines, mode)
