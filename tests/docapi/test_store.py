"""The document store (lab.docapi.store): one kept connection per thread, no lock held between
calls, so the protected and unprotected instances (two stores on one file) see each other."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from lab.docapi import store as store_module
from lab.docapi.store import DocStore


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every sqlite3 connection the store opens, by thread name."""
    opened: list[str] = []
    real_connect = sqlite3.connect

    def counting_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        opened.append(threading.current_thread().name)
        return real_connect(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module.sqlite3, "connect", counting_connect)
    return opened


def test_a_thread_reuses_its_connection_for_every_call(tmp_path: Path, connects: list[str]) -> None:
    docs = DocStore(tmp_path / "docapi.sqlite3")
    for _ in range(5):
        assert [d["id"] for d in docs.all()] == [1, 2]
        assert docs.get(1) is not None
    created = docs.create("n", "c")
    assert docs.delete(created["id"]) == created
    assert connects == [threading.current_thread().name]


def test_another_thread_opens_its_own_connection(tmp_path: Path, connects: list[str]) -> None:
    docs = DocStore(tmp_path / "docapi.sqlite3")
    seen: list[list[int]] = []
    worker = threading.Thread(target=lambda: seen.append([d["id"] for d in docs.all()]))
    worker.start()
    worker.join()
    assert seen == [[1, 2]]
    assert len(connects) == 2 and connects[1] == worker.name


def test_two_stores_on_one_file_see_each_others_writes_without_waiting(tmp_path: Path) -> None:
    protected = DocStore(tmp_path / "docapi.sqlite3")
    unprotected = DocStore(tmp_path / "docapi.sqlite3")
    # A read that stops at its first row must not leave a read lock behind on the kept
    # connection: the other store's write would then wait (and fail after the timeout).
    assert protected.get(1) is not None
    for connection in (protected._local.connection, unprotected._local.connection):
        connection.execute("PRAGMA busy_timeout = 200")
    created = unprotected.create("shared", "by both instances")
    assert protected.get(created["id"]) == created
    assert protected.delete(created["id"]) == created
    assert unprotected.get(created["id"]) is None
    assert [d["id"] for d in unprotected.reset()] == [1, 2]
    assert [d["id"] for d in protected.all()] == [1, 2]


def test_a_failed_call_rolls_back_and_the_connection_stays_usable(tmp_path: Path) -> None:
    docs = DocStore(tmp_path / "docapi.sqlite3")
    with pytest.raises(sqlite3.IntegrityError):
        docs.replace_all(
            [{"id": 7, "name": "a", "content": "x"}, {"id": 7, "name": "b", "content": "y"}]
        )
    assert [d["id"] for d in docs.all()] == [1, 2]
    assert docs.create("after", "the failure")["id"] == 3
