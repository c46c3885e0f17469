"""The hash-chained audit log of token decisions (contracts §3.3).

Each record's ``hash`` is ``sha256(prev_hash + canonical JSON of the record without "hash")``,
so editing, dropping or reordering any record breaks every hash after it. :func:`verify_chain`
works offline on an exported ``{"records": [...]}`` file; :class:`ChainVerifier` does the same
one record at a time, so a million-record trail is checked without holding it.
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


class ChainVerifier:
    """Checks records one at a time, holding only the previous hash: a trail of any length is
    verified in constant memory, page by page (``lab audit --verify`` streams it).

    ``anchored`` (the default) means the first record fed must be the first of the trail
    (``prev_hash`` empty). An export of the last N records is not: its first record's
    ``prev_hash`` is taken as given and everything after it is checked against it.
    """

    def __init__(self, anchored: bool = True) -> None:
        self.problems: list[str] = []
        self.count = 0
        self._prev_hash: str | None = "" if anchored else None
        self._expected_seq: int | None = None

    def feed(self, record: Mapping[str, Any]) -> None:
        seq = record.get("seq")
        if self._expected_seq is not None and seq != self._expected_seq:
            self.problems.append(f"record {seq}: expected sequence number {self._expected_seq}")
        if self._prev_hash is not None and record.get("prev_hash") != self._prev_hash:
            self.problems.append(
                f"record {seq}: prev_hash does not match the previous record's hash"
            )
        if record.get("hash") != record_hash(record):
            self.problems.append(f"record {seq}: hash does not match its content")
        self._prev_hash = str(record.get("hash", ""))
        self._expected_seq = (seq + 1) if isinstance(seq, int) else None
        self.count += 1


def verify_chain(records: Iterable[Mapping[str, Any]], anchored: bool = True) -> list[str]:
    """Problems found in the chain, empty when it is intact (see :class:`ChainVerifier`)."""
    verifier = ChainVerifier(anchored)
    for record in records:
        verifier.feed(record)
    return verifier.problems


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
