"""Where the gateway listens, and the rule that keeps it on loopback.

The gateway needs no credentials from the AI client because only the user's own processes can
reach it: it binds loopback and, over HTTP, serves under an unguessable per-launch path. Binding
anything else hands the user's signed-in session to whoever can reach the port, so it is refused
unless asked for explicitly (``--allow-remote``).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from lab.config import SettingsError

PORT_VARIABLE = "LAB_GATEWAY_PORT"
DEFAULT_PORT = 8102  # beside the MCP server's 8101
DEFAULT_HOST = "127.0.0.1"
LOOPBACK_NAMES = frozenset({"localhost"})


class RemoteBindRefused(ValueError):
    """A non-loopback bind without ``--allow-remote``."""

    def __init__(self, host: str) -> None:
        super().__init__(
            f"refusing to bind the gateway to {host}: it acts as the signed-in user and asks its "
            "callers for no credentials, so it listens on loopback only "
            "(pass --allow-remote to bind it anyway)"
        )
        self.host = host


@dataclass(frozen=True)
class GatewaySettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        env = os.environ if env is None else env
        raw = env.get(PORT_VARIABLE, "")
        if not raw:
            return cls()
        try:
            port = int(raw)
        except ValueError:
            raise SettingsError(PORT_VARIABLE, raw, "a port number between 0 and 65535") from None
        if not 0 <= port <= 65535:
            raise SettingsError(PORT_VARIABLE, raw, "a port number between 0 and 65535")
        return cls(port=port)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, allow_remote: bool) -> None:
    """Raise :class:`RemoteBindRefused` for a non-loopback host unless explicitly allowed."""
    if not is_loopback(host) and not allow_remote:
        raise RemoteBindRefused(host)
