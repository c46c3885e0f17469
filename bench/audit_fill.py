"""Fill the PDP's audit chain with N valid records, fast (one transaction, no per-record fsync).

Records are built by the PDP's own :class:`lab.pdp.audit.AuditLog` (the same hash chain the lab
writes), continuing the existing chain, so ``lab audit --verify`` must still pass afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.pdp.store import Store


def fill_audit(db: Path, count: int, batch: int = 20_000) -> int:
    """Append ``count`` records to the audit chain in ``db``; returns the last sequence number."""
    store = Store(db)
    build = _record_builder(store)
    seal = _sealer(store, db.parent / "keys" / "audit-mac.key")
    written = 0
    last = 0
    while written < count:
        n = min(batch, count - written)
        with store.write(changes_policy=False) as conn:
            row = conn.execute("SELECT seq, record FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq = 0 if row is None else int(row[0])
            prev = "" if row is None else str(json.loads(row[1])["hash"])
            rows = []
            for _ in range(n):
                seq += 1
                record = build(
                    seq,
                    prev,
                    correlation_id=f"bench-{seq}",
                    client="ai.agent",
                    subject="human.idjag-learner",
                    resource="api:role.docs-getter",
                    action="jwt-bearer",
                    allowed=True,
                    reason="bench fill",
                    jti=f"bench-{seq}",
                )
                prev = record["hash"]
                rows.append((seq, json.dumps(record)))
            conn.executemany("INSERT INTO audit (seq, record) VALUES (?, ?)", rows)
            if seal is not None:
                seal(conn, rows)
            last = seq
        written += n
    return last


def _sealer(store: Store, mac_key_file: Path) -> Callable[[Any, list[Any]], None] | None:
    """``seal(conn, rows)``: what the PDP's committer writes beside its records, with the PDP's
    own MAC key: a checkpoint every ``SEAL_EVERY`` records and the sealed chain head. Without
    them ``lab audit --verify`` rightly reports the filled chain as unsealed (exit 1). ``None``
    on code from before the seals (the bench also runs older revisions)."""
    from lab.pdp import audit

    load_mac_key = getattr(audit, "load_mac_key", None)
    write_checkpoint = getattr(store, "_write_checkpoint", None)
    if load_mac_key is None or write_checkpoint is None or not mac_key_file.exists():
        return None
    log = audit.AuditLog(store, load_mac_key(mac_key_file))

    def seal(conn: Any, rows: list[Any]) -> None:
        head = None
        for seq, text in rows:
            record_hash = str(json.loads(text)["hash"])
            if seq % audit.SEAL_EVERY == 0 or seq == rows[-1][0]:
                head = write_checkpoint(conn, seq, record_hash, log._seal)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('audit_head', ?)", (json.dumps(head),)
        )

    return seal


def _record_builder(store: Store) -> Callable[..., dict[str, Any]]:
    """``build(seq, prev_hash, **fields)`` for the code being benched: the bench also runs
    against older commits, whose ``AuditLog.build_record`` took the fields as keywords (or did
    not exist); today's takes one :class:`AuditEvent`."""
    from lab.pdp import audit

    log = audit.AuditLog(store)
    event_class = getattr(audit, "AuditEvent", None)
    if event_class is not None:
        return lambda seq, prev_hash, **fields: log.build_record(
            seq, prev_hash, event_class(**fields)
        )
    return getattr(log, "build_record", None) or _build_record


def _build_record(seq: int, prev_hash: str, **fields: object) -> dict[str, object]:
    """The record format of the lab before ``AuditLog.build_record`` existed (bench of old code)."""
    from lab.pdp.audit import record_hash
    from lab.pdp.store import timestamp

    allowed = fields.pop("allowed")
    jti = fields.pop("jti", None)
    record: dict[str, object] = {"seq": seq, "time": timestamp(), **fields}
    record["decision"] = "allow" if allowed else "deny"
    record["prev_hash"] = prev_hash
    if jti:
        record["jti"] = jti
    record["hash"] = record_hash(record)
    return record
