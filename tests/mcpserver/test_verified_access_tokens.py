"""The MCP server checks an access token in full once: the same token on the next tool calls of a
session is answered from its VerifiedTokens while the key that verified it is still the PDP's
and the token is unexpired; anything else is checked (and refused) in full again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.heldkeys import HeldKeys
from lab.mcpserver.app import PdpTokenVerifier
from lab.oauth import jose
from lab.oauth.jose import SigningKey, jwks

ISSUER = "http://127.0.0.1:9/zts/v1"
RESOURCE = "http://127.0.0.1:9/mcp"


class Pdp:
    """The PDP's JWKS endpoint; its key set can change between fetches."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)

    def handler(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=jwks((k.key, k.kid) for k in self.keys))

    def held_keys(self) -> HeldKeys:
        client = httpx.Client(transport=httpx.MockTransport(self.handler))
        return HeldKeys(f"{ISSUER}/oauth2/keys", client=client)


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each full verification (pyjwt's decode with a key: parse, signature, claims)."""
    made: list[str] = []
    real = jose._decode

    def counting(token: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        made.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jose, "_decode", counting)
    return made


def access_token(key: SigningKey, lifetime: int = 60, **claims: Any) -> str:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "human.idjag-learner",
        "aud": RESOURCE,
        "client_id": "agent",
        "scp": ["mcp:role.mcp-accessor"],
        "iat": now,
        "exp": now + lifetime,
        "jti": "j1",
    }
    return key.sign({**base, **claims}, "at+jwt")


async def test_the_same_access_token_is_verified_in_full_once(
    tmp_path: Path, signature_checks: list[str]
) -> None:
    key = SigningKey.load_or_create(tmp_path / "pdp.pem")
    verifier = PdpTokenVerifier(Pdp(key).held_keys(), ISSUER, RESOURCE)
    token = access_token(key)
    answers = [await verifier.verify_token(token) for _ in range(3)]
    assert signature_checks == [token]
    assert all(a is not None and a.subject == "human.idjag-learner" for a in answers)
    assert [a.claims["jti"] for a in answers if a is not None and a.claims] == ["j1"] * 3
    # Each call gets claims of its own: changing one answer's never reaches the next.
    assert answers[0] is not None and answers[0].claims is not None
    answers[0].claims["scp"].append("api:role.docs-deleter")
    again = await verifier.verify_token(token)
    assert again is not None and again.scopes == ["mcp:role.mcp-accessor"]


async def test_another_token_or_a_changed_key_set_is_verified_again_and_refused_if_bad(
    tmp_path: Path, signature_checks: list[str]
) -> None:
    key = SigningKey.load_or_create(tmp_path / "pdp.pem")
    pdp = Pdp(key)
    keys = pdp.held_keys()
    verifier = PdpTokenVerifier(keys, ISSUER, RESOURCE)
    token = access_token(key)
    assert await verifier.verify_token(token) is not None
    other = access_token(key, jti="j2")
    assert await verifier.verify_token(other) is not None
    assert signature_checks == [token, other]
    # The PDP rotates its key: the kept answer no longer holds, the token is refused in full.
    pdp.keys = [SigningKey.load_or_create(tmp_path / "pdp2.pem")]
    keys._fetched_at = 0.0  # the held keys are past their age: the next check fetches
    assert await verifier.verify_token(token) is None
    assert signature_checks == [token, other]  # refused at the key: no decode needed


async def test_a_remembered_token_is_checked_in_full_again_once_past_its_exp(
    tmp_path: Path, signature_checks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = SigningKey.load_or_create(tmp_path / "pdp.pem")
    verifier = PdpTokenVerifier(Pdp(key).held_keys(), ISSUER, RESOURCE)
    token = access_token(key, lifetime=5)
    assert await verifier.verify_token(token) is not None
    assert signature_checks == [token]
    # Past exp and the leeway by the kept answer's clock: never answered from memory (the full
    # check, pyjwt's, then says "expired" by its own clock; here the real one, still inside).
    later = time.time() + 5 + jose.LEEWAY + 1
    monkeypatch.setattr(jose.time, "time", lambda: later)
    await verifier.verify_token(token)
    assert signature_checks == [token, token]
