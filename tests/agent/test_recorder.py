"""Recorded exchanges hide secrets but keep the tokens aside for decoding."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab.agent.recorder import REDACTED, Exchange, RecordedExchange, Recorder, build_exchange

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def _exchange(request_body: str, response_body: str = "{}", headers: dict[str, str] | None = None):
    return build_exchange(
        method="POST",
        url="http://127.0.0.1/token",
        status=200,
        request_headers={"content-type": "application/x-www-form-urlencoded", **(headers or {})},
        request_body=request_body,
        response_headers={"content-type": "application/json"},
        response_body=response_body,
        elapsed_ms=1.0,
    )


def test_every_credential_form_field_is_redacted() -> None:
    fields = {
        "client_secret": "s3cret",
        "password": "password",
        "client_assertion": JWT,
        "assertion": JWT,
        "subject_token": JWT,
        "code_verifier": "verifier-value-that-is-long",
        "refresh_token": JWT,
        "grant_type": "password",
    }
    exchange = _exchange(httpx.QueryParams(fields).__str__())
    recorded = dict(parse_qsl(exchange.request_body))
    assert {k: v for k, v in recorded.items() if k != "grant_type"} == {
        k: REDACTED for k in fields if k != "grant_type"
    }
    assert recorded["grant_type"] == "password"
    assert "s3cret" not in exchange.request_body and "verifier-value" not in exchange.request_body


def test_jwt_credentials_are_kept_in_tokens_but_passwords_are_not() -> None:
    exchange = _exchange(f"subject_token={JWT}&password=hunter2&client_secret=s3cret")
    assert [(t.where, t.value) for t in exchange.tokens] == [("request.form.subject_token", JWT)]
    assert all("hunter2" not in t.value and "s3cret" not in t.value for t in exchange.tokens)


def test_authorization_header_keeps_scheme_hides_value_and_keeps_bearer_token() -> None:
    exchange = _exchange("", headers={"Authorization": f"Bearer {JWT}"})
    assert exchange.request_headers["authorization"] == f"Bearer {REDACTED}"
    assert [(t.where, t.value) for t in exchange.tokens] == [("request.header.authorization", JWT)]


def test_issued_tokens_are_collected_and_refresh_token_redacted_in_response() -> None:
    body = json.dumps(
        {"access_token": JWT, "id_token": JWT, "refresh_token": JWT, "token_type": "Bearer"}
    )
    exchange = _exchange("grant_type=password", body)
    recorded = json.loads(exchange.response_body)
    assert recorded["refresh_token"] == REDACTED
    assert recorded["access_token"] == JWT
    assert sorted(t.where for t in exchange.tokens) == [
        "response.json.access_token",
        "response.json.id_token",
        "response.json.refresh_token",
    ]


def test_client_secret_issued_by_zms_is_redacted() -> None:
    exchange = _exchange("", json.dumps({"clientId": "ai.agent", "clientSecret": "shown-once"}))
    assert json.loads(exchange.response_body) == {"clientId": "ai.agent", "clientSecret": REDACTED}


def test_hooks_record_real_http_exchanges_with_bodies_and_status(
    reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> None:
    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        return JSONResponse(
            {"error": "invalid_grant", "echo": form.get("grant_type")}, status_code=400
        )

    url = serve(
        Starlette(routes=[Route("/token", token, methods=["POST"])]), reserved_sockets["idp"]
    )
    recorder = Recorder()
    with httpx.Client(event_hooks=recorder.sync_hooks()) as http:
        response = http.post(f"{url}/token", data={"grant_type": "password", "password": "pw"})
    assert response.json()["error"] == "invalid_grant"  # the caller still reads the body
    (exchange,) = recorder.exchanges
    assert (exchange.method, exchange.url, exchange.status) == ("POST", f"{url}/token", 400)
    assert exchange.response_json() == {"error": "invalid_grant", "echo": "password"}
    assert dict(parse_qsl(exchange.request_body)) == {
        "grant_type": "password",
        "password": REDACTED,
    }
    assert exchange.elapsed_ms >= 0


def test_a_recorded_exchange_is_redacted_when_first_read_and_then_as_build_exchange_gives(
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Most exchanges of a chain are never read: the redacted copy is built on first read."""
    from lab.agent import recorder as recorder_module

    async def token(request: Request) -> JSONResponse:
        return JSONResponse({"access_token": JWT, "refresh_token": "r-secret"})

    url = serve(
        Starlette(routes=[Route("/token", token, methods=["POST"])]), reserved_sockets["idp"]
    )
    built: list[str] = []
    original = recorder_module.build_exchange

    def counting(**parts: Any) -> Exchange:
        built.append(parts["url"])
        return original(**parts)

    monkeypatch.setattr(recorder_module, "build_exchange", counting)
    recorder = Recorder()
    with httpx.Client(event_hooks=recorder.sync_hooks()) as http:
        response = http.post(
            f"{url}/token",
            data={"grant_type": "password", "password": "pw", "client_assertion": JWT},
            headers={"Authorization": f"Bearer {JWT}"},
        )
        response.request.headers["Authorization"] = "Bearer changed.after.sending"
    (exchange,) = recorder.exchanges
    assert built == []
    assert "pw" not in repr(exchange) and "r-secret" not in repr(exchange)
    assert built == [f"{url}/token"]  # once, whatever is read after
    expected = original(
        method="POST",
        url=f"{url}/token",
        status=200,
        request_headers={
            **dict(response.request.headers.items()),
            "authorization": f"Bearer {JWT}",  # as it was sent
        },
        request_body=response.request.content.decode(),
        response_headers=response.headers,
        response_body=response.text,
        elapsed_ms=exchange.elapsed_ms,
    )
    for name in ("request_headers", "request_body", "response_headers", "response_body", "tokens"):
        assert getattr(exchange, name) == getattr(expected, name), name
    assert dict(parse_qsl(exchange.request_body))["password"] == REDACTED
    assert exchange.as_dict()["request_headers"]["authorization"] == f"Bearer {REDACTED}"
    assert built == [f"{url}/token"]
    assert "_seen" not in vars(exchange)  # the credentials as sent are not kept past the read


def test_a_recorded_exchange_can_be_copied_with_changes_as_an_exchange_can() -> None:
    """The step engine redacts its secrets in a copy (``dataclasses.replace``)."""
    import dataclasses

    exchange = RecordedExchange.seen(
        "POST",
        "http://127.0.0.1/token",
        200,
        1.0,
        request_headers={"content-type": "application/x-www-form-urlencoded"},
        request_body=b"password=pw&grant_type=password",
        response_headers={"content-type": "application/json"},
        response_body=b"{}",
    )
    copied = dataclasses.replace(exchange, url="http://127.0.0.1/other", tokens=[])
    assert copied.url == "http://127.0.0.1/other"
    assert copied.request_body == "password=***&grant_type=password"
