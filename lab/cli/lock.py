"""One lab-wide lock for the commands that change lab state (``lab step``, ``run``, ``verify``,
``reset``). Two at once would interleave their ZMS writes and captures: one learner's
``lab step 13`` removing a membership while another run re-adds it. The second command waits,
saying who holds the lock, and gives up with exit 3 ("busy") after ``LAB_LOCK_WAIT_S`` seconds.

An advisory ``flock`` on ``$LAB_HOME/lab.lock``: the kernel drops it when the holder exits, so a
crashed command never leaves the lab locked.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.cli import common

#: How long a second command waits for the first before giving up (seconds).
DEFAULT_WAIT_S = 600.0
POLL_S = 0.2
_held: list[int] = []  # re-entrant within one process (``lab run`` resets, then runs steps)


def wait_limit() -> float:
    raw = os.environ.get("LAB_LOCK_WAIT_S", "")
    try:
        return float(raw) if raw else DEFAULT_WAIT_S
    except ValueError:
        common.fail(f"LAB_LOCK_WAIT_S={raw!r} is not a number of seconds", "unset LAB_LOCK_WAIT_S")


@contextmanager
def lab_lock(home: Path, command: str) -> Iterator[None]:
    """Hold the lab-wide lock while the body runs; wait for it (with a message) if taken."""
    if _held:
        yield
        return
    home.mkdir(parents=True, exist_ok=True)
    path = home / "lab.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _acquire(fd, path, command)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {command}\n".encode())
        _held.append(fd)
        try:
            yield
        finally:
            _held.remove(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, command: str) -> None:
    if _try_lock(fd):
        return
    limit = wait_limit()
    holder = _holder(path)
    common.err().print(
        f"waiting: another lab command ({holder}) is changing the lab; "
        f"`{command}` starts when it ends",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        if _try_lock(fd):
            return
    common.fail(
        f"busy: another lab command ({_holder(path)}) still holds the lab after {limit:.0f} s",
        "wait for it to finish, or raise LAB_LOCK_WAIT_S",
        common.ExitCode.ENVIRONMENT,
    )


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(path: Path) -> str:
    try:
        pid, _, command = path.read_text().strip().partition(" ")
    except OSError:
        return "unknown"
    return f"pid {pid}: {command}" if pid else "unknown"


def command_line() -> str:
    """The command as the learner typed it, for the waiting message."""
    return " ".join(["lab", *sys.argv[1:]])
