"""The bench's audit filler (bench/audit_fill.py) writes a chain the PDP's own check accepts.

`make bench` times `lab verify` and `make bench-scale` times `lab audit --verify` over records
it writes straight into the store; without the PDP's seals the verify reported the filled
chain as unsealed and exited 1, and the bench timed a failure.
"""

from __future__ import annotations

from pathlib import Path

from bench.audit_fill import fill_audit
from lab.pdp.audit import SEAL_EVERY, AuditLog, load_mac_key
from lab.pdp.store import Store


def test_a_filled_chain_is_sealed_like_the_pdps_own(tmp_path: Path) -> None:
    key = load_mac_key(tmp_path / "keys" / "audit-mac.key")
    count = 3 * SEAL_EVERY + 7  # crosses checkpoints and ends between two
    assert fill_audit(tmp_path / "pdp.sqlite3", count, batch=SEAL_EVERY + 3) == count
    store = Store(tmp_path / "pdp.sqlite3")
    assert AuditLog(store, key).verify() == []
    assert [seq for seq, _, _ in store.audit_checkpoints()][:3] == [
        SEAL_EVERY,
        2 * SEAL_EVERY,
        3 * SEAL_EVERY,
    ]


def test_a_filled_chain_continues_the_chain_the_pdp_wrote(tmp_path: Path) -> None:
    key = load_mac_key(tmp_path / "keys" / "audit-mac.key")
    fill_audit(tmp_path / "pdp.sqlite3", 10)
    fill_audit(tmp_path / "pdp.sqlite3", SEAL_EVERY)
    assert AuditLog(Store(tmp_path / "pdp.sqlite3"), key).verify() == []
