"""The agent authenticates at the PDP with the method configured and advertised.

``private_key_jwt`` by default; ``client_secret_basic`` / ``client_secret_post`` with the
agent's own secret registered in the PDP (ZMS lab extension, shown once, stored hashed).
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl

import pytest

from lab.agent import Agent, Recorder, run_prompt
from lab.agent.client_auth import (
    ClientAuthError,
    ClientCredentials,
    authenticate,
    choose_method,
)
from lab.agent.config import AgentConfig
from lab.agent.sep990 import obtain_client_secret
from lab.config import AGENT_PRINCIPAL, SettingsError
from lab.oauth.jose import SigningKey
from tests.agent.labsetup import RunningLab

USER, PASSWORD = "idjag-learner", "password"
ALL = ("private_key_jwt", "client_secret_basic", "client_secret_post")


def test_private_key_jwt_is_preferred_when_the_agent_holds_a_key(tmp_path) -> None:
    key = SigningKey.load_or_create(tmp_path / "k.pem")
    credentials = ClientCredentials("ai.agent", key=key, secret="s")
    assert choose_method(credentials, ALL) == "private_key_jwt"
    assert choose_method(credentials, ("client_secret_post",)) == "client_secret_post"


def test_rfc_8414_default_is_client_secret_basic_when_nothing_is_advertised() -> None:
    assert choose_method(ClientCredentials("c", secret="s"), ("client_secret_basic",)) == (
        "client_secret_basic"
    )


def test_a_configured_method_the_server_does_not_accept_is_refused_by_name() -> None:
    credentials = ClientCredentials("c", secret="s", method="client_secret_post")
    with pytest.raises(ClientAuthError, match="accepts only client_secret_basic"):
        choose_method(credentials, ("client_secret_basic",))


def test_a_secret_method_without_a_secret_says_what_is_missing() -> None:
    with pytest.raises(ClientAuthError, match="has no secret"):
        choose_method(ClientCredentials("c", method="client_secret_basic"), ALL)


def test_basic_credentials_are_form_urlencoded_before_base64() -> None:
    _, headers = authenticate(
        {}, ClientCredentials("a:b", secret="p w"), "client_secret_basic", "x"
    )
    decoded = base64.b64decode(headers["Authorization"].split()[1]).decode()
    assert decoded == "a%3Ab:p%20w"


def test_unknown_auth_method_in_the_environment_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="LAB_AGENT_AUTH_METHOD"):
        AgentConfig.from_env({"LAB_AGENT_AUTH_METHOD": "tls_client_auth"})


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_whole_chain_with_the_agents_registered_client_secret(
    running_lab: RunningLab, method: str
) -> None:
    settings, endpoints = running_lab.settings, running_lab.endpoints
    with Agent(endpoints, settings) as helper:
        secret = obtain_client_secret(settings, endpoints, helper.http)
    config = AgentConfig(auth_method=method, client_secret=secret)
    recorder = Recorder()
    with Agent(endpoints, settings, recorder, config=config) as agent:
        signed_in = agent.sign_in(USER, PASSWORD)
        id_jag = agent.request_id_jag(signed_in.id_token)
        access = agent.redeem_id_jag(id_jag.token)
        result = agent.prompt("get docs", access.token)
    assert id_jag.ok and access.ok, (id_jag.body, access.body)
    assert result.ok, result.message
    assert result.tool_results[0].data["received_token"]["client_id"] == AGENT_PRINCIPAL
    posts = [e for e in recorder.exchanges if e.url == endpoints.zts_token]
    assert len(posts) == 2
    for exchange in posts:
        form = dict(parse_qsl(exchange.request_body))
        assert "client_assertion" not in form
        if method == "client_secret_basic":
            assert exchange.request_headers["authorization"] == "Basic ***"
            assert "client_secret" not in form
        else:
            assert form["client_secret"] == "***"
    printed = " ".join(str(e.as_dict()) for e in recorder.exchanges)
    assert secret not in printed


def test_default_chain_uses_private_key_jwt_found_through_discovery(
    running_lab: RunningLab,
) -> None:
    recorder = Recorder()
    result = run_prompt(
        running_lab.settings, running_lab.endpoints, "get docs", USER, PASSWORD, recorder=recorder
    )
    assert result.ok, result.message
    posts = [e for e in recorder.exchanges if e.url == running_lab.endpoints.zts_token]
    forms = [dict(parse_qsl(e.request_body)) for e in posts]
    assert [f["client_assertion_type"] for f in forms] == [
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    ] * 2


def test_wrong_secret_is_refused_as_invalid_client(running_lab: RunningLab) -> None:
    config = AgentConfig(auth_method="client_secret_basic", client_secret="not-the-secret")
    with Agent(running_lab.endpoints, running_lab.settings, config=config) as agent:
        signed_in = agent.sign_in(USER, PASSWORD)
        id_jag = agent.request_id_jag(signed_in.id_token)
    assert (id_jag.status, id_jag.error) == (401, "invalid_client")
