"""One sampling schema for the CLI, the chat REPL, the TUI and the server.

`check_sampling(values, where)` validates temperature, top_k, top_p, max_new_tokens, seed and stop
with the declarative bounds of the preset's [generate] section (core.config.GenerateConfig), so a
typed, sent or configured value is refused with the same rule and a message naming `where` and the key.
"""

from __future__ import annotations

from typing import Any

from core import config
from core.errors import UserError


def check_sampling(values: dict[str, Any], where: str) -> config.GenerateConfig:
    """A GenerateConfig of `values` (missing keys take the defaults); UserError "where: key: problem"."""
    problems: list[config.Problem] = []
    gen = config._build(config.GenerateConfig, dict(values), "", where, problems)
    if problems:
        raise UserError("; ".join(str(p) for p in problems))
    return gen
