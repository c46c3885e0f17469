"""One lab-wide lock for the commands that change lab state (``lab step``, ``run``, ``verify``,
``reset``). Two at once would interleave their ZMS writes and captures: one learner's
``lab step 13`` removing a membership while another run re-adds it. The second command waits,
saying who holds the lock, and gives up with exit 3 ("busy") after ``LAB_LOCK_WAIT_S`` seconds.

An advisory ``flock`` on ``$LAB_HOME/lab.lock``: the kernel drops it when the holder exits, so a
crashed command never leaves the lab locked.

The file also says what the holder is doing (``step 13``, ``reset 13``) and is emptied when the
holder lets go. A command killed part-way (``kill -9``, the terminal closed) lets go without
emptying it, so the next command finds the step it died in and records that step as interrupted:
``lab`` then says to reset to it, as after Ctrl-C, instead of re-running over half of it.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lab.cli import common, error_marker

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
        _recover(fd, home)
        _held.append(fd)
        _activity.append(f"{os.getpid()} {command}")
        _write(fd, "")
        try:
            yield
        finally:
            _held.remove(fd)
            _activity.clear()
            os.ftruncate(fd, 0)  # let go cleanly: nothing was left half-done
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


_activity: list[str] = []  # "pid command" of the held lock


def note_activity(activity: str) -> None:
    """Say in the held lock file what is being done now (``step 13``; ``""``: between steps)."""
    if _held and _activity:
        _write(_held[0], activity)


def _write(fd: int, activity: str) -> None:
    text = f"{_activity[0]}\n{activity}\n" if activity else f"{_activity[0]}\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def recover_killed_command(home: Path) -> None:
    """For commands that read the lab's progress without the lock (``lab``, ``lab steps``):
    record what a killed command left half-done, unless a command holds the lab right now."""
    path = home / "lab.lock"
    if _held or not path.exists():
        return
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return
    try:
        if _try_lock(fd):
            try:
                _recover(fd, home)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _recover(fd: int, home: Path) -> None:
    """The lock is ours: a non-empty file is a previous holder that died without letting go."""
    left = os.pread(fd, 4096, 0).decode(errors="replace").splitlines()
    if not left:
        return
    os.ftruncate(fd, 0)
    what, _, number = (left[-1] if len(left) > 1 else "").partition(" ")
    if what in ("step", "reset") and number.isdigit():
        from lab.config import Settings
        from lab.state import mark_interrupted

        mark_interrupted(Settings(home=home), int(number), during=what)


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
        kind=error_marker.BUSY,  # what the web view tells "busy" by, whatever the wording
    )


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(path: Path) -> str:
    try:
        first = (path.read_text().splitlines() or [""])[0]  # then what it is doing, if anything
        pid, _, command = first.strip().partition(" ")
    except OSError:
        return "unknown"
    return f"pid {pid}: {command}" if pid else "unknown"


def command_line() -> str:
    """The command as the learner typed it, for the waiting message."""
    return " ".join(["lab", *sys.argv[1:]])
