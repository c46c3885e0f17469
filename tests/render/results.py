"""Hand-made step results (no servers) for the renderers' tests."""

from __future__ import annotations

import json
from pathlib import Path

from lab.agent.recorder import Exchange
from lab.oauth.jose import SigningKey, unverified_claims, unverified_header
from lab.steps.model import ActionResult, CheckResult, StepResult, TokenSeen


def token_seen(
    key_dir: Path, label: str, claims: dict, previous: TokenSeen | None = None
) -> TokenSeen:
    key = SigningKey.load_or_create(key_dir / "k.pem")
    token = key.sign(claims, typ="at+jwt")
    changes = ()
    if previous is not None:
        names = list(previous.claims) + [n for n in claims if n not in previous.claims]
        changes = tuple(
            (n, previous.claims.get(n, "(absent)"), claims.get(n, "(absent)"))
            for n in names
            if previous.claims.get(n) != claims.get(n)
        )
    return TokenSeen(
        "get",
        label,
        token,
        unverified_header(token),
        unverified_claims(token),
        f"{previous.action_id}.{previous.label}" if previous else None,
        changes,
    )


def passed_and_failed(key_dir: Path) -> list[StepResult]:
    first = token_seen(
        key_dir,
        "access_token",
        {"sub": "human.idjag-learner", "aud": "api", "scope": "docs-getter", "exp": 1795383411},
    )
    second = token_seen(
        key_dir,
        "exchanged",
        {
            "sub": "human.idjag-learner",
            "aud": "api",
            "scope": "docs-getter",
            "act": {"sub": "mcp.api-mcp"},
            "client_id": "mcp.api-mcp",
        },
        first,
    )
    exchange = Exchange(
        "POST",
        "http://127.0.0.1:1/zts/v1/oauth2/token",
        200,
        {},
        "grant_type=x",
        {"content-type": "application/json"},
        json.dumps({"access_token": first.token}),
        3.0,
    )
    ok = StepResult(
        4,
        "role-membership",
        "Join the role",
        "passed",
        12.5,
        (
            ActionResult(
                "get",
                "request",
                "Get a token.",
                (exchange,),
                {"status": 200},
                (first, second),
                (
                    CheckResult(
                        "get",
                        "status equals 200",
                        200,
                        200,
                        True,
                        "The learner holds the role.",
                        "equals",
                        "status",
                    ),
                ),
                curl="curl -sS -i http://127.0.0.1:1/zts/v1/oauth2/token",
            ),
        ),
        "steps/04-role-membership.md",
        body="You now hold **docs-getter**.\n",
        next_step=5,
    )
    failing_check = CheckResult(
        "call",
        "status equals 200",
        200,
        403,
        False,
        "The MCP server lets the learner in.",
        "equals",
        "status",
    )
    bad = StepResult(
        8,
        "protect-mcp",
        "Protect the MCP server",
        "failed",
        40.0,
        (
            ActionResult(
                "call",
                "mcp",
                "Call list_docs.",
                (),
                {"status": 403, "is_error": True},
                (),
                (failing_check,),
                command="lab mcp call list_docs --token T",
            ),
        ),
        "steps/08-protect-mcp.md",
        message="steps/08-protect-mcp.md: action call: status equals 200 — expected 200, got 403",
    )
    err = StepResult(
        9,
        "sign-in",
        "Sign in",
        "error",
        5.0,
        (
            ActionResult(
                "sign_in", "agent", error="steps/09-sign-in.md: action sign_in: connection refused"
            ),
        ),
        "steps/09-sign-in.md",
        message="steps/09-sign-in.md: action sign_in: connection refused",
    )
    return [ok, bad, err]
