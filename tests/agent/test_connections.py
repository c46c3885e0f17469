"""Agents of one process share their HTTP connections (``lab.agent.connections``) and nothing
else: each keeps its own cookies and recording; a finished agent is freed at once."""

from __future__ import annotations

import gc
import socket
import weakref
from collections.abc import Callable, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab.agent import Agent, connections
from lab.config import Settings
from lab.serving import bind_socket


def echo_app() -> Starlette:
    """Answers with the client's port (one per TCP connection) and the cookies it was sent;
    ``/login`` sets a session cookie, as the IdP does."""

    async def echo(request: Request) -> JSONResponse:
        client = request.scope.get("client") or ("", 0)
        answer = JSONResponse({"port": client[1], "cookies": dict(request.cookies)})
        if request.url.path == "/login":
            answer.set_cookie("SESSION", "alice-session", path="/")
        return answer

    return Starlette(routes=[Route("/login", echo), Route("/echo", echo)])


@pytest.fixture
def echo_url(serve: Callable[..., str]) -> Iterator[str]:
    sock: socket.socket = bind_socket("127.0.0.1", 0)
    yield serve(echo_app(), sock)


def test_agents_reuse_one_connection_and_keep_their_own_cookies(
    lab_settings: Settings, echo_url: str
) -> None:
    with Agent(lab_settings.endpoints, lab_settings) as alice:
        first = alice.http.get(f"{echo_url}/login").json()
        again = alice.http.get(f"{echo_url}/echo").json()
    with Agent(lab_settings.endpoints, lab_settings) as bob:
        later = bob.http.get(f"{echo_url}/echo").json()
    assert again["cookies"] == {"SESSION": "alice-session"}
    assert later["cookies"] == {}  # the connection is shared, Alice's cookie is not
    assert first["port"] == again["port"] == later["port"]  # one TCP connection for both agents
    assert [e.url for e in bob.recorder.exchanges] == [f"{echo_url}/echo"]


def test_without_kept_connections_each_agent_connects_anew(
    lab_settings: Settings, echo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connections, "KEEP", False)
    ports = []
    for _ in range(2):
        with Agent(lab_settings.endpoints, lab_settings) as agent:
            ports.append(agent.http.get(f"{echo_url}/echo").json()["port"])
    assert ports[0] != ports[1]


def test_a_finished_agent_is_freed_without_the_cycle_collector(
    lab_settings: Settings, echo_url: str
) -> None:
    gc.collect()
    gc.disable()
    try:
        with Agent(lab_settings.endpoints, lab_settings) as agent:
            agent.http.get(f"{echo_url}/login")
            client, recorder = weakref.ref(agent.http), weakref.ref(agent.recorder)
        del agent
        assert client() is None and recorder() is None
    finally:
        gc.enable()
