"""Captured values persist across steps (and ``lab`` invocations) in ``$LAB_HOME/captures.json``.

The file also lists which names were captured with ``redact: true``, so a later run still hides
them. It holds tokens and secrets, so it is written 0600 like the keys.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lab.config import Settings

FILE_NAME = "captures.json"


def captures_file(settings: Settings) -> Path:
    return settings.home / FILE_NAME


def load_captures(settings: Settings) -> tuple[dict[str, Any], set[str]]:
    """(values, names to redact); empty when nothing was captured yet."""
    path = captures_file(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, set()
    if not isinstance(data, dict):
        return {}, set()
    values = data.get("values", {})
    return (dict(values) if isinstance(values, dict) else {}), set(data.get("redacted", []))


def save_captures(settings: Settings, values: dict[str, Any], redacted: set[str]) -> Path:
    path = captures_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"values": values, "redacted": sorted(redacted)}, indent=2, default=str)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
    return path
