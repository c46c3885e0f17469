"""``$LAB_HOME/runtime.json``: which runtime (and Keycloak) runs, on which ports."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from lab.config import Endpoints, Settings


def read_runtime(settings: Settings) -> dict[str, Any] | None:
    try:
        data = json.loads(settings.runtime_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return embedded_record(data)


def embedded_record(data: Any) -> dict[str, Any] | None:
    """``data`` (a parsed runtime file) if the embedded backend wrote it, else None."""
    if not isinstance(data, dict) or data.get("backend") != "embedded" or "endpoints" not in data:
        return None
    return data


def write_runtime(settings: Settings, pid: int, endpoints: Endpoints) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    data = {
        "pid": pid,
        "backend": "embedded",
        "idp": settings.idp,
        "endpoints": endpoints.as_dict(),
        "ports": dict(settings.ports),
        "started": time.time(),
    }
    tmp = settings.runtime_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(settings.runtime_file)


def record_keycloak(
    settings: Settings, pid: int, home: Path, java: str | None, version: str | None = None
) -> None:
    """Note Keycloak's process in the runtime file (``lab down`` and ``lab status`` read it)."""
    data = read_runtime(settings)
    if data is None:
        return
    entry = dict(data.get("keycloak") or {})
    entry.update({"pid": pid, "home": str(home)})
    if java:
        entry["java"] = java
    if version:
        entry["version"] = version
    data["keycloak"] = entry
    tmp = settings.runtime_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(settings.runtime_file)


def clear_runtime(settings: Settings) -> None:
    with contextlib.suppress(FileNotFoundError):
        settings.runtime_file.unlink()
