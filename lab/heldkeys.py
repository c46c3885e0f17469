"""Checking a token's signature on the event loop when the key is already held.

The resource servers (the MCP server, the document API) verified every access token in a worker
thread, because resolving its key may fetch the PDP's JWKS over blocking HTTP; in the embedded
runtime the PDP answers from the same event loop, so that fetch must never run on it. Yet the
key is almost always held: the hand-off to a thread and back (two wake-ups, the GIL passed
twice) cost more CPU than the check itself (~0.3 ms against ~0.15 ms per request, measured on
the MCP server's ``tools/call``).

:class:`HeldKeys` is the same JWKS cache with one more question: which key would
:meth:`~lab.oauth.jose.JwksCache.resolve` answer *without fetching*. :func:`verify_on_loop` runs
a check with those keys on the loop and, whenever a key is not held (unknown ``kid``, no
``kid``, keys past their age), runs the very same check in a worker thread with the full
resolver. Both paths resolve to the same key object, so every answer (and every refusal) is
the one the thread alone gave.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from lab.oauth.jose import JwksCache, PublicKey

T = TypeVar("T")


class HeldKeys(JwksCache):
    """A :class:`~lab.oauth.jose.JwksCache` that can say which keys it holds without fetching."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        #: This cache as a resolver that never fetches (see :func:`verify_on_loop`).
        self.on_loop: JwksCache = _HeldOnly(self)

    def held(self, kid: str | None) -> PublicKey | None:
        """The key :meth:`resolve` answers for ``kid`` from memory, or None whenever
        :meth:`resolve` could fetch first: keys past ``max_age``, a ``kid`` not held, or no
        ``kid`` at all (resolve refetches before picking a lone key)."""
        if kid is None or time.monotonic() - self._fetched_at > self._max_age:
            return None
        return self._keys.get(kid)


class _NotHeld(Exception):
    """The on-loop resolver does not hold this key: the check goes to a worker thread."""


class _HeldOnly(JwksCache):
    """A :class:`HeldKeys` seen as a cache that never fetches: a key not held is
    :class:`_NotHeld` (not a refusal; the check is then repeated with the full resolver)."""

    def __init__(self, keys: HeldKeys) -> None:
        super().__init__(keys.url)
        self._held = keys

    def resolve(self, kid: str | None) -> PublicKey:
        key = self._held.held(kid)
        if key is None:
            raise _NotHeld
        return key

    __call__ = resolve


async def verify_on_loop(check: Callable[[JwksCache], T], keys: HeldKeys) -> T:
    """``check(keys)`` on the event loop with the keys held, else in a worker thread with
    ``keys`` itself (which may fetch). ``check`` may run twice, so it must only read: the
    on-loop attempt stops where it needs a key that is not held, before any outcome."""
    try:
        return check(keys.on_loop)
    except _NotHeld:
        return await run_in_threadpool(check, keys)
