"""The model package: the GPT family (gpt.py), architecture numbers (stats.py), HF import/export (hf.py).

`GPT` and `KVCache` are imported lazily so that `core.model.stats` stays torch-free for the TUI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GPT", "KVCache"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from core.model import gpt

        return getattr(gpt, name)
    raise AttributeError(name)
