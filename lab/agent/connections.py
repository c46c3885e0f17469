"""The HTTP connections every agent of a process shares.

Each ``Agent`` built two httpx clients with a connection pool each, so every chain opened new
TCP connections to the IdP and to the PDP (which the runtime then accepted and set up) for
five requests. Agents now share one pool (:class:`lab.oauth.http.KeptTransport`), as they share
the MCP session (``lab.agent.mcp_sessions``). What is each agent's own stays on its client:
its cookies (a user's sign-in), its event hooks (its recorder), its headers; a keep-alive
connection carries none of them from one request to the next.
"""

from __future__ import annotations

import atexit
import functools
from typing import Any

from lab.oauth.http import KeptTransport

#: False: a pool per client, as before (``bench/chain_hops.py --ab`` compares the two).
KEEP = True


@functools.cache
def _shared() -> KeptTransport:
    transport = KeptTransport()
    atexit.register(transport.shutdown)
    return transport


def transport_options() -> dict[str, Any]:
    """Options for ``lab.oauth.http.client``: the process's shared pool (or none)."""
    return {"transport": _shared()} if KEEP else {}
