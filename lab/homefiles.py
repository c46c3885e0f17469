"""What must hold for ``$LAB_HOME`` before any part opens it: intact stores, readable
configuration, owner-only permissions (shared by every part and backend, like lab/serving.py).

- SQLite's ``PRAGMA quick_check`` on ``pdp.sqlite3`` and ``docapi.sqlite3``: a damaged page
  otherwise reads back as silently wrong data (client secrets came back empty).
- ``providers.json`` must parse as a JSON list, or the PDP trusts no IdP without saying why.
- The lab's state is secrets (keys, client-secret hashes, tokens in logs' neighbours):
  directories 0700, files 0600, and processes that write there run with umask 077.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

DIR_MODE = 0o700
FILE_MODE = 0o600
RESTORE_HINT = "run `lab reset --hard` to start from the baseline, or restore the file from a copy"


class HomeFileError(RuntimeError):
    """A file in ``$LAB_HOME`` is damaged or unreadable; ``fix`` says what to do."""

    def __init__(self, path: Path, problem: str, fix: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path = path
        self.problem = problem
        self.fix = fix


FileStamp = tuple[int, int, int, int, int]


def file_stamp(path: Path) -> FileStamp | None:
    """What a file's rewrite or replacement changes (device, inode, size, modification and
    change times), or ``None`` when it is missing: the cheap "has it changed?" of the caches
    that keep what they read from the lab home."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def sqlite_problem(path: Path) -> str | None:
    """Why the SQLite file at ``path`` cannot be trusted, or None (also when it is absent)."""
    if not path.exists():
        return None
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        return f"cannot be opened ({exc})"
    try:
        rows = connection.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return f"is not a usable SQLite database ({exc})"
    finally:
        connection.close()
    results = [str(row[0]) for row in rows]
    if results != ["ok"]:
        return "is damaged (SQLite integrity check: " + "; ".join(results[:3]) + ")"
    return None


def check_store(path: Path) -> None:
    """Raise :class:`HomeFileError` when the store at ``path`` is damaged."""
    problem = sqlite_problem(path)
    if problem is not None:
        raise HomeFileError(path, problem, RESTORE_HINT)


def read_providers_file(path: Path) -> list[Any]:
    """The providers file's entries ([] when absent); :class:`HomeFileError` when broken."""
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HomeFileError(
            path,
            f"is not valid JSON ({str(exc)[:120]})",
            "fix the file, or write it again with `lab providers set ...` (step 10)",
        ) from None
    if not isinstance(data, list):
        raise HomeFileError(
            path,
            "must be a JSON list of providers",
            "fix the file, or write it again with `lab providers set ...` (step 10)",
        )
    return data


def tighten(home: Path) -> None:
    """Make ``home`` and everything in it owner-only (dirs 0700, files 0600, programs 0700);
    never follows symlinks out of it."""
    if not home.is_dir():
        return
    _chmod(home, DIR_MODE)
    for root, dirs, files in os.walk(home, followlinks=False):
        for name in dirs:
            _chmod(Path(root) / name, DIR_MODE)
        for name in files:
            _chmod(Path(root) / name, FILE_MODE, keep_exec=True)


def _chmod(path: Path, mode: int, keep_exec: bool = False) -> None:
    try:
        info = path.lstat()
        if keep_exec and info.st_mode & stat.S_IXUSR:
            # A program stays runnable by its owner (0700): `lab up --idp keycloak` runs the
            # Keycloak unpacked under $LAB_HOME/keycloak (bin/kc.sh).
            mode |= stat.S_IXUSR
        if stat.S_ISLNK(info.st_mode) or stat.S_IMODE(info.st_mode) == mode:
            return
        path.chmod(mode)
    except OSError:
        pass  # a file that vanished or is not ours: nothing to tighten


def prepare_home(home: Path, stores: list[Path], providers: Path) -> None:
    """Everything :mod:`lab.homefiles` checks, in the order a learner would fix it."""
    home.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    tighten(home)
    for store in stores:
        check_store(store)
    read_providers_file(providers)


def owner_only_umask() -> None:
    """Files and directories this process creates are owner-only from the start."""
    os.umask(0o077)
