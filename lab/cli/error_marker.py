"""A failure said once more for a program that runs ``lab`` (the web view): one JSON line on
standard error, after the sentence and fix a person reads.

A caller that sets ``LAB_ERRORS_AS_JSON=1`` gets, on any expected failure, the line
``{"lab_error": {"kind": ..., "message": ..., "fix": ...}}``; ``kind`` names the failures a
caller acts on (:data:`BUSY`: another ``lab`` command held the lab until this one gave up),
``null`` for the rest. The exit code stays the documented one (busy is 3, as every environment
failure): the kind is what tells a caller which of them it was, whatever the wording says.
"""

from __future__ import annotations

import json
import os
from typing import Any

#: The environment variable a caller sets to get the line.
ENV = "LAB_ERRORS_AS_JSON"
#: The key of the line's one member.
KEY = "lab_error"
#: Another lab command held the lab lock for longer than this command would wait.
BUSY = "busy"


def wanted() -> bool:
    return os.environ.get(ENV) == "1"


def marker_line(kind: str | None, message: str, fix: str | None) -> str:
    return json.dumps({KEY: {"kind": kind, "message": message, "fix": fix}})


def read_marker(stderr: str) -> dict[str, Any] | None:
    """The failure a ``lab`` command reported in ``stderr`` (its last marker line), or None."""
    for line in reversed(stderr.splitlines()):
        if not line.startswith('{"' + KEY + '"'):
            continue
        try:
            found = json.loads(line).get(KEY)
        except ValueError:
            continue
        if isinstance(found, dict) and isinstance(found.get("message"), str):
            return found
    return None


def is_marker(line: str) -> bool:
    return read_marker(line) is not None
