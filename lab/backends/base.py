"""The backend protocol: how the lab starts, stops and inspects the five parts.

Two backends sit behind it: ``embedded`` (every part in one local process, seconds, no Docker)
and ``kind`` (containers on a kind cluster). Steps and the CLI only ever talk to a
:class:`Backend`, so a step that passes on one passes on the other (contracts §9).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lab.config import Endpoints

#: The parts every backend runs, in the order they are shown.
PART_NAMES: tuple[str, ...] = (
    "idp",
    "zms",
    "zts",
    "docapi_protected",
    "docapi_unprotected",
    "mcp",
)


#: ``progress(part, state, detail)`` — state is ``starting``, ``healthy`` or ``failed``. Backends
#: call it while ``up`` waits so the CLI can draw one status line per part; it never prints itself.
Progress = Callable[[str, str, str], None]


class BackendError(RuntimeError):
    """The environment stops a backend from doing its job (exit code 3).

    ``fix`` is the one thing the learner can do about it, shown under the message.
    """

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class BackendNotRunning(BackendError):
    """An operation needs the backend up, and it is not."""

    def __init__(self, backend: str) -> None:
        super().__init__(
            f"the {backend} backend is not running",
            # --backend is an option of `lab` itself, so it goes before the command.
            "start it with `lab up`"
            if backend == "embedded"
            else f"start it with `lab --backend {backend} up`",
        )


@dataclass(frozen=True)
class PartStatus:
    """One part as seen from outside: its URL and whether ``GET /healthz`` answered 200."""

    name: str
    url: str
    healthy: bool
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BackendStatus:
    """The backend as a whole: ``running`` = its process or cluster exists (maybe unhealthy)."""

    backend: str
    running: bool
    parts: tuple[PartStatus, ...] = ()
    detail: str = ""
    pid: int | None = None

    @property
    def healthy(self) -> bool:
        return self.running and bool(self.parts) and all(p.healthy for p in self.parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "running": self.running,
            "healthy": self.healthy,
            "pid": self.pid,
            "detail": self.detail,
            "parts": [p.as_dict() for p in self.parts],
        }


@dataclass(frozen=True)
class DoctorCheck:
    """One prerequisite: what was checked, whether it holds, and how to fix it if not."""

    name: str
    ok: bool
    detail: str = ""
    fix: str | None = None
    #: A failed optional check only limits something (e.g. no kind backend); it is a warning.
    required: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Backend(Protocol):
    """What the CLI, the step engine and reset need from a running lab (contracts §9)."""

    name: str

    def up(self, progress: Progress | None = None) -> Endpoints:
        """Start every part (idempotent) and return once each is healthy.

        Raises :class:`BackendError` (with a fix) when the environment prevents it.
        """
        ...

    def down(self) -> None:
        """Stop everything this backend started. Idempotent, like ``rm -f``."""
        ...

    def status(self) -> BackendStatus:
        """Per part: url, healthy, detail. Never raises because the backend is down."""
        ...

    def endpoints(self) -> Endpoints:
        """The URLs of the running parts; raises :class:`BackendNotRunning` when down."""
        ...

    def endpoints_in(self, record: Any) -> Endpoints:
        """:meth:`endpoints`, from ``runtime.json`` already read and parsed (None: absent),
        for a caller that reads it once per look (the gateway)."""
        ...

    def collect_logs(self, dest: Path) -> list[Path]:
        """Copy every part's log into ``dest``; returns the files written."""
        ...

    def doctor(self) -> list[DoctorCheck]:
        """Prerequisites for this backend, each with a fix."""
        ...

    def set_providers(self, providers: list[dict[str, Any]]) -> None:
        """Replace the PDP's trusted identity providers and make the PDP use them now."""
        ...

    def get_providers(self) -> list[dict[str, Any]]:
        """The PDP's trusted identity providers (``[]`` when none)."""
        ...
