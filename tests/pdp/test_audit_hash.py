"""``canonical_json``'s encoder, built once, gives the bytes of its definition exactly.

``lab audit --verify`` hashes every record it reads with ``canonical_json`` (the C encoder
built once, lab.policy.signed) instead of ``json.dumps`` per call: if the two ever differed by
one byte, every honest record would fail the check (or a verdict could change), so they are
compared over real records and over values a record could be edited to hold."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pytest

from lab.pdp.audit import (
    AuditEvent,
    AuditLog,
    ChainVerifier,
    record_hash,
)
from lab.pdp.store import Store
from lab.policy.signed import canonical_json


def by_definition(data: Any) -> bytes:
    """``canonical_json``'s definition, written out with ``json.dumps`` itself."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _hash_by_definition(record: dict[str, Any]) -> str:
    """The definition (module docstring of lab.pdp.audit), written out independently."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(
        str(record.get("prev_hash", "")).encode() + by_definition(body)
    ).hexdigest()


def _stored_records(tmp_path: Any) -> list[dict[str, Any]]:
    """Records as the PDP writes them and ``lab audit`` reads them back (stored JSON, parsed)."""
    store = Store(tmp_path / "pdp.sqlite3")
    log = AuditLog(store)
    texts = ["plain", "é ü 日本 🙂", 'quote " back\\slash', "tab\tnew\nline\x00\x1f\x7f", "\u2028"]
    for i, text in enumerate(texts * 4):
        log.record(
            AuditEvent(
                correlation_id=f"c-{i}-{text}",
                client="ai.agent" if i % 2 else None,
                subject=text,
                resource=f"api:{text}",
                action="jwt-bearer",
                allowed=bool(i % 3),
                reason=text * 300,  # past the field bound: cut and marked with "…"
                jti=f"j-{i}" if i % 2 else None,
            )
        )
    return [json.loads(raw) for _, raw in store.audit_page(0, 1000)]


def test_fast_encoder_matches_canonical_json_on_stored_records(tmp_path: Any) -> None:
    records = _stored_records(tmp_path)
    assert len(records) == 20
    for record in records:
        body = {k: v for k, v in record.items() if k != "hash"}
        assert canonical_json(body) == by_definition(body)
        assert record_hash(record) == _hash_by_definition(record) == record["hash"]


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        2**80,
        1.5,
        1e300,
        -0.0,
        math.inf,
        -math.inf,
        "",
        "ascii",
        'é\u2028\U0001f642\x00"\\/',
        [1, "a", None, [2.5, {"z": 1, "a": [True]}]],
        {"b": 1, "a": {"d": [], "c": {}}, "é": "x", "A": 0},
    ],
)
def test_fast_encoder_matches_canonical_json_on_edited_values(value: Any) -> None:
    body = {"seq": 1, "decision": value, "reason": "r", "prev_hash": ""}
    assert canonical_json(body) == by_definition(body)


def test_fast_encoder_matches_canonical_json_on_nan() -> None:
    body = {"decision": math.nan}
    assert canonical_json(body) == by_definition(body) == b'{"decision":NaN}'


def test_fast_encoder_refuses_what_canonical_json_refuses() -> None:
    for bad in ({"decision": object()}, {"decision": {1, 2}}):
        with pytest.raises(TypeError):
            by_definition(bad)
        with pytest.raises(TypeError):
            canonical_json(bad)


def test_an_edit_to_any_field_of_a_stored_record_is_found(tmp_path: Any) -> None:
    records = _stored_records(tmp_path)
    for field in ("time", "client", "subject", "decision", "reason", "jti", "correlation_id"):
        edited = [dict(r) for r in records]
        edited[7][field] = "edited"
        verifier = ChainVerifier()
        for record in edited:
            verifier.feed(record)
        assert verifier.problems == ["record 8: hash does not match its content"], field
