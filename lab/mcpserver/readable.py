"""Validation failures in words a learner can act on: which argument, what was expected.

pydantic's own text (``1 validation error for get_docArguments ... [type=int_type, ...] For
further information visit https://errors.pydantic.dev/...``) names internal model classes and
links to the library's docs. The MCP server answers with these sentences instead, built from
the stable parts of each error only: its location, its ``type`` code and the JSON type of the
value that was sent (never the value itself: it is the caller's data and may be 100 KB).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: pydantic error type → what the value should have been.
_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a JSON object",
    "model_type": "a JSON object",
    "model_attributes_type": "a JSON object",
    "list_type": "a JSON array",
    "tuple_type": "a JSON array",
    "none_required": "null",
}

#: At most this many problems are spelled out; more are counted.
MAX_LISTED = 5


def json_type(value: Any) -> str:
    """The JSON type of a decoded value, as a learner would name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a value of another kind"


def _where(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc) or "the value"


#: JSON Schema ``type`` → the same words as :data:`_EXPECTED`.
_SCHEMA_TYPES = {
    "integer": "an integer",
    "string": "a string",
    "number": "a number",
    "boolean": "true or false",
    "object": "a JSON object",
    "array": "a JSON array",
    "null": "null",
}


def schema_words(schema: Any) -> str | None:
    """What a JSON Schema property asks for, in words (None when it says nothing simple)."""
    if not isinstance(schema, Mapping):
        return None
    kind = schema.get("type")
    if isinstance(kind, str):
        return _SCHEMA_TYPES.get(kind)
    options = [schema_words(option) for option in schema.get("anyOf", [])]
    if options and all(options):
        return " or ".join(dict.fromkeys(str(option) for option in options))
    return None


def _problem(error: Mapping[str, Any], drop: int, properties: Mapping[str, Any]) -> str:
    loc = tuple(error.get("loc", ()))[drop:]
    where = _where(loc)
    kind = str(error.get("type", ""))
    if kind == "missing":
        wanted = schema_words(properties.get(str(loc[0]))) if len(loc) == 1 else None
        return f"'{where}' is required" + (f": {wanted}" if wanted else "")
    if kind == "literal_error":
        expected = (error.get("ctx") or {}).get("expected")
        if isinstance(expected, str) and len(expected) <= 200:
            return f"'{where}' must be {expected}"
    got = json_type(error.get("input"))
    expected = _EXPECTED.get(kind)
    if expected is not None:
        return f"'{where}' must be {expected}, not {got}"
    # Other checks (lengths, ranges, patterns): pydantic's short sentence names no class and
    # carries no link (the URL is a separate field, left out).
    message = str(error.get("msg", "is not valid"))[:200]
    return f"'{where}': {message} (got {got})"


def describe(
    errors: Iterable[Mapping[str, Any]],
    *,
    drop: int = 0,
    properties: Mapping[str, Any] | None = None,
) -> str:
    """One sentence for pydantic ``errors()`` (``include_url=False`` or not: the URL is never
    read); ``drop`` leading location parts are left out (e.g. ``params``); ``properties`` (a
    JSON Schema's, by name) say what a missing member should have been."""
    problems: list[str] = []
    for error in errors:
        problem = _problem(error, drop, properties or {})
        if problem not in problems:
            problems.append(problem)
    listed = "; ".join(problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    return listed + (f"; and {more} more" if more > 0 else "")
