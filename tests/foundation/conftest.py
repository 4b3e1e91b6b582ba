from pathlib import Path

import pytest


@pytest.fixture
def counting_stage(monkeypatch, workspace):
    """Register tests/foundation/counting_stage.py as stage `count` for this test and its children."""
    here = str(Path(__file__).parent)
    monkeypatch.setenv("LLMLAB_STAGES", "count=counting_stage")
    monkeypatch.setenv("PYTHONPATH", here)
    monkeypatch.syspath_prepend(here)
    return workspace
