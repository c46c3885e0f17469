"""The PDP store in a forked child: a child inherits the store object but not its audit
committer thread, nor the locks other threads held, and its cached policy views would never see
the parent's later writes. Every use of the inherited store fails at once with a clear error
(it used to wait forever for a commit that no thread would make); a store the child opens
itself works, and the parent's store goes on as before."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from lab.pdp.store import Store, StoreForkedError
from tests.reliability.forking import in_forked_child

#: The child answers at once; the old way it waited for ever. The bound only tells the two
#: apart, generous for a CI machine at load 15 (a fork and a few calls, never a speed check).
LIMIT_S = 60.0


def record(note: str) -> Any:
    def build(seq: int, prev_hash: str) -> dict[str, Any]:
        return {"seq": seq, "prev": prev_hash, "note": note, "hash": f"h{seq}-{note}"}

    return build


def refusal(use: Any) -> str:
    try:
        use()
    except StoreForkedError as exc:
        return str(exc)
    return "no error"


def started(path: Path) -> Store:
    """A store whose committer thread runs (one append committed through it)."""
    store = Store(path)
    store.append_audit(record("parent-first"))
    assert store._committer is not None and store._committer.is_alive()
    return store


def test_an_inherited_store_refuses_an_audit_append_instead_of_hanging(tmp_path: Path) -> None:
    store = started(tmp_path / "pdp.db")
    message = in_forked_child(lambda: refusal(lambda: store.append_audit(record("child"))), LIMIT_S)
    assert "forked child" in message and "open a Store(path) of its own" in message
    assert str(tmp_path / "pdp.db") in message
    # Nothing of the child's reached the file; the parent's store still commits.
    store.append_audit(record("parent-after"))
    assert [r["note"] for r in store.audit_records()] == ["parent-first", "parent-after"]


def test_an_inherited_store_refuses_reads_writes_and_cached_views(tmp_path: Path) -> None:
    store = started(tmp_path / "pdp.db")
    store.put_domain({"name": "sys.auth", "modified": "1"})
    assert store.domain_view("sys.auth") is not None  # now cached in the parent

    def child() -> list[str]:
        return [
            refusal(lambda: store.get_domain("sys.auth")),
            refusal(lambda: store.domain_view("sys.auth")),
            refusal(lambda: store.service_by_endpoint("https://example.test/mcp")),
            refusal(lambda: store.set_meta("k", "v")),
        ]

    assert all("forked child" in message for message in in_forked_child(child, LIMIT_S))
    assert store.get_meta("k") is None


def test_a_lock_held_at_the_fork_does_not_hang_the_child(tmp_path: Path) -> None:
    store = started(tmp_path / "pdp.db")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.write(changes_policy=False):
            holding.set()
            release.wait(LIMIT_S * 2)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(LIMIT_S)
        messages = in_forked_child(
            lambda: [
                refusal(lambda: store.set_meta("k", "v")),
                refusal(lambda: store.append_audit(record("child"))),
            ],
            LIMIT_S,
        )
    finally:
        release.set()
        holder.join(LIMIT_S)
    assert all("forked child" in message for message in messages)


def test_a_store_the_child_opens_itself_commits_and_the_parent_sees_it(tmp_path: Path) -> None:
    path = tmp_path / "pdp.db"
    store = started(path)

    def child() -> int:
        own = Store(path)
        return int(own.append_audit(record("child-own"))["seq"])

    assert in_forked_child(child, LIMIT_S) == 2
    store.append_audit(record("parent-after"))
    assert [r["note"] for r in store.audit_records()] == [
        "parent-first",
        "child-own",
        "parent-after",
    ]
