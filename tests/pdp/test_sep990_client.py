"""The official MCP SDK's SEP-990 client obtains a token from the PDP's jwt-bearer grant.

Leg 1 (ID token → ID-JAG) is ours, inside ``assertion_provider``; leg 2 (jwt-bearer with
client_secret_basic / client_secret_post) is the SDK's ``IdentityAssertionOAuthProvider``.
The resource is a tiny starlette endpoint that answers 401 until it sees a PDP token whose
``aud`` is its own URL (RFC 8707).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import httpx2
import pytest
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lab.agent.sep990 import MemoryTokenStorage
from lab.oauth.admin import bearer_token
from lab.oauth.jose import JwksCache, JwtValidationError, verify_jwt
from lab.oauth.tokens import TYP_ACCESS_TOKEN
from tests.pdp.conftest import AGENT, LEARNER, PdpLab


def protected_resource(lab: PdpLab) -> Starlette:
    jwks = JwksCache(lab.zts + "/oauth2/keys")
    resource = lab.settings.endpoints.mcp

    async def mcp(request: Request) -> Response:
        token = bearer_token(request.headers)
        if token is None:
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        try:
            claims = verify_jwt(
                token, jwks, typ=TYP_ACCESS_TOKEN, issuer=lab.zts, audience=resource
            )
        except JwtValidationError:
            return Response(
                status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        return JSONResponse(
            {"sub": claims["sub"], "client_id": claims["client_id"], "scp": claims["scp"]}
        )

    return Starlette(routes=[Route("/mcp", mcp, methods=["GET"])])


@pytest.mark.parametrize("auth_method", ["client_secret_post", "client_secret_basic"])
async def test_sdk_client_gets_a_pdp_token_with_an_id_jag(
    world: PdpLab,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
    auth_method: str,
) -> None:
    secret = world.ok("POST", "/domain/ai/service/agent/secret").json()["clientSecret"]
    serve(protected_resource(world), reserved_sockets["mcp"])
    id_token = world.id_token()
    seen: list[tuple[str, str]] = []

    async def fetch_id_jag(audience: str, resource: str) -> str:
        seen.append((audience, resource))
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "requested_token_type": "urn:ietf:params:oauth:token-type:id-jag",
            "subject_token": id_token,
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "audience": audience,
            "resource": resource,
            "scope": "api:role.docs-getter mcp:role.mcp-accessor",
            **world.client_assertion(AGENT),
        }
        async with httpx.AsyncClient() as client:
            response = await client.post(world.zts + "/oauth2/token", data=form)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    provider = IdentityAssertionOAuthProvider(
        server_url=world.settings.endpoints.mcp,
        storage=MemoryTokenStorage(),
        client_id=AGENT,
        client_secret=secret,
        issuer=world.zts,
        assertion_provider=fetch_id_jag,
        scope="api:role.docs-getter",
        token_endpoint_auth_method=auth_method,  # type: ignore[arg-type]
    )
    async with httpx2.AsyncClient(auth=provider, timeout=10) as http:
        response = await http.get(world.settings.endpoints.mcp)
    assert response.status_code == 200, response.text
    # The token belongs to domain mcp (its resource's owner): api's role keeps its full name.
    assert response.json() == {
        "sub": LEARNER,
        "client_id": AGENT,
        "scp": ["api:role.docs-getter"],
    }
    assert seen == [(world.zts, world.settings.endpoints.mcp)]
