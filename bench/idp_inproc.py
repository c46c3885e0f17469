"""The IdP's app alone, in one process: ``python bench/idp_inproc.py N`` (run by ``idp_signin.py
--in-process``; ``PYTHONPATH`` picks the checkout whose ``lab`` is measured).

``N`` code-flow sign-ins (authorization request, login form, code redemption with PKCE, as the
agent makes them) driven straight into the IdP's ASGI app: no sockets, no HTTP server, so what
is counted is the IdP's handlers, Starlette and the runtime's logging (configured as ``lab up``
configures it, files in a temporary ``$LAB_HOME``). Prints one JSON line: thread CPU µs per
sign-in and per endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
import sys
import tempfile
import time
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

HOST = b"127.0.0.1:22090"
REDIRECT_URI = "http://127.0.0.1:40123/callback"
SCOPE = "openid profile email"


def make_app(home: str) -> Any:
    os.environ["LAB_HOME"] = home
    os.environ["LAB_IDP_PORT"] = HOST.decode().rsplit(":", 1)[1]
    import logging

    from lab.backends.embedded.logs import configure_logging
    from lab.config import Settings
    from lab.idp.app import create_app

    settings = Settings.from_env()
    configure_logging(settings)
    # The runtime's stderr goes to embedded.log; here the root handler writes to nowhere.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
    return create_app(settings)


class Driver:
    def __init__(self, app: Any) -> None:
        self.app = app
        realm = app.state.idp.realm
        self.client = next(c for c in realm.clients if c.standard_flow and c.secret)
        self.base = f"/realms/{realm.name}"
        self.cpu: dict[str, float] = {}

    async def call(
        self,
        method: str,
        path: str,
        query: bytes = b"",
        headers: tuple[tuple[bytes, bytes], ...] = (),
        body: bytes = b"",
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        raw = [(b"host", HOST), *headers]
        if body:
            raw += [
                (b"content-type", b"application/x-www-form-urlencoded"),
                (b"content-length", str(len(body)).encode()),
            ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": raw,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 22090),
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        answer: dict[str, Any] = {"body": b""}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = dict(message["headers"])
            else:
                answer["body"] += message.get("body", b"")

        start = time.thread_time()
        await self.app(scope, receive, send)
        name = path.rsplit("/", 1)[-1]
        self.cpu[name] = self.cpu.get(name, 0.0) + time.thread_time() - start
        return answer["status"], answer["headers"], answer["body"]

    async def sign_in(self) -> None:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client.client_id,
                "redirect_uri": REDIRECT_URI,
                "scope": SCOPE,
                "state": secrets.token_urlsafe(16),
                "nonce": secrets.token_urlsafe(16),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        ).encode()
        status, headers, page = await self.call(
            "GET", f"{self.base}/protocol/openid-connect/auth", query
        )
        if status != 200:
            raise RuntimeError(f"authorization request: {status} {page[:200]!r}")
        cookie = headers[b"set-cookie"].split(b";")[0]
        found = re.search(rb'action="([^"]+)"', page)
        if found is None:
            raise RuntimeError("no login form")
        action = urlsplit(unescape(found.group(1).decode()))
        form = urlencode({"username": "idjag-learner", "password": "password"}).encode()
        status, headers, page = await self.call(
            "POST", action.path, action.query.encode(), ((b"cookie", cookie),), form
        )
        if status != 302:
            raise RuntimeError(f"login form: {status} {page[:200]!r}")
        code = parse_qs(urlsplit(headers[b"location"].decode()).query)["code"][0]
        form = urlencode(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
                "client_id": self.client.client_id,
                "client_secret": self.client.secret,
            }
        ).encode()
        status, headers, page = await self.call(
            "POST", f"{self.base}/protocol/openid-connect/token", body=form
        )
        if status != 200:
            raise RuntimeError(f"code redemption: {status} {page[:200]!r}")


async def measure(count: int, home: str) -> dict[str, Any]:
    driver = Driver(make_app(home))
    for _ in range(max(count // 10, 20)):  # warm-up: first-use paths, caches
        await driver.sign_in()
    driver.cpu.clear()
    start = time.thread_time()
    for _ in range(count):
        await driver.sign_in()
    total = time.thread_time() - start
    per = {name: round(cpu * 1e6 / count, 1) for name, cpu in driver.cpu.items()}
    return {"sign_in_us": round(total * 1e6 / count, 1), "endpoints_us": per}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="lab-bench-idp-") as lab_home:
        count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
        print(json.dumps(asyncio.run(measure(count, lab_home))))
