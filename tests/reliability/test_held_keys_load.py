"""Access tokens checked on the event loop with the PDP's held keys (lab.heldkeys, issue #21)
while the PDP's key set changes under many concurrent checks.

A key not held (rotated in, unknown, or past its age) is fetched in a worker thread, never on
the event loop: in the embedded runtime the PDP answers from that very loop, so a blocking
fetch there would wait on itself. The JWKS endpoint here answers slowly and records whether it
was called from a thread running an event loop; asyncio's debug mode reports any callback that
blocked the loop about as long as a fetch takes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.heldkeys import HeldKeys, verify_on_loop
from lab.oauth.errors import InvalidToken
from lab.oauth.jose import JwksCache, SigningKey, jwks
from lab.oauth.resource_server import verify_access_token

JWKS_URL = "http://127.0.0.1:9/zts/v1/oauth2/keys"
ISSUER = "http://127.0.0.1:9/zts/v1"
FETCH_S = 0.5  # a slow PDP: a fetch on the loop would block it this long
MIN_REFRESH_S = 0.2  # the cache's rate limit on fetches (unknown kids cannot force more)
ROUNDS = 3
CHECKS = 40


class SlowPdp:
    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.fetches: list[bool] = []  # per fetch: was it made from an event loop's thread?
        self.lock = threading.Lock()

    def handler(self, request: httpx.Request) -> httpx.Response:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        with self.lock:
            self.fetches.append(on_loop)
            keys = list(self.keys)
        time.sleep(FETCH_S)
        return httpx.Response(200, json=jwks((k.key, k.kid) for k in keys))


def access_token(key: SigningKey, jti: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "human.idjag-learner", "aud": "api", "iat": now}
    return key.sign({**claims, "exp": now + 60, "jti": jti}, "at+jwt")


def check(token: str) -> Any:
    def run(keys: JwksCache) -> dict[str, Any]:
        return verify_access_token(token, keys, issuer=ISSUER, audience="api")

    return run


async def outcome(token: str, keys: HeldKeys) -> str:
    try:
        return str((await verify_on_loop(check(token), keys))["jti"])
    except InvalidToken as exc:
        return f"refused: {exc}"


async def test_rotations_under_concurrent_checks_never_fetch_or_block_on_the_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = FETCH_S / 4  # reported; asserted below only near FETCH_S
    caplog.set_level(logging.WARNING, logger="asyncio")
    keys_made = [SigningKey.load_or_create(tmp_path / f"pdp{n}.pem") for n in range(ROUNDS + 1)]
    stranger = SigningKey.load_or_create(tmp_path / "stranger.pem")
    pdp = SlowPdp(keys_made[0])
    client = httpx.Client(transport=httpx.MockTransport(pdp.handler))
    keys = HeldKeys(JWKS_URL, client=client, min_refresh_s=MIN_REFRESH_S, timeout_s=10.0)
    assert await outcome(access_token(keys_made[0], "first"), keys) == "first"

    for round_ in range(1, ROUNDS + 1):
        old, new = keys_made[round_ - 1], keys_made[round_]
        await asyncio.sleep(MIN_REFRESH_S)  # past the rate limit: the new key may be fetched
        pdp.keys = [old, new]  # the PDP rotates a key in, the old one still published
        tokens = {
            f"r{round_}-{n}": access_token((old, new, stranger)[n % 3], f"r{round_}-{n}")
            for n in range(CHECKS)
        }
        answers = await asyncio.gather(*(outcome(t, keys) for t in tokens.values()))
        for (jti, _), answer in zip(tokens.items(), answers, strict=True):
            if int(jti.rsplit("-", 1)[1]) % 3 == 2:  # the stranger's key: never published
                assert answer.startswith("refused:") and "unknown signing key" in answer
            else:
                assert answer == jti  # held or fetched: accepted, with its own claims

    assert pdp.fetches and not any(pdp.fetches)  # every fetch happened off the loop's thread
    blocked = [
        float(match.group(1))
        for record in caplog.records
        if (match := re.search(r"took (\d+\.\d+) seconds", record.getMessage()))
    ]
    assert all(took < FETCH_S * 0.9 for took in blocked), blocked
    client.close()
