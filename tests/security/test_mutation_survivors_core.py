"""Tests for ``lab/pdp/core.py``'s security decisions, pinned exactly for ``make mutate``
(docs/dev/mutation.md): which key a principal may sign with, the PDP's own key, domain
administration by parent domains, the principal of an assertion, and the access check.
"""

from __future__ import annotations

import hashlib

import pytest

from lab.config import ADMIN_PRINCIPAL
from lab.oauth.errors import InvalidScope, InvalidToken
from lab.oauth.jose import JwtValidationError
from lab.pdp.core import Pdp, hash_secret
from tests.pdp.conftest import AGENT, LEARNER, PdpLab


@pytest.fixture
def pdp(world: PdpLab) -> Pdp:
    return Pdp.open(world.settings)


def _numbers(key: object) -> object:
    return key.public_numbers()  # type: ignore[attr-defined]


def test_a_principal_signs_only_with_its_registered_keys(world: PdpLab, pdp: Pdp) -> None:
    agent = world.key(AGENT)
    resolve = pdp.key_resolver(AGENT)
    assert _numbers(resolve(agent.kid)) == _numbers(agent.key.public_key())
    assert _numbers(resolve(None)) == _numbers(agent.key.public_key())  # its only key
    with pytest.raises(JwtValidationError) as refused:
        resolve("other-kid")
    assert refused.value.reason == f"unknown key id 'other-kid' for principal {AGENT}"
    for nobody in ("ai.nobody", "nodomain"):
        with pytest.raises(JwtValidationError) as refused:
            pdp.key_resolver(nobody)(None)
        assert refused.value.reason == f"principal {nobody} has no registered public key"


def test_the_admin_signs_with_the_admin_key(world: PdpLab, pdp: Pdp) -> None:
    admin = world.key(ADMIN_PRINCIPAL)
    assert _numbers(pdp.key_resolver(ADMIN_PRINCIPAL)(None)) == _numbers(admin.key.public_key())


def test_the_pdp_verifies_its_own_tokens_with_its_own_key_only(pdp: Pdp) -> None:
    resolve = pdp.key_resolver_self()
    assert _numbers(resolve(pdp.signing_key.kid)) == _numbers(pdp.signing_key.key.public_key())
    for other in (None, "x"):
        with pytest.raises(JwtValidationError) as refused:
            resolve(other)
        assert refused.value.reason == f"unknown signing key id {other!r}"


def test_a_key_added_to_a_service_is_used_at_once(world: PdpLab, pdp: Pdp) -> None:
    pdp.key_resolver(AGENT)  # cached for the domain's current version
    world.register_service("ai.second")
    second = world.key("ai.second")
    assert _numbers(pdp.key_resolver("ai.second")(second.kid)) == _numbers(second.key.public_key())


def test_parent_domain_admins_administer_subdomains_and_nothing_else(
    world: PdpLab, pdp: Pdp
) -> None:
    world.role("api", "admin", [ADMIN_PRINCIPAL, LEARNER])
    assert pdp.is_domain_admin(ADMIN_PRINCIPAL, "anything.at.all") is True
    assert pdp.is_domain_admin(LEARNER, "api") is True
    assert pdp.is_domain_admin(LEARNER, "api.child.grandchild") is True
    assert pdp.is_domain_admin(LEARNER, "mcp") is False
    assert pdp.is_domain_admin(LEARNER, "apix") is False
    assert pdp.is_domain_admin(AGENT, "api") is False


def test_an_assertion_needs_a_string_principal(pdp: Pdp) -> None:
    assert pdp.require_known_principal({"sub": AGENT}) == AGENT
    for claims in ({}, {"sub": 7}):
        with pytest.raises(InvalidToken) as refused:
            pdp.require_known_principal(claims)
        assert refused.value.description == "assertion has no principal"


def test_an_unknown_domain_is_404_invalid_scope_at_the_token_endpoint(pdp: Pdp) -> None:
    with pytest.raises(InvalidScope) as refused:
        pdp.view("nope")
    assert (refused.value.status_code, refused.value.description) == (404, "No such domain: nope")
    assert refused.value.athenz_message == "No such domain: nope"


def test_the_access_check_reads_action_and_resource_case_blind(pdp: Pdp) -> None:
    assert pdp.check_access(LEARNER, "GET", "API:DOCS").allowed is True
    assert pdp.check_access(AGENT, "get", "api:docs").allowed is False
    assert pdp.roles_of("api", LEARNER) == ["api:role.docs-getter"]


def test_secrets_are_stored_as_sha256_and_unknown_principals_have_none(pdp: Pdp) -> None:
    assert hash_secret("s3cret") == hashlib.sha256(b"s3cret").hexdigest()
    assert pdp.check_secret("ai.nobody", "anything") is False


def test_the_domain_is_the_text_before_the_first_colon(world: PdpLab, pdp: Pdp) -> None:
    world.allow("api", "read-all", "docs-getter", "read", "api:*")
    assert pdp.check_access(LEARNER, "read", "api:x:y").allowed is True
    refused = pdp.check_access(LEARNER, "read", "nosuch:x")
    assert (refused.allowed, refused.effect, refused.reason) == (
        False,
        "NO_MATCH",
        "Domain not found: nosuch",
    )
