"""core.sampling: one schema, the bounds of [generate], messages naming where and the key."""

import pytest

from core.config import GenerateConfig
from core.errors import UserError
from core.sampling import check_sampling


def test_values_over_the_defaults():
    g = check_sampling({"temperature": 0, "max_new_tokens": 5, "stop": ["\n"], "seed": 3}, "request")
    assert g == GenerateConfig(temperature=0.0, max_new_tokens=5, stop=["\n"], seed=3)
    assert isinstance(g.temperature, float)


@pytest.mark.parametrize("values, message", [
    ({"temperature": -1}, "request: temperature: must be >= 0, got -1"),
    ({"top_p": 0}, "request: top_p: must be > 0, got 0"),
    ({"top_p": 1.5}, "request: top_p: must be <= 1, got 1.5"),
    ({"top_k": -2}, "request: top_k: must be >= 0, got -2"),
    ({"max_new_tokens": 0}, "request: max_new_tokens: must be >= 1, got 0"),
    ({"temperature": "hot"}, "request: temperature: expected a number, got 'hot'"),
    ({"temperature": float("nan")}, "request: temperature: must be a finite number, got nan"),
    ({"seed": True}, "request: seed: expected an integer, got True"),
    ({"stop": "x"}, "request: stop: expected a list of a string, got str"),
    ({"colour": 1}, "request: colour: unknown key"),
])
def test_each_bad_value_is_named(values, message):
    with pytest.raises(UserError) as e:
        check_sampling(values, "request")
    assert str(e.value) == message
