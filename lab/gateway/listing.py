"""``$LAB_HOME/gateway-tools.json``: the lab MCP server's last tool listing, kept for a gateway
that starts while the lab is down.

An AI client lists tools once when it starts the gateway and shows the model only those. A
gateway launched before ``lab up`` cannot ask the lab, so it serves the listing the lab last gave
(tool names, schemas and annotations: nothing secret) — on a first run the listing shipped with
the lab (``lab_tools.json``) — and a call answers the tool error that names ``lab up``. A
JSON-RPC error here would make the client mark the whole server as failed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from mcp.types import Tool
from pydantic import ValidationError

log = logging.getLogger("lab.gateway")

FILE_NAME = "gateway-tools.json"
MAX_BYTES = 1_000_000  # a listing is a few KB; anything bigger is not ours


#: The lab MCP server's listing as this version of the lab ships it, for a first run: clients
#: call only tools they were listed (the Inspector CLI refuses any other name), so an empty
#: listing would hide the error that names `lab up`. tests/gateway checks it against the lab.
SHIPPED = Path(__file__).with_name("lab_tools.json")


def read_listing(path: Path) -> list[Tool] | None:
    """The tools in a listing file; None when there is none or it is unreadable."""
    try:
        if path.stat().st_size > MAX_BYTES:
            return None
        data = json.loads(path.read_text())
        return [Tool.model_validate(item) for item in data["tools"]]
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return None


class SavedListing:
    def __init__(self, home: Path, shipped: Path | None = SHIPPED) -> None:
        self.path = home / FILE_NAME
        self.shipped = shipped

    def load(self) -> list[Tool]:
        """The tools the lab last gave, else the shipped listing, else none (only a hint)."""
        saved = read_listing(self.path)
        if saved is None and self.shipped is not None:
            saved = read_listing(self.shipped)
        return saved or []

    def save(self, tools: list[Tool]) -> None:
        body = {
            "tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
        }
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(body))
            os.replace(tmp, self.path)
        except OSError as exc:  # a read-only LAB_HOME costs only the hint
            log.warning("could not save the tool listing to %s: %s", self.path, exc)
