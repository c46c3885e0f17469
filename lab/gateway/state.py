"""``$LAB_HOME/gateway.json``: where the running HTTP gateway answers, for ``lab gateway config``.

The URL holds the per-launch secret path, so the file is written 0600 like the lab's keys, and
removed when that gateway stops.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "gateway.json"


@dataclass(frozen=True)
class RunningGateway:
    url: str
    pid: int

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def state_file(home: Path) -> Path:
    return home / FILE_NAME


def write_state(home: Path, url: str) -> Path:
    path = state_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "pid": os.getpid()}, handle)
    os.replace(tmp, path)
    return path


def read_state(home: Path) -> RunningGateway | None:
    """The gateway recorded in ``home``, if its process is still alive."""
    try:
        data = json.loads(state_file(home).read_text())
        running = RunningGateway(str(data["url"]), int(data["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return running if running.alive else None


def clear_state(home: Path) -> None:
    """Remove the file if this process wrote it (another gateway may have replaced it)."""
    path = state_file(home)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        return
