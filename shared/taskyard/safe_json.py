"""JSON text from an untrusted caller, parsed within limits.

`json.loads` alone accepts what later breaks a store or a restart: lone
surrogate escapes (`"\\udfff"`, which no UTF-8 encoder takes), nesting deep
enough to exhaust the stack, integers too long to convert, NaN and Infinity
(not JSON to any other language). `loads` refuses all of them with one
`JsonLimitError` saying what is wrong.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from taskyard.limits import JsonLimits

#: A `\\uD800`-`\\uDFFF` escape: the only way a surrogate gets into parsed text
#: (the wire's UTF-8 cannot carry one).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abAB]|\\u[dD][c-fC-F]")


class JsonLimitError(ValueError):
    """JSON text that is invalid or over a limit; the message says which."""


def loads(text: str, limits: JsonLimits) -> Any:
    """The value of `text`, checked against `limits`."""
    if len(text) > limits.max_length:
        raise JsonLimitError(f"is {len(text)} characters; at most {limits.max_length}")

    def number(kind: type[int] | type[float]) -> Any:
        def parse(digits: str) -> int | float:
            if len(digits) > limits.max_number:
                raise JsonLimitError(f"has a number over {limits.max_number} characters")
            value = kind(digits)
            if isinstance(value, float) and not math.isfinite(value):
                raise JsonLimitError(f"has a number out of range: {digits}")
            return value

        return parse

    def constant(name: str) -> Any:
        raise JsonLimitError(f"has {name}, which is not JSON")

    try:
        value = json.loads(
            text, parse_int=number(int), parse_float=number(float), parse_constant=constant
        )
    except RecursionError:
        raise JsonLimitError(f"is nested deeper than {limits.max_depth} levels") from None
    except JsonLimitError:
        raise
    except ValueError as error:
        raise JsonLimitError(f"is not valid JSON: {error}") from None
    _check_tree(value, limits.max_depth, _SURROGATE_ESCAPE.search(text) is not None)
    return value


def _check_tree(value: Any, max_depth: int, strings: bool) -> None:
    """Depth within `max_depth`; with `strings`, no lone surrogate in any string."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= max_depth:
                raise JsonLimitError(f"is nested deeper than {max_depth} levels")
            if strings:
                stack.extend((key, depth) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            if depth >= max_depth:
                raise JsonLimitError(f"is nested deeper than {max_depth} levels")
            stack.extend((child, depth + 1) for child in item)
        elif strings and isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                raise JsonLimitError("has a lone surrogate escape (invalid Unicode)") from None
