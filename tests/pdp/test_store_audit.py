"""State survives a restart; every token decision lands in a hash-chained audit log."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from lab.config import Settings
from lab.pdp.app import create_app
from lab.pdp.audit import record_hash, verify_chain
from lab.pdp.store import ReplayDetected, Store
from lab.serving import bind_socket, serve_in_thread
from tests.pdp.conftest import AGENT, LEARNER, MCP, PdpLab


def test_state_survives_a_restart(world: PdpLab, lab_settings: Settings) -> None:
    before = world.ok("GET", "/lab/state").json()
    # A second app on the same $LAB_HOME is a restarted PDP: same store, same signing key.
    restarted = create_app(lab_settings)
    sock = bind_socket("127.0.0.1", 0)
    with serve_in_thread(restarted, sock) as url:
        keys = world.http.get(url + "/zts/v1/oauth2/keys").json()
        assert keys == world.http.get(world.zts + "/oauth2/keys").json()
    assert restarted.state.pdp.store.export_state() == before
    assert [d["name"] for d in before["domains"]] == ["ai", "api", "human", "mcp"]


def test_baseline_is_seeded_once(lab_settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"version": 1, "domains": [{"name": "seeded"}]}))
    app = create_app(lab_settings, baseline=baseline)
    store = app.state.pdp.store
    assert store.list_domains() == ["seeded"]
    store.delete_domain("seeded")
    again = create_app(lab_settings, baseline=baseline)
    assert again.state.pdp.store.list_domains() == []  # not re-seeded over the learner's changes


def test_every_token_decision_is_audited_and_chained(world: PdpLab) -> None:
    world.client_credentials(LEARNER, "api:role.docs-getter")
    world.client_credentials(MCP, "api:role.docs-getter")
    world.request_id_jag(world.id_token())
    everything = world.audit()
    # ZMS writes (building the world) are audited too; here only the token decisions count.
    records = [r for r in everything if not r["action"].startswith("zms:")]
    assert len(records) == 3
    allowed, denied, jag = records
    assert allowed["decision"] == "allow" and allowed["client"] == LEARNER and allowed["jti"]
    assert denied["decision"] == "deny" and "not included" in denied["reason"]
    assert jag["client"] == AGENT and jag["subject"] == LEARNER and jag["action"] == "id-jag"
    for record in records:
        assert {
            "seq",
            "time",
            "correlation_id",
            "resource",
            "action",
            "reason",
            "prev_hash",
            "hash",
        } <= set(record)
    assert verify_chain(everything) == []


def test_tampering_breaks_the_chain(world: PdpLab) -> None:
    for _ in range(3):
        world.client_credentials(LEARNER, "api:role.docs-getter")
    records = world.audit()
    records[1]["decision"] = "deny"
    assert verify_chain(records) == ["record 2: hash does not match its content"]
    shortened = [records[0], records[2]]
    assert verify_chain(shortened)


def test_correlation_id_is_recorded(world: PdpLab) -> None:
    world.token(
        {"grant_type": "client_credentials", "scope": "api:role.docs-getter"},
        client=LEARNER,
        headers={"X-Correlation-Id": "step-06-abc"},
    )
    assert world.audit()[-1]["correlation_id"] == "step-06-abc"


def test_a_jti_used_concurrently_writes_nothing(world: PdpLab) -> None:
    store = world_store(world)
    before = len(store.audit_records())
    store.append_audit(
        lambda seq, prev: {"seq": seq, "prev_hash": prev, "hash": "h"}, [("jag:x", 2**31)]
    )
    try:
        store.append_audit(
            lambda seq, prev: {"seq": seq, "prev_hash": prev, "hash": "h"}, [("jag:x", 2**31)]
        )
    except ReplayDetected as exc:
        assert exc.jti == "jag:x"
    else:
        raise AssertionError("a replayed jti must be refused")
    assert len(store.audit_records()) == before + 1


def world_store(lab: PdpLab) -> Store:
    # A second handle on the same database file: what a restarted PDP would see.
    return Store(lab.settings.pdp_db)


def test_a_broken_providers_file_does_not_stop_the_pdp(lab_settings: Settings) -> None:
    lab_settings.home.mkdir(parents=True, exist_ok=True)
    lab_settings.providers_file.write_text("{not json")
    app = create_app(lab_settings)
    assert app.state.pdp.providers.describe() == []


def test_the_audit_export_pages_and_serves_the_latest_records(world: PdpLab) -> None:
    for _ in range(3):
        world.client_credentials(LEARNER, "api:role.docs-getter")
    everything = world.audit()
    seqs = [r["seq"] for r in everything]
    first = world.ok("GET", "/lab/audit?limit=2").json()
    assert [r["seq"] for r in first["records"]] == seqs[:2] and first["next"] == seqs[1]
    rest = world.ok("GET", f"/lab/audit?since={first['next']}&limit=1000").json()
    assert first["records"] + rest["records"] == everything and rest["next"] is None
    assert rest["last_seq"] == seqs[-1]
    latest = world.ok("GET", "/lab/audit?last=2").json()
    assert latest["records"] == everything[-2:]
    assert verify_chain(latest["records"], anchored=False) == []
    assert verify_chain(latest["records"]) != []  # a segment is not the trail from its start


def test_the_audit_export_refuses_a_bad_page_size(world: PdpLab) -> None:
    for query in ("limit=0", "limit=x", "last=100000", "since=-1"):
        response = world.zms_call("GET", f"/lab/audit?{query}")
        assert response.status_code == 400, query
        assert response.json()["error"] == "invalid_request"


def test_concurrent_appends_share_commits_and_still_form_one_chain(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading

    from lab.pdp.audit import AuditEvent, AuditLog

    store = Store(tmp_path / "pdp.db")
    log = AuditLog(store)
    outcomes: list[str] = []
    lock = threading.Lock()

    def append(index: int) -> None:
        # Every pair of threads presents the same single-use jti: exactly one of each pair wins.
        try:
            log.record(
                AuditEvent(
                    correlation_id=f"c{index}",
                    client="ai.agent",
                    subject=LEARNER,
                    resource="api:docs",
                    action="get",
                    allowed=True,
                    reason="test",
                    single_use=[(f"jti-{index // 2}", 2**31)],
                )
            )
            result = "ok"
        except ReplayDetected:
            result = "replay"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=append, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["ok"] * 20 + ["replay"] * 20
    records = store.audit_records()
    assert [r["seq"] for r in records] == list(range(1, 21))  # no gap where a replay rolled back
    assert verify_chain(records) == []
    assert len({r["correlation_id"] for r in records}) == 20


def test_one_batch_seals_its_last_record_and_every_checkpoint_inside_it(tmp_path) -> None:  # type: ignore[no-untyped-def]

    from lab.pdp.audit import SEAL_EVERY, AuditEvent, AuditLog

    store = Store(tmp_path / "pdp.db")
    log = AuditLog(store)

    def event(index: int, jti: str) -> AuditEvent:
        return AuditEvent(
            correlation_id=f"c{index}",
            client="ai.agent",
            subject=LEARNER,
            resource="api:docs",
            action="get",
            allowed=True,
            reason="test",
            single_use=[(jti, 2**31)],
        )

    for index in range(SEAL_EVERY - 3):
        log.record(event(index, f"before-{index}"))
    sizes: list[int] = []
    original = store._commit_audit_batch

    def counted(batch: list[object]) -> None:
        sizes.append(len(batch))
        original(batch)  # type: ignore[arg-type]

    store._commit_audit_batch = counted  # type: ignore[method-assign]
    # Hold the store's writer lock: the committer takes the first append and waits for it; the
    # next four queue up and commit as one batch (records 49-51, the checkpoint 50 inside it),
    # the last replaying a used jti and rolled back alone.
    with store._write_lock:
        pending = [log.submit(event(100, "alone"), lambda _: None)]
        deadline = time.monotonic() + 30
        while store._audit_queue and time.monotonic() < deadline:
            time.sleep(0.001)  # the committer took it and waits for the lock
        pending += [log.submit(event(101 + n, f"batch-{n}"), lambda _: None) for n in range(3)]
        pending.append(log.submit(event(200, "batch-0"), lambda _: None))
    for item in pending:
        assert item is not None and item.done.wait(30)
    assert sizes[-2:] == [1, 4]
    with pytest.raises(ReplayDetected):
        pending[-1].result()  # type: ignore[union-attr]
    records = store.audit_records()
    assert [r["seq"] for r in records][-4:] == list(range(SEAL_EVERY - 2, SEAL_EVERY + 2))
    head = json.loads(store.get_meta("audit_head") or "{}")
    assert (head["seq"], head["hash"]) == (records[-1]["seq"], records[-1]["hash"])
    assert SEAL_EVERY in [seq for seq, _, _ in store.audit_checkpoints()]
    assert log.verify() == []


def _held_batch(store: Store, submit: list[Any]) -> list[Any]:
    """Submit every ``(build, single_use, seal)`` while the writer lock is held, so all but the
    first commit together as one batch; returns the pending appends, all done."""
    from lab.pdp.audit import AuditEvent, AuditLog

    log = AuditLog(store)
    pending = []
    with store._write_lock:
        first = log.submit(
            AuditEvent("c0", "ai.agent", LEARNER, "api:docs", "get", True, "first"), lambda _: None
        )
        deadline = time.monotonic() + 30
        while store._audit_queue and time.monotonic() < deadline:
            time.sleep(0.001)  # the committer took it and waits for the lock
        for build, single_use, seal in submit:
            pending.append(store.submit_audit(build, single_use, seal))
    for item in [first, *pending]:
        assert item is not None and item.done.wait(30)
    return pending


def _record(reason: str) -> Any:
    def build(seq: int, prev_hash: str) -> dict[str, Any]:
        record = {"seq": seq, "reason": reason, "prev_hash": prev_hash}
        record["hash"] = record_hash(record)
        return record

    return build


def test_an_append_whose_second_jti_was_used_marks_none_of_its_jtis(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "pdp.db")
    store.append_audit(_record("first use"), [("jag:used", 2**31)])
    with pytest.raises(ReplayDetected) as replay:
        store.append_audit(_record("replay"), [("client:fresh", 2**31), ("jag:used", 2**31)])
    assert replay.value.jti == "jag:used"  # the used one is named, whatever comes before it
    assert not store.jti_seen("client:fresh")
    store.append_audit(_record("fresh use"), [("client:fresh", 2**31)])
    with pytest.raises(ReplayDetected) as both:
        store.append_audit(_record("both used"), [("client:fresh", 2**31), ("jag:used", 2**31)])
    assert both.value.jti == "client:fresh"  # the first used one, as a row-by-row insert says
    with pytest.raises(ReplayDetected) as twice:
        store.append_audit(_record("twice"), [("client:twice", 2**31), ("client:twice", 2**31)])
    assert twice.value.jti == "client:twice"
    assert not store.jti_seen("client:twice")
    assert [r["reason"] for r in store.audit_records()] == ["first use", "fresh use"]


def test_appends_that_fail_in_a_batch_write_nothing_and_the_rest_commit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lab.pdp.audit import AuditLog

    store = Store(tmp_path / "pdp.db")
    seal = AuditLog(store)._seal

    def unbuildable(seq: int, prev_hash: str) -> dict[str, Any]:
        raise ValueError("cannot build")

    def seal_fails(seq: int, record_hash_value: str) -> dict[str, Any]:
        raise ValueError("cannot seal")

    def unstorable_checkpoint(seq: int, record_hash_value: str) -> dict[str, Any]:
        # Fails only once the record itself is written: the batch runs again with savepoints.
        return {**seal(seq, record_hash_value), "checkpoint": object()}

    pending = _held_batch(
        store,
        [
            (_record("a"), [("jti-a", 2**31)], seal),
            (unbuildable, [("jti-b", 2**31)], seal),
            (_record("c"), [("jti-c", 2**31)], seal_fails),
            (_record("d"), [("jti-d", 2**31)], unstorable_checkpoint),
            (_record("e"), [("jti-e", 2**31)], seal),
        ],
    )
    assert [p.error is None for p in pending] == [True, False, False, False, True]
    assert str(pending[1].error) == "cannot build" and str(pending[2].error) == "cannot seal"
    assert [store.jti_seen(f"jti-{n}") for n in "abcde"] == [True, False, False, False, True]
    records = store.audit_records()
    assert [r["reason"] for r in records] == ["first", "a", "e"]
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert verify_chain(records) == []
    head = json.loads(store.get_meta("audit_head") or "{}")
    assert (head["seq"], head["hash"]) == (3, records[-1]["hash"])


def test_a_batch_writes_all_its_jtis_in_one_statement_and_all_its_records_in_another(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each statement gives up the GIL and waits to take it back from the busy event loop:
    per batch, not per append (issue #21). A replay in a batch still fails alone (above)."""
    from lab.pdp.audit import AuditLog

    statements: list[str] = []
    connect = Store._conn

    def traced(self: Store) -> Any:
        conn = connect(self)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(Store, "_conn", traced)
    store = Store(tmp_path / "pdp.db")
    seal = AuditLog(store)._seal
    pending = _held_batch(
        store,
        [(_record(f"r{n}"), [(f"client:{n}", 2**31), (f"jag:{n}", 2**31)], seal) for n in range(6)],
    )
    assert all(item.error is None for item in pending)
    # The first append commits alone (no jtis), the six others as one batch.
    assert sum(s.startswith("INSERT INTO used_jti") for s in statements) == 1
    assert sum(s.startswith("INSERT INTO audit (") for s in statements) == 2
    assert all(store.jti_seen(f"{kind}:{n}") for kind in ("client", "jag") for n in range(6))
    records = store.audit_records()
    assert [r["reason"] for r in records] == ["first", *(f"r{n}" for n in range(6))]
    assert verify_chain(records) == []


def _old_sqlite_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connection binds at most 999 variables per statement, as SQLite before 3.32."""
    import sqlite3

    connect = Store._conn

    def limited(self: Store) -> Any:
        conn = connect(self)
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        return conn

    monkeypatch.setattr(Store, "_conn", limited)


def test_a_batch_binding_more_than_999_variables_commits_on_an_old_sqlite(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full batch (256 appends of two jtis: 1024 variables) once failed whole with "too many
    SQL variables" on SQLite before 3.32: its statements are split under the limit."""
    from lab.pdp.audit import AuditLog

    _old_sqlite_limit(monkeypatch)
    store = Store(tmp_path / "pdp.db")
    seal = AuditLog(store)._seal
    count = Store.AUDIT_BATCH
    pending = _held_batch(
        store,
        [
            (_record(f"r{n}"), [(f"client:{n}", 2**31), (f"jag:{n}", 2**31)], seal)
            for n in range(count)
        ],
    )
    assert [item.error for item in pending] == [None] * count
    assert all(store.jti_seen(f"{kind}:{n}") for kind in ("client", "jag") for n in range(count))
    records = store.audit_records()
    assert [r["reason"] for r in records] == ["first", *(f"r{n}" for n in range(count))]
    assert verify_chain(records) == []


def test_a_replay_past_the_first_split_statement_fails_alone(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The used jti is in the batch's second jti statement: the first one's rows were written,
    so the batch is rolled back and run again append by append; only the replay fails."""
    from lab.pdp.audit import AuditLog

    _old_sqlite_limit(monkeypatch)
    store = Store(tmp_path / "pdp.db")
    store.append_audit(_record("first use"), [("jag:used", 2**31)])
    seal = AuditLog(store)._seal
    submit = [
        (_record(f"r{n}"), [(f"client:{n}", 2**31), (f"jag:{n}", 2**31)], seal) for n in range(255)
    ]
    submit[-1] = (_record("replay"), [("client:last", 2**31), ("jag:used", 2**31)], seal)
    pending = _held_batch(store, submit)
    assert [item.error is None for item in pending] == [True] * 254 + [False]
    assert isinstance(pending[-1].error, ReplayDetected)
    assert pending[-1].error.jti == "jag:used"
    assert not store.jti_seen("client:last")
    assert all(store.jti_seen(f"client:{n}") for n in range(254))
    records = store.audit_records()
    assert [r["reason"] for r in records] == ["first use", "first", *(f"r{n}" for n in range(254))]
    assert verify_chain(records) == []
