"""Test-wide settings: offline hub, quiet OpenMP threads, the shared GPT-2 tiktoken cache."""

import os
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
_cache = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or Path(__file__).resolve().parent.parent.parent / "shared" / "tiktoken-cache")
if _cache.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_cache))

import pytest  # noqa: E402

try:
    import torch  # noqa: E402

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh LLMLAB_HOME: runs/, data/ and tokenizers/ go here."""
    monkeypatch.setenv("LLMLAB_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def gpt2_cache():
    """The GPT-2 BPE files for offline tiktoken; a test that needs them says so when they are missing."""
    if not _cache.is_dir():
        pytest.fail(f"the GPT-2 tiktoken cache is missing at {_cache}; tests of the gpt2 encoding need it offline")
    return _cache
