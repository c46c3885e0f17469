"""The full chain and the token-endpoint bodies the throughput benchmark sends."""

from __future__ import annotations

import time

import httpx

from lab.config import AGENT_PRINCIPAL, LEARNER_USERNAME, Settings
from lab.oauth import tokens
from lab.oauth.jose import SigningKey, make_client_assertion

SCOPE = "api:role.docs-getter api:role.mcp-accessor"


def setup_chain_state(settings: Settings) -> None:
    """The state step 12 starts from: everything trusted and granted."""
    from lab.state import reset_to  # type: ignore[attr-defined]

    reset_to(settings, 12)


def run_chain_once(settings: Settings) -> float:
    """Sign in → ID-JAG → access token → MCP tool → exchange → document API; seconds taken."""
    from lab.agent import Agent

    agent = Agent(settings.endpoints, settings)
    start = time.perf_counter()
    signed_in = agent.sign_in(LEARNER_USERNAME, "password", method="code")
    id_jag = agent.request_id_jag(signed_in.id_token, SCOPE, resource=settings.endpoints.mcp)
    access = agent.redeem_id_jag(id_jag.token)
    result = agent.call_tool(access.token, "list_docs", {})
    elapsed = time.perf_counter() - start
    if result.is_error:
        raise RuntimeError(f"chain failed at the tool call: {result.text}")
    return elapsed


def _id_token(settings: Settings) -> str:
    from lab.agent import Agent

    return (
        Agent(settings.endpoints, settings)
        .sign_in(LEARNER_USERNAME, "password", method="password")
        .id_token
    )


def _agent_key(settings: Settings) -> SigningKey:
    return SigningKey.load_or_create(settings.key_file(AGENT_PRINCIPAL))


def _client_auth(settings: Settings, key: SigningKey) -> dict[str, str]:
    return {
        "client_assertion_type": tokens.CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": make_client_assertion(AGENT_PRINCIPAL, key, settings.endpoints.zts),
    }


def prepare_id_jag_bodies(settings: Settings, count: int) -> list[dict[str, str]]:
    """Token-exchange bodies, each with its own single-use client assertion (made before timing)."""
    id_token = _id_token(settings)
    key = _agent_key(settings)
    return [
        {
            "grant_type": tokens.GRANT_TOKEN_EXCHANGE,
            "requested_token_type": tokens.TOKEN_TYPE_ID_JAG,
            "subject_token": id_token,
            "subject_token_type": tokens.TOKEN_TYPE_ID_TOKEN,
            "audience": settings.endpoints.zts,
            "resource": settings.endpoints.mcp,
            "scope": SCOPE,
            **_client_auth(settings, key),
        }
        for _ in range(count)
    ]


def prepare_jwt_bearer_bodies(settings: Settings, count: int) -> list[dict[str, str]]:
    """jwt-bearer bodies, each with a fresh ID-JAG (its jti is single-use) and assertion."""
    key = _agent_key(settings)
    bodies = []
    with httpx.Client(timeout=10) as client:
        for body in prepare_id_jag_bodies(settings, count):
            response = client.post(settings.endpoints.zts_token, data=body)
            response.raise_for_status()
            bodies.append(
                {
                    "grant_type": tokens.GRANT_JWT_BEARER,
                    "assertion": response.json()["access_token"],
                    **_client_auth(settings, key),
                }
            )
    return bodies
