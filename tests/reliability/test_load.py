"""200 agent chains at once against the lab served the embedded backend's way (every part in
one event loop, one shared worker-thread pool): all correct, no 5xx, and the lab answers a
normal request promptly afterwards.

The wedge this guards against (issue #16): under 100-200 concurrent chains 39 of 40 worker
threads waited on the policy cache lock while the 40th held it across an HTTP call to the PDP,
which needed a free worker thread to answer; the lab 503'd and stayed unusable for minutes
while ``/healthz`` said 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from lab.agent import run_prompt
from lab.agent.signin import DEFAULT_REALM_FILE
from lab.backends.embedded.runtime import build_apps, ensure_lab_keys
from lab.config import LEARNER_PRINCIPAL, PORTS, Settings
from lab.idp.app import create_app as create_idp
from lab.oauth.jose import SigningKey, make_client_assertion
from lab.oauth.tokens import CLIENT_ASSERTION_TYPE_JWT_BEARER, GRANT_CLIENT_CREDENTIALS
from lab.serving import bind_socket, uvicorn_config
from tests.agent.labsetup import Admin, RunningLab, provision
from tests.reliability.test_concurrency import EXTRA_USERS, USERS, realm_with_extra_users

CHAINS = 200


class StatusCounter:
    """ASGI wrapper counting response status codes per part (to prove there was no 5xx)."""

    def __init__(self, app: Any, name: str, counts: Counter[str]) -> None:
        self.app, self.name, self.counts = app, name, counts
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                with self.lock:
                    self.counts[f"{self.name} {message['status'] // 100}xx"] += 1
            await send(message)

        await self.app(scope, receive, counting_send if scope["type"] == "http" else send)


@contextlib.contextmanager
def one_loop_lab(home: Path, realm_file: Path, counts: Counter[str]) -> Iterator[RunningLab]:
    """Every part on one event loop in one thread, as ``python -m lab.backends.embedded``."""
    home.mkdir(parents=True, exist_ok=True)
    socks = {name: bind_socket("127.0.0.1", 0) for name in PORTS}
    ports = {name: sock.getsockname()[1] for name, sock in socks.items()}
    settings = replace(Settings(), home=home, ports=ports)
    ensure_lab_keys(settings)
    apps = build_apps(settings)
    apps["idp"] = create_idp(settings, realm_file)  # the realm with the extra users
    servers: list[uvicorn.Server] = []
    seen: set[int] = set()
    for name, app in apps.items():
        config = uvicorn_config(StatusCounter(app, name, counts))
        if id(app) in seen:
            config.lifespan = "off"
        seen.add(id(app))
        servers.append(uvicorn.Server(config))

    async def serve() -> None:
        await asyncio.gather(
            *(
                server.serve(sockets=[socks[name]])
                for server, name in zip(servers, apps, strict=True)
            )
        )

    def run() -> None:
        # uvicorn installs signal handlers only in the main thread; here there are none.
        asyncio.run(serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not all(server.started for server in servers):
        assert time.monotonic() < deadline, "the one-loop lab did not start"
        time.sleep(0.01)
    admin = Admin(settings)
    try:
        provision(admin, settings)
        yield RunningLab(settings, settings.endpoints, admin)
    finally:
        admin.http.close()
        for server in servers:
            server.should_exit = True
        thread.join(timeout=15)
        for sock in socks.values():
            sock.close()


def chain(lab: RunningLab, realm_file: Path, username: str) -> tuple[str, str | None]:
    result = run_prompt(
        lab.settings, lab.endpoints, "get docs", username, "password", realm_file=realm_file
    )
    if not result.ok:
        return username, f"stopped at {result.stopped_at}: {result.message}"
    (docs,) = result.tool_results
    if docs.data["exchanged_token"]["sub"] != f"human.{username}":
        return username, f"cross-talk: {docs.data['exchanged_token']}"
    if [doc["id"] for doc in docs.data["docs"]] != [1, 2]:
        return username, f"wrong documents: {docs.data['docs']}"
    return username, None


def a_normal_request(lab: RunningLab) -> float:
    """A token from the PDP and a document list from the API; returns the seconds it took."""
    started = time.monotonic()
    key = SigningKey.load_or_create(lab.settings.key_file(LEARNER_PRINCIPAL))
    token = httpx.post(
        lab.endpoints.zts_token,
        data={
            "grant_type": GRANT_CLIENT_CREDENTIALS,
            "scope": "api:role.docs-getter",
            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": make_client_assertion(LEARNER_PRINCIPAL, key, lab.endpoints.zts),
        },
        timeout=10,
    )
    assert token.status_code == 200, token.text
    docs = httpx.get(
        f"{lab.endpoints.docapi_protected}/api/docs",
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        timeout=10,
    )
    assert docs.status_code == 200, docs.text
    return time.monotonic() - started


@pytest.mark.slow
def test_200_concurrent_chains_all_succeed_without_5xx(tmp_path: Path) -> None:
    realm_file = realm_with_extra_users(DEFAULT_REALM_FILE, tmp_path / "realm-idjag.json")
    counts: Counter[str] = Counter()
    with one_loop_lab(tmp_path / "home", realm_file, counts) as lab:
        for username in EXTRA_USERS:
            for domain, role in (("api", "docs-getter"), ("mcp", "mcp-accessor")):
                lab.admin.member(domain, role, f"human.{username}")
        users = [USERS[n % len(USERS)] for n in range(CHAINS)]
        with ThreadPoolExecutor(max_workers=CHAINS) as pool:
            outcomes = list(pool.map(lambda user: chain(lab, realm_file, user), users))
        failures = [(user, why) for user, why in outcomes if why is not None]
        assert failures == [], failures[:5]
        assert not [key for key in counts if key.endswith("5xx")], counts
        for part in ("docapi_protected", "mcp"):
            health = httpx.get(f"{_origin(lab, part)}/healthz", timeout=5)
            assert health.status_code == 200, (part, health.text)
        assert a_normal_request(lab) < 1.0


def _origin(lab: RunningLab, part: str) -> str:
    return {"docapi_protected": lab.endpoints.docapi_protected, "mcp": lab.endpoints.mcp_origin}[
        part
    ]
