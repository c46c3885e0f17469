"""Forged, mistyped and misused tokens against every verifier in the lab: all refused, never 5xx.

One table (``CASES``): each row names the attack, the target, how the token is forged (with the
real keys in ``$LAB_HOME/keys``, or pyjwt/HMAC directly for ``alg: none`` and HS256), and the
status and OAuth error the target must answer with. Targets:

* ``id-jag``  — PDP token endpoint, token exchange ID token → ID-JAG (subject_token), as ai.agent
* ``redeem``  — PDP token endpoint, jwt-bearer grant (assertion = ID-JAG), as ai.agent
* ``exchange`` — PDP token endpoint, token exchange access token → access token, as mcp.api-mcp
* ``mcp``     — the MCP server's ``/mcp`` (Bearer, RFC 6750)
* ``docapi``  — the protected document API's ``/api/docs`` (Bearer, RFC 6750)

A control test first proves the forging machinery: the same genuine claims, re-signed with the
right key, are accepted by every target — so each refusal below is the verifier's doing.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest

from lab.agent.chain import Agent
from lab.config import AGENT_PRINCIPAL, LEARNER_PRINCIPAL, MCP_PRINCIPAL
from lab.oauth.jose import (
    SigningKey,
    b64url,
    generate_private_key,
    key_id,
    make_client_assertion,
    new_jti,
    now,
    public_pem,
    unverified_claims,
)
from lab.oauth.tokens import (
    CLIENT_ASSERTION_TYPE_JWT_BEARER,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
    TYP_ACCESS_TOKEN,
    TYP_ID_JAG,
)
from tests.agent.labsetup import RunningLab
from tests.security.fullstack import full_lab

JAG_SCOPE = "api:role.docs-getter mcp:role.mcp-accessor"
MCP_INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "battery", "version": "0"},
    },
}


# ------------------------------------------------------------------------------ forging kit


def sign_none(claims: dict[str, Any], typ: str) -> str:
    """RFC 7519 §6 unsecured JWT (``alg: none``, empty signature)."""
    return jwt.encode(claims, "", algorithm="none", headers={"typ": typ})


def sign_hs256_with_public_key(claims: dict[str, Any], key: SigningKey, typ: str) -> str:
    """The classic key-confusion forgery: HMAC keyed with the verifier's *public* key PEM.

    pyjwt refuses to use a PEM as an HMAC secret, which is the point; the attacker does not
    care, so the MAC is computed here (RFC 7515 §3.1 signing input).
    """
    header = {"alg": "HS256", "typ": typ, "kid": key.kid}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    mac = hmac.new(public_pem(key.key), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def sign_with_stranger(claims: dict[str, Any], like: SigningKey, typ: str, kid: str) -> str:
    """Signed with a fresh key of the same algorithm, published under ``kid``."""
    stranger = SigningKey(generate_private_key(like.alg), kid)
    return stranger.sign(claims, typ=typ)


def flip_signature(token: str) -> str:
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{body}.{b64url(bytes(raw))}"


def without(claims: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k not in names}


@dataclass
class Attempt:
    """What to send: the token, plus any change to the form or the authenticated client."""

    token: str
    client: str = AGENT_PRINCIPAL
    form: dict[str, str] = field(default_factory=dict)
    raw_body: tuple[str, bytes] | None = None  # (content type, body) instead of a form
    client_assertion: str | None = None  # a forged RFC 7523 client assertion instead of a real one


@dataclass
class Kit:
    """The running lab, its real keys and one genuine token of each kind to forge from."""

    lab: RunningLab
    http: httpx.Client
    idp: SigningKey
    pdp: SigningKey
    id_token: dict[str, Any]
    id_jag: dict[str, Any]
    mcp_access: dict[str, Any]
    api_access: dict[str, Any]
    id_token_raw: str = ""
    mcp_access_raw: str = ""

    def key(self, principal: str) -> SigningKey:
        return SigningKey.load_or_create(self.lab.settings.key_file(principal))

    # genuine claims, freshly timed and with a new jti, re-signed with the right key
    def fresh(self, claims: dict[str, Any], **changes: Any) -> dict[str, Any]:
        issued = now()
        out = {**claims, "iat": issued, "exp": issued + 300, "jti": new_jti()}
        if "auth_time" in claims:
            out["auth_time"] = issued
        out.update(changes)
        return {k: v for k, v in out.items() if v is not DROP}

    def id_tok(self, **changes: Any) -> str:
        return self.idp.sign(self.fresh(self.id_token, **changes), typ="JWT")

    def jag(self, **changes: Any) -> str:
        return self.pdp.sign(self.fresh(self.id_jag, **changes), typ=TYP_ID_JAG)

    def mcp_at(self, **changes: Any) -> str:
        return self.pdp.sign(self.fresh(self.mcp_access, **changes), typ=TYP_ACCESS_TOKEN)

    def api_at(self, **changes: Any) -> str:
        return self.pdp.sign(self.fresh(self.api_access, **changes), typ=TYP_ACCESS_TOKEN)

    def at_for(self, target: str, **changes: Any) -> str:
        return self.mcp_at(**changes) if target == "mcp" else self.api_at(**changes)

    def claims_for(self, target: str) -> dict[str, Any]:
        return self.fresh(self.mcp_access if target == "mcp" else self.api_access)

    def genuine_jag(self) -> str:
        response = self.send("id-jag", Attempt(self.id_token_raw))
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    # ------------------------------------------------------------------------- sending
    def send(self, target: str, attempt: Attempt) -> httpx.Response:
        endpoints = self.lab.endpoints
        if target == "mcp":
            return self.http.post(
                endpoints.mcp,
                json=MCP_INIT,
                headers={
                    b"Authorization": bearer(attempt.token),
                    b"Accept": b"application/json, text/event-stream",
                },
            )
        if target == "docapi":
            return self.http.get(
                f"{endpoints.docapi_protected}/api/docs",
                headers={b"Authorization": bearer(attempt.token)},
            )
        form = {**self.base_form(target, attempt.token), **attempt.form}
        form = {k: v for k, v in form.items() if v}
        form["client_assertion_type"] = CLIENT_ASSERTION_TYPE_JWT_BEARER
        form["client_assertion"] = attempt.client_assertion or make_client_assertion(
            attempt.client, self.key(attempt.client), endpoints.zts
        )
        if attempt.raw_body is not None:
            content_type, body = attempt.raw_body
            return self.http.post(
                endpoints.zts_token, content=body, headers={"Content-Type": content_type}
            )
        return self.http.post(endpoints.zts_token, data=form)

    def base_form(self, target: str, token: str) -> dict[str, str]:
        endpoints = self.lab.endpoints
        if target == "id-jag":
            return {
                "grant_type": GRANT_TOKEN_EXCHANGE,
                "requested_token_type": TOKEN_TYPE_ID_JAG,
                "subject_token": token,
                "subject_token_type": TOKEN_TYPE_ID_TOKEN,
                "audience": endpoints.zts,
                "resource": endpoints.mcp,
                "scope": JAG_SCOPE,
            }
        if target == "redeem":
            return {"grant_type": GRANT_JWT_BEARER, "assertion": token}
        if target == "exchange":
            return {
                "grant_type": GRANT_TOKEN_EXCHANGE,
                "subject_token": token,
                "subject_token_type": TOKEN_TYPE_ACCESS_TOKEN,
                "scope": "api:role.docs-getter",
                "audience": "api",
            }
        raise AssertionError(f"unknown target {target}")


def bearer(token: str) -> bytes:
    """The Authorization header as raw bytes, so non-ASCII forgeries reach the server as sent."""
    return b"Bearer " + token.encode()


DROP = object()  # a claim value meaning "leave this claim out"


def client_claims(kit: Kit, **changes: Any) -> dict[str, Any]:
    """RFC 7523 §3 client-assertion claims for ai.agent at the PDP, with ``changes``."""
    issued = now()
    claims = {
        "iss": AGENT_PRINCIPAL,
        "sub": AGENT_PRINCIPAL,
        "aud": kit.lab.endpoints.zts,
        "jti": new_jti(),
        "iat": issued,
        "exp": issued + 60,
        **changes,
    }
    return {k: v for k, v in claims.items() if v is not DROP}


def forged_client(kit: Kit, signer: str = AGENT_PRINCIPAL, **changes: Any) -> Attempt:
    """A genuine ID-JAG, redeemed with a client assertion that is wrong in one way."""
    assertion = kit.key(signer).sign(client_claims(kit, **changes), typ="JWT")
    return Attempt(kit.genuine_jag(), client_assertion=assertion)


def replayed_client_assertion(kit: Kit) -> Attempt:
    assertion = kit.key(AGENT_PRINCIPAL).sign(client_claims(kit), typ="JWT")
    first = kit.send("redeem", Attempt(kit.genuine_jag(), client_assertion=assertion))
    assert first.status_code == 200, first.text
    return Attempt(kit.genuine_jag(), client_assertion=assertion)


Forge = Callable[[Kit], Attempt]


@dataclass(frozen=True)
class Case:
    name: str
    target: str
    forge: Forge
    status: int
    error: str


def subject_form(token_type: str) -> dict[str, str]:
    return {"subject_token_type": token_type}


# ------------------------------------------------------------------------------ the table

EVIL_ISSUER = "https://evil.example/realms/idjag"
TOO_LONG = "a" * 20_000  # over the verifiers' 16 KiB token limit, under the body limit
HUGE = "a" * 200_000  # over the token endpoint's 64 KiB body limit

# Attacks on the ID token (PDP, token exchange → ID-JAG): all invalid_grant (RFC 6749 §5.2).
ID_TOKEN_CASES = [
    Case(
        "alg none",
        "id-jag",
        lambda k: Attempt(sign_none(k.fresh(k.id_token), "JWT")),
        400,
        "invalid_grant",
    ),
    Case(
        "HS256 keyed with the IdP public key",
        "id-jag",
        lambda k: Attempt(sign_hs256_with_public_key(k.fresh(k.id_token), k.idp, "JWT")),
        400,
        "invalid_grant",
    ),
    Case(
        "unknown kid",
        "id-jag",
        lambda k: Attempt(sign_with_stranger(k.fresh(k.id_token), k.idp, "JWT", "no-such-kid")),
        400,
        "invalid_grant",
    ),
    Case(
        "bad signature (stranger key, real kid)",
        "id-jag",
        lambda k: Attempt(sign_with_stranger(k.fresh(k.id_token), k.idp, "JWT", k.idp.kid)),
        400,
        "invalid_grant",
    ),
    Case(
        "bad signature (flipped bit)",
        "id-jag",
        lambda k: Attempt(flip_signature(k.id_tok())),
        400,
        "invalid_grant",
    ),
    Case(
        "expired",
        "id-jag",
        lambda k: Attempt(k.id_tok(iat=now() - 7200, exp=now() - 3600)),
        400,
        "invalid_grant",
    ),
    Case(
        "nbf in the future",
        "id-jag",
        lambda k: Attempt(k.id_tok(nbf=now() + 3600)),
        400,
        "invalid_grant",
    ),
    Case(
        "wrong iss (real IdP key)",
        "id-jag",
        lambda k: Attempt(k.id_tok(iss=EVIL_ISSUER)),
        400,
        "invalid_grant",
    ),
    Case(
        "aud is another client",
        "id-jag",
        lambda k: Attempt(k.id_tok(aud=MCP_PRINCIPAL, azp=MCP_PRINCIPAL)),
        400,
        "invalid_grant",
    ),
    Case(
        "untrusted issuer (its own key)",
        "id-jag",
        lambda k: Attempt(
            SigningKey(generate_private_key("RS256"), "evil").sign(
                k.fresh(k.id_token, iss=EVIL_ISSUER), typ="JWT"
            )
        ),
        400,
        "invalid_grant",
    ),
    Case("missing sub", "id-jag", lambda k: Attempt(k.id_tok(sub=DROP)), 400, "invalid_grant"),
    Case("missing exp", "id-jag", lambda k: Attempt(k.id_tok(exp=DROP)), 400, "invalid_grant"),
    Case("missing aud", "id-jag", lambda k: Attempt(k.id_tok(aud=DROP)), 400, "invalid_grant"),
    Case(
        "ID-JAG where an ID token belongs",
        "id-jag",
        lambda k: Attempt(k.jag()),
        400,
        "invalid_grant",
    ),
    Case(
        "access token where an ID token belongs",
        "id-jag",
        lambda k: Attempt(k.mcp_at()),
        400,
        "invalid_grant",
    ),
    Case(
        "ID token typed at+jwt by the IdP key",
        "id-jag",
        lambda k: Attempt(k.idp.sign(k.fresh(k.id_token), typ=TYP_ACCESS_TOKEN)),
        400,
        "invalid_grant",
    ),
    Case("garbage", "id-jag", lambda k: Attempt("not a token at all"), 400, "invalid_grant"),
    Case("truncated", "id-jag", lambda k: Attempt(k.id_tok()[:-20]), 400, "invalid_grant"),
    Case(
        "two segments",
        "id-jag",
        lambda k: Attempt(k.id_tok().rsplit(".", 1)[0]),
        400,
        "invalid_grant",
    ),
    Case("oversized token", "id-jag", lambda k: Attempt(TOO_LONG), 400, "invalid_grant"),
    Case("oversized body", "id-jag", lambda k: Attempt(HUGE), 413, "invalid_request"),
    Case(
        "genuine ID token, wrong client (aud mismatch)",
        "id-jag",
        lambda k: Attempt(k.id_token_raw, client=MCP_PRINCIPAL),
        400,
        "invalid_grant",
    ),
]

# Attacks on the ID-JAG (PDP, jwt-bearer redemption, ID-JAG draft -04 §4.4.1).
ID_JAG_CASES = [
    Case(
        "alg none",
        "redeem",
        lambda k: Attempt(sign_none(k.fresh(k.id_jag), TYP_ID_JAG)),
        400,
        "invalid_grant",
    ),
    Case(
        "HS256 keyed with the PDP public key",
        "redeem",
        lambda k: Attempt(sign_hs256_with_public_key(k.fresh(k.id_jag), k.pdp, TYP_ID_JAG)),
        400,
        "invalid_grant",
    ),
    Case(
        "unknown kid",
        "redeem",
        lambda k: Attempt(sign_with_stranger(k.fresh(k.id_jag), k.pdp, TYP_ID_JAG, "no-such-kid")),
        400,
        "invalid_grant",
    ),
    Case(
        "bad signature (stranger key, real kid)",
        "redeem",
        lambda k: Attempt(sign_with_stranger(k.fresh(k.id_jag), k.pdp, TYP_ID_JAG, k.pdp.kid)),
        400,
        "invalid_grant",
    ),
    Case(
        "bad signature (flipped bit)",
        "redeem",
        lambda k: Attempt(flip_signature(k.jag())),
        400,
        "invalid_grant",
    ),
    Case(
        "expired",
        "redeem",
        lambda k: Attempt(k.jag(iat=now() - 7200, exp=now() - 3600)),
        400,
        "invalid_grant",
    ),
    Case(
        "nbf in the future",
        "redeem",
        lambda k: Attempt(k.jag(nbf=now() + 3600)),
        400,
        "invalid_grant",
    ),
    Case("wrong iss", "redeem", lambda k: Attempt(k.jag(iss=EVIL_ISSUER)), 400, "invalid_grant"),
    Case(
        "wrong aud",
        "redeem",
        lambda k: Attempt(k.jag(aud="https://other-as.example")),
        400,
        "invalid_grant",
    ),
    Case(
        "ID token where an ID-JAG belongs",
        "redeem",
        lambda k: Attempt(k.id_token_raw),
        400,
        "invalid_grant",
    ),
    Case(
        "access token where an ID-JAG belongs",
        "redeem",
        lambda k: Attempt(k.mcp_at()),
        400,
        "invalid_grant",
    ),
    Case("missing jti", "redeem", lambda k: Attempt(k.jag(jti=DROP)), 400, "invalid_grant"),
    Case(
        "missing client_id",
        "redeem",
        lambda k: Attempt(k.jag(client_id=DROP)),
        400,
        "invalid_grant",
    ),
    Case("missing sub", "redeem", lambda k: Attempt(k.jag(sub=DROP)), 400, "invalid_grant"),
    Case("missing scope", "redeem", lambda k: Attempt(k.jag(scope=DROP)), 400, "invalid_grant"),
    Case(
        "client_id is not the authenticated client",
        "redeem",
        lambda k: Attempt(k.genuine_jag(), client=MCP_PRINCIPAL),
        400,
        "invalid_grant",
    ),
    Case(
        "scope escalation beyond the ID-JAG",
        "redeem",
        lambda k: Attempt(k.genuine_jag(), form={"scope": "api:role.docs-poster"}),
        400,
        "invalid_scope",
    ),
    Case("replayed ID-JAG", "redeem", lambda k: Attempt(redeemed_once(k)), 400, "invalid_grant"),
    Case("garbage", "redeem", lambda k: Attempt("garbage"), 400, "invalid_grant"),
    Case("truncated", "redeem", lambda k: Attempt(k.jag()[:-30]), 400, "invalid_grant"),
    Case("oversized token", "redeem", lambda k: Attempt(TOO_LONG), 400, "invalid_grant"),
    Case("oversized body", "redeem", lambda k: Attempt(HUGE), 413, "invalid_request"),
    Case("no assertion", "redeem", lambda k: Attempt(""), 400, "invalid_request"),
    Case(
        "JSON body instead of a form",
        "redeem",
        lambda k: Attempt(
            "",
            raw_body=(
                "application/json",
                json.dumps({"grant_type": GRANT_JWT_BEARER, "assertion": k.jag()}).encode(),
            ),
        ),
        400,
        "invalid_request",
    ),
    Case(
        "form fields as text/plain",
        "redeem",
        lambda k: Attempt(
            "",
            raw_body=("text/plain", f"grant_type={GRANT_JWT_BEARER}&assertion={k.jag()}".encode()),
        ),
        400,
        "invalid_request",
    ),
    Case(
        "binary body",
        "redeem",
        lambda k: Attempt(
            "", raw_body=("application/x-www-form-urlencoded", bytes(range(256)) * 8)
        ),
        400,
        "invalid_request",
    ),
]

# Attacks on the subject access token of RFC 8693 exchange (the MCP server's grant).
# Attacks on client authentication at the token endpoint (RFC 7523 §3, RFC 6749 §5.2).
CLIENT_AUTH_CASES = [
    Case(
        "client assertion alg none",
        "redeem",
        lambda k: Attempt(k.genuine_jag(), client_assertion=sign_none(client_claims(k), "JWT")),
        401,
        "invalid_client",
    ),
    Case(
        "client assertion signed with another client's key",
        "redeem",
        lambda k: forged_client(k, signer=MCP_PRINCIPAL),
        401,
        "invalid_client",
    ),
    Case(
        "client assertion expired",
        "redeem",
        lambda k: forged_client(k, iat=now() - 7200, exp=now() - 3600),
        401,
        "invalid_client",
    ),
    Case(
        "client assertion for another audience",
        "redeem",
        lambda k: forged_client(k, aud="https://other-as.example/token"),
        401,
        "invalid_client",
    ),
    Case(
        "client assertion iss is not sub",
        "redeem",
        lambda k: forged_client(k, iss=MCP_PRINCIPAL),
        401,
        "invalid_client",
    ),
    Case(
        "client assertion without jti",
        "redeem",
        lambda k: forged_client(k, jti=DROP),
        401,
        "invalid_client",
    ),
    Case("client assertion replayed", "redeem", replayed_client_assertion, 401, "invalid_client"),
]

# Misuse of genuine tokens: asking for more, or for somewhere else, than was granted.
ESCALATION_CASES = [
    Case(
        "ID-JAG for a role the agent may not request",
        "id-jag",
        lambda k: Attempt(k.id_token_raw, form={"scope": "api:role.docs-reviewer"}),
        403,
        "unauthorized_client",
    ),
    Case(
        "ID-JAG typed JWT instead of oauth-id-jag+jwt",
        "redeem",
        lambda k: Attempt(k.pdp.sign(k.fresh(k.id_jag), typ="JWT")),
        400,
        "invalid_grant",
    ),
    Case(
        "redeem for another resource than the ID-JAG's",
        "redeem",
        lambda k: Attempt(k.genuine_jag(), form={"resource": "https://elsewhere.example/mcp"}),
        400,
        "invalid_grant",  # MCP enterprise-managed authorization: aud/resource mismatch
    ),
    Case(
        "ID-JAG for a role the user does not hold",
        "id-jag",
        lambda k: Attempt(k.id_token_raw, form={"scope": "api:role.docs-deleter"}),
        403,  # Athenz answers "not included in the requested role(s)" with 403
        "invalid_scope",
    ),
    Case(
        "exchange for a role the subject token does not carry",
        "exchange",
        lambda k: Attempt(k.mcp_at(), client=MCP_PRINCIPAL, form={"scope": "api:role.docs-poster"}),
        400,
        "invalid_scope",
    ),
]

EXCHANGE_CASES = [
    Case(
        "alg none",
        "exchange",
        lambda k: Attempt(sign_none(k.claims_for("mcp"), TYP_ACCESS_TOKEN), client=MCP_PRINCIPAL),
        400,
        "invalid_grant",
    ),
    Case(
        "HS256 keyed with the PDP public key",
        "exchange",
        lambda k: Attempt(
            sign_hs256_with_public_key(k.claims_for("mcp"), k.pdp, TYP_ACCESS_TOKEN),
            client=MCP_PRINCIPAL,
        ),
        400,
        "invalid_grant",
    ),
    Case(
        "expired",
        "exchange",
        lambda k: Attempt(k.mcp_at(iat=now() - 7200, exp=now() - 3600), client=MCP_PRINCIPAL),
        400,
        "invalid_grant",
    ),
    Case(
        "ID-JAG where an access token belongs",
        "exchange",
        lambda k: Attempt(k.jag(), client=MCP_PRINCIPAL),
        400,
        "invalid_grant",
    ),
    Case(
        "ID token where an access token belongs",
        "exchange",
        lambda k: Attempt(k.id_token_raw, client=MCP_PRINCIPAL),
        400,
        "invalid_grant",
    ),
    Case(
        "garbage",
        "exchange",
        lambda k: Attempt("x.y.z", client=MCP_PRINCIPAL),
        400,
        "invalid_grant",
    ),
    Case(
        "unknown subject_token_type",
        "exchange",
        lambda k: Attempt(k.mcp_at(), client=MCP_PRINCIPAL, form=subject_form("urn:example:saml")),
        400,
        "invalid_request",
    ),
]


def bearer_cases(target: str) -> list[Case]:
    """RFC 6750 §3.1: every unusable access token → 401 invalid_token (RFC 9068 §4 checks)."""
    rows: list[tuple[str, Forge]] = [
        ("alg none", lambda k: Attempt(sign_none(k.claims_for(target), TYP_ACCESS_TOKEN))),
        (
            "HS256 keyed with the PDP public key",
            lambda k: Attempt(
                sign_hs256_with_public_key(k.claims_for(target), k.pdp, TYP_ACCESS_TOKEN)
            ),
        ),
        (
            "unknown kid",
            lambda k: Attempt(
                sign_with_stranger(k.claims_for(target), k.pdp, TYP_ACCESS_TOKEN, "no-such-kid")
            ),
        ),
        (
            "bad signature (stranger key, real kid)",
            lambda k: Attempt(
                sign_with_stranger(k.claims_for(target), k.pdp, TYP_ACCESS_TOKEN, k.pdp.kid)
            ),
        ),
        ("bad signature (flipped bit)", lambda k: Attempt(flip_signature(k.at_for(target)))),
        ("expired", lambda k: Attempt(k.at_for(target, iat=now() - 7200, exp=now() - 3600))),
        ("nbf in the future", lambda k: Attempt(k.at_for(target, nbf=now() + 3600))),
        ("wrong iss", lambda k: Attempt(k.at_for(target, iss=EVIL_ISSUER))),
        ("wrong aud", lambda k: Attempt(k.at_for(target, aud="https://elsewhere.example"))),
        ("ID-JAG where an access token belongs", lambda k: Attempt(k.jag())),
        ("ID token where an access token belongs", lambda k: Attempt(k.id_token_raw)),
        (
            "PDP-signed token typed JWT, not at+jwt",
            lambda k: Attempt(k.pdp.sign(k.claims_for(target), typ="JWT")),
        ),
        ("missing sub", lambda k: Attempt(k.at_for(target, sub=DROP))),
        ("missing exp", lambda k: Attempt(k.at_for(target, exp=DROP))),
        (
            "signed by the IdP key",
            lambda k: Attempt(k.idp.sign(k.claims_for(target), typ=TYP_ACCESS_TOKEN)),
        ),
        ("garbage", lambda k: Attempt("garbage")),
        ("truncated", lambda k: Attempt(k.at_for(target)[:-25])),
        ("oversized", lambda k: Attempt("a" * 7_000)),
        ("oversized JWT-shaped", lambda k: Attempt(k.at_for(target, pad="x" * 13_000))),
        ("non-ASCII", lambda k: Attempt("eyJ\u00e9.\u00e9.\u00e9")),
    ]
    if target == "docapi":
        rows.append(("MCP-audience token passed through", lambda k: Attempt(k.mcp_access_raw)))
    if target == "mcp":
        # The reverse direction: a token for the document API is not a token for the MCP server.
        rows.append(
            ("document API token (aud api) at the MCP server", lambda k: Attempt(k.api_at()))
        )
    return [Case(name, target, forge, 401, "invalid_token") for name, forge in rows]


CASES = (
    ID_TOKEN_CASES
    + ID_JAG_CASES
    + CLIENT_AUTH_CASES
    + ESCALATION_CASES
    + EXCHANGE_CASES
    + bearer_cases("mcp")
    + bearer_cases("docapi")
)


def redeemed_once(kit: Kit) -> str:
    token = kit.genuine_jag()
    first = kit.send("redeem", Attempt(token))
    assert first.status_code == 200, first.text
    return token


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(full_lab(tmp_path_factory.mktemp("battery") / "home"))
        agent = stack.enter_context(Agent(lab.endpoints, lab.settings))
        http = stack.enter_context(httpx.Client(timeout=30))
        # A role the learner holds but the agent has no zts.jag_exchange policy for.
        lab.admin.role("api", "docs-reviewer", (LEARNER_PRINCIPAL,))
        signed_in = agent.sign_in("idjag-learner", "password", method="password")
        assert signed_in.id_token, signed_in
        id_jag = agent.request_id_jag(signed_in.id_token)
        assert id_jag.token, id_jag.message
        access = agent.redeem_id_jag(id_jag.token)
        assert access.token, access.message
        learner = SigningKey.load_or_create(lab.settings.key_file(LEARNER_PRINCIPAL))
        api = http.post(
            lab.endpoints.zts_token,
            data={
                "grant_type": GRANT_CLIENT_CREDENTIALS,
                "scope": "api:role.docs-getter",
                "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
                "client_assertion": make_client_assertion(
                    LEARNER_PRINCIPAL, learner, lab.endpoints.zts
                ),
            },
        )
        assert api.status_code == 200, api.text
        keys = lab.settings.keys_dir
        yield Kit(
            lab=lab,
            http=http,
            idp=SigningKey.load_or_create(keys / "idp-signing.pem", "RS256"),
            pdp=SigningKey.load_or_create(keys / "pdp-signing.pem"),
            id_token=unverified_claims(signed_in.id_token),
            id_jag=unverified_claims(id_jag.token),
            mcp_access=unverified_claims(access.token),
            api_access=unverified_claims(api.json()["access_token"]),
            id_token_raw=signed_in.id_token,
            mcp_access_raw=access.token,
        )


# ------------------------------------------------------------------------------ tests


def test_genuine_tokens_re_signed_with_the_real_keys_are_accepted(kit: Kit) -> None:
    """The control: the forging kit produces tokens the lab accepts when nothing is wrong."""
    assert kit.idp.kid == key_id(kit.idp.key) and kit.pdp.kid == key_id(kit.pdp.key)
    jag = kit.send("id-jag", Attempt(kit.id_tok()))
    assert jag.status_code == 200, jag.text
    redeemed = kit.send("redeem", Attempt(kit.jag()))
    assert redeemed.status_code == 200, redeemed.text
    exchanged = kit.send("exchange", Attempt(kit.mcp_at(), client=MCP_PRINCIPAL))
    assert exchanged.status_code == 200, exchanged.text
    assert kit.send("mcp", Attempt(kit.mcp_at())).status_code == 200
    docs = kit.send("docapi", Attempt(kit.api_at()))
    assert docs.status_code == 200, docs.text
    assert docs.json()["caller"]["sub"] == LEARNER_PRINCIPAL


@pytest.mark.parametrize("case", CASES, ids=[f"{c.target}: {c.name}" for c in CASES])
def test_forged_or_misused_token_is_refused_with_the_oauth_error(kit: Kit, case: Case) -> None:
    response = kit.send(case.target, case.forge(kit))

    assert response.status_code == case.status, (response.status_code, response.text[:500])
    assert response.json()["error"] == case.error, response.text[:500]
    if case.target in ("mcp", "docapi"):
        # RFC 6750 §3: the challenge names the error too.
        assert f'error="{case.error}"' in response.headers["www-authenticate"]
    elif case.status == 401:
        # RFC 6749 §5.2: a 401 from the token endpoint carries a client-auth challenge.
        assert "www-authenticate" in response.headers
    assert "access_token" not in response.json()


def test_the_battery_covers_every_target() -> None:
    targets = {case.target for case in CASES}
    assert targets == {"id-jag", "redeem", "exchange", "mcp", "docapi"}
    assert len(CASES) >= 90
