"""The hash-chained audit log of token decisions (contracts §3.3).

Each record's ``hash`` is ``sha256(prev_hash + canonical JSON of the record without "hash")``,
so editing, dropping or reordering any record breaks every hash after it. :func:`verify_chain`
works offline on an exported ``{"records": [...]}`` file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lab.pdp.store import Store, timestamp
from lab.policy.signed import canonical_json


def record_hash(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(
        str(record.get("prev_hash", "")).encode() + canonical_json(body)
    ).hexdigest()


def verify_chain(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Problems found in the chain, empty when it is intact."""
    problems: list[str] = []
    prev_hash = ""
    expected_seq: int | None = None
    for record in records:
        seq = record.get("seq")
        if expected_seq is not None and seq != expected_seq:
            problems.append(f"record {seq}: expected sequence number {expected_seq}")
        if record.get("prev_hash") != prev_hash:
            problems.append(f"record {seq}: prev_hash does not match the previous record's hash")
        if record.get("hash") != record_hash(record):
            problems.append(f"record {seq}: hash does not match its content")
        prev_hash = str(record.get("hash", ""))
        expected_seq = (seq + 1) if isinstance(seq, int) else None
    return problems


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def build_record(
        self,
        seq: int,
        prev_hash: str,
        *,
        correlation_id: str,
        client: str | None,
        subject: str | None,
        resource: str | None,
        action: str,
        allowed: bool,
        reason: str,
        jti: str | None = None,
    ) -> dict[str, Any]:
        """Record number ``seq`` chained to ``prev_hash``, complete with its own hash."""
        record: dict[str, Any] = {
            "seq": seq,
            "time": timestamp(),
            "correlation_id": correlation_id,
            "client": client,
            "subject": subject,
            "resource": resource,
            "action": action,
            "decision": "allow" if allowed else "deny",
            "reason": reason,
            "prev_hash": prev_hash,
        }
        if jti:
            record["jti"] = jti
        record["hash"] = record_hash(record)
        return record

    def record(
        self,
        *,
        correlation_id: str,
        client: str | None,
        subject: str | None,
        resource: str | None,
        action: str,
        allowed: bool,
        reason: str,
        jti: str | None = None,
        single_use: Sequence[tuple[str, int]] = (),
    ) -> dict[str, Any]:
        def build(seq: int, prev_hash: str) -> dict[str, Any]:
            return self.build_record(
                seq,
                prev_hash,
                correlation_id=correlation_id,
                client=client,
                subject=subject,
                resource=resource,
                action=action,
                allowed=allowed,
                reason=reason,
                jti=jti,
            )

        return self.store.append_audit(build, single_use)
