"""Markup and code in technical text, told apart from prose for the quality filters.

Used by core/data/filters.py when `data.filters.markup_aware` is on. Documentation pages are
reStructuredText or Markdown: section underlines, directives, tables, roles and code blocks are
mostly non-letters and repeat by design, so a filter that counts them as prose drops real pages.
`split_markup(text)` classifies each line as prose, code or markup (fenced and indented literal
blocks, doctest lines, `.. directive::` lines, adornments, table borders) and moves inline literals,
roles and link targets out of the prose; the rules then measure the prose alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"^\s*(```|~~~)")
_ADORNMENT = re.compile(r"^\s*([=\-~`:'\"^_*+#<>.])\1{2,}\s*$")
_TABLE = re.compile(r"^\s*[+|][-=+|: ]*[+|]\s*$")
_DIRECTIVE = re.compile(r"^\s*\.\.\s+(\S+::|_|\[|\|)")
_CODE_DIRECTIVE = re.compile(r"^\s*\.\.\s+(code-block|code|sourcecode|doctest|highlight|literalinclude|testcode)::")
_DOCTEST = re.compile(r"^\s*(>>>|\.\.\.)(\s|$)")
_FIELD = re.compile(r"^\s*:[\w -]+:(\s|$)")
# inline markup: ``literal``, `code`, :role:`target`, `text <url>`_, [text](url), **strong**, *em*
_INLINE_CODE = re.compile(r"``[^`]+``|(?::[\w:.-]+:)?`[^`]+`_{0,2}")
_LINK_URL = re.compile(r"\]\([^)\s]+\)|<https?://[^>\s]+>")
_EMPHASIS = re.compile(r"\*\*|(?<!\w)\*(?=\w)|(?<=\w)\*(?!\w)")
_HINT = re.compile(r"```|~~~|::|`|>>>|^\s*\.\. |^\s*([=\-~^*#+|])\1{2,}", re.MULTILINE)


@dataclass(frozen=True)
class Parts:
    """A document split into its prose lines (inline markup removed) and the characters set apart."""
    prose: list[str]
    code_chars: int
    markup_chars: int


# every _HINT match contains one of these: substring tests (C speed) settle most plain texts
_HINT_PARTS = ("`", "::", ">>>", ".. ", "~~~", "===", "---", "^^^", "***", "###", "+++", "|||")


def has_markup(text: str) -> bool:
    """A cheap test: plain prose skips the line classifier."""
    for part in _HINT_PARTS:  # a plain loop: any() over a generator costs as much as the tests
        if part in text:
            return _HINT.search(text) is not None
    return False


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def split_markup(text: str) -> Parts:
    """Prose lines, and how many characters were code or markup (line ends not counted)."""
    prose: list[str] = []
    code = markup = 0
    fence = False
    literal_at: int | None = None  # indentation that ended the literal block's introduction
    for line in text.splitlines():
        stripped = line.strip()
        if fence:
            if _FENCE.match(line):
                fence = False
                markup += len(line)
            else:
                code += len(line)
            continue
        if literal_at is not None:
            if not stripped or _indent(line) > literal_at:
                code += len(line)
                continue
            literal_at = None
        if not stripped:
            continue
        if stripped[0].isalnum():  # no line pattern starts with a letter or digit: prose
            pass
        elif _FENCE.match(line):
            fence = True
            markup += len(line)
            continue
        elif _CODE_DIRECTIVE.match(line):
            markup += len(line)
            literal_at = _indent(line)
            continue
        elif _DOCTEST.match(line):
            code += len(line)
            continue
        elif _ADORNMENT.match(line) or _TABLE.match(line) or _DIRECTIVE.match(line) or _FIELD.match(line):
            markup += len(line)
            continue
        if stripped.endswith("::"):  # reST: an indented literal block follows
            literal_at = _indent(line)
        # each substitution only where its pattern's fixed part occurs (substring tests are C speed)
        inline = _INLINE_CODE.sub(" ", line) if "`" in line else line
        inline = _LINK_URL.sub("]", inline) if "](" in inline or "<http" in inline else inline
        kept = _EMPHASIS.sub("", inline) if "*" in inline else inline
        code += len(line) - len(inline)
        markup += len(inline) - len(kept)
        prose.append(kept)
    return Parts(prose, code, markup)


def prose_lines(text: str, markup_aware: bool) -> list[str]:
    """The lines the filters judge: all non-empty lines, or only the prose of a marked-up text."""
    if markup_aware and has_markup(text):
        return [ln for ln in split_markup(text).prose if ln.strip()]
    return [ln for ln in text.splitlines() if ln.strip()]
