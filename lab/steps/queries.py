"""The query words shared by ``capture`` and ``expect``: status, header, json, result, token,
capture, body. A query returns ``(found, value)``; "not found" is an answer (``exists: false``
needs it), not an error.

JSONPath is the small subset step files use: ``$``, ``.name``, ``[n]`` (negative counts from the
end), ``[*]`` (every item) and a final ``.length()``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.oauth.jose import JwtValidationError, unverified_claims, unverified_header
from lab.steps.model import Query

_SEGMENT = re.compile(
    r"\.([A-Za-z_][A-Za-z0-9_\-]*(?:\(\))?)|\[(\*|-?\d+)\]|\[['\"]([^'\"]+)['\"]\]"
)


class QueryError(ValueError):
    """A query that cannot be evaluated at all (bad JSONPath, a token that is not a JWT)."""


@dataclass(frozen=True)
class Outcome:
    """What an action produced, in the shape queries read."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    text: str = ""
    result: Mapping[str, Any] = field(default_factory=dict)

    @property
    def body_json(self) -> Any:
        if "body" in self.result and not isinstance(self.result["body"], str):
            return self.result["body"]
        try:
            return json.loads(self.text)
        except ValueError:
            return None


def jsonpath(data: Any, path: str) -> tuple[bool, Any]:
    path = path.strip()
    if not path.startswith("$"):
        raise QueryError(f"JSONPath {path!r} must start with '$'")
    rest, values, wildcard = path[1:], [data], False
    while rest:
        match = _SEGMENT.match(rest)
        if match is None:
            raise QueryError(f"JSONPath {path!r}: cannot read {rest!r}")
        rest = rest[match.end() :]
        name, index, quoted = match.group(1), match.group(2), match.group(3)
        if name == "length()":
            if rest:
                raise QueryError(f"JSONPath {path!r}: length() must come last")
            if wildcard:
                return True, len(values)
            if not values or not hasattr(values[0], "__len__"):
                return False, None
            return True, len(values[0])
        if index == "*":
            wildcard = True
            values = [item for v in values if isinstance(v, list) for item in v]
            continue
        values = _step_into(values, name or quoted, index)
        if not values and not wildcard:
            return False, None
    if wildcard:
        return True, values
    return (True, values[0]) if values else (False, None)


def _step_into(values: list[Any], name: str | None, index: str | None) -> list[Any]:
    out = []
    for value in values:
        if name is not None and isinstance(value, dict) and name in value:
            out.append(value[name])
        elif index is not None and isinstance(value, list):
            i = int(index)
            if -len(value) <= i < len(value):
                out.append(value[i])
    return out


def dotted(data: Any, path: str) -> tuple[bool, Any]:
    """``data.docs[0].name`` style paths (a JSONPath without the leading ``$.``)."""
    path = path.strip()
    return jsonpath(data, "$" + ("" if path.startswith("[") else ".") + path)


def evaluate(query: Query, outcome: Outcome, captures: Mapping[str, Any]) -> tuple[bool, Any]:
    kind, arg = query.kind, query.arg
    if kind == "status":
        return outcome.status is not None, outcome.status
    if kind == "header":
        name = str(arg).lower()
        return name in outcome.headers, outcome.headers.get(name)
    if kind == "body":
        return True, outcome.text if outcome.text else _as_text(outcome.result.get("body"))
    if kind == "json":
        return jsonpath(outcome.body_json, str(arg))
    if kind == "result":
        return dotted(outcome.result, str(arg))
    if kind == "capture":
        return (True, captures[arg]) if arg in captures else (False, None)
    if kind == "token":
        return _token_query(query, outcome)
    raise QueryError(f"unknown query {kind!r}")


def find_token(arg: Any, outcome: Outcome) -> tuple[bool, str | None]:
    """The JWT a token query names: a JSONPath into the body (then the result), or the token."""
    if not isinstance(arg, str):
        return False, None
    if arg.startswith("$"):
        found, value = jsonpath(outcome.body_json, arg)
        if not found and outcome.result:
            found, value = jsonpath(dict(outcome.result), arg)
        return (True, value) if found and isinstance(value, str) else (False, None)
    return True, arg


def _token_query(query: Query, outcome: Outcome) -> tuple[bool, Any]:
    found, token = find_token(query.arg, outcome)
    if not found or token is None:
        return False, None
    try:
        part = unverified_claims(token) if query.claim else unverified_header(token)
    except JwtValidationError as exc:
        raise QueryError(f"{query.describe()}: the value is not a JWT ({exc.reason})") from None
    if query.claim == LIFETIME and LIFETIME not in part:
        return _lifetime(part)
    return dotted(part, query.claim or query.token_header or "")


#: A derived claim: ``exp - iat`` in seconds, so a step can check a token is short-lived
#: (an ID-JAG lives minutes, draft -04 §4.3.4 and SEP-990) whatever the clock says.
LIFETIME = "lifetime"


def _lifetime(claims: dict[str, Any]) -> tuple[bool, Any]:
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        return False, None
    return True, exp - iat


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)
