"""The run model of a chain: the MCP server's own hops, each token against its parent."""

from __future__ import annotations

import json
from pathlib import Path

from lab.agent.recorder import Exchange
from lab.mcpserver import HOPS_META_KEY
from lab.oauth.jose import token_fingerprint
from lab.render.run_model import step_model
from lab.steps.model import ActionResult, StepResult
from tests.render.results import token_seen

REFUSED = {
    "error": "unauthorized_client",
    "error_description": "mcp.api-mcp lacks zts.token_source_exchange on mcp:api",
    "code": 403,
    "message": "Principal not authorized for token impersonation from source domain",
}


def tool_call(hops: list[dict], is_error: bool) -> Exchange:
    """The agent's tools/call as its recorder kept it: the MCP server's hops in ``_meta``."""
    result = {"content": [], "isError": is_error, "_meta": {HOPS_META_KEY: hops}}
    return Exchange(
        "POST",
        "http://127.0.0.1:3/mcp",
        200,
        {},
        json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "x"}}),
        {"content-type": "application/json"},
        json.dumps({"jsonrpc": "2.0", "id": 2, "result": result}),
        5.0,
    )


def hop(status: int, body: dict, tokens: list[dict], presented: list[dict]) -> dict:
    return {
        "method": "POST",
        "url": "http://127.0.0.1:2/zts/v1/oauth2/token",
        "status": status,
        "request_headers": {"content-type": "application/x-www-form-urlencoded"},
        "request_body": "grant_type=urn:ietf:params:oauth:grant-type:token-exchange"
        "&subject_token=***&audience=api",
        "response_headers": {"content-type": "application/json"},
        "response_body": json.dumps(body),
        "elapsed_ms": 2.0,
        "error": None,
        "tokens": tokens,
        "presented": presented,
    }


def test_the_mcp_servers_hops_follow_its_tools_call_and_its_token_joins_the_lineage(
    tmp_path: Path,
) -> None:
    id_jag = token_seen(
        tmp_path, "id_jag", {"sub": "u", "aud": "pdp", "jti": "j1", "resource": "m"}
    )
    access = token_seen(tmp_path, "access_token", {"sub": "u", "aud": "mcp", "jti": "j2"}, id_jag)
    exchanged_claims = {"sub": "u", "aud": "api", "jti": "j3", "act": {"sub": "mcp.api-mcp"}}
    issued = {
        "header": {"typ": "at+jwt", "kid": "k"},
        "claims": exchanged_claims,
        "fingerprint": "f3",
        "signature": {"valid": True, "kid": "k", "keys": "the PDP's JWKS"},
        "checked_by": "MCP server",
    }
    presented = [
        {"where": "request.form.subject_token", "fingerprint": token_fingerprint(access.token)}
    ]
    granted = hop(200, {"access_token": "***"}, [issued], presented)
    redeem = ActionResult(
        "redeem",
        "agent",
        tokens=(id_jag, access),
        derived_from={token_fingerprint(access.token): token_fingerprint(id_jag.token)},
    )
    prompt = ActionResult("prompt", "agent", exchanges=(tool_call([granted], False),))
    model = step_model(StepResult(12, "e2e", "E2E", "passed", 1.0, (redeem, prompt)))

    [inner] = model["actions"][1]["calls"][0]["hops"]
    assert inner["by"] == "MCP server" and inner["party"] == "PDP" and inner["status"] == 200
    assert [(h["from"], h["to"], h["call"], h["hop"]) for h in model["sequence"]][-1] == (
        "MCP server",
        "PDP",
        "RFC 8693 exchange → aud api",
        0,
    )
    labels = [(e["label"], e["from"]) for e in model["lineage"]]
    assert labels == [
        ("id_jag", None),
        ("access_token", "redeem.id_jag"),
        ("exchanged by the MCP server", "redeem.access_token"),
    ]
    exchanged = inner["tokens"][0]
    assert exchanged["relation"] == "exchanged from"
    diff = {d["claim"]: d["kind"] for d in exchanged["diff"]}
    assert diff == {"aud": "changed", "jti": "changed", "act": "added"}
    assert exchanged["signature"]["valid"] is True
    assert exchanged["signature"]["checked_by"] == "MCP server"
    access_model = model["actions"][0]["tokens"][1]
    assert (
        access_model["relation"] == "exchanged from" and access_model["previous"] == "redeem.id_jag"
    )
    assert {d["claim"]: d["kind"] for d in access_model["diff"]}["resource"] == "removed"


def test_a_refusal_inside_the_chain_carries_the_oauth_error_and_athenzs_words(
    tmp_path: Path,
) -> None:
    refused = hop(403, REFUSED, [], [])
    prompt = ActionResult(
        "prompt", "mcp", exchanges=(tool_call([refused], True), tool_call([refused], True))
    )
    model = step_model(StepResult(6, "denied", "Denied", "passed", 1.0, (prompt,)))
    inner = [h for h in model["sequence"] if h["from"] == "MCP server"]
    assert inner and inner[0]["status"] == 403
    assert inner[0]["refusal"] == (
        "unauthorized_client: mcp.api-mcp lacks zts.token_source_exchange on mcp:api"
        " (Athenz 403: Principal not authorized for token impersonation from source domain)"
    )
