"""The MCP server's record of its own calls (lab.mcpserver.hops), over a mock transport."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from lab.mcpserver import hops
from lab.oauth.jose import SigningKey, static_key_resolver

TOKEN_URL = "http://127.0.0.1:9/zts/v1/oauth2/token"


@pytest.fixture
def pdp_key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path / "pdp.pem")


async def test_an_issued_token_is_decoded_checked_and_kept_off_the_record(
    pdp_key: SigningKey, tmp_path: Path
) -> None:
    issued = pdp_key.sign({"iss": "pdp", "sub": "human.idjag-learner", "aud": "api"}, "at+jwt")
    forged = SigningKey.load_or_create(tmp_path / "other.pem").sign({"aud": "api"}, "at+jwt")

    def pdp(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": issued, "token_type": "Bearer"})

    resolve = static_key_resolver({pdp_key.kid: pdp_key.key})
    transport = httpx.MockTransport(pdp)
    async with httpx.AsyncClient(
        transport=transport, event_hooks=hops.event_hooks(resolve)
    ) as http:
        await http.post(TOKEN_URL, data={"subject_token": forged, "scope": "x"})  # not recorded
        with hops.recording() as made:
            await http.post(TOKEN_URL, data={"subject_token": forged, "scope": "x"})
    [hop] = made
    assert hop["status"] == 200 and hop["error"] is None
    assert issued not in json.dumps(hop) and forged not in json.dumps(hop)
    assert json.loads(hop["response_body"])["access_token"] == "***"
    assert "subject_token=***" in hop["request_body"]
    [token] = hop["tokens"]
    assert token["claims"]["sub"] == "human.idjag-learner"
    assert token["signature"] == {
        "valid": True,
        "kid": pdp_key.kid,
        "alg": "ES256",
        "keys": "the PDP's JWKS",
    }
    assert [p["where"] for p in hop["presented"]] == ["request.form.subject_token"]


async def test_a_call_that_gets_no_answer_stays_on_the_record_as_failed(
    pdp_key: SigningKey,
) -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    resolve = static_key_resolver({pdp_key.kid: pdp_key.key})
    transport = httpx.MockTransport(unreachable)
    async with httpx.AsyncClient(
        transport=transport, event_hooks=hops.event_hooks(resolve)
    ) as http:
        with hops.recording() as made, pytest.raises(httpx.ConnectError):
            await http.get("http://127.0.0.1:9/api/docs", headers={"Authorization": "Bearer x.y.z"})
    [hop] = made
    assert hop["method"] == "GET" and hop["status"] is None
    assert hop["error"] == "no answer: the connection failed or timed out"
    assert hop["request_headers"]["authorization"] == "Bearer ***"


def test_the_meta_key_is_the_one_the_run_model_reads() -> None:
    from lab.render.run_model import reported_hops

    meta = hops.meta([{"method": "GET", "status": 200}])
    assert reported_hops({"result": {"_meta": meta}}) == [{"method": "GET", "status": 200}]


def test_meta_is_a_json_safe_copy_that_shares_nothing_with_the_recorded_hops() -> None:
    claims = {"sub": "human.idjag-learner", "act": {"sub": "mcp.api-mcp"}, "scp": ["a"]}
    recorded = [{"tokens": [{"claims": claims}], "pair": ("x", 1), 7: object()}]
    shown = hops.meta(recorded)[hops.HOPS_META_KEY]
    # What a JSON round trip with default=str gives: lists for tuples, text for the rest.
    assert shown == json.loads(json.dumps(recorded, default=str))
    shown[0]["tokens"][0]["claims"]["act"]["sub"] = "changed"
    shown[0]["tokens"][0]["claims"]["scp"].append("b")
    assert claims == {"sub": "human.idjag-learner", "act": {"sub": "mcp.api-mcp"}, "scp": ["a"]}


async def test_an_answered_call_never_builds_a_record_of_itself_as_unanswered(
    pdp_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    real_unanswered = hops.unanswered

    def counting_unanswered(request: httpx.Request) -> dict[str, object]:
        built.append(str(request.url))
        return real_unanswered(request)

    monkeypatch.setattr(hops, "unanswered", counting_unanswered)

    def docapi(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/docs/9":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"docs": []})

    resolve = static_key_resolver({pdp_key.kid: pdp_key.key})
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(docapi), event_hooks=hops.event_hooks(resolve)
    ) as http:
        with hops.recording() as made:
            await http.get("http://127.0.0.1:9/api/docs")
            await http.get("http://127.0.0.1:9/api/docs?page=2")
            assert built == []
            with pytest.raises(httpx.ConnectError):
                await http.get("http://127.0.0.1:9/api/docs/9")
            meta = hops.meta(made)
    assert built == ["http://127.0.0.1:9/api/docs/9"]
    recorded = meta[hops.HOPS_META_KEY]
    assert [(h["url"], h["status"]) for h in recorded] == [
        ("http://127.0.0.1:9/api/docs", 200),
        ("http://127.0.0.1:9/api/docs?page=2", 200),
        ("http://127.0.0.1:9/api/docs/9", None),
    ]
    assert recorded[0]["elapsed_ms"] >= 0 and recorded[2]["error"].startswith("no answer")


async def test_an_issued_token_whose_key_is_not_held_is_checked_off_the_event_loop(
    pdp_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PDP's JWKS is fetched over blocking HTTP; in the embedded runtime the PDP answers
    from the MCP server's own event loop, so that fetch must run in a worker thread."""
    from lab import heldkeys
    from lab.oauth.jose import jwks

    loop_thread = threading.get_ident()
    fetched_in: list[bool] = []

    def jwks_endpoint(request: httpx.Request) -> httpx.Response:
        fetched_in.append(threading.get_ident() == loop_thread)
        return httpx.Response(200, json=jwks([(pdp_key.key, pdp_key.kid)]))

    keys = heldkeys.HeldKeys(
        "http://127.0.0.1:9/zts/v1/oauth2/keys",
        client=httpx.Client(transport=httpx.MockTransport(jwks_endpoint)),
    )

    def pdp(request: httpx.Request) -> httpx.Response:
        issued = pdp_key.sign({"iss": "pdp", "sub": "human.idjag-learner", "aud": "api"}, "at+jwt")
        return httpx.Response(200, json={"access_token": issued, "token_type": "Bearer"})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(pdp), event_hooks=hops.event_hooks(keys)
    ) as http:
        for _ in range(2):
            with hops.recording() as made:
                await http.post(TOKEN_URL, data={"scope": "x"})
            [hop] = made
            [token] = hop["tokens"]
            assert token["signature"]["valid"] is True
    assert fetched_in == [False]  # one fetch, in a worker thread; the second hop used the key
