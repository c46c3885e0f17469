"""A part built in the background: health at once, requests held until the app (and its
lifespan) is up, and a failed build answers as the usual stand-in."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab.backends.deferred import DeferredApp
from lab.backends.embedded.health import probe_part
from lab.backends.embedded.runtime import unavailable_app
from lab.serving import bind_socket, serve_in_thread


def _real_app(events: list[str]) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("started")
        yield
        events.append("stopped")

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"hello": "world", "lifespan": list(events)})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "part": "real"})

    return Starlette(routes=[Route("/hello", hello), Route("/healthz", healthz)], lifespan=lifespan)


def test_health_answers_while_building_and_requests_wait_for_the_real_app() -> None:
    gate = threading.Event()
    events: list[str] = []

    def build() -> Starlette:
        gate.wait(60)
        return _real_app(events)

    deferred = DeferredApp("mcp", build, unavailable_app)
    deferred.start_building()
    with serve_in_thread(deferred, bind_socket("127.0.0.1", 0)) as url:
        assert probe_part("mcp", f"{url}/healthz").healthy  # the build has not finished
        assert deferred.app is None
        answers: list[httpx.Response] = []
        waiter = threading.Thread(
            target=lambda: answers.append(httpx.get(f"{url}/hello", timeout=60))
        )
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive() and not answers  # held, not refused
        gate.set()
        waiter.join(60)
        assert answers[0].status_code == 200
        assert answers[0].json() == {"hello": "world", "lifespan": ["started"]}
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "part": "real"}
    assert events == ["started", "stopped"]  # the real app's shutdown ran with the server's


def test_a_failed_background_build_answers_unhealthy_with_its_error() -> None:
    def broken() -> Starlette:
        raise ImportError("No module named 'mcp'")

    deferred = DeferredApp("mcp", broken, unavailable_app)
    deferred.start_building()
    with serve_in_thread(deferred, bind_socket("127.0.0.1", 0)) as url:
        response = httpx.get(f"{url}/mcp")
        assert response.status_code == 503
        status = probe_part("mcp", f"{url}/healthz")
    assert status.healthy is False
    assert status.detail == "unavailable: ImportError: No module named 'mcp'"


def test_a_delayed_build_waits_for_its_time_unless_a_request_needs_the_part() -> None:
    builds: list[str] = []
    events: list[str] = []

    def build() -> Starlette:
        builds.append("built")
        return _real_app(events)

    deferred = DeferredApp("mcp", build, unavailable_app)
    deferred.start_building(after_s=60)  # far later than this test
    with serve_in_thread(deferred, bind_socket("127.0.0.1", 0)) as url:
        assert probe_part("mcp", f"{url}/healthz").healthy
        assert builds == []  # health checks do not start it
        response = httpx.get(f"{url}/hello", timeout=30)  # a request does, and waits for it
        assert response.status_code == 200 and builds == ["built"]
        deferred.start_building()  # a second start (the timer's) builds nothing more
    assert builds == ["built"]


def test_a_delayed_build_starts_by_itself_when_its_time_comes() -> None:
    done = threading.Event()

    def build() -> Starlette:
        done.set()
        return _real_app([])

    DeferredApp("mcp", build, unavailable_app).start_building(after_s=0.05)
    assert done.wait(60)


def test_on_built_runs_once_in_the_build_thread_after_the_app_is_in_place() -> None:
    seen: list[tuple[str, bool]] = []
    deferred: DeferredApp

    def on_built() -> None:
        seen.append((threading.current_thread().name, deferred.app is not None))

    deferred = DeferredApp("mcp", lambda: _real_app([]), unavailable_app, on_built=on_built)
    deferred.start_building()
    deferred._thread.join(60)
    assert seen == [("build-mcp", True)]


def test_a_failing_on_built_leaves_the_part_serving() -> None:
    def on_built() -> None:
        raise RuntimeError("boom")

    deferred = DeferredApp("mcp", lambda: _real_app([]), unavailable_app, on_built=on_built)
    deferred.start_building()
    with serve_in_thread(deferred, bind_socket("127.0.0.1", 0)) as url:
        assert httpx.get(f"{url}/hello", timeout=30).status_code == 200
