"""Client authentication at the ZTS token endpoint, in process (``lab/pdp/client_auth.py``).

``authenticate_client`` reads only the PDP's issuer and token endpoint, a principal's keys, its
secret check and the single-use jti store: a stand-in PDP gives each, so every rule of RFC 6749
§2.3 / RFC 7523 §3 is pinned here without a server (mutmut's per-test map cannot see a server's
threads, and these run in milliseconds). Each test states the rule a mutant broke.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from lab.oauth.errors import InvalidClient, InvalidRequest
from lab.oauth.jose import (
    JwtValidationError,
    SigningKey,
    generate_private_key,
    make_client_assertion,
    new_jti,
)
from lab.oauth.tokens import CLIENT_ASSERTION_TYPE_JWT_BEARER
from lab.pdp.client_auth import (
    MAX_CLIENT_ASSERTION_LIFETIME_S,
    REPLAYED_CLIENT_ASSERTION,
    authenticate_client,
)

ISSUER = "http://127.0.0.1:1/zts/v1"
AGENT = "ai.agent"
AGENT_KEY = SigningKey(key=generate_private_key("ES256"), kid="agent-1")
STRANGER_KEY = SigningKey(key=generate_private_key("ES256"), kid="agent-1")


class Store:
    def __init__(self) -> None:
        self.used: dict[str, int] = {}

    def use_jti(self, key: str, exp: int) -> bool:
        if key in self.used:
            return False
        self.used[key] = exp
        return True


class StandInPdp:
    """What ``authenticate_client`` asks of ``lab.pdp.core.Pdp``, recorded."""

    issuer = ISSUER
    token_endpoint = ISSUER + "/oauth2/token"

    def __init__(self) -> None:
        self.store = Store()
        self.keys = {AGENT: AGENT_KEY}
        self.secrets = {AGENT: "p@ss word"}
        self.resolved: list[str] = []
        self.secret_checks: list[tuple[str, str]] = []

    def key_resolver(self, principal: str) -> Any:
        self.resolved.append(principal)
        key = self.keys.get(principal)

        def resolve(kid: str | None) -> Any:
            if key is None:
                raise JwtValidationError(f"principal {principal} has no registered public key")
            return key.key.public_key()

        return resolve

    def check_secret(self, principal: str, secret: str) -> bool:
        self.secret_checks.append((principal, secret))
        return self.secrets.get(principal) == secret


@pytest.fixture
def pdp() -> StandInPdp:
    return StandInPdp()


def _assertion(
    claims: dict[str, Any] | None = None,
    *,
    drop: tuple[str, ...] = (),
    key: SigningKey = AGENT_KEY,
    lifetime: int = 60,
) -> dict[str, str]:
    issued = int(time.time())
    body: dict[str, Any] = {
        "iss": AGENT,
        "sub": AGENT,
        "aud": ISSUER,
        "jti": new_jti(),
        "iat": issued,
        "exp": issued + lifetime,
        **(claims or {}),
    }
    for name in drop:
        del body[name]
    # Signed as raw JSON: pyjwt's encoder refuses the odd claim types some tests need.
    signature = jwt.api_jws.encode(
        json.dumps(body).encode(), key.key, algorithm=key.alg, headers={"kid": key.kid}
    )
    return {
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": signature,
    }


def _refused(pdp: StandInPdp, form: dict[str, str], headers: dict[str, str] | None = None) -> Any:
    with pytest.raises(InvalidClient) as refused:
        authenticate_client(pdp, form, headers or {})  # type: ignore[arg-type]
    return refused.value


def _basic(client: str, secret: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{client}:{secret}".encode()).decode()}


# --------------------------------------------------------------------------- one method


def test_no_credentials_at_all_is_an_unauthenticated_request(pdp: StandInPdp) -> None:
    refusal = _refused(pdp, {"client_id": AGENT}, {"authorization": "Bearer abc"})
    assert refusal.description == "Unauthenticated request"
    assert refusal.body()["message"] == "Unauthenticated request"


@pytest.mark.parametrize(
    ("use", "named"),
    [
        (("jwt", "basic"), "private_key_jwt, client_secret_basic"),
        (("jwt", "post"), "private_key_jwt, client_secret_post"),
        (("basic", "post"), "client_secret_basic, client_secret_post"),
        (("jwt", "basic", "post"), "private_key_jwt, client_secret_basic, client_secret_post"),
    ],
)
def test_more_than_one_method_is_an_invalid_request_naming_them(
    pdp: StandInPdp, use: tuple[str, ...], named: str
) -> None:
    form: dict[str, str] = {}
    headers: dict[str, str] = {}
    if "jwt" in use:
        form.update(_assertion())
    if "basic" in use:
        headers.update(_basic(AGENT, "p@ss word"))
    if "post" in use:
        form["client_secret"] = "p@ss word"
    with pytest.raises(InvalidRequest) as refused:
        authenticate_client(pdp, form, headers)  # type: ignore[arg-type]
    assert refused.value.description == f"more than one client authentication method used: {named}"
    assert pdp.resolved == [] and pdp.secret_checks == []


# --------------------------------------------------------------------------- client secrets


def test_basic_credentials_take_any_case_scheme_and_a_padded_client_id(pdp: StandInPdp) -> None:
    encoded = base64.b64encode(b" AI.Agent :p@ss word").decode()
    client = authenticate_client(pdp, {}, {"authorization": f"BASIC  {encoded} "})  # type: ignore[arg-type]
    assert client == AGENT
    assert pdp.secret_checks == [(AGENT, "p@ss word")]


def test_basic_credentials_are_percent_decoded_before_the_secret_check(pdp: StandInPdp) -> None:
    # RFC 6749 §2.3.1; percent-decoding only, as the MCP SDK encodes (quote) and decodes
    # (unquote) them: a "+" stays a "+".
    pdp.secrets[AGENT] = "p@ss:w+"
    client = authenticate_client(pdp, {}, _basic("ai%2Eagent", "p%40ss%3Aw+"))  # type: ignore[arg-type]
    assert client == AGENT
    assert pdp.secret_checks == [(AGENT, "p@ss:w+")]


def test_a_colon_in_a_basic_secret_belongs_to_the_secret(pdp: StandInPdp) -> None:
    # The id ends at the first colon (RFC 7617 §2: the user-id cannot contain one); clients
    # that send the secret without form-encoding it (httpx's auth=) keep its colons.
    pdp.secrets[AGENT] = "a:b:c"
    assert authenticate_client(pdp, {}, _basic(AGENT, "a:b:c")) == AGENT  # type: ignore[arg-type]
    assert pdp.secret_checks == [(AGENT, "a:b:c")]


@pytest.mark.parametrize(
    "value",
    [
        "Basic !!!",
        "Basic " + base64.b64encode(AGENT.encode() + b":\xff\xfe").decode(),
        "Basic " + base64.b64encode(b"ai.agent-no-colon").decode(),
        # a character outside base64's alphabet is refused, not skipped
        "Basic " + base64.b64encode(b"ai.agent:p@ss word").decode()[:4] + "*"
        + base64.b64encode(b"ai.agent:p@ss word").decode()[4:],
    ],
)  # fmt: skip
def test_malformed_basic_credentials_are_refused(pdp: StandInPdp, value: str) -> None:
    refusal = _refused(pdp, {}, {"authorization": value})
    assert refusal.description == "malformed Basic credentials"
    assert refusal.body()["message"] == "Invalid client assertion: malformed Basic credentials"
    assert pdp.secret_checks == []


def test_a_posted_secret_authenticates_the_posted_client_id(pdp: StandInPdp) -> None:
    form = {"client_id": "AI.Agent", "client_secret": "p@ss word"}
    assert authenticate_client(pdp, form, {}) == AGENT  # type: ignore[arg-type]
    assert pdp.secret_checks == [(AGENT, "p@ss word")]


@pytest.mark.parametrize(
    "form",
    [{"client_secret": "p@ss word"}, {"client_id": AGENT, "client_secret": ""}],
)
def test_a_posted_secret_needs_both_id_and_secret(pdp: StandInPdp, form: dict[str, str]) -> None:
    refusal = _refused(pdp, form)
    assert refusal.description == "client_id and client_secret are required"
    assert pdp.secret_checks == []


def test_a_wrong_posted_secret_is_refused(pdp: StandInPdp) -> None:
    refusal = _refused(pdp, {"client_id": AGENT, "client_secret": "guess"})
    assert refusal.description == "unknown client or wrong client secret"
    assert pdp.secret_checks == [(AGENT, "guess")]


def test_a_client_id_that_is_no_principal_name_is_refused_even_with_a_known_secret(
    pdp: StandInPdp,
) -> None:
    pdp.secrets["ai agent"] = "s"
    refusal = _refused(pdp, {"client_id": "ai agent", "client_secret": "s"})
    assert refusal.description == "unknown client or wrong client secret"


def test_a_body_client_id_must_name_the_authenticated_client(pdp: StandInPdp) -> None:
    # The MCP SDK repeats client_id next to Basic credentials: the same client (any case) is
    # tolerated, another one refused.
    assert authenticate_client(pdp, {"client_id": "AI.AGENT"}, _basic(AGENT, "p@ss word")) == AGENT  # type: ignore[arg-type]
    assert authenticate_client(pdp, {"client_id": ""}, _basic(AGENT, "p@ss word")) == AGENT  # type: ignore[arg-type]
    refusal = _refused(pdp, {"client_id": "ai.other"}, _basic(AGENT, "p@ss word"))
    assert refusal.description == "client_id does not match the authenticated client"
    refusal = _refused(pdp, {"client_id": "ai.other", **_assertion()})
    assert refusal.description == "client_id does not match the authenticated client"


# --------------------------------------------------------------------------- private_key_jwt


def test_a_client_assertion_authenticates_its_issuer_once(pdp: StandInPdp) -> None:
    form = _assertion({"iss": "AI.Agent", "sub": "AI.Agent"})
    assert authenticate_client(pdp, form, {}) == AGENT  # type: ignore[arg-type]
    assert pdp.resolved == [AGENT]
    jti = jwt.decode(form["client_assertion"], options={"verify_signature": False})["jti"]
    exp = jwt.decode(form["client_assertion"], options={"verify_signature": False})["exp"]
    assert pdp.store.used == {f"client:{jti}": exp}
    assert _refused(pdp, form).description == REPLAYED_CLIENT_ASSERTION


def test_with_a_single_use_list_the_jti_is_handed_to_the_caller(pdp: StandInPdp) -> None:
    form = _assertion(lifetime=30)
    claims = jwt.decode(form["client_assertion"], options={"verify_signature": False})
    single_use: list[tuple[str, int]] = []
    assert authenticate_client(pdp, form, {}, single_use) == AGENT  # type: ignore[arg-type]
    assert single_use == [(f"client:{claims['jti']}", claims["exp"])]
    assert pdp.store.used == {}


def test_an_assertion_made_by_the_lab_for_the_token_endpoint_is_accepted(
    pdp: StandInPdp,
) -> None:
    form = {
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": make_client_assertion(AGENT, AGENT_KEY, pdp.token_endpoint),
    }
    assert authenticate_client(pdp, form, {}) == AGENT  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", [None, "", "urn:ietf:params:oauth:client-assertion-type:saml2"])
def test_the_assertion_type_must_be_jwt_bearer(pdp: StandInPdp, kind: str | None) -> None:
    form = _assertion()
    if kind is None:
        del form["client_assertion_type"]
    else:
        form["client_assertion_type"] = kind
    refusal = _refused(pdp, form)
    assert refusal.description == (
        f"client_assertion_type must be {CLIENT_ASSERTION_TYPE_JWT_BEARER}"
    )


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "token is empty or too large"),
        ("abc", "malformed token: Not enough segments"),
    ],
)
def test_an_unreadable_assertion_is_refused_with_the_parsers_reason(
    pdp: StandInPdp, token: str, reason: str
) -> None:
    form = {"client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER, "client_assertion": token}
    refusal = _refused(pdp, form)
    assert refusal.description == reason
    assert pdp.resolved == []


@pytest.mark.parametrize("issuer", [None, 7, "", "ai agent", "no-domain"])
def test_the_issuer_must_name_a_principal_before_any_key_is_looked_up(
    pdp: StandInPdp, issuer: Any
) -> None:
    form = _assertion(drop=("iss",)) if issuer is None else _assertion({"iss": issuer})
    refusal = _refused(pdp, form)
    assert refusal.description == "iss must name the client principal"
    assert pdp.resolved == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"aud": "http://127.0.0.1:1/elsewhere"}, "token audience is not accepted here"),
        ({"lifetime": -3600}, "token has expired"),
        (
            {"lifetime": MAX_CLIENT_ASSERTION_LIFETIME_S + 1},
            f"token lifetime exp - iat exceeds {MAX_CLIENT_ASSERTION_LIFETIME_S} seconds",
        ),
    ],
)
def test_the_assertion_is_verified_for_audience_and_lifetime(
    pdp: StandInPdp, change: dict[str, Any], reason: str
) -> None:
    claims = {k: v for k, v in change.items() if k != "lifetime"}
    refusal = _refused(pdp, _assertion(claims, lifetime=change.get("lifetime", 60)))
    assert refusal.description == reason
    assert refusal.body()["message"] == f"Invalid client assertion: {reason}"


def test_a_lifetime_of_exactly_the_maximum_is_accepted(pdp: StandInPdp) -> None:
    form = _assertion(lifetime=MAX_CLIENT_ASSERTION_LIFETIME_S)
    assert authenticate_client(pdp, form, {}) == AGENT  # type: ignore[arg-type]


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "jti"])
def test_each_required_claim_is_refused_by_name_when_missing(pdp: StandInPdp, claim: str) -> None:
    refusal = _refused(pdp, _assertion(drop=(claim,)))
    assert refusal.description == f"token is missing the {claim!r} claim"


def test_an_assertion_signed_by_a_key_the_client_does_not_hold_is_refused(
    pdp: StandInPdp,
) -> None:
    assert _refused(pdp, _assertion(key=STRANGER_KEY)).description == ("token signature is invalid")


def test_a_client_without_registered_keys_is_refused_by_the_resolvers_reason(
    pdp: StandInPdp,
) -> None:
    del pdp.keys[AGENT]
    refusal = _refused(pdp, _assertion())
    assert refusal.description == f"principal {AGENT} has no registered public key"


def test_the_subject_must_be_the_issuer(pdp: StandInPdp) -> None:
    refusal = _refused(pdp, _assertion({"sub": "ai.other"}))
    assert refusal.description == "iss and sub must both name the client"


@pytest.mark.parametrize("jti", ["", "j" * 129])
def test_the_jti_must_be_a_short_string(pdp: StandInPdp, jti: Any) -> None:
    refusal = _refused(pdp, _assertion({"jti": jti}))
    assert refusal.description == "jti must be a string of at most 128 characters"
    assert pdp.store.used == {}


@pytest.mark.parametrize("jti", [12345, ["a"]])
def test_a_jti_that_is_no_string_is_refused_by_the_verifier(pdp: StandInPdp, jti: Any) -> None:
    refusal = _refused(pdp, _assertion({"jti": jti}))
    assert refusal.description == "token is invalid: JWT ID must be a string"
    assert pdp.store.used == {}


def test_a_jti_of_128_characters_is_accepted(pdp: StandInPdp) -> None:
    assert authenticate_client(pdp, _assertion({"jti": "j" * 128}), {}) == AGENT  # type: ignore[arg-type]
    assert list(pdp.store.used) == ["client:" + "j" * 128]
