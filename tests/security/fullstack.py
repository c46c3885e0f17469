"""The whole lab in-process (IdP, PDP, document API ×2, MCP server), provisioned to step 11.

Like the agent suite's ``running_lab`` fixture, but usable at module scope (a token battery
of dozens of cases shares one lab) and with a chosen realm file (the concurrency test adds
users). Every server listens on its own port-0 loopback socket.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from lab.agent.signin import DEFAULT_REALM_FILE
from lab.config import ADMIN_PRINCIPAL, AGENT_PRINCIPAL, MCP_PRINCIPAL, PORTS, Settings
from lab.docapi.app import create_app as create_docapi
from lab.idp.app import create_app as create_idp
from lab.mcpserver.app import create_app as create_mcp
from lab.oauth.jose import SigningKey
from lab.pdp.app import create_app as create_pdp
from lab.serving import bind_socket, serve_in_thread
from tests.agent.labsetup import Admin, RunningLab, provision


@contextlib.contextmanager
def full_lab(home: Path, realm_file: Path = DEFAULT_REALM_FILE) -> Iterator[RunningLab]:
    """Start every part on loopback under ``home``, provision steps 2–11, yield the lab."""
    home.mkdir(parents=True, exist_ok=True)
    socks = {name: bind_socket("127.0.0.1", 0) for name in PORTS}
    ports = {name: sock.getsockname()[1] for name, sock in socks.items()}
    settings = replace(Settings(), home=home, ports=ports, policy_refresh_s=0.0)
    for principal in (ADMIN_PRINCIPAL, MCP_PRINCIPAL, AGENT_PRINCIPAL):
        SigningKey.load_or_create(settings.key_file(principal))
    pdp = create_pdp(settings)
    apps = {
        "idp": create_idp(settings, realm_file),
        "zms": pdp,
        "zts": pdp,
        "docapi_protected": create_docapi(settings, protected=True),
        "docapi_unprotected": create_docapi(settings, protected=False),
        "mcp": create_mcp(settings),
    }
    with contextlib.ExitStack() as stack:
        for name, sock in socks.items():
            if name in apps:
                stack.enter_context(serve_in_thread(apps[name], sock))
            else:
                stack.callback(sock.close)
        admin = Admin(settings)
        stack.callback(admin.http.close)
        provision(admin, settings)
        yield RunningLab(settings, settings.endpoints, admin)
