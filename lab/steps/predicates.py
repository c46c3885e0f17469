"""Predicates on expectations. Values are typed (YAML): ``401`` is not ``"401"``, except that
``contains``/``startswith``/``matches`` read text, and ``contains`` on a space-separated OAuth
``scope`` string or a list checks membership.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any


def _equals(actual: Any, expected: Any) -> bool:
    # bool is an int in Python; keep `true` and `1` apart as the step format promises.
    if isinstance(actual, bool) != isinstance(expected, bool):
        return False
    return bool(actual == expected)


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, list | tuple | set):
        return expected in actual
    if isinstance(actual, dict):
        return expected in actual
    if actual is None:
        return False
    return str(expected) in str(actual)


def _startswith(actual: Any, expected: Any) -> bool:
    return isinstance(actual, str) and actual.startswith(str(expected))


def _matches(actual: Any, expected: Any) -> bool:
    return actual is not None and re.search(str(expected), str(actual)) is not None


def _number(actual: Any) -> float | None:
    if isinstance(actual, bool) or not isinstance(actual, int | float):
        return None
    return float(actual)


def _gte(actual: Any, expected: Any) -> bool:
    value = _number(actual)
    return value is not None and value >= float(expected)


def _lte(actual: Any, expected: Any) -> bool:
    value = _number(actual)
    return value is not None and value <= float(expected)


def _length(actual: Any, expected: Any) -> bool:
    return hasattr(actual, "__len__") and not isinstance(actual, bool) and len(actual) == expected


def _in(actual: Any, expected: Any) -> bool:
    return any(_equals(actual, option) for option in expected)


PREDICATE_FUNCTIONS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": _equals,
    "not_equals": lambda a, e: not _equals(a, e),
    "contains": _contains,
    "not_contains": lambda a, e: not _contains(a, e),
    "startswith": _startswith,
    "matches": _matches,
    "in": _in,
    "gte": _gte,
    "lte": _lte,
    "length": _length,
}


def check(predicate: str, found: bool, actual: Any, expected: Any) -> bool:
    """Whether ``actual`` (``found`` says the query found anything) satisfies the predicate."""
    if predicate == "exists":
        return found is bool(expected)
    if not found:
        # A missing value satisfies only the negative predicates.
        return predicate in ("not_equals", "not_contains")
    return PREDICATE_FUNCTIONS[predicate](actual, expected)
