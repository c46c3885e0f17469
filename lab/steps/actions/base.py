"""What an action hands back to the engine, and the helpers several kinds share."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lab.steps.queries import Outcome

if TYPE_CHECKING:
    from lab.steps.engine import RunContext


class ActionError(RuntimeError):
    """The action could not run (connection refused, missing key, part not answering)."""


@dataclass
class Produced:
    outcome: Outcome
    exchanges: list[Any] = field(default_factory=list)
    tokens: list[tuple[str, str]] = field(default_factory=list)  # (label, jwt) issued to us
    curl: str | None = None
    command: str | None = None
    secrets: set[str] = field(default_factory=set)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def looks_like_jwt(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value.count(".") == 2
        and value.startswith("eyJ")
        and len(value) > 30
    )


#: Token-looking fields that are credentials (kept secret by the recorder), not grants to inspect.
NOT_SHOWN_TOKENS = frozenset({"refresh_token", "client_assertion", "assertion", "subject_token"})


def tokens_in_json(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Every JWT-looking string in a response body, labelled by where it sat."""
    found: list[tuple[str, str]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            label = f"{prefix}.{key}" if prefix else str(key)
            if looks_like_jwt(value) and str(key).lower() not in NOT_SHOWN_TOKENS:
                found.append((label, value))
            else:
                found.extend(tokens_in_json(value, label))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found.extend(tokens_in_json(value, f"{prefix}[{index}]"))
    return found


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def admin_audience(url: str, ctx: RunContext) -> str:
    """ZMS assertions name the ZMS base URL; other parts' /lab endpoints name their origin."""
    zms = ctx.endpoints.zms
    return zms if url.startswith(zms) else origin(url)


def last_exchange_outcome(exchanges: list[Any], result: dict[str, Any]) -> Outcome:
    """For agent/mcp actions: the status/headers of the call that decided, plus the result."""
    decided = next(
        (e for e in reversed(exchanges) if e.status is not None and e.status >= 400), None
    )
    if decided is None and exchanges:
        decided = exchanges[-1]
    headers = dict(decided.response_headers) if decided is not None else {}
    status = result.get("status", decided.status if decided is not None else None)
    return Outcome(status=status, headers={k.lower(): v for k, v in headers.items()}, result=result)
