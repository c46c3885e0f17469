"""Signed policy data, unit by unit: the parser refuses malformed data as a whole (fail closed),
the verifier names each refusal, expiry is exact, and the indexed ``decide`` / ``assertions_for``
/ ``roles_of`` give what the engine gives over every assertion (DENY wins, globs anchored).

Direct, in-process tests: they are the ``signed`` mutation target's fast selection
(``tests/mutate.py``), and each pins one behaviour a mutant of ``lab/policy/signed.py`` changed.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

import jwt
import pytest

from lab.oauth.jose import JwtValidationError, SigningKey, generate_private_key
from lab.policy import signed as signed_module
from lab.policy.engine import Assertion
from lab.policy.signed import (
    PolicyData,
    PolicyDataError,
    canonical_json,
    parse_policy_data,
    sign_policy_data,
    verify_signed_policy_data,
)

KEY = SigningKey(key=generate_private_key("ES256"), kid="k-es")
OTHER_KEY = SigningKey(key=generate_private_key("ES256"), kid="k-other")
RSA_KEY = SigningKey(key=generate_private_key("RS256"), kid="k-rsa")
IN_AN_HOUR = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 3600))


def _resolver(public: Any, asked: list[Any] | None = None) -> Any:
    def resolve(kid: str | None) -> Any:
        if asked is not None:
            asked.append(kid)
        return public

    return resolve


def _signed(policy_data: Any = None, expires: Any = IN_AN_HOUR) -> dict[str, Any]:
    signed: dict[str, Any] = {
        "policyData": policy_data or {"domain": "api", "policies": [], "roles": []},
        "modified": "2026-01-01T00:00:00.000Z",
    }
    if expires is not None:
        signed["expires"] = expires
    return signed


def _refusal(call: Any, *args: Any) -> str:
    with pytest.raises(PolicyDataError) as caught:
        call(*args)
    return str(caught.value)


def _verify(document: Any, key: SigningKey = KEY) -> PolicyData:
    return verify_signed_policy_data(document, _resolver(key.key.public_key()))


# --------------------------------------------------------------------------- canonical form


def test_canonical_json_sorts_keys_drops_spaces_and_keeps_unicode() -> None:
    assert canonical_json({"b": [1, 2], "a": "é"}) == '{"a":"é","b":[1,2]}'.encode()


def test_signing_wraps_the_data_with_a_jws_naming_the_key() -> None:
    data = _signed()
    document = sign_policy_data(data, KEY)
    assert document["signedPolicyData"] is data
    assert document["keyId"] == "k-es"
    header = jwt.get_unverified_header(document["signature"])
    assert (header["alg"], header["kid"]) == ("ES256", "k-es")
    payload = jwt.api_jws.decode(document["signature"], KEY.key.public_key(), algorithms=["ES256"])
    assert payload == canonical_json(data)


# --------------------------------------------------------------------------- parsing

WELL_FORMED: dict[str, Any] = {
    "domain": "api",
    "policies": [
        {
            "name": "api:policy.readers",
            "modified": "x",
            "assertions": [
                {"role": "api:role.r", "resource": "api:docs", "action": "get", "effect": "allow"},
                {"role": "api:role.r", "resource": "api:docs/*", "action": "list", "id": 7},
            ],
        },
        {
            "name": "api:policy.old",
            "active": False,
            "assertions": [
                {"role": "api:role.r", "resource": "api:docs", "action": "get", "effect": "DENY"}
            ],
        },
        {
            "name": "api:policy.guard",
            "active": True,
            "assertions": [
                {"role": "api:role.*", "resource": "api:docs", "action": "drop", "effect": "Deny"}
            ],
        },
        {"name": "api:policy.empty"},
    ],
    "roles": [
        {"name": "api:role.r", "members": ["human.a", "ai.*"]},
        {"name": "api:role.nobody"},
    ],
}


def test_well_formed_policy_data_is_read_exactly() -> None:
    policy = parse_policy_data(WELL_FORMED, {"modified": "m1", "expires": "e1"})
    assert policy.domain == "api"
    assert policy.assertions == [
        Assertion("api:role.r", "api:docs", "get", "ALLOW", "api:policy.readers"),
        Assertion("api:role.r", "api:docs/*", "list", "ALLOW", "api:policy.readers"),
        Assertion("api:role.*", "api:docs", "drop", "DENY", "api:policy.guard"),
    ]
    assert policy.roles == {"api:role.r": ["human.a", "ai.*"], "api:role.nobody": []}
    assert (policy.modified, policy.expires, policy.expires_at) == ("m1", "e1", None)


def test_an_assertion_without_effect_allows_and_an_inactive_policy_is_left_out() -> None:
    policy = parse_policy_data(WELL_FORMED)
    assert [a.effect for a in policy.assertions] == ["ALLOW", "ALLOW", "DENY"]
    assert "api:policy.old" not in {a.policy for a in policy.assertions}
    assert (policy.modified, policy.expires) == ("", "")


def test_absent_policies_and_roles_are_empty() -> None:
    policy = parse_policy_data({"domain": "api"})
    assert (policy.domain, policy.assertions, policy.roles) == ("api", [], {})


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A deep copy of WELL_FORMED with the item at ``path`` set to ``value``."""
    import copy

    data = copy.deepcopy(WELL_FORMED)
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return data


def _without(path: tuple[Any, ...]) -> dict[str, Any]:
    data = _with(path, None)
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return data


A0 = ("policies", 0, "assertions", 0)
AS = "an assertion of policy api:policy.readers"
NON_EMPTY = "must be a non-empty string"
NO_NAME = "every policy: name must be a non-empty string"
BAD_ASSERTIONS = "policy api:policy.readers: assertions must be a list of objects"
BAD_ACTIVE = "policy api:policy.old: active must be true or false"
BAD_DOMAIN = "policyData.domain must be a non-empty string"
BAD_POLICIES = "policyData: policies must be a list of objects"
BAD_MEMBERS = "role api:role.r: members must be a list of strings"
MALFORMED = [
    ([], "policyData must be an object"),
    ("api", "policyData must be an object"),
    (_without(("domain",)), BAD_DOMAIN),
    (_with(("domain",), ""), BAD_DOMAIN),
    (_with(("domain",), 7), BAD_DOMAIN),
    (_with(("policies",), {"p": {}}), BAD_POLICIES),
    (_with(("policies",), "abc"), BAD_POLICIES),
    (_with(("policies",), None), BAD_POLICIES),
    (_with(("policies", 1), "api:policy.x"), BAD_POLICIES),
    (_without(("policies", 0, "name")), NO_NAME),
    (_with(("policies", 0, "name"), ""), NO_NAME),
    (_with(("policies", 0, "name"), 3), NO_NAME),
    (_with(("policies", 1, "active"), "false"), BAD_ACTIVE),
    (_with(("policies", 1, "active"), 0), BAD_ACTIVE),
    (_with(("policies", 0, "assertions"), {}), BAD_ASSERTIONS),
    (_with((*A0[:3], 1), "x"), BAD_ASSERTIONS),
    (_with(("policies", 0, "assertions"), None), BAD_ASSERTIONS),
    (_without((*A0, "role")), f"{AS}: role {NON_EMPTY}"),
    (_with((*A0, "role"), ""), f"{AS}: role {NON_EMPTY}"),
    (_with((*A0, "resource"), ["api:docs"]), f"{AS}: resource {NON_EMPTY}"),
    (_without((*A0, "action")), f"{AS}: action {NON_EMPTY}"),
    (_with((*A0, "effect"), "PERMIT"), f"{AS}: effect must be ALLOW or DENY, not 'PERMIT'"),
    (_with((*A0, "effect"), None), f"{AS}: effect must be ALLOW or DENY, not None"),
    (_with((*A0, "effect"), 0), f"{AS}: effect must be ALLOW or DENY, not 0"),
    (_with(("roles",), {"api:role.r": []}), "policyData: roles must be a list of objects"),
    (_with(("roles", 1), "api:role.nobody"), "policyData: roles must be a list of objects"),
    (_without(("roles", 0, "name")), "every role: name must be a non-empty string"),
    (_with(("roles", 0, "members"), "human.a"), BAD_MEMBERS),
    (_with(("roles", 0, "members"), ["human.a", 1]), BAD_MEMBERS),
    (_with(("roles", 0, "members"), None), BAD_MEMBERS),
]


@pytest.mark.parametrize(("data", "refusal"), MALFORMED)
def test_malformed_policy_data_is_refused_as_a_whole_by_name(data: Any, refusal: str) -> None:
    assert _refusal(parse_policy_data, data) == refusal


def test_signed_data_with_a_malformed_deny_is_refused_not_read_without_it() -> None:
    # Skipping the broken DENY would leave the ALLOW standing: the whole copy must go.
    data = _with((*A0[:3], 1), {"resource": "api:docs", "action": "get", "effect": "DENY"})
    refusal = _refusal(_verify, sign_policy_data(_signed(data), KEY))
    assert refusal.endswith(": role must be a non-empty string")


# --------------------------------------------------------------------------- the signature


def test_a_verified_document_gives_its_policy_and_expiry() -> None:
    signed = _signed(WELL_FORMED, expires="2100-01-01T00:00:01.250Z")
    policy = _verify(sign_policy_data(signed, KEY))
    assert policy.assertions == parse_policy_data(WELL_FORMED).assertions
    assert policy.roles_of("human.a") == {"api:role.r"}
    assert (policy.modified, policy.expires) == (signed["modified"], "2100-01-01T00:00:01.250Z")
    assert policy.expires_at == calendar.timegm((2100, 1, 1, 0, 0, 1)) + 0.25


REQUIRED = "signedPolicyData and signature are required"


@pytest.mark.parametrize(
    ("document", "refusal"),
    [
        ([("signedPolicyData", {})], "signed policy data must be a JSON object"),
        ({"signature": "x"}, REQUIRED),
        ({"signedPolicyData": "{}", "signature": "x"}, REQUIRED),
        ({"signedPolicyData": {}}, REQUIRED),
        ({"signedPolicyData": {}, "signature": 1}, REQUIRED),
    ],
)
def test_a_document_without_signed_data_and_signature_is_refused(
    document: Any, refusal: str
) -> None:
    assert _refusal(_verify, document) == refusal


def test_an_unreadable_signature_is_refused_as_malformed() -> None:
    refusal = _refusal(_verify, {"signedPolicyData": _signed(), "signature": "not-a-jws"})
    assert refusal.startswith("malformed signature: ")


@pytest.mark.parametrize("alg", ["HS256", "none"])
def test_a_signature_algorithm_outside_rs256_and_es256_is_refused(alg: str) -> None:
    data = _signed()
    secret = "s" * 32 if alg == "HS256" else None
    signature = jwt.api_jws.encode(canonical_json(data), secret, algorithm=alg)
    document = {"signedPolicyData": data, "signature": signature, "keyId": KEY.kid}
    assert _refusal(_verify, document) == f"signature algorithm {alg!r} is not allowed"


def test_the_key_is_chosen_by_the_signatures_kid_before_the_documents_key_id() -> None:
    document = sign_policy_data(_signed(), KEY)
    document["keyId"] = "k-stale"
    asked: list[Any] = []
    verify_signed_policy_data(document, _resolver(KEY.key.public_key(), asked))
    assert asked == ["k-es"]


def test_a_signature_without_kid_is_checked_with_the_documents_key_id() -> None:
    data = _signed()
    signature = jwt.api_jws.encode(canonical_json(data), KEY.key, algorithm="ES256")
    asked: list[Any] = []
    document = {"signedPolicyData": data, "signature": signature, "keyId": "k-es"}
    policy = verify_signed_policy_data(document, _resolver(KEY.key.public_key(), asked))
    assert asked == ["k-es"]
    assert policy.domain == "api"


def test_an_unknown_key_is_refused_with_the_resolvers_reason() -> None:
    def unknown(kid: str | None) -> Any:
        raise JwtValidationError(f"unknown signing key id {kid!r}")

    document = sign_policy_data(_signed(), KEY)
    refusal = _refusal(verify_signed_policy_data, document, unknown)
    assert refusal == "unknown signing key id 'k-es'"


def test_a_signature_whose_algorithm_is_not_the_keys_is_refused() -> None:
    document = sign_policy_data(_signed(), KEY)  # ES256
    refusal = _refusal(_verify, document, RSA_KEY)
    assert refusal == "signature algorithm does not match the signing key"


def test_an_rs256_signature_verifies_with_its_rsa_key() -> None:
    assert _verify(sign_policy_data(_signed(), RSA_KEY), RSA_KEY).domain == "api"


def test_a_signature_by_another_key_does_not_verify() -> None:
    refusal = _refusal(_verify, sign_policy_data(_signed(), OTHER_KEY))
    assert refusal.startswith("signature does not verify: ")


def test_a_signature_over_other_data_does_not_cover_this_data() -> None:
    document = sign_policy_data(_signed(), KEY)
    other = {"domain": "api", "policies": [], "roles": [{"name": "x"}]}
    document["signedPolicyData"] = _signed(other)
    assert _refusal(_verify, document) == "signature does not cover this signedPolicyData"


# --------------------------------------------------------------------------- expiry


@pytest.mark.parametrize("expires", [None, "", 4102444800, ["2100-01-01T00:00:00.000Z"]])
def test_signed_data_without_a_textual_expiry_is_refused(expires: Any) -> None:
    refusal = _refusal(_verify, sign_policy_data(_signed(expires=expires), KEY))
    assert refusal == "signed policy data has no expires timestamp"


@pytest.mark.parametrize("expires", ["2100-01-01", "2100-01-01T00:00:00.000", "tomorrow"])
def test_an_expiry_that_is_no_athenz_timestamp_is_refused(expires: str) -> None:
    refusal = _refusal(_verify, sign_policy_data(_signed(expires=expires), KEY))
    assert refusal == f"expires {expires!r} is not an Athenz timestamp"


def test_an_expiry_with_an_offset_is_read_in_utc() -> None:
    policy = _verify(sign_policy_data(_signed(expires="2100-01-01T01:00:00.000+01:00"), KEY))
    assert policy.expires_at == calendar.timegm((2100, 1, 1, 0, 0, 0))


def test_signed_data_past_its_expiry_is_refused() -> None:
    document = sign_policy_data(_signed(expires="2020-01-01T00:00:00.000Z"), KEY)
    assert _refusal(_verify, document) == ("signed policy data expired at 2020-01-01T00:00:00.000Z")


@pytest.mark.parametrize(("offset", "usable"), [(-0.5, True), (0.0, True), (0.5, False)])
def test_signed_data_is_usable_up_to_its_expiry_instant(
    monkeypatch: pytest.MonkeyPatch, offset: float, usable: bool
) -> None:
    expires_at = float(calendar.timegm((2100, 1, 1, 0, 0, 0)))
    monkeypatch.setattr(signed_module.time, "time", lambda: expires_at + offset)
    document = sign_policy_data(_signed(expires="2100-01-01T00:00:00.000Z"), KEY)
    if usable:
        assert _verify(document).expires_at == expires_at
    else:
        assert _refusal(_verify, document) == (
            "signed policy data expired at 2100-01-01T00:00:00.000Z"
        )


# --------------------------------------------------------------------------- decisions

READER = Assertion("api:role.reader", "api:docs/*", "get", "ALLOW", "p")
WRITER = Assertion("api:role.writer", "api:docs/*", "delete", "ALLOW", "p")
ANY_ROLE_DENY = Assertion("api:role.*", "api:docs/secret", "get", "DENY", "p")
AGENT_DENY = Assertion("api:role.agent", "api:docs/*", "delete", "DENY", "p")
ONE_CHAR = Assertion("api:role.?", "api:docs/one", "put", "ALLOW", "p")
POLICY = PolicyData(
    "api",
    assertions=[READER, ANY_ROLE_DENY, WRITER, AGENT_DENY, ONE_CHAR],
    roles={
        "api:role.reader": ["human.a", "HUMAN.Upper"],
        "api:role.writer": ["human.*"],
        "api:role.agent": ["ai.agent"],
    },
)


def test_a_held_literal_role_allows_what_its_assertion_names() -> None:
    decision = POLICY.decide(["api:role.reader"], "get", "api:docs/1")
    assert (decision.allowed, decision.effect, decision.assertion) == (True, "ALLOW", READER)


def test_held_roles_are_looked_up_case_insensitively() -> None:
    decision = POLICY.decide(iter(["API:Role.Reader"]), "get", "api:docs/1")
    assert (decision.allowed, decision.assertion) == (True, READER)


def test_a_role_glob_deny_wins_over_a_literal_allow() -> None:
    decision = POLICY.decide(["api:role.reader"], "get", "api:docs/secret")
    assert (decision.allowed, decision.effect, decision.assertion) == (False, "DENY", ANY_ROLE_DENY)


def test_a_question_mark_role_is_a_glob_of_one_character() -> None:
    assert POLICY.decide(["api:role.x"], "put", "api:docs/one").allowed is True
    assert POLICY.decide(["api:role.xy"], "put", "api:docs/one").allowed is False


def test_the_acting_clients_literal_role_is_found_for_its_deny() -> None:
    decision = POLICY.decide(
        iter(["api:role.writer"]), "delete", "api:docs/1", actor_roles=iter(["api:role.agent"])
    )
    assert (decision.allowed, decision.effect, decision.assertion) == (False, "DENY", AGENT_DENY)
    assert decision.reason.startswith("denied for the acting client by ")


def test_the_acting_clients_roles_never_grant() -> None:
    decision = POLICY.decide([], "delete", "api:docs/1", actor_roles=["api:role.writer"])
    assert (decision.allowed, decision.effect) == (False, "NO_MATCH")
    assert decision.reason == "no assertion allows delete on api:docs/1 for no roles"


def test_assertions_for_roles_keep_policy_order_with_role_globs_always_in() -> None:
    assert POLICY.assertions_for(["api:role.agent", "API:ROLE.READER"]) == [
        READER,
        ANY_ROLE_DENY,
        AGENT_DENY,
        ONE_CHAR,
    ]
    assert POLICY.assertions_for([]) == [ANY_ROLE_DENY, ONE_CHAR]
    assert POLICY.assertions_for(["api:role.unknown"]) == [ANY_ROLE_DENY, ONE_CHAR]


def test_roles_of_a_principal_match_literal_members_case_insensitively_and_wildcards() -> None:
    assert POLICY.roles_of("Human.A") == {"api:role.reader", "api:role.writer"}
    assert POLICY.roles_of("human.upper") == {"api:role.reader", "api:role.writer"}
    assert POLICY.roles_of("ai.agent") == {"api:role.agent"}
    assert POLICY.roles_of("ai.other") == set()


def test_a_policys_mixed_case_literal_role_is_found_for_a_lower_case_holder() -> None:
    editor = Assertion("API:Role.Editor", "api:docs/*", "put", "ALLOW", "p")
    policy = PolicyData("api", assertions=[READER, editor])
    assert policy.assertions_for(["api:role.editor"]) == [editor]
    assert policy.decide(["api:role.editor"], "put", "api:docs/1").allowed is True
