"""The agent's whole chain over real HTTP: sign-in → ID-JAG → token → MCP → docs.

Also the interop check: the official MCP SDK's SEP-990 client, unmodified, gets its token from
the lab's PDP and calls the lab's MCP server.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import anyio

from lab.agent import DEFAULT_SCOPE, Agent, Recorder, run_prompt
from lab.agent.sep990 import build_provider, call_tool_with_provider, obtain_client_secret
from lab.config import AGENT_PRINCIPAL, LEARNER_PRINCIPAL, MCP_PRINCIPAL
from lab.oauth.jose import unverified_claims, unverified_header
from tests.agent.labsetup import RunningLab

USER, PASSWORD = "idjag-learner", "password"


def test_get_docs_runs_the_whole_chain_from_sign_in_to_documents(running_lab: RunningLab) -> None:
    recorder = Recorder()
    result = run_prompt(
        running_lab.settings, running_lab.endpoints, "get docs", USER, PASSWORD, recorder=recorder
    )

    assert result.ok, result.message
    (docs_call,) = result.tool_results
    assert [doc["id"] for doc in docs_call.data["docs"]] == [1, 2]
    # The MCP server reached the API with its own exchanged token, on behalf of the user.
    exchanged = docs_call.data["exchanged_token"]
    assert exchanged["sub"] == LEARNER_PRINCIPAL and exchanged["client_id"] == MCP_PRINCIPAL
    assert exchanged["aud"] == "api"

    id_jag = result.id_jag.token
    assert unverified_header(id_jag)["typ"] == "oauth-id-jag+jwt"
    jag = unverified_claims(id_jag)
    assert (jag["sub"], jag["client_id"], jag["aud"]) == (
        LEARNER_PRINCIPAL,
        AGENT_PRINCIPAL,
        running_lab.endpoints.zts,
    )
    assert jag["resource"] == running_lab.endpoints.mcp
    access = unverified_claims(result.access.token)
    assert access["aud"] == running_lab.endpoints.mcp and access["sub"] == LEARNER_PRINCIPAL
    assert docs_call.data["received_token"]["jti"] == access["jti"]


def test_the_chain_is_recorded_in_order_without_secrets(running_lab: RunningLab) -> None:
    recorder = Recorder()
    result = run_prompt(
        running_lab.settings, running_lab.endpoints, "get doc 2", USER, PASSWORD, recorder=recorder
    )
    assert result.ok, result.message
    assert "how are you?" in result.tool_results[0].text

    endpoints = running_lab.endpoints
    hosts = [e.url.split("/")[2] for e in recorder.exchanges]
    order = [
        endpoints.idp_issuer.split("/")[2],
        endpoints.zts.split("/")[2],
        endpoints.mcp.split("/")[2],
    ]
    firsts = [hosts.index(host) for host in order]
    assert firsts == sorted(firsts), "IdP, then PDP, then MCP server"
    grant_types = [
        dict(parse_qsl(e.request_body)).get("grant_type")
        for e in recorder.exchanges
        if e.url == endpoints.zts_token
    ]
    assert grant_types == [
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ]
    printed = " ".join(str(e.as_dict()) for e in recorder.exchanges)
    secret = Agent(endpoints, running_lab.settings).idp_client.client_secret
    assert secret not in printed
    assert result.id_jag.token not in " ".join(e.request_body for e in recorder.exchanges)
    captured = {t.value for e in recorder.exchanges for t in e.tokens}
    assert {result.sign_in.id_token, result.id_jag.token, result.access.token} <= captured


def test_create_without_the_poster_role_is_refused_at_the_mcp_servers_exchange(
    running_lab: RunningLab,
) -> None:
    result = run_prompt(
        running_lab.settings,
        running_lab.endpoints,
        "create a doc titled Notes with content hi",
        USER,
        PASSWORD,
    )
    assert result.stopped_at == "tools"
    (created,) = result.tool_results
    assert created.is_error
    assert "docs-poster" in created.text


def test_id_jag_is_refused_when_the_agent_may_not_act_for_users(running_lab: RunningLab) -> None:
    running_lab.admin.remove_member("api", "docs-getter-jag-exchanger", AGENT_PRINCIPAL)
    result = run_prompt(running_lab.settings, running_lab.endpoints, "get docs", USER, PASSWORD)
    assert result.stopped_at == "id_jag"
    assert (result.id_jag.status, result.id_jag.error) == (403, "unauthorized_client")
    assert result.tool_results == []


def test_access_token_cannot_be_passed_through_to_the_document_api(running_lab: RunningLab) -> None:
    with Agent(running_lab.endpoints, running_lab.settings) as agent:
        signed_in = agent.sign_in(USER, PASSWORD)
        access = agent.redeem_id_jag(agent.request_id_jag(signed_in.id_token, DEFAULT_SCOPE).token)
        response = agent.http.get(
            f"{running_lab.endpoints.docapi_protected}/api/docs",
            headers={"Authorization": f"Bearer {access.token}"},
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_sdk_sep990_client_gets_its_token_from_the_pdp_and_calls_the_mcp_server(
    running_lab: RunningLab,
) -> None:
    settings, endpoints = running_lab.settings, running_lab.endpoints
    recorder = Recorder()
    with Agent(endpoints, settings, recorder) as agent:
        signed_in = agent.sign_in(USER, PASSWORD)
        assert signed_in.ok
        secret = obtain_client_secret(settings, endpoints, agent.http)
        provider = build_provider(settings, endpoints, signed_in.id_token, secret, pdp=agent.pdp)
        result = anyio.run(
            call_tool_with_provider, endpoints.mcp, provider, "list_docs", {}, recorder
        )
    assert not result.is_error, result.text
    assert [doc["id"] for doc in result.data["docs"]] == [1, 2]
    assert result.data["received_token"]["client_id"] == AGENT_PRINCIPAL
    token_posts = [e for e in recorder.exchanges if e.url == endpoints.zts_token]
    assert [e.status for e in token_posts] == [200, 200], (
        "ID-JAG (ours), then the SDK's jwt-bearer grant"
    )
    assert dict(parse_qsl(token_posts[-1].request_body))["client_secret"] == "***"
    first_mcp = next(e for e in recorder.exchanges if e.url == endpoints.mcp)
    assert first_mcp.status == 401, "the SDK starts its flow from the MCP server's challenge"
