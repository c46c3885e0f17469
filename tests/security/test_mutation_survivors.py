"""Tests written for mutants ``make mutate`` found alive (docs/dev/mutation.md).

Each case pins a behaviour a mutant changed without any test noticing: the exact claims of an
access token, and the wording and Athenz dialect of client-authentication refusals.
"""

from __future__ import annotations

import base64

import pytest

from lab.config import Settings
from lab.oauth.errors import InvalidClient, InvalidTarget
from lab.oauth.jose import unverified_claims
from lab.pdp.client_auth import authenticate_client, refuse_client
from lab.pdp.core import Pdp
from lab.pdp.zts.grants.base import mint_access_token, not_included, registered_resource


@pytest.fixture
def pdp(lab_settings: Settings) -> Pdp:
    return Pdp.open(lab_settings)


def test_access_token_claims_are_athenz_layout(pdp: Pdp) -> None:
    token, claims = mint_access_token(
        pdp,
        subject="human.idjag-learner",
        client="ai.agent",
        audience="api",
        domain="api",
        roles=["api:role.docs-getter", "mcp:role.mcp-accessor"],
        lifetime_s=60,
    )
    assert unverified_claims(token) == claims
    assert claims["ver"] == 1
    assert claims["uid"] == "human.idjag-learner"
    assert claims["scp"] == ["docs-getter", "mcp:role.mcp-accessor"]
    assert claims["scope"] == "docs-getter mcp:role.mcp-accessor"
    assert claims["auth_time"] == claims["iat"] == claims["exp"] - 60
    assert "act" not in claims


def test_access_token_carries_act_and_uid_only_when_given(pdp: Pdp) -> None:
    _, claims = mint_access_token(
        pdp,
        subject="human.idjag-learner",
        client="mcp.api-mcp",
        audience="api",
        domain="api",
        roles=["api:role.docs-getter"],
        lifetime_s=60,
        act={"sub": "mcp.api-mcp"},
        uid="mcp.api-mcp",
    )
    assert claims["act"] == {"sub": "mcp.api-mcp"}
    assert claims["uid"] == "mcp.api-mcp"


def test_client_refusals_speak_both_dialects() -> None:
    refusal = refuse_client("because")
    assert refusal.body()["error"] == "invalid_client"
    assert refusal.body()["error_description"] == "because"
    assert refusal.body()["message"] == "Invalid client assertion: because"
    scope = not_included("human.x", "api").body()
    assert scope["error_description"] == (
        "principal human.x is not included in the requested role(s) in domain api"
    )


@pytest.mark.parametrize(
    ("client_id", "secret", "reason"),
    [
        ("ai.agent", "", "client_id and client_secret are required"),
        ("", "s3cret", "client_id and client_secret are required"),
        ("ai.agent", "wrong", "unknown client or wrong client secret"),
        ("Not A Principal", "x", "unknown client or wrong client secret"),
    ],
)
def test_client_secret_refusals_name_the_problem(
    pdp: Pdp, client_id: str, secret: str, reason: str
) -> None:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    with pytest.raises(InvalidClient) as refused:
        authenticate_client(pdp, {}, {"authorization": f"Basic {basic}"})
    assert refused.value.description == reason


def test_unregistered_resource_is_invalid_target_in_both_dialects(pdp: Pdp) -> None:
    with pytest.raises(InvalidTarget) as refused:
        registered_resource(pdp, "http://127.0.0.1:1/nowhere")
    body = refused.value.body()
    assert body["error"] == "invalid_target"
    assert body["message"] == "Invalid resource: http://127.0.0.1:1/nowhere"
