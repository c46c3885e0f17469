"""One run of a command shared by every caller that asks while it runs (single flight).

``GET /api/audit`` starts ``lab audit --verify --json``, a whole Python process reading and
verifying the PDP's records. Run once per request, a flood of page reloads (or a script) ran as
many at once, and the steps run from the page waited behind them for the machine's cores. Now
the requests that arrive while a run is under way wait for it and get its answer; the next
request after it ends starts a fresh one, so at most one such process runs at any time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedRun(Generic[T]):
    """Calls ``run`` for the first caller; callers arriving before it ends share its result
    (or its exception). A caller that goes away (a closed connection cancels its request)
    leaves the run going for the others: it is shielded, never cancelled by one of them."""

    def __init__(self, run: Callable[[], Awaitable[T]]) -> None:
        self._run = run
        self._task: asyncio.Future[T] | None = None
        #: Callers waiting for the run under way (for tests and diagnostics).
        self.callers = 0

    async def __call__(self) -> T:
        task = self._task
        # (A run on another event loop - a test client's earlier one - is never joined.)
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self._task = asyncio.ensure_future(self._run())
            # Retrieved even when every caller went away, so no "never retrieved" warning.
            self._task.add_done_callback(lambda done: done.cancelled() or done.exception())
            task = self._task
        self.callers += 1
        try:
            return await asyncio.shield(task)
        finally:
            self.callers -= 1
