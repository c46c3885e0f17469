"""Checking a token's signature on the event loop when the key is already held.

The resource servers (the MCP server, the document API) verified every access token in a worker
thread, because resolving its key may fetch the PDP's JWKS over blocking HTTP; in the embedded
runtime the PDP answers from the same event loop, so that fetch must never run on it. Yet the
key is almost always held: the hand-off to a thread and back (two wake-ups, the GIL passed
twice) cost more CPU than the check itself (~0.3 ms against ~0.15 ms per request, measured on
the MCP server's ``tools/call``).

:class:`~lab.oauth.jose.JwksCache` itself knows which keys it holds (``held``) and, inside
:func:`lab.nonblocking.forbidden`, raises :class:`~lab.nonblocking.WouldBlock` where it would
fetch (one freshness rule, shared with the PDP's token endpoint). :func:`verify_on_loop` runs a
check on the loop that way and, whenever a key is not held (unknown ``kid``, no ``kid``, keys
past their age), runs the very same check in a worker thread, where it may fetch. Both paths
resolve to the same key object, so every answer (and every refusal) is the one the thread
alone gave.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from lab import nonblocking
from lab.oauth.jose import JwksCache

T = TypeVar("T")
K = TypeVar("K")

#: The PDP's JWKS as the resource servers hold it: a :class:`~lab.oauth.jose.JwksCache` (its
#: ``held(kid)`` says which key ``resolve`` answers without fetching). A name, not a subclass.
HeldKeys = JwksCache


async def verify_on_loop(check: Callable[[K], T], keys: K) -> T:
    """``check(keys)`` on the event loop with the keys held, else in a worker thread (where
    ``keys`` may fetch). ``check`` may run twice, so it must only read: the on-loop attempt
    stops where it would fetch, before any outcome. ``keys`` may be any key resolver: one that
    never fetches (a static key set) simply runs on the loop."""
    try:
        with nonblocking.forbidden():
            return check(keys)
    except nonblocking.WouldBlock:
        return await run_in_threadpool(check, keys)
