"""Blocking calls the gateway can walk away from.

anyio's worker threads are joined when the interpreter exits, and a call running in one cannot
be cancelled: a browser sign-in waiting for the user (up to 5 minutes), a read of a silent stdin
or a write to a client that stopped reading kept a stopped gateway alive (SIGTERM waited for
them). These helpers run such calls in daemon threads: a cancelled caller stops waiting at once,
the call finishes (or not) on its own, and the process exits without it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import anyio
import anyio.lowlevel
from anyio import from_thread

T = TypeVar("T")


class DaemonWorker:
    """One daemon thread running blocking calls in order (the stdio reader, the writer)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        while True:
            function, args, token, done, box = self._jobs.get()
            if not _run_job(function, args, token, done, box):
                return

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        done = anyio.Event()
        box: list[tuple[bool, Any]] = []
        self._jobs.put((function, args, anyio.lowlevel.current_token(), done, box))
        return await _outcome(done, box)


async def in_daemon_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a fresh daemon thread; cancelling the caller abandons it."""
    done = anyio.Event()
    box: list[tuple[bool, Any]] = []
    job = (function, args, anyio.lowlevel.current_token(), done, box)
    threading.Thread(target=_run_job, args=job, name="gateway call", daemon=True).start()
    return await _outcome(done, box)


def _run_job(
    function: Callable[..., Any], args: tuple[Any, ...], token: Any, done: anyio.Event, box: list
) -> bool:
    """Run one job and wake its caller; False once the event loop is gone."""
    try:
        box.append((True, function(*args)))
    except Exception as exc:  # noqa: BLE001 - handed to the awaiting task
        box.append((False, exc))
    try:
        from_thread.run_sync(done.set, token=token)
    except Exception:  # noqa: BLE001 - the event loop is gone: nobody waits any more
        return False
    return True


async def _outcome(done: anyio.Event, box: list[tuple[bool, Any]]) -> T:
    await done.wait()  # cancellable: the call goes on in its thread, its result unused
    ok, value = box[0]
    if not ok:
        raise value
    return cast(T, value)
