"""Fixtures of the training tests (helpers live in train_helpers.py)."""

from __future__ import annotations

import pytest

from train_helpers import tiny_preset


@pytest.fixture
def preset():
    return tiny_preset()
