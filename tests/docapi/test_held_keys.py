"""Access tokens checked on the event loop when the PDP's key is held (lab.heldkeys), in a worker
thread when the key must be fetched first; the same answer and the same refusal either way."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab import heldkeys
from lab.heldkeys import HeldKeys, verify_on_loop
from lab.oauth.errors import InvalidToken
from lab.oauth.jose import JwksCache, SigningKey, jwks
from lab.oauth.resource_server import verify_access_token

JWKS_URL = "http://127.0.0.1:9/zts/v1/oauth2/keys"
ISSUER = "http://127.0.0.1:9/zts/v1"


class Pdp:
    """The PDP's JWKS endpoint, counting fetches; its key set can change between them."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.fetches = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        return httpx.Response(200, json=jwks((k.key, k.kid) for k in self.keys))

    def cache(self, **options: Any) -> HeldKeys:
        client = httpx.Client(transport=httpx.MockTransport(self.handler))
        return HeldKeys(JWKS_URL, client=client, **options)


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each check that went to a worker thread."""
    sent: list[str] = []
    real = heldkeys.run_in_threadpool

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append("thread")
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(heldkeys, "run_in_threadpool", counting)
    return sent


def access_token(key: SigningKey, **claims: Any) -> str:
    now = int(time.time())
    base = {"iss": ISSUER, "sub": "human.idjag-learner", "aud": "api", "iat": now, "exp": now + 60}
    return key.sign({**base, **claims}, "at+jwt")


def check(token: str) -> Any:
    def run(keys: JwksCache) -> dict[str, Any]:
        return verify_access_token(token, keys, issuer=ISSUER, audience="api")

    return run


async def test_the_first_token_fetches_in_a_thread_and_the_next_are_checked_on_the_loop(
    tmp_path: Path, threads: list[str]
) -> None:
    key = SigningKey.load_or_create(tmp_path / "pdp.pem")
    pdp = Pdp(key)
    keys = pdp.cache()
    first = await verify_on_loop(check(access_token(key, jti="a")), keys)
    assert threads == ["thread"] and pdp.fetches == 1
    for jti in ("b", "c", "d"):
        claims = await verify_on_loop(check(access_token(key, jti=jti)), keys)
        assert claims["jti"] == jti
    assert threads == ["thread"] and pdp.fetches == 1
    assert first["jti"] == "a"


async def test_a_refusal_on_the_loop_is_the_refusal_the_thread_gives(
    tmp_path: Path, threads: list[str]
) -> None:
    key = SigningKey.load_or_create(tmp_path / "pdp.pem")
    keys = Pdp(key).cache()
    await verify_on_loop(check(access_token(key)), keys)  # the key is held from here on
    for token in (
        access_token(key, aud="mcp"),
        access_token(key, exp=int(time.time()) - 600),
        access_token(key)[:-6] + "AAAAAA",
    ):
        with pytest.raises(InvalidToken) as on_loop:
            await verify_on_loop(check(token), keys)
        with pytest.raises(InvalidToken) as in_thread:
            check(token)(keys)
        assert on_loop.value.body() == in_thread.value.body()
    assert threads == ["thread"]


async def test_a_key_the_pdp_rotated_in_is_fetched_off_the_loop(
    tmp_path: Path, threads: list[str]
) -> None:
    old = SigningKey.load_or_create(tmp_path / "old.pem")
    new = SigningKey.load_or_create(tmp_path / "new.pem")
    pdp = Pdp(old)
    keys = pdp.cache(min_refresh_s=0.0)
    await verify_on_loop(check(access_token(old)), keys)
    pdp.keys = [new]
    assert (await verify_on_loop(check(access_token(new, jti="n")), keys))["jti"] == "n"
    assert threads == ["thread", "thread"] and pdp.fetches == 2
    # The old key left the PDP's set with that fetch: refused, as the full resolver refuses it.
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await verify_on_loop(check(access_token(old)), keys)


async def test_keys_past_their_age_are_fetched_again_off_the_loop(
    tmp_path: Path, threads: list[str]
) -> None:
    key = SigningKey.load_or_create(tmp_path / "pdp.pem")
    pdp = Pdp(key)
    keys = pdp.cache(max_age_s=0.05, min_refresh_s=0.0)
    await verify_on_loop(check(access_token(key)), keys)
    assert keys.held(key.kid) is not None
    time.sleep(0.1)
    assert keys.held(key.kid) is None
    await verify_on_loop(check(access_token(key)), keys)
    assert threads == ["thread", "thread"] and pdp.fetches == 2


def test_no_kid_is_never_answered_from_the_held_keys(tmp_path: Path) -> None:
    key = SigningKey.load_or_create(tmp_path / "pdp.pem")
    keys = Pdp(key).cache()
    keys.resolve(key.kid)
    assert keys.held(key.kid) is keys.resolve(key.kid)
    assert keys.held(None) is None  # resolve(None) may refetch before picking the lone key
