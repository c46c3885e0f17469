"""The documents, kept in SQLite under ``$LAB_HOME`` (``settings.docapi_db``).

Both document API instances (protected and unprotected) open the same file, so a document
created through one is visible through the other, a restart keeps data and ``reset`` restores
the two default documents.

Each thread keeps one connection per store: opening one per call (connect, read the schema,
close) cost more than the query itself (~50 µs against ~7 µs), on every request of the
document API. Every call still runs in its own transaction, and every statement is read to
its end, so no connection holds a lock between calls: the other instance's writes go through
and are seen by the next read.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypedDict

from lab.homefiles import check_store

DEFAULT_DOCS: tuple[tuple[str, str], ...] = (
    ("first default doc", "hello world"),
    ("second default doc", "how are you?"),
)


class Doc(TypedDict):
    id: int
    name: str
    content: str


class DocStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        check_store(path)  # a damaged page must be an error, never silently wrong data
        self._create_schema()

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        identity = _file_identity(self.path)
        if connection is not None and identity != self._local.identity:
            # The file was replaced or removed under us (``lab reset --hard`` while this
            # process still ran): a kept connection would go on using the deleted file.
            connection.close()
            connection = None
        if connection is None:
            # A connection belongs to the thread that opened it (sqlite3's check_same_thread).
            connection = sqlite3.connect(self.path, timeout=10)
            self._local.connection = connection
            self._local.identity = _file_identity(self.path)
        with connection:  # one transaction: commit on success, roll back on error
            yield connection

    def _create_schema(self) -> None:
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS docs ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " name TEXT NOT NULL,"
                " content TEXT NOT NULL)"
            )
            seeded = db.execute("SELECT value FROM meta WHERE key = 'seeded'").fetchall()
            if not seeded:
                # First start only: a learner who deleted the defaults keeps that until reset.
                _insert_defaults(db)
                db.execute("INSERT INTO meta (key, value) VALUES ('seeded', '1')")

    def all(self) -> list[Doc]:
        with self._connect() as db:
            rows = db.execute("SELECT id, name, content FROM docs ORDER BY id").fetchall()
        return [_doc(row) for row in rows]

    def get(self, doc_id: int) -> Doc | None:
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, name, content FROM docs WHERE id = ?", (doc_id,)
            ).fetchall()
        return _doc(rows[0]) if rows else None

    def create(self, name: str, content: str) -> Doc:
        with self._connect() as db:
            cursor = db.execute("INSERT INTO docs (name, content) VALUES (?, ?)", (name, content))
            doc_id = int(cursor.lastrowid or 0)
        return Doc(id=doc_id, name=name, content=content)

    def delete(self, doc_id: int) -> Doc | None:
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, name, content FROM docs WHERE id = ?", (doc_id,)
            ).fetchall()
            if not rows:
                return None
            db.execute("DELETE FROM docs WHERE id = ?", (doc_id,))
        return _doc(rows[0])

    def reset(self) -> list[Doc]:
        """Back to the two default documents (ids 1 and 2); new documents continue at 3."""
        with self._connect() as db:
            db.execute("DELETE FROM docs")
            db.execute("DELETE FROM sqlite_sequence WHERE name = 'docs'")
            _insert_defaults(db)
        return self.all()

    def replace_all(self, docs: Sequence[Doc]) -> list[Doc]:
        """Replace every document (checkpoint restore), keeping the given ids."""
        with self._connect() as db:
            db.execute("DELETE FROM docs")
            db.execute("DELETE FROM sqlite_sequence WHERE name = 'docs'")
            db.executemany(
                "INSERT INTO docs (id, name, content) VALUES (?, ?, ?)",
                [(d["id"], d["name"], d["content"]) for d in docs],
            )
        return self.all()


def _file_identity(path: Path) -> tuple[int, int] | None:
    """Which file ``path`` names now (device, inode); None when there is none."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_dev, status.st_ino


def _insert_defaults(db: sqlite3.Connection) -> None:
    db.executemany(
        "INSERT INTO docs (id, name, content) VALUES (?, ?, ?)",
        [(i, name, content) for i, (name, content) in enumerate(DEFAULT_DOCS, start=1)],
    )


def _doc(row: Any) -> Doc:
    return Doc(id=int(row[0]), name=str(row[1]), content=str(row[2]))
