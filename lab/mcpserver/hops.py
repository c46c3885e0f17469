"""The MCP server's own calls during one tool call, recorded so the learner can open them.

The agent sees only the tool's answer, yet the chain has two more hops: the MCP server's RFC 8693
exchange at the PDP and its call to the document API. The run model (``lab.render.run_model``)
draws them beside the agent's calls, so the MCP server hands back a redacted copy of each in the
tool result's ``_meta`` (MCP 2025-11-25, "_meta": data for the application, not for the model),
refused or not.

Redaction is the agent recorder's (``lab.agent.recorder.build_exchange``: credentials become
``***``) plus one rule of its own: the token the PDP issued here never leaves the MCP server. Its
audience is the document API, and no request shape may hand the agent a token the document API
accepts (MCP authorization spec, "Token Passthrough"); its decoded header and claims and this
server's check of its signature against the PDP's JWKS go instead.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from lab.agent.recorder import REDACTED, Exchange, build_exchange
from lab.heldkeys import verify_on_loop
from lab.mcpserver import HOPS_META_KEY
from lab.oauth.jose import (
    JwtValidationError,
    KeyResolver,
    signature_check,
    token_fingerprint,
    unverified_claims,
    unverified_header,
)

#: Response fields whose tokens stay on this server (see the module docstring).
KEPT_HERE = ("access_token", "refresh_token", "id_token")

if TYPE_CHECKING:
    import httpx

_current: ContextVar[list[dict[str, Any]] | None] = ContextVar("mcp_hops", default=None)


class _Pending(dict[str, Any]):
    """A call sent and not answered yet. Almost every call is answered, so its record as a
    failed hop (:func:`unanswered`, a full redacted copy) is built only if it never is: at
    :func:`meta` or when the recording ends, whichever comes first."""

    def __init__(self, request: httpx.Request, started: float) -> None:
        super().__init__()
        self.request = request
        self.started = started


@contextlib.contextmanager
def recording() -> Iterator[list[dict[str, Any]]]:
    """Collect the hops of the calls made inside this block (one tool call's)."""
    hops: list[dict[str, Any]] = []
    reset = _current.set(hops)
    try:
        yield hops
    finally:
        _current.reset(reset)
        settle(hops)


def settle(hops: list[dict[str, Any]]) -> None:
    """Turn every call still unanswered into its record as a failed hop (in place)."""
    for index, hop in enumerate(hops):
        if isinstance(hop, _Pending):
            hops[index] = unanswered(hop.request)


def event_hooks(resolve_key: KeyResolver) -> dict[str, list[Callable[..., Any]]]:
    """``event_hooks`` for the MCP server's shared ``httpx.AsyncClient``: outside a
    :func:`recording` block they do nothing."""

    async def on_request(request: httpx.Request) -> None:
        hops = _current.get()
        if hops is None:
            return
        # Until its response arrives the call stands as unanswered: a PDP or document API that
        # cannot be reached still shows as the hop that failed.
        hops.append(_Pending(request, time.perf_counter()))

    async def on_response(response: httpx.Response) -> None:
        hops = _current.get()
        if hops is None:
            return
        await response.aread()
        index = _pending_index(hops, response.request)
        pending = hops[index] if index is not None else None
        started = pending.started if isinstance(pending, _Pending) else 0.0
        hop = await _hop_off_the_loop_if_fetching(response, resolve_key, started)
        if index is None:
            hops.append(hop)
        else:
            hops[index] = hop  # the list only grows meanwhile: the index still holds

    return {"request": [on_request], "response": [on_response]}


def _pending_index(hops: list[dict[str, Any]], request: httpx.Request) -> int | None:
    """Where the placeholder of ``request`` stands, the newest first (by identity: every
    placeholder is an empty dict)."""
    for index in range(len(hops) - 1, -1, -1):
        hop = hops[index]
        if isinstance(hop, _Pending) and hop.request is request:
            return index
    return None


async def _hop_off_the_loop_if_fetching(
    response: httpx.Response, resolve_key: KeyResolver, started: float
) -> dict[str, Any]:
    """:func:`hop_of` on the loop while the PDP's key is held. Checking an issued token's
    signature with a key not held fetches the PDP's JWKS over blocking HTTP, which must not
    run on the loop (in the embedded runtime the PDP answers from that very loop)."""
    return await verify_on_loop(lambda keys: hop_of(response, keys, started), resolve_key)


def unanswered(request: httpx.Request) -> dict[str, Any]:
    exchange = build_exchange(
        method=request.method,
        url=str(request.url),
        status=None,
        request_headers=request.headers,
        request_body=request.content.decode("utf-8", errors="replace"),
        response_headers={},
        response_body="",
        elapsed_ms=0.0,
    )
    record = exchange.as_dict()
    record.update(
        error="no answer: the connection failed or timed out",
        tokens=[],
        presented=presented(exchange),
    )
    return record


def hop_of(response: httpx.Response, resolve_key: KeyResolver, started: float) -> dict[str, Any]:
    request = response.request
    exchange = build_exchange(
        method=request.method,
        url=str(request.url),
        status=response.status_code,
        request_headers=request.headers,
        request_body=request.content.decode("utf-8", errors="replace"),
        response_headers=response.headers,
        response_body=response.text,
        elapsed_ms=(time.perf_counter() - started) * 1000 if started else 0.0,
    )
    issued = [t.value for t in exchange.tokens if t.where.startswith("response.json.")]
    body, tokens = keep_tokens_here(exchange.response_body, issued, resolve_key)
    record = exchange.as_dict()
    record["response_body"] = body
    record["tokens"] = tokens
    record["presented"] = presented(exchange)
    return record


def presented(exchange: Exchange) -> list[dict[str, str]]:
    """Which tokens a call presented, by fingerprint only: the run model finds the token the
    exchange started from (the caller's access token, which the agent holds) by it."""
    return [
        {"where": t.where, "fingerprint": token_fingerprint(t.value)}
        for t in exchange.tokens
        if t.where.startswith("request.")
    ]


def keep_tokens_here(
    body: str, issued: list[str], resolve_key: KeyResolver
) -> tuple[str, list[dict[str, Any]]]:
    """The response body with issued tokens replaced by ``***``, and each token decoded."""
    tokens = []
    for token in issued:
        body = body.replace(token, REDACTED)
        try:
            header, claims = unverified_header(token), unverified_claims(token)
        except JwtValidationError:
            continue
        tokens.append(
            {
                "header": header,
                "claims": claims,
                "fingerprint": token_fingerprint(token),
                "signature": signature_check(token, resolve_key, "the PDP's JWKS"),
                "checked_by": "MCP server",
            }
        )
    return body, tokens


def meta(hops: list[dict[str, Any]]) -> dict[str, Any]:
    """The tools/call result's ``_meta``: a JSON-safe deep copy (what a ``json`` round trip
    with ``default=str`` gives, built in one pass without the text: ~6 µs against ~24 µs), so
    nothing downstream shares the decoded claims kept by :func:`unverified_claims`' cache."""
    settle(hops)
    return {HOPS_META_KEY: to_jsonable_python(hops, fallback=str)}
