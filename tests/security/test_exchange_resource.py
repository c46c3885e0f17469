"""The access-token exchange (RFC 8693, Athenz's audience = a domain) refuses a ``resource``.

Found by an outsider's battery (sixth session): ``resource`` was read by the ID-JAG issuance,
the redemption and client credentials, but the access-token exchange dropped it silently: a
request naming the MCP server's URL, the document API's, an unregistered URL or a path
beneath the MCP server got a token for domain ``api`` - not for the resource it named. RFC 8707
§2 and RFC 8693 §2.2.2: a target the server cannot issue a token for is ``invalid_target``.
Shown failing (every case) with the check in ``_validate_access_token`` removed; without a
``resource`` the exchange still works (the guard).
"""

from __future__ import annotations

from typing import Any

import pytest

from lab.oauth.jose import unverified_claims
from tests.security.test_parameter_battery import base_form, genuine, send_form
from tests.security.test_token_battery import Kit, kit  # noqa: F401  (module fixture)


def exchange(kit: Kit, **extra: str | None) -> Any:  # noqa: F811
    name, attempt = genuine(kit, "exchange")
    return send_form(kit, attempt.client, {**base_form(kit, name, attempt.token), **extra})


@pytest.mark.parametrize(
    "resource",
    [
        "{mcp}",
        "{mcp}/x",
        "{docapi}",
        "{docapi}/api/docs",
        "https://evil.example/api",
        "api",
        "{zts}",
    ],
)
def test_an_access_token_exchange_naming_a_resource_is_invalid_target(
    kit: Kit,  # noqa: F811
    resource: str,
) -> None:
    e = kit.lab.endpoints
    named = resource.format(mcp=e.mcp, docapi=e.docapi_protected, zts=e.zts)
    response = exchange(kit, resource=named)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_target", body
    assert "leave resource out" in body["error_description"]
    assert "access_token" not in body


def test_without_a_resource_the_exchange_gives_the_domains_token(kit: Kit) -> None:  # noqa: F811
    response = exchange(kit)
    assert response.status_code == 200, response.text
    assert unverified_claims(response.json()["access_token"])["aud"] == "api"
