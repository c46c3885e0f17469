"""Store.close(): what is queued is committed, the committer thread ends, every thread's
SQLite connection closes (its descriptors with it), and a later use is a clear error, never a
wait for a committer that has gone."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from lab.pdp.store import Store, StoreClosedError, open_stores


def record(note: str) -> Any:
    def build(seq: int, prev_hash: str) -> dict[str, Any]:
        return {"seq": seq, "prev": prev_hash, "note": note, "hash": f"h{seq}-{note}"}

    return build


def fds(under: Path) -> int:
    """This process's open descriptors on files under ``under`` (the store's database and its
    journal files): counting them all, other tests' threads and sockets closing meanwhile
    (a full run, a loaded machine) made the count move on its own."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed since it was listed
        if target.startswith(f"{under}{os.sep}"):
            count += 1
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_close_ends_the_committer_and_closes_every_threads_connection(tmp_path: Path) -> None:
    before = fds(tmp_path)
    store = Store(tmp_path / "pdp.db")
    store.append_audit(record("first"))  # the committer thread and its connection

    def reader() -> None:
        store.get_meta("seeded")  # a worker thread's own connection

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    committer = store._committer
    assert committer is not None and committer.is_alive()
    assert fds(tmp_path) > before
    store.close()
    assert not committer.is_alive()
    assert fds(tmp_path) == before
    assert store not in open_stores()
    store.close()  # a second close is nothing


def test_close_commits_what_is_queued(tmp_path: Path) -> None:
    store = Store(tmp_path / "pdp.db")
    pending = [store.submit_audit(record(f"r{n}")) for n in range(20)]
    store.close()
    assert all(item.done.is_set() for item in pending)
    reopened = Store(tmp_path / "pdp.db")
    try:
        assert [r["note"] for r in reopened.audit_records()] == [f"r{n}" for n in range(20)]
    finally:
        reopened.close()


def test_a_closed_store_refuses_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "pdp.db")
    store.put_domain({"name": "api", "modified": "1"})
    assert store.domain_view("api") is not None
    store.close()
    for use in (
        lambda: store.append_audit(record("late")),
        lambda: store.get_domain("api"),
        lambda: store.domain_view("api"),
        lambda: store.set_meta("k", "v"),
    ):
        with pytest.raises(StoreClosedError, match="is closed"):
            use()
