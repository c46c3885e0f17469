"""The document store's kept SQLite connections (one per thread, issue #21) under thread churn,
across threads, and when its file is replaced under a running process (``lab reset --hard``
removes the stores; a runtime that outlived ``lab down`` must not keep a deleted file alive)."""

from __future__ import annotations

import gc
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lab.docapi.store import DocStore

FD_DIR = Path("/proc/self/fd")


def open_fds() -> int:
    if not FD_DIR.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("/proc/self/fd is missing on a CI machine")
        pytest.skip("this platform has no /proc/self/fd")
    return len(os.listdir(FD_DIR))


def test_threads_that_come_and_go_leave_no_connection_open(tmp_path: Path) -> None:
    docs = DocStore(tmp_path / "docapi.sqlite3")
    docs.all()
    gc.collect()
    before = open_fds()
    for _ in range(5):  # pools whose threads end, as a server's worker threads are replaced
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert all(len(found) >= 2 for found in pool.map(lambda _: docs.all(), range(32)))
    gc.collect()
    assert open_fds() <= before  # 40 threads opened a connection each; all are closed


def test_a_store_dropped_while_its_threads_live_closes_their_connections(tmp_path: Path) -> None:
    gc.collect()
    before = open_fds()
    with ThreadPoolExecutor(max_workers=4) as pool:  # long-lived threads, like a server's
        stores = [DocStore(tmp_path / "docapi.sqlite3")]
        list(pool.map(lambda _: stores[0].all(), range(16)))
        stores.clear()
        gc.collect()
        assert open_fds() <= before


def test_a_write_in_one_thread_is_read_at_once_in_every_other(tmp_path: Path) -> None:
    docs = DocStore(tmp_path / "docapi.sqlite3")
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda _: docs.all(), range(24)))  # every thread holds a connection
        for n in range(10):
            writer = threading.Thread(target=docs.create, args=(f"doc{n}", "x"))
            writer.start()
            writer.join(10)
            seen = list(pool.map(lambda _: [d["name"] for d in docs.all()], range(12)))
            assert all(f"doc{n}" in names for names in seen)


def test_a_store_file_replaced_under_a_running_store_is_the_one_read(tmp_path: Path) -> None:
    path = tmp_path / "docapi.sqlite3"
    docs = DocStore(path)
    docs.create("before the reset", "x")
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)  # what `lab reset --hard` removes
    DocStore(path)  # the next `lab up` builds the baseline file
    # The kept connection must not go on reading (or writing) the deleted file.
    assert [d["id"] for d in docs.all()] == [1, 2]
    created = docs.create("after the reset", "y")
    assert DocStore(path).get(created["id"]) == created
