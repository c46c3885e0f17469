"""Which lab the gateway talks to, looked up at each request instead of once at launch.

An AI client starts ``lab gateway --stdio`` itself, when the user opens it — often before
``lab up``, and it keeps the gateway for the whole session while the lab goes down and up again.
So the gateway must not need the lab to start: it speaks MCP at once, and each request finds the
running lab anew. With no lab, a tool call answers a tool error that says so and names
``lab up``; once the lab is up, the same session works. A lab started again (a new runtime
record) gets a fresh agent and token keeper: tokens of the previous run mean nothing to it.

Looking the lab up reads its runtime record (once: the same bytes are the run's identity, name
the backend and give the endpoints; ``lab.cli.gateway._lab_locator``) and asks the backend
whether that run is alive, so a request only looks again when the record changed since: one
``stat`` of it tells (:func:`record_mark`).
A lab killed without its record changing shows in the call itself (no answer), and
:meth:`Attachment.check_running` then always looks afresh. Both run in a worker thread, never on
the gateway's event loop (a slow disk must not stall the other sessions' messages).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

from lab.agent import Agent
from lab.config import Endpoints
from lab.gateway.chain import TokenKeeper
from lab.gateway.hops import HopLog
from lab.gateway.links import ChainBroken
from lab.gateway.upstream import Upstream
from lab.homefiles import file_stamp

#: Where the lab is now: ``(identity, endpoints)``, the identity changing when the lab restarts.
#: Raises :class:`ChainBroken` (link ``lab``) when no lab runs.
Locate = Callable[[], tuple[str, Endpoints]]
#: A cheap mark of where the lab is recorded: :data:`Locate` runs again only once it changes;
#: ``None`` (no record) means look every time.
Mark = Callable[[], Hashable | None]


def record_mark(record: Path) -> Mark:
    """The runtime record's identity on disk: a rewrite (``lab up`` replaces the file) changes
    its inode or modification time, a removal (``lab down``) makes it ``None``."""

    return lambda: file_stamp(record)


@dataclass
class Wiring:
    """Everything the gateway holds for one running lab."""

    agent: Agent
    keeper: TokenKeeper
    upstream: Upstream
    hops: HopLog

    def close(self) -> None:
        self.agent.close()


def lab_not_running(message: str, fix: str | None) -> ChainBroken:
    """The tool error for a lab that is down: what is wrong, ``lab up``, and that the gateway
    needs no restart."""
    detail = message if not fix else f"{message}: {fix}"
    return ChainBroken("lab", f"{detail}, then call the tool again (the gateway keeps running)")


class Attachment:
    """The :class:`Wiring` for the lab running now, built on first use and rebuilt on restart."""

    def __init__(
        self,
        locate: Locate | None,
        build: Callable[[Endpoints], Wiring],
        mark: Mark | None = None,
    ) -> None:
        self._locate = locate
        self._build = build
        self._mark = mark
        #: The mark under which the current wiring was located (None: look at the next use).
        self._located_at: Hashable | None = None
        self._wiring: Wiring | None = None
        self._identity: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def fixed(cls, wiring: Wiring) -> Attachment:
        """A lab known at creation (a step run, a test): never looked up again."""
        attachment = cls(None, lambda endpoints: wiring)
        attachment._wiring = wiring
        return attachment

    @property
    def wiring(self) -> Wiring | None:
        """The wiring last used (None before the lab was first found)."""
        return self._wiring

    def current(self) -> Wiring:
        """The wiring for the running lab; raises ChainBroken (link ``lab``) when it is down."""
        with self._lock:
            if self._locate is None:
                assert self._wiring is not None  # fixed() sets it
                return self._wiring
            # Marked before locating: a record rewritten in between is looked at again next time.
            mark = self._mark() if self._mark is not None else None
            if self._wiring is not None and mark is not None and mark == self._located_at:
                return self._wiring
            self._located_at = None
            identity, endpoints = self._locate()
            if self._wiring is None or identity != self._identity:
                previous, self._wiring = self._wiring, self._build(endpoints)
                self._identity = identity
                if previous is not None:
                    previous.close()
            self._located_at = mark
            return self._wiring

    def check_running(self) -> ChainBroken | None:
        """After a call got no answer: the lab-down error when the lab is gone now, else None.
        Always looks afresh (a killed lab can leave its record as it was)."""
        if self._locate is None:
            return None
        try:
            self._locate()
        except ChainBroken as broken:
            with self._lock:
                self._located_at = None  # the next request looks again too
            return broken
        return None

    def close(self) -> None:
        with self._lock:
            if self._wiring is not None:
                self._wiring.close()
