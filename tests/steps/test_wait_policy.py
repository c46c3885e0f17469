"""``wait: {policy: [...]}`` polls each resource server's ``/healthz/policy`` until its copy of
the signed policy data was fetched after the wait began (issue #21: no fixed sleep)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab.serving import bind_socket
from lab.steps.actions import wait
from lab.steps.actions.base import ActionError


class PolicyServer:
    """Reports a copy fetched before the wait, until ``refresh_after`` reports have gone by."""

    def __init__(self, refresh_after: int | None) -> None:
        self.refresh_after = refresh_after
        self.reports = 0
        self.old = time.time() - 5
        self.cache_control: list[str | None] = []

    def app(self) -> Starlette:
        async def held(request: Request) -> JSONResponse:
            self.reports += 1
            self.cache_control.append(request.headers.get("cache-control"))
            fresh = self.refresh_after is not None and self.reports > self.refresh_after
            fetched = time.time() if fresh else self.old
            return JSONResponse(
                {"domain": "api", "version": '"v2"' if fresh else '"v1"', "fetched_at": fetched}
            )

        return Starlette(routes=[Route("/healthz/policy", held)])


@pytest.fixture
def served(serve: Callable[..., str]) -> Callable[[PolicyServer], Any]:
    def start(server: PolicyServer) -> Any:
        sock: socket.socket = bind_socket("127.0.0.1", 0)
        url = serve(server.app(), sock)
        return SimpleNamespace(endpoints=SimpleNamespace(docapi_protected=url, mcp=f"{url}/mcp"))

    return start


def test_waits_until_the_servers_copy_is_newer_than_the_wait(
    served: Callable[[PolicyServer], Any],
) -> None:
    server = PolicyServer(refresh_after=3)
    produced = wait.run({"policy": ["docapi", "mcp"]}, served(server))
    result = produced.outcome.result
    assert server.reports == 5  # three stale reports for docapi, then fresh; mcp fresh at once
    assert result["policy"]["docapi"]["version"] == '"v2"'
    assert result["policy"]["mcp"]["version"] == '"v2"'
    assert 0 < result["seconds"] < wait.POLICY_TIMEOUT_S
    # Each poll asks the server to revalidate with the PDP now, not at its next refresh.
    assert server.cache_control == ["max-age=0"] * 5


def test_a_server_that_never_refreshes_fails_the_wait_naming_it(
    served: Callable[[PolicyServer], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wait, "POLICY_TIMEOUT_S", 0.2)
    with pytest.raises(ActionError, match="the MCP server did not fetch the new policy within"):
        wait.run({"policy": ["mcp"]}, served(PolicyServer(refresh_after=None)))


def test_manual_shows_the_version_each_server_holds(
    served: Callable[[PolicyServer], Any],
) -> None:
    ctx = served(PolicyServer(refresh_after=0))
    words = wait.command({"policy": ["docapi", "mcp"]}, ctx)
    origin = ctx.endpoints.docapi_protected
    header = "-H 'Cache-Control: max-age=0'"
    assert " ".join(words) == (
        f"curl -s {header} {origin}/healthz/policy && curl -s {header} {origin}/healthz/policy"
    )
    assert wait.command({"seconds": 0.5}, ctx) == ["sleep", "0.5"]
