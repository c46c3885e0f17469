"""Many users' agent chains at once, and many ZMS writes at once, against one in-process lab.

The IdP is started from a test copy of the realm with five extra users (idjag-user01..05), each
given the learner's memberships, so parallel chains belong to different people: every chain must
end with a token (and an exchanged token at the document API) for its own user — no cross-talk.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from lab.agent import run_prompt
from lab.agent.signin import DEFAULT_REALM_FILE
from lab.config import ADMIN_PRINCIPAL, LEARNER_PRINCIPAL
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey, make_client_assertion, unverified_claims
from lab.oauth.tokens import CLIENT_ASSERTION_TYPE_JWT_BEARER, GRANT_CLIENT_CREDENTIALS
from lab.pdp.audit import verify_chain
from tests.agent.labsetup import RunningLab
from tests.security.fullstack import full_lab

EXTRA_USERS = [f"idjag-user{n:02d}" for n in range(1, 6)]
USERS = ["idjag-learner", *EXTRA_USERS]
PASSWORD = "password"
CHAINS = 50
WRITES = 50
WORKERS = 10


def realm_with_extra_users(source: Path, target: Path) -> Path:
    """A copy of the realm file with the extra users, cloned from the learner's entry."""
    realm = json.loads(source.read_text())
    template = next(u for u in realm["users"] if u["username"] == "idjag-learner")
    for username in EXTRA_USERS:
        user = copy.deepcopy(template)
        user.update(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, username)),
            username=username,
            email=f"{username}@example.com",
            firstName=username,
        )
        realm["users"].append(user)
    target.write_text(json.dumps(realm))
    return target


@pytest.fixture(scope="module")
def realm_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("realm")
    return realm_with_extra_users(DEFAULT_REALM_FILE, folder / "realm-idjag.json")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, realm_file: Path) -> Iterator[RunningLab]:
    with full_lab(tmp_path_factory.mktemp("concurrency") / "home", realm_file) as running:
        for username in EXTRA_USERS:
            for domain, role in (("api", "docs-getter"), ("mcp", "mcp-accessor")):
                running.admin.member(domain, role, f"human.{username}")
        yield running


def run_chain(lab: RunningLab, realm_file: Path, username: str) -> dict[str, Any]:
    """One user's whole chain; what each link said about who the caller is."""
    result = run_prompt(
        lab.settings, lab.endpoints, "get docs", username, PASSWORD, realm_file=realm_file
    )
    assert result.ok, f"{username}: {result.message}"
    assert result.id_jag is not None and result.id_jag.token is not None
    assert result.access is not None and result.access.token is not None
    (docs,) = result.tool_results
    return {
        "user": username,
        "id_jag": unverified_claims(result.id_jag.token),
        "access": unverified_claims(result.access.token),
        "received": docs.data["received_token"],
        "exchanged": docs.data["exchanged_token"],
        "docs": [doc["id"] for doc in docs.data["docs"]],
    }


def test_parallel_agent_chains_each_get_their_own_users_token(
    lab: RunningLab, realm_file: Path
) -> None:
    users = [USERS[n % len(USERS)] for n in range(CHAINS)]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        outcomes = list(pool.map(lambda user: run_chain(lab, realm_file, user), users))

    assert len(outcomes) == CHAINS
    assert Counter(o["user"] for o in outcomes) == Counter(users)
    for outcome in outcomes:
        principal = f"human.{outcome['user']}"
        # No cross-talk: every link of this chain speaks for this chain's user.
        assert outcome["id_jag"]["sub"] == principal
        assert outcome["access"]["sub"] == principal
        assert outcome["received"]["jti"] == outcome["access"]["jti"]
        assert outcome["exchanged"]["sub"] == principal
        assert outcome["docs"] == [1, 2]
    # Every chain got tokens of its own (single-use ID-JAGs, distinct access tokens).
    assert len({o["id_jag"]["jti"] for o in outcomes}) == CHAINS
    assert len({o["access"]["jti"] for o in outcomes}) == CHAINS


def zms_put_member(http: httpx.Client, lab: RunningLab, member: str) -> int:
    zms = lab.endpoints.zms
    key = SigningKey.load_or_create(lab.settings.key_file(ADMIN_PRINCIPAL))
    response = http.put(
        f"{zms}/domain/api/role/crowd/member/{member}",
        json={"memberName": member, "roleName": "crowd"},
        headers={"Authorization": "Bearer " + make_admin_assertion(ADMIN_PRINCIPAL, key, zms)},
    )
    return response.status_code


def learner_token(http: httpx.Client, lab: RunningLab) -> int:
    """A token request (audited) to interleave with the writes."""
    key = SigningKey.load_or_create(lab.settings.key_file(LEARNER_PRINCIPAL))
    response = http.post(
        lab.endpoints.zts_token,
        data={
            "grant_type": GRANT_CLIENT_CREDENTIALS,
            "scope": "api:role.docs-getter",
            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": make_client_assertion(LEARNER_PRINCIPAL, key, lab.endpoints.zts),
        },
    )
    return response.status_code


def test_parallel_zms_writes_leave_a_consistent_store(lab: RunningLab) -> None:
    lab.admin.role("api", "crowd")
    members = [f"ai.crowd{n:02d}" for n in range(WRITES)]
    with httpx.Client(timeout=30) as http, ThreadPoolExecutor(max_workers=WORKERS) as pool:
        writes = [pool.submit(zms_put_member, http, lab, m) for m in members]
        tokens = [pool.submit(learner_token, http, lab) for _ in range(WRITES // 2)]
        write_statuses = [w.result() for w in writes]
        token_statuses = [t.result() for t in tokens]

    assert set(write_statuses) <= {200, 204}, Counter(write_statuses)
    assert set(token_statuses) == {200}, Counter(token_statuses)
    role = lab.admin.zms("GET", "/domain/api/role/crowd").json()
    assert sorted(m["memberName"] for m in role["roleMembers"]) == members
    with sqlite3.connect(lab.settings.pdp_db) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    audit = lab.admin.zms("GET", "/lab/audit").json()
    assert audit["problems"] == [] and verify_chain(audit["records"]) == []
    assert [r["seq"] for r in audit["records"]] == sorted({r["seq"] for r in audit["records"]})
    assert sum(r["decision"] == "allow" for r in audit["records"]) >= WRITES // 2
