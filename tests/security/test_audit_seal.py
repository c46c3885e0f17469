"""The audit trail cannot be rewritten or cut short unnoticed, records ZMS writes, and
unauthenticated requests cannot flood it.

Findings (issue #16): rewriting a record and recomputing every later hash, or deleting the
last records, passed ``lab audit --verify``; ZMS writes were not audited; every
unauthenticated request added a record of any size.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import httpx

from lab.pdp.audit import SEAL_EVERY, UNAUTHENTICATED_BURST, record_hash
from tests.pdp.conftest import AGENT, LEARNER, PdpLab


def audit(lab: PdpLab) -> dict[str, Any]:
    return dict(lab.ok("GET", "/lab/audit").json())


def make_records(lab: PdpLab, count: int) -> None:
    for _ in range(count):
        response = lab.client_credentials(LEARNER, "api:role.docs-getter")
        assert response.status_code == 200, response.text


def rewrite(lab: PdpLab, change: Any) -> None:
    """What an attacker with write access to pdp.sqlite3 does: edit, then re-chain every hash."""
    db = sqlite3.connect(lab.settings.pdp_db)
    rows = db.execute("SELECT seq, record FROM audit ORDER BY seq").fetchall()
    records = [json.loads(raw) for _, raw in rows]
    records = change(records)
    db.execute("DELETE FROM audit")
    prev = ""
    for record in records:
        record["prev_hash"] = prev
        record["hash"] = record_hash(record)
        prev = record["hash"]
        db.execute(
            "INSERT INTO audit (seq, record) VALUES (?, ?)", (record["seq"], json.dumps(record))
        )
    db.commit()
    db.close()


def test_an_intact_chain_verifies(world: PdpLab) -> None:
    make_records(world, 3)
    assert audit(world)["problems"] == []


def test_rewritten_and_rechained_record_is_detected(world: PdpLab) -> None:
    make_records(world, 3)

    def flip(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        records[-2]["decision"] = "deny" if records[-2]["decision"] == "allow" else "allow"
        return records

    rewrite(world, flip)
    problems = audit(world)["problems"]
    assert problems, "a re-chained rewrite must not verify"
    assert any("head" in p or "rewritten" in p for p in problems)


def test_truncated_chain_is_detected(world: PdpLab) -> None:
    make_records(world, 3)
    rewrite(world, lambda records: records[:-2])
    problems = audit(world)["problems"]
    assert any("last record" in p or "truncated" in p for p in problems), problems
    # The endpoint `lab audit --verify` asks for the seal check says the same.
    sealed = world.ok("GET", "/lab/audit/seal").json()
    assert sealed["valid"] is False and sealed["problems"] == problems


def test_truncation_below_a_checkpoint_is_detected_even_with_an_old_head(world: PdpLab) -> None:
    make_records(world, SEAL_EVERY + 2)
    db = sqlite3.connect(world.settings.pdp_db)
    total = db.execute("SELECT max(seq) FROM audit").fetchone()[0]
    db.close()
    keep = (total // SEAL_EVERY) * SEAL_EVERY - 1
    rewrite(world, lambda records: [r for r in records if r["seq"] <= keep])
    problems = audit(world)["problems"]
    assert any("checkpoint" in p for p in problems), problems


def test_forged_head_seal_is_detected(world: PdpLab) -> None:
    make_records(world, 1)
    db = sqlite3.connect(world.settings.pdp_db)
    head = json.loads(db.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()[0])
    head["mac"] = "0" * 64
    db.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (json.dumps(head),))
    db.commit()
    db.close()
    assert any("seal" in p for p in audit(world)["problems"])


def test_zms_writes_are_audited(world: PdpLab) -> None:
    world.role("api", "audited-role", [LEARNER])
    refused = world.zms_call("PUT", "/domain/api/role/x", {"roleMembers": "nope"})
    assert refused.status_code == 400
    records = audit(world)["records"]
    applied = [r for r in records if r["resource"] == "/domain/api/role/audited-role"]
    assert applied and applied[-1]["action"] == "zms:put"
    assert applied[-1]["decision"] == "allow"
    assert applied[-1]["client"] == "user.athenz_admin"
    denied = [r for r in records if r["resource"] == "/domain/api/role/x"]
    assert denied and denied[-1]["decision"] == "deny"


def test_unauthenticated_requests_add_a_bounded_number_of_bounded_records(world: PdpLab) -> None:
    before = len(audit(world)["records"])
    with httpx.Client(timeout=10) as http:
        for index in range(UNAUTHENTICATED_BURST + 60):
            response = http.post(
                world.zts + "/oauth2/token",
                data={"grant_type": "x" * 20_000 + str(index), "client_id": AGENT},
            )
            assert response.status_code == 400
    records = audit(world)["records"]
    added = records[before:]
    assert len(added) <= UNAUTHENTICATED_BURST + 10
    assert all(len(json.dumps(r)) < 4000 for r in added)
    # An authenticated request is still recorded while the unauthenticated bucket is empty.
    make_records(world, 1)
    assert audit(world)["records"][-1]["client"] == LEARNER


def test_the_seal_check_finds_a_rechained_rewrite_without_walking_the_chain(
    world: PdpLab, monkeypatch: Any
) -> None:
    # `lab audit --verify` walks the hash chain itself as it streams the trail; the seal check
    # it then asks the PDP for reads only the head, the checkpoints and the records they seal.
    from lab.pdp.core import Pdp

    make_records(world, SEAL_EVERY + 3)

    def flip(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        records[1]["reason"] = "rewritten"
        return records

    rewrite(world, flip)
    pdp = Pdp.open(world.settings)

    def no_walk(*args: Any) -> Any:
        raise AssertionError("the seal check walked the chain")

    monkeypatch.setattr(pdp.store, "audit_page", no_walk)
    problems = pdp.audit.verify_seals()
    assert any(p.startswith(f"checkpoint {SEAL_EVERY}: the record was rewritten") for p in problems)
    assert any("differs from the sealed chain head" in p for p in problems)
