"""The HTTP side's rules, without a lab: loopback binds, Host/Origin, the secret path."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from lab.config import SettingsError
from lab.gateway.http import (
    HostOriginGuard,
    allowed_hosts,
    allowed_origins,
    gateway_url,
    new_secret,
)
from lab.gateway.settings import GatewaySettings, RemoteBindRefused, check_bind, is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_binds_are_allowed(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, allow_remote=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "gateway.example"])
def test_other_binds_need_allow_remote(host: str) -> None:
    with pytest.raises(RemoteBindRefused, match="--allow-remote"):
        check_bind(host, allow_remote=False)
    check_bind(host, allow_remote=True)


def test_port_setting_is_read_and_a_bad_value_names_the_variable() -> None:
    assert GatewaySettings.from_env({"LAB_GATEWAY_PORT": "28102"}).port == 28102
    assert GatewaySettings.from_env({}).port == 8102
    with pytest.raises(SettingsError, match="LAB_GATEWAY_PORT='http'"):
        GatewaySettings.from_env({"LAB_GATEWAY_PORT": "http"})


def test_each_launch_gets_a_new_unguessable_path() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50 and all(len(s) >= 24 for s in secrets)
    assert gateway_url("127.0.0.1", 8102, "abc") == "http://127.0.0.1:8102/abc/mcp"


def _guarded(any_host: bool = False) -> httpx.AsyncClient:
    async def ok(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = HostOriginGuard(
        Starlette(routes=[Route("/x", ok)]),
        allowed_hosts("127.0.0.1", 8102),
        allowed_origins("127.0.0.1", 8102),
        any_host=any_host,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1:8102")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 200),
        ({"Host": "localhost:8102"}, 200),
        ({"Origin": "http://127.0.0.1:8102"}, 200),
        ({"Host": "127.0.0.1:9999"}, 421),
        ({"Host": "attacker.example:8102"}, 421),
        ({"Origin": "http://attacker.example"}, 403),
        ({"Origin": "null"}, 403),
    ],
)
async def test_guard_refuses_foreign_host_and_origin(headers: dict[str, str], status: int) -> None:
    async with _guarded() as client:
        answer = await client.get("/x", headers=headers)
    assert answer.status_code == status
    if status != 200:
        assert answer.json()["error"] in ("misdirected_request", "forbidden_origin")


async def test_wildcard_remote_bind_still_checks_origin() -> None:
    async with _guarded(any_host=True) as client:
        assert (await client.get("/x", headers={"Host": "10.0.0.5:8102"})).status_code == 200
        foreign = await client.get("/x", headers={"Origin": "http://attacker.example"})
    assert foreign.status_code == 403
