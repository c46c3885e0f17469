"""Work tried on an event loop that must never block it: one per-thread flag, one exception.

The embedded runtime serves every part from one event loop, so a blocking call made on it (a
JWKS fetched over HTTP from a part that same loop must answer, a SQLite read that rebuilds a
large domain's policy view) stalls every part at once. Yet such work rarely needs I/O: keys
are held, views are cached. Its callers therefore try it on the loop inside :func:`forbidden`;
every place that could block calls :func:`check` first, which then raises :class:`WouldBlock`
*before* any I/O and before any outcome, and the caller runs the very same work again in a
worker thread, where :func:`check` lets it through. The work must only read until it can no
longer raise :class:`WouldBlock` (it may run twice).

Places that call :func:`check`: :meth:`lab.oauth.jose.JwksCache.resolve` when it would fetch,
:class:`lab.pdp.store.Store` before any SQLite statement.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

_state = threading.local()


class WouldBlock(BaseException):  # noqa: N818 - a signal, not an error
    """Raised by :func:`check` inside :func:`forbidden`. A ``BaseException``, like
    ``KeyboardInterrupt``: no ``except Exception`` on the way (a malformed-input guard, a
    "refuse anything unexpected" handler) may turn "must go to a thread" into an answer."""

    def __init__(self, what: str, prepare: Callable[[], object] | None = None) -> None:
        super().__init__(what)
        self.what = what
        #: The blocking part alone (a JWKS fetch), for the caller to run where a wait on the
        #: network holds nothing others need, before it runs the work again; None: no such.
        self.prepare = prepare


@contextlib.contextmanager
def forbidden(*, preparable_only: bool = False) -> Iterator[None]:
    """Within this block, on this thread, :func:`check` raises :class:`WouldBlock`.
    ``preparable_only``: only the checks that offer a ``prepare`` (a wait on the network that
    can run elsewhere first), for work on a worker thread that may read the disk."""
    previous = getattr(_state, "forbidden", False)
    _state.forbidden = "preparable" if preparable_only else True
    try:
        yield
    finally:
        _state.forbidden = previous


def check(what: str, prepare: Callable[[], object] | None = None) -> None:
    """Call before anything that may block (network, disk): :class:`WouldBlock` inside
    :func:`forbidden`, nothing otherwise. ``prepare``: the blocking part alone, which may
    raise (the work run again says what failed)."""
    mode = getattr(_state, "forbidden", False)
    if mode is True or (mode == "preparable" and prepare is not None):
        raise WouldBlock(what, prepare)
