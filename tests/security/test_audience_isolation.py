"""Audience isolation: no request shape gives the agent a token the document API accepts.

The document API accepts only ``aud`` ``api``; the MCP server only its own URL. Every path by
which the agent (``ai.agent``) could try to obtain a token for ``api`` - an ID-JAG without
``resource``, with a ``resource`` that is another registered endpoint or none at all, a
redemption naming another resource, its own RFC 8693 exchange, client credentials with an
odd ``resource`` or ``audience``, a service in another domain claiming the MCP server's URL -
is refused at the PDP or ends in a token the document API refuses (issue #15).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from lab.agent.chain import Agent
from lab.config import ADMIN_PRINCIPAL, AGENT_PRINCIPAL, LEARNER_PRINCIPAL, MCP_PRINCIPAL
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey, make_client_assertion, public_pem, ybase64_encode
from lab.oauth.tokens import (
    CLIENT_ASSERTION_TYPE_JWT_BEARER,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
)
from tests.agent.labsetup import RunningLab
from tests.security.fullstack import full_lab

SCOPE = "api:role.docs-getter mcp:role.mcp-accessor"
MCP_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "isolation", "version": "0"},
    },
}


@dataclass
class Setup:
    lab: RunningLab
    http: httpx.Client
    id_token: str

    def token(self, form: dict[str, str], client: str = AGENT_PRINCIPAL) -> httpx.Response:
        key = SigningKey.load_or_create(self.lab.settings.key_file(client))
        data = {k: v for k, v in form.items() if v is not None}
        data["client_assertion_type"] = CLIENT_ASSERTION_TYPE_JWT_BEARER
        data["client_assertion"] = make_client_assertion(client, key, self.lab.endpoints.zts)
        return self.http.post(self.lab.endpoints.zts_token, data=data)

    def id_jag(self, **changes: Any) -> httpx.Response:
        form = {
            "grant_type": GRANT_TOKEN_EXCHANGE,
            "requested_token_type": TOKEN_TYPE_ID_JAG,
            "subject_token": self.id_token,
            "subject_token_type": TOKEN_TYPE_ID_TOKEN,
            "audience": self.lab.endpoints.zts,
            "resource": self.lab.endpoints.mcp,
            "scope": SCOPE,
        }
        form.update(changes)
        return self.token(form)

    def issued_id_jag(self, **changes: Any) -> str:
        response = self.id_jag(**changes)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def redeem(self, id_jag: str, **extra: str) -> httpx.Response:
        return self.token({"grant_type": GRANT_JWT_BEARER, "assertion": id_jag, **extra})

    def agent_token(self) -> str:
        response = self.redeem(self.issued_id_jag())
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def at_docapi(self, token: str) -> httpx.Response:
        return self.http.get(
            f"{self.lab.endpoints.docapi_protected}/api/docs",
            headers={"Authorization": f"Bearer {token}"},
        )

    def at_mcp(self, token: str) -> httpx.Response:
        return self.http.post(
            self.lab.endpoints.mcp,
            json=MCP_INIT,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json, text/event-stream",
            },
        )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(full_lab(tmp_path_factory.mktemp("isolation") / "home"))
        agent = stack.enter_context(Agent(lab.endpoints, lab.settings))
        http = stack.enter_context(httpx.Client(timeout=30))
        signed_in = agent.sign_in("idjag-learner", "password", method="password")
        assert signed_in.id_token, signed_in
        yield Setup(lab=lab, http=http, id_token=signed_in.id_token)


def refused(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error, response.text
    assert "access_token" not in response.json()


def refused_at_docapi(setup: Setup, token: str) -> None:
    response = setup.at_docapi(token)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_the_agents_genuine_token_is_for_the_mcp_server_only(setup: Setup) -> None:
    token = setup.agent_token()
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == setup.lab.endpoints.mcp
    assert setup.at_mcp(token).status_code == 200
    refused_at_docapi(setup, token)


def test_id_jag_without_audience_is_refused_as_athenz_words_it(setup: Setup) -> None:
    response = setup.id_jag(audience=None)
    refused(response, 400, "invalid_request")
    assert response.json()["message"] == "Invalid request: no audience provided"


def test_id_jag_without_resource_never_redeems_to_an_api_token(setup: Setup) -> None:
    id_jag = setup.issued_id_jag(resource=None)  # draft -04 §4.3: resource is optional ...
    assert "resource" not in jwt.decode(id_jag, options={"verify_signature": False})
    refused(setup.redeem(id_jag), 400, "invalid_grant")  # ... but nothing redeems without one


@pytest.mark.parametrize(
    "resource", ["api", "http://127.0.0.1:1/elsewhere", "docapi", "mcp-with-slash-path"]
)
def test_id_jag_for_an_unregistered_resource_is_invalid_target(setup: Setup, resource: str) -> None:
    value = {
        "docapi": setup.lab.endpoints.docapi_unprotected,
        "mcp-with-slash-path": setup.lab.endpoints.mcp + "/tools",
    }.get(resource, resource)
    refused(setup.id_jag(resource=value), 400, "invalid_target")


def test_redeeming_for_another_resource_is_invalid_grant(setup: Setup) -> None:
    id_jag = setup.issued_id_jag()
    response = setup.redeem(id_jag, resource=setup.lab.endpoints.docapi_unprotected)
    refused(response, 400, "invalid_grant")


def test_an_audience_at_redemption_does_not_change_the_tokens_audience(setup: Setup) -> None:
    response = setup.redeem(setup.issued_id_jag(), audience="api")
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == setup.lab.endpoints.mcp
    refused_at_docapi(setup, token)


def test_another_registered_endpoint_yields_a_token_the_document_api_refuses(
    setup: Setup,
) -> None:
    """Even a registered URL of domain api (here the document API's own) is an audience the
    document API does not accept: it takes ``api`` and nothing else."""
    key = SigningKey.load_or_create(setup.lab.settings.key_file("api.docs-site"))
    setup.lab.admin.zms(
        "PUT",
        "/domain/api/service/docs-site",
        {
            "name": "api.docs-site",
            "publicKeys": [{"id": key.kid, "key": ybase64_encode(public_pem(key.key))}],
            "providerEndpoint": setup.lab.endpoints.docapi_protected,
        },
    )
    id_jag = setup.issued_id_jag(resource=setup.lab.endpoints.docapi_protected)
    response = setup.redeem(id_jag)
    assert response.status_code == 200, response.text
    refused_at_docapi(setup, response.json()["access_token"])


def test_the_agent_may_not_exchange_its_token_into_api(setup: Setup) -> None:
    """Only mcp.api-mcp holds zts.token_source_exchange on mcp:api."""
    form = {
        "grant_type": GRANT_TOKEN_EXCHANGE,
        "subject_token": setup.agent_token(),
        "subject_token_type": TOKEN_TYPE_ACCESS_TOKEN,
        "audience": "api",
        "scope": "api:role.docs-getter",
    }
    response = setup.token(form)
    refused(response, 403, "unauthorized_client")
    assert response.json()["message"] == (
        "Principal not authorized for token impersonation from source domain"
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"resource": "docapi"},
        {"resource": "api"},
        {"audience": "api", "resource": "mcp"},
        {"audience": "mcp"},
    ],
    ids=["resource=docapi", "resource=api", "audience=api+resource=mcp", "audience=mcp-url"],
)
def test_client_credentials_cannot_choose_an_audience(setup: Setup, extra: dict[str, str]) -> None:
    endpoints = setup.lab.endpoints
    urls = {"docapi": endpoints.docapi_unprotected, "mcp": endpoints.mcp}
    form = {
        "grant_type": GRANT_CLIENT_CREDENTIALS,
        "scope": "api:role.docs-getter-jag-exchanger",  # a role ai.agent really holds
        **{name: urls.get(value, value) for name, value in extra.items()},
    }
    refused(setup.token(form), 400, "invalid_target")


def test_the_agents_own_client_credentials_token_gets_no_documents(setup: Setup) -> None:
    form = {"grant_type": GRANT_CLIENT_CREDENTIALS, "scope": "api:role.docs-getter"}
    refused(setup.token(form), 403, "invalid_scope")  # the agent holds no reading role


def test_a_token_for_the_document_api_is_refused_at_the_mcp_server(setup: Setup) -> None:
    form = {"grant_type": GRANT_CLIENT_CREDENTIALS, "scope": "api:role.docs-getter"}
    response = setup.token(form, client=LEARNER_PRINCIPAL)
    assert response.status_code == 200, response.text
    at_mcp = setup.at_mcp(response.json()["access_token"])
    assert at_mcp.status_code == 401
    assert 'error="invalid_token"' in at_mcp.headers["www-authenticate"]


def test_no_other_service_can_register_the_mcp_servers_url(setup: Setup) -> None:
    key = SigningKey.load_or_create(setup.lab.settings.key_file("ai.rogue"))
    body = {
        "name": "ai.rogue",
        "publicKeys": [{"id": key.kid, "key": ybase64_encode(public_pem(key.key))}],
        "providerEndpoint": setup.lab.endpoints.mcp + "/",
    }
    assertion = make_admin_assertion(ADMIN_PRINCIPAL, setup.lab.admin.key, setup.lab.endpoints.zms)
    response = setup.http.put(
        f"{setup.lab.endpoints.zms}/domain/ai/service/rogue",
        json=body,
        headers={"Authorization": f"Bearer {assertion}"},
    )
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "conflict"
    assert MCP_PRINCIPAL in response.json()["message"]
    # The owner may still re-register its own URL (step 5 run twice).
    token = setup.agent_token()
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == setup.lab.endpoints.mcp
