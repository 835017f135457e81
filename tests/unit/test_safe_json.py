"""JSON from callers: what json.loads alone would let through is refused."""

from __future__ import annotations

import pytest

from taskyard.limits import JsonLimits
from taskyard.safe_json import JsonLimitError, loads

LIMITS = JsonLimits(max_length=10_000, max_depth=8, max_number=20)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"y": "\\udfff"}', "lone surrogate"),
        ('{"\\ud800": 1}', "lone surrogate"),
        ("[" * 9 + "]" * 9, "nested deeper than 8"),
        ("[" * 5001 + "]" * 5001, "characters; at most"),
        ('{"n": ' + "9" * 21 + "}", "number over 20"),
        ('{"n": 1e999}', "out of range"),
        ('{"n": NaN}', "not JSON"),
        ('{"n": -Infinity}', "not JSON"),
        ("{not json", "not valid JSON"),
    ],
)
def test_refused(text: str, message: str) -> None:
    with pytest.raises(JsonLimitError, match=message):
        loads(text, LIMITS)


def test_deep_nesting_beyond_the_stack_is_refused_not_crashed() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(JsonLimitError):
        loads(deep, JsonLimits(max_length=1_000_000))


@pytest.mark.parametrize(
    "text",
    ['{"a": [1, 2.5, "\\ud83d\\ude00", {"b": null}]}', "[" * 8 + "]" * 8, '"\\u00e9"', "{}"],
)
def test_accepted(text: str) -> None:
    loads(text, LIMITS)
