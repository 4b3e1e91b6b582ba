"""Sampling settings checked at every door, with the bounds of the preset's [generate] section.

`llmlab generate`, the chat REPL's /set, the TUI chat settings and the server pass what a user typed
through `check_sampling`, which validates it against the declarative bounds of `GenerateConfig`
(core/config.py): one definition.
"""

from __future__ import annotations

from typing import Any

from core.config import GenerateConfig, PresetError, Problem, _build


def check_sampling(values: dict[str, Any], where: str) -> GenerateConfig:
    """A GenerateConfig from `values` (temperature, top_k, top_p, max_new_tokens, seed, stop), the
    missing ones at their defaults; raises a UserError naming `where` and each bad key."""
    problems: list[Problem] = []
    cfg = _build(GenerateConfig, dict(values), "", where, problems)
    if problems:
        raise PresetError(problems)
    return cfg
