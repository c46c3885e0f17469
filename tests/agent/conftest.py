"""Fixtures for the agent's tests: a stand-in MCP server for unit tests, the whole lab for e2e."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import pytest

from lab.agent.signin import DEFAULT_REALM_FILE
from lab.config import ADMIN_PRINCIPAL, AGENT_PRINCIPAL, MCP_PRINCIPAL, Settings
from lab.oauth.jose import SigningKey
from tests.agent.fake_mcp import create_fake_mcp_app
from tests.agent.labsetup import PARTS, Admin, RunningLab, provision


@pytest.fixture
def fake_mcp_url(reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]) -> str:
    port = reserved_sockets["mcp"].getsockname()[1]
    resource = f"http://127.0.0.1:{port}/mcp"
    serve(create_fake_mcp_app(resource), reserved_sockets["mcp"])
    return resource


@pytest.fixture
def running_lab(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> Iterator[RunningLab]:
    """Every part on its reserved loopback socket, provisioned up to step 11."""
    modules = {
        name: pytest.importorskip(name, reason=f"{name} is not written yet") for name in PARTS
    }
    for principal in (ADMIN_PRINCIPAL, MCP_PRINCIPAL, AGENT_PRINCIPAL):
        SigningKey.load_or_create(lab_settings.key_file(principal))
    serve(
        modules["lab.idp.app"].create_app(lab_settings, DEFAULT_REALM_FILE), reserved_sockets["idp"]
    )
    pdp = modules["lab.pdp.app"].create_app(lab_settings)
    serve(pdp, reserved_sockets["zms"])
    serve(pdp, reserved_sockets["zts"])
    docapi = modules["lab.docapi.app"]
    serve(docapi.create_app(lab_settings, protected=True), reserved_sockets["docapi_protected"])
    serve(docapi.create_app(lab_settings, protected=False), reserved_sockets["docapi_unprotected"])
    serve(modules["lab.mcpserver.app"].create_app(lab_settings), reserved_sockets["mcp"])
    admin = Admin(lab_settings)
    try:
        provision(admin, lab_settings)
        yield RunningLab(lab_settings, lab_settings.endpoints, admin)
    finally:
        admin.http.close()


@pytest.fixture
def draft_lab(running_lab: RunningLab) -> RunningLab:
    """The lab where the IdP may also issue ID-JAGs the PDP redeems (``idJagIssuer``)."""
    endpoints = running_lab.endpoints
    providers = [
        {
            "issuerUri": endpoints.idp_issuer,
            "jwksUri": endpoints.idp_jwks,
            "principalTemplate": "human.{preferred_username}",
            "idJagIssuer": True,
        }
    ]
    running_lab.settings.providers_file.write_text(json.dumps(providers))
    running_lab.admin.call("POST", f"{endpoints.zts}/lab/reload", endpoints.zts)
    return running_lab
