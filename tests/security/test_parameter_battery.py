"""Hostile parameter values with genuine credentials: a precise OAuth refusal or a token no wider
than the genuine request's — never a 5xx, never a broader scope, lifetime or audience.

The token battery (``test_token_battery.py``) forges the *tokens*; the route sweep
(``test_route_sweep.py``) sends malformed *requests* without credentials. This battery sits
between them: each request is authenticated and carries a valid subject token, ID-JAG or
access token, and exactly one parameter is given a hostile value (empty, blank, NUL, huge,
non-ASCII, a number out of every range, a wildcard, a domain scope, the admin role, another
resource...), or is added when the grant does not expect it. Whatever the PDP answers must be:

* a JSON OAuth error (RFC 6749 §5.2 codes, plus RFC 8707 ``invalid_target`` and Athenz's
  ``not_found``) with a 4xx status; or
* a token whose roles, audience, subject and lifetime are within those of the same request
  with its genuine parameters (the escalation class of issue #16).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from lab.config import AGENT_PRINCIPAL, LEARNER_PRINCIPAL, MCP_PRINCIPAL
from lab.oauth.jose import make_client_assertion, unverified_claims
from lab.oauth.tokens import (
    CLIENT_ASSERTION_TYPE_JWT_BEARER,
    GRANT_CLIENT_CREDENTIALS,
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_JAG,
)
from lab.pdp.zts.grants.base import MAX_LIFETIME_S
from lab.pdp.zts.grants.token_exchange import ID_JAG_LIFETIME_S
from tests.security.battery import TOKEN_ERRORS, answer_problems
from tests.security.test_token_battery import Attempt, Kit, kit  # noqa: F401  (module fixture)

#: RFC 6749 §5.2, plus RFC 8707's invalid_target and the Athenz-shaped access_denied/not_found.
OAUTH_ERRORS = TOKEN_ERRORS | {"invalid_target", "access_denied", "not_found"}

HOSTILE_VALUES: list[str] = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "é",
    "\U0001d55c",  # mathematical double-struck k: NFKC folds it to "k"
    "\u212a",  # Kelvin sign: casefolds to "k"
    "x" * 10_000,
    "-1",
    "0",
    "1e309",
    "NaN",
    "99999999999999999999999999",
    "999999999999",  # the longest number expires_in reads: capped, never honoured
    "86400",
    "+60",
    "0x10",
    "*",
    "api:domain",
    "api:role.*",
    "mcp:role.admin",
    "api:role.admin api:role.docs-getter",
    "api:role.docs-getter\tmcp:role.admin",
    " api:role.docs-getter ",
    "API:ROLE.DOCS-GETTER",
    "https://evil.example/mcp",
    "http://127.0.0.1:1/",
    "urn:ietf:params:oauth:token-type:jwt",
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ACCESS_TOKEN,
]

# The parameters each grant reads, and ones it does not expect (which must be ignored or refused).
TARGETS: dict[str, tuple[str, ...]] = {
    "id-jag": (
        "grant_type",
        "requested_token_type",
        "subject_token",
        "subject_token_type",
        "audience",
        "resource",
        "scope",
        "expires_in",
        "actor_token",
        "actor_token_type",
    ),
    "redeem": ("grant_type", "assertion", "scope", "resource", "audience", "expires_in"),
    "client-credentials": ("grant_type", "scope", "resource", "audience", "expires_in"),
    "exchange": (
        "grant_type",
        "subject_token",
        "subject_token_type",
        "requested_token_type",
        "scope",
        "audience",
        "resource",
        "expires_in",
        "actor_token",
    ),
}


def genuine(kit: Kit, target: str) -> tuple[str, Attempt]:  # noqa: F811
    """A fresh genuine attempt for ``target`` (single-use tokens are minted anew each time)."""
    if target == "client-credentials":
        return target, Attempt("", client=LEARNER_PRINCIPAL)
    if target == "id-jag":
        return target, Attempt(kit.id_tok())
    if target == "redeem":
        return target, Attempt(kit.jag())
    return target, Attempt(kit.mcp_at(), client=MCP_PRINCIPAL)


def token_bounds(claims: dict[str, Any]) -> tuple[set[str], Any, Any, int]:
    """(roles, audience, subject, lifetime) of an issued token."""
    roles = set(str(claims.get("scope", "")).split())
    roles |= {str(role) for role in claims.get("scp", [])}
    return roles, claims.get("aud"), claims.get("sub"), int(claims["exp"]) - int(claims["iat"])


#: The longest token each target may issue, whatever ``expires_in`` says: an ID-JAG is short
#: (draft -04 §4.3), a redeemed access token is capped, and an exchanged one never outlives its
#: subject token (the battery's subject tokens live 300 s).
LIFETIME_CAPS = {
    "id-jag": ID_JAG_LIFETIME_S,
    "redeem": MAX_LIFETIME_S,
    "client-credentials": MAX_LIFETIME_S,
    "exchange": 300,
}


def base_form(kit: Kit, target: str, token: str) -> dict[str, str | None]:  # noqa: F811
    if target == "client-credentials":
        # The widest genuine request: every role the learner holds in domain api.
        return {"grant_type": GRANT_CLIENT_CREDENTIALS, "scope": "api:domain"}
    return dict(kit.base_form(target, token))


@pytest.fixture(scope="module")
def baselines(kit: Kit) -> dict[str, tuple[set[str], Any, Any, int]]:  # noqa: F811
    """What each target issues for its genuine request: the widest any hostile variant may get
    (its roles, audience and subject; its lifetime up to the target's cap)."""
    out = {}
    for target in TARGETS:
        name, attempt = genuine(kit, target)
        response = send_form(kit, attempt.client, base_form(kit, name, attempt.token))
        assert response.status_code == 200, response.text
        roles, audience, subject, issued_for = token_bounds(
            unverified_claims(response.json()["access_token"])
        )
        assert issued_for <= LIFETIME_CAPS[target]
        out[target] = (roles, audience, subject, LIFETIME_CAPS[target])
    return out


def problems_with(
    response: Any, baseline: tuple[set[str], Any, Any, int], described: str
) -> list[str]:
    found, body = answer_problems(response, OAUTH_ERRORS, described)
    if body is None:
        return found
    roles, audience, subject, lifetime = token_bounds(unverified_claims(body["access_token"]))
    base_roles, base_audience, base_subject, base_lifetime = baseline
    found = []
    if not roles <= base_roles:
        found.append(
            f"{described}: roles {sorted(roles - base_roles)} beyond the genuine request's"
        )
    if audience != base_audience:
        found.append(f"{described}: audience {audience!r} instead of {base_audience!r}")
    if subject != base_subject:
        found.append(f"{described}: subject {subject!r} instead of {base_subject!r}")
    if lifetime > base_lifetime:
        found.append(f"{described}: lifetime {lifetime} s beyond the cap {base_lifetime} s")
    return found


CASES = [(target, parameter) for target, parameters in TARGETS.items() for parameter in parameters]


@pytest.mark.parametrize(("target", "parameter"), CASES, ids=[f"{t}.{p}" for t, p in CASES])
def test_a_hostile_parameter_is_refused_precisely_or_grants_no_more(
    kit: Kit,  # noqa: F811
    baselines: dict[str, tuple[set[str], Any, Any, int]],
    target: str,
    parameter: str,
) -> None:
    found: list[str] = []
    for value in [*HOSTILE_VALUES, None]:
        name, attempt = genuine(kit, target)
        form = {**base_form(kit, name, attempt.token), parameter: value}
        response = send_form(kit, attempt.client, form)
        found += problems_with(response, baselines[target], f"{parameter}={str(value)[:40]!r}")
    assert not found, "\n".join(found)


def send_form(kit: Kit, client: str, form: dict[str, str | None]) -> Any:  # noqa: F811
    """POST ``form`` as given (an empty value stays in the body; ``None`` leaves it out),
    authenticated as ``client`` with a fresh RFC 7523 client assertion."""
    fields = [(key, value) for key, value in form.items() if value is not None]
    fields += [
        ("client_assertion_type", CLIENT_ASSERTION_TYPE_JWT_BEARER),
        (
            "client_assertion",
            make_client_assertion(client, kit.key(client), kit.lab.endpoints.zts),
        ),
    ]
    return kit.http.post(
        kit.lab.endpoints.zts_token,
        content=urlencode(fields).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def test_an_unknown_or_repeated_parameter_changes_nothing(
    kit: Kit,  # noqa: F811
    baselines: dict[str, tuple[set[str], Any, Any, int]],
) -> None:
    """Parameters no grant reads are ignored (RFC 6749 §3.2); none may widen the token."""
    extra: dict[str, Callable[[], str]] = {
        "roles": lambda: "admin",
        "sub": lambda: "human.someone-else",
        "client_id": lambda: AGENT_PRINCIPAL,
        "lifetime": lambda: "99999999",
        "aud": lambda: "https://evil.example/",
    }
    found: list[str] = []
    for target in TARGETS:
        for parameter, value in extra.items():
            name, attempt = genuine(kit, target)
            form = {**base_form(kit, name, attempt.token), parameter: value()}
            response = send_form(kit, attempt.client, form)
            found += problems_with(response, baselines[target], f"{target} {parameter}")
    assert not found, "\n".join(found)
