"""The PDP's per-request caches are keyed by names a caller chooses (a domain in a scope, a ZMS
path, a policy GET, a client assertion's unverified ``iss``): made-up names must leave nothing
behind, or an outsider grows the PDP's memory without bound. Answers stay right meanwhile."""

from __future__ import annotations

from pathlib import Path

from lab import nonblocking
from lab.config import ADMIN_PRINCIPAL
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey, make_client_assertion
from lab.pdp.core import Pdp
from lab.pdp.store import Store, timestamp
from tests.pdp.conftest import AGENT, LEARNER, PdpLab

#: Distinct made-up names per entry point: far more than any cache entry the lab's world needs.
NAMES = 60


def _pdp(world: PdpLab) -> Pdp:
    assert world.pdp is not None
    return world.pdp


#: The absent-name bound the tests set: well under NAMES, so eviction is exercised.
ABSENT_KEPT = 16


def _cached_domains(pdp: Pdp) -> set[str]:
    return set(pdp.store._views) | set(pdp.store._view_versions)


def test_made_up_domains_at_every_entry_point_keep_no_view(world: PdpLab) -> None:
    pdp = _pdp(world)
    pdp.store.ABSENT_KEPT = ABSENT_KEPT
    assert world.client_credentials(LEARNER, "api:role.docs-getter").status_code == 200
    before = _cached_domains(pdp)
    assert "api" in before
    # An authenticated principal that administers nothing, writing into a made-up subdomain.
    for index in range(NAMES):
        name = f"nosuch{index}"
        token = world.client_credentials(LEARNER, f"{name}:role.docs-getter")
        assert token.status_code == 404 and token.json()["error"] == "invalid_scope"
        policy = world.http.get(f"{world.zts}/domain/{name}/signed_policy_data")
        assert policy.status_code == 404, policy.text
        read = world.zms_call("GET", f"/domain/{name}")
        assert read.status_code == 404, read.text
        access = world.zms_call("GET", f"/access/get/{name}:docs")
        assert access.status_code == 200 and access.json()["granted"] is False
        write = world.http.put(
            f"{world.zms}/domain/{name}.a.b/role/r",
            json={"name": f"{name}.a.b:role.r", "roleMembers": []},
            headers={
                "Authorization": "Bearer "
                + make_admin_assertion(AGENT, world.key(AGENT), world.zms)
            },
        )
        assert write.status_code == 404 and write.json()["error"] == "not_found"
    assert _cached_domains(pdp) <= before | {"ai"}  # "ai": the outsider's own (real) domain
    assert len(pdp.store._absent) <= ABSENT_KEPT
    # The real domain still answers, from its cached view.
    assert world.client_credentials(LEARNER, "api:role.docs-getter").status_code == 200
    assert world.client_credentials(AGENT, "api:role.docs-getter").status_code == 403


def test_made_up_client_principals_keep_no_keys(world: PdpLab, tmp_path: Path) -> None:
    pdp = _pdp(world)
    assert world.client_credentials(LEARNER, "api:role.docs-getter").status_code == 200
    before = set(pdp._key_cache)
    assert LEARNER in before
    stranger = SigningKey.load_or_create(tmp_path / "stranger.pem")
    for index in range(NAMES):
        for principal in (f"ai.madeup{index}", f"nosuch{index}.svc"):
            form = {
                "grant_type": "client_credentials",
                "scope": "api:role.docs-getter",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": make_client_assertion(principal, stranger, world.zts),
            }
            response = world.token(form)
            assert response.status_code == 401, response.text
            assert response.json()["error"] == "invalid_client"
    assert set(pdp._key_cache) <= before
    assert world.client_credentials(LEARNER, "api:role.docs-getter").status_code == 200


def test_a_made_up_zms_caller_keeps_no_keys(world: PdpLab, tmp_path: Path) -> None:
    pdp = _pdp(world)
    before = set(pdp._key_cache)
    stranger = SigningKey.load_or_create(tmp_path / "stranger.pem")
    for index in range(NAMES):
        assertion = make_admin_assertion(f"ai.madeup{index}", stranger, world.zms)
        response = world.http.get(
            f"{world.zms}/domain/api", headers={"Authorization": "Bearer " + assertion}
        )
        assert response.status_code == 401, response.text
    assert set(pdp._key_cache) <= before
    assert world.ok("GET", "/domain/api", principal=ADMIN_PRINCIPAL).json()["name"] == "api"


def test_a_deleted_domain_drops_its_view_and_a_new_one_is_built_afresh(tmp_path: Path) -> None:
    store = Store(tmp_path / "pdp.db")
    store.ABSENT_KEPT = ABSENT_KEPT
    try:
        role = {"name": "gone:role.r", "roleMembers": [{"memberName": LEARNER}]}
        store.put_domain({"name": "gone", "modified": timestamp()}, roles=[role])
        view = store.domain_view("gone")
        assert view is not None and view.roles_of(LEARNER) == ["gone:role.r"]
        assert store.delete_domain("gone")
        assert store.domain_view("gone") is None
        assert "gone" not in store._views and "gone" not in store._view_versions
        for index in range(NAMES):
            assert store.domain_view(f"never{index}") is None
        assert not store._views and not store._view_versions
        assert list(store._absent)[-3:] == [f"never{n}" for n in range(NAMES - 3, NAMES)]
        assert len(store._absent) == ABSENT_KEPT
        # Created again without the member: the old view never comes back.
        store.put_domain({"name": "gone", "modified": timestamp()}, roles=[])
        again = store.domain_view("gone")
        assert again is not None and again.roles_of(LEARNER) == []
        assert set(store._views) == {"gone"}
    finally:
        store.close()


def test_made_up_domains_in_access_checks_keep_no_view(world: PdpLab) -> None:
    pdp = Pdp.open(world.settings)
    try:
        for index in range(NAMES):
            decision = pdp.check_access(LEARNER, "get", f"nosuch{index}:docs")
            assert not decision.allowed and "Domain not found" in decision.reason
            assert not pdp.is_domain_admin(LEARNER, f"nosuch{index}.sub.deeper")
        assert not {d for d in pdp.store._views if d.startswith("nosuch")}
        assert pdp.check_access(LEARNER, "get", "api:docs").allowed
    finally:
        pdp.close()


def test_a_name_known_absent_is_refused_without_sqlite_until_it_is_created(tmp_path: Path) -> None:
    store = Store(tmp_path / "pdp.db")
    store.ABSENT_KEPT = ABSENT_KEPT
    try:
        assert store.domain_view("later") is None  # looked up once, in SQLite
        with nonblocking.forbidden():
            assert store.domain_view("later") is None  # then known absent: no statement
        store.put_domain({"name": "later", "modified": timestamp()}, roles=[])
        created = store.domain_view("later")
        assert created is not None and "later" not in store._absent
        # A write replacing everything may create any name: what was absent is asked again.
        assert store.domain_view("imported") is None
        store.import_state(
            {"domains": [{"name": "imported", "roles": [], "policies": [], "services": []}]}
        )
        assert store.domain_view("imported") is not None
        # Evicted names (the oldest first) are simply looked up again, with the same answer.
        for index in range(NAMES):
            assert store.domain_view(f"never{index}") is None
        assert "never0" not in store._absent and store.domain_view("never0") is None
    finally:
        store.close()
