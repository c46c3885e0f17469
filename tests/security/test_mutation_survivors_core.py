"""Tests for ``lab/pdp/core.py``'s security decisions, pinned exactly for ``make mutate``
(docs/dev/mutation.md): which key a principal may sign with, the PDP's own key, domain
administration by parent domains, the principal of an assertion, and the access check.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from lab.config import ADMIN_PRINCIPAL, Settings
from lab.oauth.errors import InvalidScope, InvalidToken
from lab.oauth.jose import JwtValidationError, SigningKey, public_pem, ybase64_encode
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
    assert pdp.is_domain_admin(LEARNER, "api.child") is True  # one label up
    assert pdp.is_domain_admin(LEARNER, "api.child.grandchild") is True  # two labels up
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


def _count_service_reads(pdp: Pdp) -> list[tuple[str, str]]:
    """Records every ``services`` row the PDP reads from its store (the key cache's misses)."""
    reads: list[tuple[str, str]] = []
    read = pdp.store.get_object

    def counting(table: str, domain: str, name: str) -> object:
        if table == "services":
            reads.append((domain, name))
        return read(table, domain, name)

    pdp.store.get_object = counting  # type: ignore[method-assign]
    return reads


def _service_row(principal: str, *keys: tuple[str, str]) -> dict[str, object]:
    return {"name": principal, "publicKeys": [{"id": kid, "key": key} for kid, key in keys]}


def test_a_services_keys_are_read_once_per_version_of_its_domain(world: PdpLab, pdp: Pdp) -> None:
    reads = _count_service_reads(pdp)
    agent = world.key(AGENT)
    for _ in range(3):
        assert _numbers(pdp.key_resolver(AGENT)(agent.kid)) == _numbers(agent.key.public_key())
    assert reads == [("ai", "agent")]  # parsed once, then served from the cache


def test_a_key_rotated_on_a_cached_service_is_used_at_once(world: PdpLab, pdp: Pdp) -> None:
    """The cache is keyed by the domain's version: a write to the service's domain (through
    this PDP's store) invalidates it; a write to another domain does not."""
    reads = _count_service_reads(pdp)
    old, new = world.key(AGENT), world.key("ai.rotated")
    assert _numbers(pdp.key_resolver(AGENT)(old.kid)) == _numbers(old.key.public_key())
    pdp.store.put_object("services", "mcp", "other", _service_row("mcp.other"))
    pdp.key_resolver(AGENT)(old.kid)
    assert reads == [("ai", "agent")]  # another domain's write keeps ai's keys cached
    pem = ybase64_encode(public_pem(new.key))
    pdp.store.put_object("services", "ai", "agent", _service_row(AGENT, (new.kid, pem)))
    resolve = pdp.key_resolver(AGENT)
    assert _numbers(resolve(new.kid)) == _numbers(new.key.public_key())
    with pytest.raises(JwtValidationError) as refused:
        resolve(old.kid)  # the removed key is refused at once
    assert refused.value.reason == f"unknown key id {old.kid!r} for principal {AGENT}"
    assert reads == [("ai", "agent"), ("ai", "agent")]


def test_a_key_that_does_not_parse_skips_only_itself(world: PdpLab, pdp: Pdp) -> None:
    """A stored key that does not load is skipped; the service's other keys still resolve."""
    agent = world.key(AGENT)
    good = ybase64_encode(public_pem(agent.key))
    pdp.store.put_object(
        "services",
        "ai",
        "agent",
        _service_row(AGENT, ("broken", "bm90IGEga2V5"), (agent.kid, good)),
    )
    resolve = pdp.key_resolver(AGENT)
    assert _numbers(resolve(agent.kid)) == _numbers(agent.key.public_key())
    with pytest.raises(JwtValidationError):
        resolve("broken")


def test_a_request_is_not_case_folded_onto_another_resource_or_action(
    world: PdpLab, pdp: Pdp
) -> None:
    """Policy names are ASCII; a request's ``ß`` is lower-cased (stays ``ß``), never upper-cased
    into ``SS``, which would make ``straße`` match a policy written for ``strasse``."""
    world.allow("api", "ascii-names", "docs-getter", "ss", "api:strasse")
    assert pdp.check_access(LEARNER, "SS", "API:STRASSE").allowed is True
    assert pdp.check_access(LEARNER, "ss", "api:stra\u00dfe").allowed is False
    assert pdp.check_access(LEARNER, "\u00df", "api:strasse").allowed is False


def test_a_pdp_opened_on_a_new_home_keeps_its_keys_under_their_names(tmp_path: Path) -> None:
    """``Pdp.open`` creates ``$LAB_HOME/keys`` (parents too) and keeps its signing key in
    ``pdp-signing.pem`` and its audit MAC key in ``audit-mac.key``: other parts and the next
    start read them there (a restarted PDP must verify its tokens and audit seals)."""
    settings = replace(Settings(), home=tmp_path / "not" / "yet" / "home")
    pdp = Pdp.open(settings)
    signing_file = settings.key_file("pdp-signing")
    mac_file = settings.keys_dir / "audit-mac.key"
    assert signing_file.is_file() and mac_file.is_file()
    assert SigningKey.load_or_create(signing_file).kid == pdp.signing_key.kid
    assert pdp.audit.mac_key == mac_file.read_bytes()
    again = Pdp.open(settings)
    assert (again.signing_key.kid, again.audit.mac_key) == (pdp.signing_key.kid, pdp.audit.mac_key)


def test_a_subdomains_admins_administer_its_own_subdomains_only(world: PdpLab, pdp: Pdp) -> None:
    """Each parent is the labels joined with ``.``: the admins of ``api.child`` administer
    ``api.child.grandchild`` (a label below), not ``api`` or a sibling."""
    world.ok("POST", "/subdomain/api", {"name": "child", "adminUsers": [LEARNER]})
    assert pdp.is_domain_admin(LEARNER, "api.child.grandchild") is True
    assert pdp.is_domain_admin(LEARNER, "api") is False
    assert pdp.is_domain_admin(LEARNER, "api.sibling") is False


def test_the_pdps_own_key_is_one_object_until_the_signing_key_changes(pdp: Pdp) -> None:
    """Verified subject tokens are remembered per key object (VerifiedTokens), so the PDP's own
    public key must be the same object on every call, and a new one once its key changes."""
    first = pdp.key_resolver_self()(pdp.signing_key.kid)
    assert pdp.key_resolver_self()(pdp.signing_key.kid) is first
    pdp.signing_key = SigningKey.load_or_create(pdp.settings.keys_dir / "rotated.pem")
    rotated = pdp.key_resolver_self()(pdp.signing_key.kid)
    assert _numbers(rotated) == _numbers(pdp.signing_key.key.public_key())
    assert pdp.key_resolver_self()(pdp.signing_key.kid) is rotated


def test_a_pdp_holding_only_the_admins_public_key_trusts_that_key(tmp_path: Path) -> None:
    """A pod's PDP gets ``user.athenz_admin.pub.pem`` and never the admin's private key: it
    must verify the admin with that key, not mint an admin key of its own."""
    settings = replace(Settings(), home=tmp_path / "pod-home")
    settings.keys_dir.mkdir(parents=True)
    admin = SigningKey.load_or_create(tmp_path / "admin-elsewhere.pem")
    public_file = settings.keys_dir / f"{ADMIN_PRINCIPAL}.pub.pem"
    public_file.write_bytes(public_pem(admin.key))
    pdp = Pdp.open(settings)
    assert _numbers(pdp.admin_public) == _numbers(admin.key.public_key())
    assert not settings.key_file(ADMIN_PRINCIPAL).exists()
