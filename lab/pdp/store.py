"""The PDP's SQLite store: ZMS objects, used assertion ids and the audit chain.

One connection per thread (sqlite3 connections are not shared across threads), WAL journal and
``synchronous=FULL`` so an acknowledged write survives ``kill -9``. Every write runs inside one
``BEGIN IMMEDIATE`` transaction. Objects are stored as their Athenz JSON shape, one row each.

Token requests read a per-domain :class:`~lab.pdp.view.DomainView` (indexed members → roles and
roles → assertions). Each domain has its own version: a write to one role or policy bumps only its
domain, and the next reader patches the cached view with just the rows that changed, so the first
token after a write costs one row read, not a rebuild of the domain (issue #21).

Writers take one in-process lock before ``BEGIN IMMEDIATE``: with up to 40 threadpool threads
committing at once, SQLite's own busy handler sleeps with growing back-off (p99 over a second at
concurrency 16); a lock hands the write over as soon as the previous one commits.

A store belongs to the process that opened it. A child made by ``fork`` inherits the object but
not its threads: the audit committer does not run there (an append would wait forever), a lock
held by another thread at the fork stays held, and the views cached in memory would never see
the parent's later policy writes (a role removed in the parent still granted in the child).
So a forked child's every use of an inherited store raises :class:`StoreForkedError` at once,
naming the fix: open a ``Store(path)`` of its own in the child.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lab import nonblocking
from lab.homefiles import check_store
from lab.pdp.view import DomainView

SCHEMA = """
CREATE TABLE IF NOT EXISTS domains (name TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roles (
    domain TEXT, name TEXT, data TEXT NOT NULL, PRIMARY KEY (domain, name)
);
CREATE TABLE IF NOT EXISTS policies (
    domain TEXT, name TEXT, data TEXT NOT NULL, PRIMARY KEY (domain, name)
);
CREATE TABLE IF NOT EXISTS services (
    domain TEXT, name TEXT, data TEXT NOT NULL, PRIMARY KEY (domain, name)
);
CREATE TABLE IF NOT EXISTS secrets (principal TEXT PRIMARY KEY, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS used_jti (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, mac TEXT NOT NULL
);
"""

_CHILD_TABLES = ("roles", "policies", "services")


def timestamp(epoch: float | None = None) -> str:
    """Athenz's timestamp format, e.g. ``2026-01-01T00:00:00.000Z``."""
    epoch = time.time() if epoch is None else epoch
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"
    )


def parse_timestamp(value: str) -> float:
    """Epoch seconds of an Athenz/ISO-8601 timestamp; raises ValueError when it is not one."""
    text = value.strip().replace("Z", "+00:00")
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        raise ValueError("timestamp needs a time zone")
    return stamp.timestamp()


def short_name(full: str) -> str:
    """``api:role.docs-getter`` → ``docs-getter``; ``mcp.api-mcp`` → ``api-mcp``."""
    for marker in (":role.", ":policy."):
        if marker in full:
            return full.split(marker, 1)[1]
    return full.rsplit(".", 1)[-1]


def member_is_live(member: dict[str, Any], at: float | None = None) -> bool:
    """Expired memberships are ignored everywhere (Athenz: they do not count)."""
    expiration = member.get("expiration")
    if not expiration:
        return True
    try:
        return parse_timestamp(str(expiration)) > (time.time() if at is None else at)
    except ValueError:
        return False


@dataclass
class _PendingAppend:
    """One append waiting for the committer thread (see :meth:`Store.append_audit`)."""

    build: Any
    single_use: tuple[tuple[str, int], ...]
    #: ``seal(seq, hash)`` -> the MACed chain head and maybe a checkpoint (lab.pdp.audit).
    seal: Any = None
    done: threading.Event = field(default_factory=threading.Event)
    #: Called by the committer thread with this append once ``done`` is set (an event loop's
    #: waiter, see :meth:`Store.submit_audit`).
    on_done: Callable[[_PendingAppend], None] | None = None
    #: Called once per batch, after every ``on_done`` of the batch (the same callable for
    #: several appends runs once): one wake-up of a loop for all the records it waits for.
    after_batch: Callable[[], None] | None = None
    record: dict[str, Any] | None = None
    error: BaseException | None = None

    def result(self) -> dict[str, Any]:
        """The durable record, or the append's error raised (:class:`ReplayDetected`, ...)."""
        if self.error is not None:
            raise self.error
        assert self.record is not None
        return self.record


#: ``(seq, hash)`` of the newest audit record, read by SQLite's JSON functions (no record is
#: parsed in Python): the committer chains to it, the seal check compares it with the head.
_LAST_HASH = "SELECT seq, json_extract(record, '$.hash') FROM audit ORDER BY seq DESC LIMIT 1"

#: What :meth:`Store.submit_audit` hands back: ``done``, ``result()``.
PendingAppend = _PendingAppend


class ReplayDetected(Exception):
    """A single-use jti was already recorded."""

    def __init__(self, jti: str) -> None:
        super().__init__(jti)
        self.jti = jti


class _NeedsSavepoints(Exception):
    """An append failed after part of it was written: the batch runs again with savepoints."""


#: Most variables one statement may bind: 999 in SQLite before 3.32 (its
#: ``SQLITE_MAX_VARIABLE_NUMBER``), which Python's ``sqlite3`` may be built against.
_MOST_VARIABLES = 999


def _insert_rows(conn: sqlite3.Connection, into: str, rows: Sequence[Sequence[Any]]) -> None:
    """``INSERT INTO {into} VALUES`` every row, in as few statements as the variable limit
    allows. A failed statement is undone whole, those before it are not: the first statement's
    error propagates as it is (nothing was written), a later one's as :class:`_NeedsSavepoints`
    (roll the batch back and run it again append by append)."""
    width = len(rows[0])
    step = max(1, _MOST_VARIABLES // width)
    row = "(" + ", ".join("?" * width) + ")"
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        try:
            conn.execute(
                f"INSERT INTO {into} VALUES {', '.join([row] * len(chunk))}",  # noqa: S608
                [value for each in chunk for value in each],
            )
        except sqlite3.Error:
            if start:
                raise _NeedsSavepoints from None
            raise


#: An append made ready to write: ``(item, record, record as JSON, what sealing it returned)``.
_Built = tuple[_PendingAppend, dict[str, Any], str, Any]


def _built(item: _PendingAppend, seq: int, prev_hash: str) -> _Built | None:
    """``item`` built, encoded and sealed as record ``seq + 1``, before anything of it is
    written; ``None`` when that failed (``item.error`` says why)."""
    try:
        record = item.build(seq + 1, prev_hash)
        encoded = json.dumps(record)
        sealed = item.seal(seq + 1, str(record["hash"])) if item.seal is not None else None
    except Exception as exc:  # noqa: BLE001 - this append fails, the batch goes on
        item.error = exc
        return None
    return item, record, encoded, sealed


def _write_built(
    conn: sqlite3.Connection, built: list[_Built]
) -> list[tuple[_PendingAppend, dict[str, Any], Any]]:
    """Write built appends' records and checkpoints (their jtis are in already): ``(item,
    record, sealed head)`` each. A failure here comes after the jtis were written, so it raises
    :class:`_NeedsSavepoints` (roll the batch back, run it again with savepoints)."""
    if not built:
        return []
    try:
        _insert_rows(
            conn,
            "audit (seq, record)",
            [(record["seq"], encoded) for _, record, encoded, _ in built],
        )
        for _, record, _, sealed in built:
            if sealed is not None and sealed.get("checkpoint"):
                conn.execute(
                    "INSERT OR REPLACE INTO audit_checkpoints (seq, hash, mac) VALUES (?, ?, ?)",
                    (record["seq"], record["hash"], sealed["checkpoint"]),
                )
    except Exception:
        raise _NeedsSavepoints from None
    return [
        (item, record, sealed["head"] if sealed is not None else None)
        for item, record, _, sealed in built
    ]


def _first_used(conn: sqlite3.Connection, single_use: Sequence[tuple[str, int]]) -> str:
    """The first of an append's jtis already used (or repeated within the append itself): the
    one a row-by-row insert would have failed on."""
    seen: set[str] = set()
    for jti, _ in single_use:
        if jti in seen or conn.execute("SELECT 1 FROM used_jti WHERE jti = ?", (jti,)).fetchone():
            return jti
        seen.add(jti)
    return single_use[-1][0]


class StoreForkedError(RuntimeError):
    """An inherited store used in a forked child (see the module docstring)."""


class StoreClosedError(RuntimeError):
    """A store used after :meth:`Store.close`."""


#: Every open store of this process, for the fork hook below (weak: a store still closes).
_OPEN_STORES: weakref.WeakSet[Store] = weakref.WeakSet()


def open_stores() -> list[Store]:
    """The stores of this process not closed yet."""
    return list(_OPEN_STORES)


def _disown_after_fork() -> None:
    for store in list(_OPEN_STORES):
        store._disown()


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        #: The process that opened the store; set to the child's refusal once forked.
        self._owner_pid = os.getpid()
        self._forked_into: int | None = None
        self._closed = False
        #: True once forked away or closed: every entry point then raises (one attribute test
        #: on the hot path).
        self._unusable = False
        #: Every connection this store opened, whichever thread uses it: close() closes them.
        self._conns: list[sqlite3.Connection] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        check_store(path)  # a damaged page must be an error, never silently wrong data
        self._local = threading.local()
        self._generation = 0
        self._lock = threading.Lock()
        # One writer at a time in this process (see the module docstring). Re-entrant so a
        # mistaken nested write fails in SQLite with a clear error instead of deadlocking.
        self._write_lock = threading.RLock()
        # Per-domain versions and what changed at each version (pruned once a view caught up).
        self._versions: dict[str, int] = {}
        self._epoch = 0  # bumped by writes that replace everything (import_state)
        self._changes: dict[str, list[tuple[int, str, str | None]]] = {}
        #: Views of existing domains only (never one per unknown name a request asks about).
        self._views: dict[str, DomainView] = {}
        self._view_versions: dict[str, int] = {}
        #: Names found absent, at the domain version they were looked up at: a refusal of an
        #: unknown domain is decided without SQLite (on the event loop). Bounded: the names
        #: come from requests, the least recently asked is forgotten first.
        #: Keyed with the epoch too: a write replacing everything may create any name.
        self._absent: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._service_index: tuple[int, dict[str, dict[str, Any]]] | None = None
        self._audit_queue: list[_PendingAppend] = []
        self._audit_queue_ready = threading.Condition()
        self._committer: threading.Thread | None = None
        self._conn().executescript(SCHEMA)
        _OPEN_STORES.add(self)

    # ------------------------------------------------------------------ processes
    def _disown(self) -> None:
        """In a forked child (``os.register_at_fork``): refuse every later use. The parent's
        queued appends are the parent's to commit (its committer does): dropped here, so that
        nothing in the child can ever write them a second time."""
        self._forked_into = os.getpid()
        self._unusable = True
        self._audit_queue = []
        self._audit_queue_ready = threading.Condition()

    def _check_usable(self) -> None:
        if self._forked_into is not None:
            raise StoreForkedError(
                f"the PDP store {self.path} was opened in process {self._owner_pid}; this "
                f"forked child (process {self._forked_into}) has none of its threads: open a "
                "Store(path) of its own in the child"
            )
        if self._closed:
            raise StoreClosedError(f"the PDP store {self.path} is closed")

    def close(self, timeout_s: float = 5.0) -> None:
        """Commit what is queued, stop the committer and close every connection the store
        opened (each thread's own). Later use raises :class:`StoreClosedError`. Idempotent."""
        if self._closed or self._forked_into is not None:
            return  # a forked child never touches the parent's connections
        with self._audit_queue_ready:
            self._closed = True  # no new append; the committer commits the queued, then ends
            committer = self._committer
            self._audit_queue_ready.notify_all()
        if committer is not None and committer is not threading.current_thread():
            committer.join(timeout_s)
        self._unusable = True
        _OPEN_STORES.discard(self)
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # ------------------------------------------------------------------ connections
    def _conn(self) -> sqlite3.Connection:
        # Every statement starts here: work tried on an event loop (a token request's
        # decision) goes to a worker thread instead of reading the database on it.
        nonblocking.check("a SQLite statement")
        conn = getattr(self._local, "conn", None)
        if self._unusable:
            self._check_usable()
        if conn is None:
            # Still one connection per thread (thread-local); not checked per call so that
            # close() can close every thread's from the closing thread.
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=30, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    @contextlib.contextmanager
    def write(
        self,
        *,
        changes_policy: bool = True,
        changed: Sequence[tuple[str, str, str | None]] = (),
    ) -> Iterator[sqlite3.Connection]:
        """One transaction per write, one writer at a time.

        ``changed`` names what the write touched, as ``(domain, table, name)``; ``name`` None
        means the whole domain. Once committed those domains' cached views are patched on their
        next read. A write that ``changes_policy`` without saying what drops every view (safe
        default); bookkeeping writes (used jtis, audit, meta) pass ``changes_policy=False``.
        """
        if self._unusable:
            self._check_usable()  # before the lock: another thread may have held it at the fork
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            if changes_policy:
                self._note_changes(changed)

    def _note_changes(self, changed: Sequence[tuple[str, str, str | None]]) -> None:
        with self._lock:
            self._generation += 1
            if not changed:
                self._epoch += 1
                self._absent.clear()  # anything may exist now (and entries name the epoch)
                for domain in set(self._versions) | set(self._views):
                    self._bump(domain, "*", None)
                return
            for domain, table, name in changed:
                self._bump(domain, table, name)

    def _bump(self, domain: str, table: str, name: str | None) -> None:
        version = self._versions.get(domain, 0) + 1
        self._versions[domain] = version
        self._changes.setdefault(domain, []).append((version, table, name))

    def domain_version(self, domain: str) -> tuple[int, int]:
        """Changes with every committed write that touches ``domain`` (or replaces everything);
        caches of anything read from the domain compare against it."""
        with self._lock:
            return self._epoch, self._versions.get(domain, 0)

    def _one(self, sql: str, *args: Any) -> Any:
        row = self._conn().execute(sql, args).fetchone()
        return None if row is None else row[0]

    def _all(self, sql: str, *args: Any) -> list[Any]:
        return [row[0] for row in self._conn().execute(sql, args).fetchall()]

    @property
    def generation(self) -> int:
        """Bumped by every committed write that changes policy, in any domain."""
        with self._lock:
            return self._generation

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        return self._one("SELECT value FROM meta WHERE key = ?", key)

    def set_meta(self, key: str, value: str) -> None:
        with self.write(changes_policy=False) as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ domains
    def get_domain(self, name: str) -> dict[str, Any] | None:
        raw = self._one("SELECT data FROM domains WHERE name = ?", name)
        return None if raw is None else json.loads(raw)

    def list_domains(self) -> list[str]:
        return self._all("SELECT name FROM domains ORDER BY name")

    def put_domain(
        self,
        data: dict[str, Any],
        roles: list[dict[str, Any]] | None = None,
        policies: list[dict[str, Any]] | None = None,
    ) -> None:
        name = data["name"]
        roles = roles or []
        policies = policies or []
        with self.write(changed=[(name, "*", None)]) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO domains (name, data) VALUES (?, ?)",
                (name, json.dumps(data)),
            )
            for role in roles:
                conn.execute(
                    "INSERT OR REPLACE INTO roles (domain, name, data) VALUES (?, ?, ?)",
                    (name, short_name(role["name"]), json.dumps(role)),
                )
            for policy in policies:
                conn.execute(
                    "INSERT OR REPLACE INTO policies (domain, name, data) VALUES (?, ?, ?)",
                    (name, short_name(policy["name"]), json.dumps(policy)),
                )

    def delete_domain(self, name: str) -> bool:
        with self.write(changed=[(name, "*", None)]) as conn:
            deleted = conn.execute("DELETE FROM domains WHERE name = ?", (name,)).rowcount
            for table in _CHILD_TABLES:
                conn.execute(f"DELETE FROM {table} WHERE domain = ?", (name,))  # noqa: S608 - fixed names
            conn.execute("DELETE FROM secrets WHERE principal LIKE ?", (name + ".%",))
        return deleted > 0

    def _touch_domain(self, conn: sqlite3.Connection, domain: str) -> None:
        raw = conn.execute("SELECT data FROM domains WHERE name = ?", (domain,)).fetchone()
        if raw is not None:
            data = json.loads(raw[0])
            data["modified"] = timestamp()
            conn.execute("UPDATE domains SET data = ? WHERE name = ?", (json.dumps(data), domain))

    # ------------------------------------------------------------------ roles, policies, services
    def get_object(self, table: str, domain: str, name: str) -> dict[str, Any] | None:
        raw = self._one(f"SELECT data FROM {table} WHERE domain = ? AND name = ?", domain, name)  # noqa: S608
        return None if raw is None else json.loads(raw)

    def list_objects(self, table: str, domain: str) -> list[dict[str, Any]]:
        rows = self._all(f"SELECT data FROM {table} WHERE domain = ? ORDER BY name", domain)  # noqa: S608
        return [json.loads(raw) for raw in rows]

    def put_object(self, table: str, domain: str, name: str, data: dict[str, Any]) -> None:
        with self.write(changed=[(domain, table, name)]) as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO {table} (domain, name, data) VALUES (?, ?, ?)",  # noqa: S608
                (domain, name, json.dumps(data)),
            )
            self._touch_domain(conn, domain)

    def delete_object(self, table: str, domain: str, name: str) -> bool:
        with self.write(changed=[(domain, table, name)]) as conn:
            count = conn.execute(
                f"DELETE FROM {table} WHERE domain = ? AND name = ?",
                (domain, name),  # noqa: S608
            ).rowcount
            self._touch_domain(conn, domain)
        return count > 0

    def update_object(
        self, table: str, domain: str, name: str, change: Any
    ) -> dict[str, Any] | None:
        """Read-modify-write of one object inside one transaction; ``change(data)`` mutates it."""
        with self.write(changed=[(domain, table, name)]) as conn:
            row = conn.execute(
                f"SELECT data FROM {table} WHERE domain = ? AND name = ?",
                (domain, name),  # noqa: S608
            ).fetchone()
            if row is None:
                return None
            data = json.loads(row[0])
            result = change(data)
            data["modified"] = timestamp()
            conn.execute(
                f"UPDATE {table} SET data = ? WHERE domain = ? AND name = ?",  # noqa: S608
                (json.dumps(data), domain, name),
            )
            self._touch_domain(conn, domain)
        return result if result is not None else data

    def next_assertion_id(self) -> int:
        with self.write(changes_policy=False) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'assertion_id'").fetchone()
            value = (int(row[0]) if row else 0) + 1
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('assertion_id', ?)", (str(value),)
            )
        return value

    # ------------------------------------------------------------------ secrets
    def set_secret_hash(self, principal: str, digest: str) -> None:
        with self.write(changes_policy=False) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO secrets (principal, hash) VALUES (?, ?)",
                (principal, digest),
            )

    def secret_hash(self, principal: str) -> str | None:
        return self._one("SELECT hash FROM secrets WHERE principal = ?", principal)

    # ------------------------------------------------------------------ single-use jti
    def jti_seen(self, jti: str) -> bool:
        return self._one("SELECT 1 FROM used_jti WHERE jti = ?", jti) is not None

    def use_jti(self, jti: str, exp: int) -> bool:
        """Record ``jti``; False if it was seen before (replay). Expired entries are pruned."""
        now = int(time.time())
        with self.write(changes_policy=False) as conn:
            conn.execute("DELETE FROM used_jti WHERE exp < ?", (now - 3600,))
            try:
                conn.execute("INSERT INTO used_jti (jti, exp) VALUES (?, ?)", (jti, exp))
            except sqlite3.IntegrityError:
                return False
        return True

    # ------------------------------------------------------------------ views for decisions
    #: Past this many changed objects a view is rebuilt rather than patched.
    PATCH_LIMIT = 256
    #: Most names remembered as absent (unknown domains asked about); oldest dropped first.
    ABSENT_KEPT = 1024

    def domain_view(self, domain: str) -> DomainView | None:
        """The domain's view at its current version: cached, patched, or built."""
        if self._unusable:
            self._check_usable()  # a cached view would never see the parent's writes
        with self._lock:
            version = self._versions.get(domain, 0)
            looked_up = (self._epoch, version)
            cached = self._views.get(domain)
            cached_version = self._view_versions.get(domain)
            if cached_version == version:
                return cached
            if cached_version is None and self._absent.get(domain) == looked_up:
                self._absent.move_to_end(domain)
                return None
            pending = [c for c in self._changes.get(domain, []) if c[0] > (cached_version or 0)]
        # Rows are read after the version: a write committing meanwhile bumps the version
        # again, so at worst the next reader re-applies it (patching is idempotent).
        if cached is None or cached_version is None or not self._patchable(pending):
            view = self._build_view(domain, version)
        else:
            view = self._patch_view(cached, domain, version, pending)
        with self._lock:
            kept_version = self._view_versions.get(domain, -1)
            if view is None:
                # No such domain: no view is kept, only the name in the bounded absent set.
                # Names come from requests (a token request's scope, a ZMS path, a policy GET):
                # a view kept per name let an outsider grow the PDP's memory without bound.
                # A deleted domain's older view goes too. Its change log stays: a reader
                # storing an older view after this must still find the changes since (the log
                # grows only with writes, never with requests).
                if kept_version <= version:
                    self._views.pop(domain, None)
                    self._view_versions.pop(domain, None)
                    self._absent[domain] = looked_up
                    self._absent.move_to_end(domain)
                    while len(self._absent) > self.ABSENT_KEPT:
                        self._absent.popitem(last=False)
            elif kept_version < version:
                self._views[domain] = view
                self._view_versions[domain] = version
                self._absent.pop(domain, None)
                log = self._changes.get(domain)
                if log:
                    self._changes[domain] = [c for c in log if c[0] > version]
        return view

    def _patchable(self, pending: list[tuple[int, str, str | None]]) -> bool:
        if len(pending) > self.PATCH_LIMIT:
            return False
        return all(name is not None and table in _CHILD_TABLES for _, table, name in pending)

    def _patch_view(
        self,
        view: DomainView,
        domain: str,
        version: int,
        pending: list[tuple[int, str, str | None]],
    ) -> DomainView | None:
        data = self.get_domain(domain)
        if data is None:
            return None
        roles = {
            n: self.get_object("roles", domain, n) for _, t, n in pending if t == "roles" and n
        }
        policies = {
            n: self.get_object("policies", domain, n)
            for _, t, n in pending
            if t == "policies" and n
        }
        return view.patched(str(data.get("modified", "")), version, roles, policies)

    def _build_view(self, domain: str, version: int) -> DomainView | None:
        data = self.get_domain(domain)
        if data is None:
            return None
        conn = self._conn()
        roles = [
            (name, json.loads(raw))
            for name, raw in conn.execute(
                "SELECT name, data FROM roles WHERE domain = ? ORDER BY name", (domain,)
            )
        ]
        policies = [
            (name, json.loads(raw))
            for name, raw in conn.execute(
                "SELECT name, data FROM policies WHERE domain = ? ORDER BY name", (domain,)
            )
        ]
        return DomainView.build(domain, str(data.get("modified", "")), roles, policies, version)

    def service_by_endpoint(self, url: str) -> dict[str, Any] | None:
        """The service whose ``providerEndpoint`` is ``url`` (RFC 8707 resource → domain).

        Token requests ask this on every ID-JAG and exchange: the endpoint → service index is
        built once per policy generation (any committed policy write rebuilds it)."""
        if self._unusable:
            self._check_usable()
        generation = self.generation
        index = self._service_index
        if index is None or index[0] != generation:
            endpoints: dict[str, dict[str, Any]] = {}
            for raw in self._all("SELECT data FROM services"):
                data = json.loads(raw)
                endpoint = data.get("providerEndpoint")
                if endpoint and isinstance(endpoint, str):
                    endpoints.setdefault(endpoint.rstrip("/"), data)  # the first one wins
            index = (generation, endpoints)
            self._service_index = index
        found = index[1].get(url.rstrip("/"))
        return None if found is None else dict(found)

    # ------------------------------------------------------------------ whole state
    def export_state(self) -> dict[str, Any]:
        domains = []
        for name in self.list_domains():
            data = self.get_domain(name) or {"name": name}
            data["roles"] = self.list_objects("roles", name)
            data["policies"] = self.list_objects("policies", name)
            data["services"] = self.list_objects("services", name)
            domains.append(data)
        secrets = dict(
            self._conn()
            .execute("SELECT principal, hash FROM secrets ORDER BY principal")
            .fetchall()
        )
        return {"version": 1, "domains": domains, "serviceSecrets": secrets}

    def import_state(self, state: dict[str, Any]) -> None:
        """Replace the whole ZMS state atomically (the audit chain and used jtis are kept)."""
        with self.write() as conn:  # no `changed`: every domain's view is dropped
            for table in ("domains", *_CHILD_TABLES, "secrets"):
                conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            for domain in state.get("domains", []):
                body = {
                    k: v for k, v in domain.items() if k not in ("roles", "policies", "services")
                }
                conn.execute(
                    "INSERT INTO domains (name, data) VALUES (?, ?)",
                    (body["name"], json.dumps(body)),
                )
                for table in _CHILD_TABLES:
                    for item in domain.get(table) or []:
                        short = short_name(item["name"])
                        conn.execute(
                            f"INSERT INTO {table} (domain, name, data) VALUES (?, ?, ?)",  # noqa: S608
                            (body["name"], short, json.dumps(item)),
                        )
            for principal, digest in (state.get("serviceSecrets") or {}).items():
                conn.execute(
                    "INSERT INTO secrets (principal, hash) VALUES (?, ?)", (principal, digest)
                )

    # ------------------------------------------------------------------ audit
    def append_audit(
        self, build: Any, single_use: Sequence[tuple[str, int]] = (), seal: Any = None
    ) -> dict[str, Any]:
        """Append one record; ``build(seq, prev_hash)`` returns it complete with its hash.

        ``single_use`` jtis are marked used in the same transaction as the record: if one was
        used meanwhile, nothing is written and :class:`ReplayDetected` is raised. Returns once
        the record is durable (committed with ``synchronous=FULL``).

        Group commit: every token request ends here, and each commit is an fsync. Concurrent
        appends are handed to one committer thread that writes whatever has queued up in one
        transaction (one fsync for the batch), each append in its own savepoint so a replay
        rolls back only its own rows. Alone, an append is committed at once as before.
        """
        pending = self.submit_audit(build, single_use, seal)
        pending.done.wait()
        return pending.result()

    def submit_audit(
        self,
        build: Any,
        single_use: Sequence[tuple[str, int]] = (),
        seal: Any = None,
        on_done: Callable[[_PendingAppend], None] | None = None,
        after_batch: Callable[[], None] | None = None,
    ) -> _PendingAppend:
        """Queue an append for the committer without waiting: :meth:`append_audit` for callers
        that wait elsewhere (an event loop, woken by ``on_done`` from the committer thread,
        instead of a worker thread blocked until the fsync). ``result()`` once done."""
        pending = _PendingAppend(
            build, tuple(single_use), seal, on_done=on_done, after_batch=after_batch
        )
        self.enqueue_audit([pending])
        return pending

    def enqueue_audit(self, appends: Sequence[_PendingAppend]) -> None:
        """Hand appends made by :meth:`submit_audit`'s caller to the committer at once, in
        order: an event loop collects the appends of one pass over its ready requests and
        wakes the committer once for them (see ``AuditLog.record_async``)."""
        with self._audit_queue_ready:  # a forked child's own (see _disown): never held
            # Forked (no committer thread here), or closed (its committer may have ended):
            # checked under the lock close() sets ``_closed`` under.
            if self._unusable or self._closed:
                self._check_usable()
            self._audit_queue.extend(appends)
            if self._committer is None:
                self._committer = threading.Thread(
                    target=self._commit_audit_forever, name="audit-committer", daemon=True
                )
                self._committer.start()
            self._audit_queue_ready.notify()

    @staticmethod
    def _write_checkpoint(conn: sqlite3.Connection, seq: int, record_hash: str, seal: Any) -> Any:
        """Seal record ``seq``: its checkpoint (now and then) is written at once, the MACed
        head it returns is written once per batch, for the batch's last record (the head of
        an earlier record of the same transaction would be overwritten before it commits)."""
        sealed = seal(seq, record_hash)
        if sealed.get("checkpoint"):
            conn.execute(
                "INSERT OR REPLACE INTO audit_checkpoints (seq, hash, mac) VALUES (?, ?, ?)",
                (seq, record_hash, sealed["checkpoint"]),
            )
        return sealed["head"]

    #: Most appends one transaction carries.
    AUDIT_BATCH = 256

    def _commit_audit_forever(self) -> None:
        while True:
            with self._audit_queue_ready:
                while not self._audit_queue:
                    if self._closed:
                        return  # close(): everything queued before it is committed
                    self._audit_queue_ready.wait()
                batch = self._audit_queue[: self.AUDIT_BATCH]
                del self._audit_queue[: self.AUDIT_BATCH]
            try:
                self._commit_audit_batch(batch)
            except BaseException as exc:  # noqa: BLE001 - every waiter hears of it
                for item in batch:  # nothing of a batch whose commit failed was written
                    item.record = None
                    item.error = item.error or exc
            finally:
                after: dict[Callable[[], None], None] = {}
                for item in batch:
                    item.done.set()
                    if item.on_done is not None:
                        # The waiter's loop may have closed meanwhile: nothing to wake then.
                        with contextlib.suppress(Exception):
                            item.on_done(item)
                    if item.after_batch is not None:
                        after[item.after_batch] = None
                for callback in after:
                    with contextlib.suppress(Exception):
                        callback()

    def _commit_audit_batch(self, batch: list[_PendingAppend]) -> None:
        """One transaction for the batch. First without savepoints: each record is built,
        encoded and sealed before anything of it is written, and its single-use jtis go in
        one statement (SQLite undoes a failed statement whole), so a replay or a record that
        cannot be built writes nothing and needs no rollback. Only a statement failing after
        part of an append was written would need one: then the transaction is rolled back
        and the batch runs again with a savepoint per append, as it always did. The batch's
        jtis and records go in one statement each (:meth:`_append_batch`), one append at a
        time only when a jti of the batch was used: each statement gives up and takes back
        the GIL the event loop contends for."""
        try:
            self._commit_audit_transaction(batch, savepoints=False)
        except _NeedsSavepoints:
            for item in batch:
                item.record, item.error = None, None
            self._commit_audit_transaction(batch, savepoints=True)

    def _commit_audit_transaction(self, batch: list[_PendingAppend], *, savepoints: bool) -> None:
        with self.write(changes_policy=False) as conn:
            row = conn.execute(_LAST_HASH).fetchone()
            seq = 0 if row is None else int(row[0])
            prev_hash = "" if row is None else str(row[1])
            appended = None if savepoints else self._append_batch(conn, batch, seq, prev_hash)
            if appended is None:  # with savepoints, or a used jti somewhere in the batch
                appended = []
                for item in batch:
                    item.error = None
                    if savepoints:
                        one = self._append_with_savepoint(conn, item, seq, prev_hash)
                    else:
                        one = self._append_at_once(conn, item, seq, prev_hash)
                    if one is not None:
                        appended.append((item, *one))
                        seq += 1
                        prev_hash = str(one[0]["hash"])
            prune = False
            head: Any = None  # the sealed head of the batch's last sealed record
            for item, record, sealed in appended:
                item.record = record
                head = sealed if sealed is not None else head
                prune = prune or bool(item.single_use)
            if head is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('audit_head', ?)",
                    (json.dumps(head),),
                )
            if prune and int(time.time()) % 60 == 0:
                conn.execute("DELETE FROM used_jti WHERE exp < ?", (int(time.time()) - 3600,))
        # The records exist only once the transaction committed: a failed COMMIT raises above
        # and the caller marks every record of the batch failed.

    @staticmethod
    def _append_batch(
        conn: sqlite3.Connection, batch: list[_PendingAppend], seq: int, prev_hash: str
    ) -> list[tuple[_PendingAppend, dict[str, Any], Any]] | None:
        """The whole batch in two statements: every single-use jti in one ``INSERT``, every
        record in another (more only past SQLite's variable limit: :func:`_insert_rows`).
        Each statement gives up the GIL and must take it back from the event loop deciding
        the next requests; per append that was 2 statements, each a wait of up to a switch
        interval while the loop is busy. ``None`` when a jti of the batch is used (or
        repeated within it): that statement wrote nothing (SQLite undoes a failed statement
        whole), and the caller appends one by one, so only the replay fails.
        A record that cannot be built fails alone, having written nothing."""
        built: list[_Built] = []
        for item in batch:
            one = _built(item, seq, prev_hash)
            if one is not None:
                built.append(one)
                seq += 1
                prev_hash = str(one[1]["hash"])
        jtis = [pair for item, *_ in built for pair in item.single_use]
        if jtis:
            try:
                _insert_rows(conn, "used_jti (jti, exp)", jtis)
            except sqlite3.IntegrityError:
                return None
        return _write_built(conn, built)

    @staticmethod
    def _append_at_once(
        conn: sqlite3.Connection, item: _PendingAppend, seq: int, prev_hash: str
    ) -> tuple[dict[str, Any], Any] | None:
        """Append ``item`` as record ``seq + 1`` with no savepoint (see _commit_audit_batch);
        ``None`` when it failed having written nothing (``item.error`` says why)."""
        built = _built(item, seq, prev_hash)
        if built is None:
            return None
        if item.single_use:
            try:
                _insert_rows(conn, "used_jti (jti, exp)", item.single_use)
            except sqlite3.IntegrityError:
                item.error = ReplayDetected(_first_used(conn, item.single_use))
                return None
        _, record, head = _write_built(conn, [built])[0]
        return record, head

    def _append_with_savepoint(
        self, conn: sqlite3.Connection, item: _PendingAppend, seq: int, prev_hash: str
    ) -> tuple[dict[str, Any], Any] | None:
        """Append ``item`` as record ``seq + 1`` inside its own savepoint; ``None`` when it
        failed and was rolled back (``item.error`` says why)."""
        conn.execute("SAVEPOINT append")
        try:
            for jti, exp in item.single_use:
                try:
                    conn.execute("INSERT INTO used_jti (jti, exp) VALUES (?, ?)", (jti, exp))
                except sqlite3.IntegrityError:
                    raise ReplayDetected(jti) from None
            record = item.build(seq + 1, prev_hash)
            conn.execute(
                "INSERT INTO audit (seq, record) VALUES (?, ?)", (seq + 1, json.dumps(record))
            )
            sealed = None
            if item.seal is not None:
                sealed = self._write_checkpoint(conn, seq + 1, str(record["hash"]), item.seal)
        except Exception as exc:  # noqa: BLE001 - this append fails, the batch goes on
            conn.execute("ROLLBACK TO append")
            conn.execute("RELEASE append")
            item.error = exc
            return None
        conn.execute("RELEASE append")
        return record, sealed

    def audit_page(self, since: int = 0, limit: int = 1000) -> list[tuple[int, str]]:
        """``(seq, record as stored JSON)`` after ``since``, at most ``limit``: the export sends
        the stored text as it is, so a page costs no parsing or re-encoding on the server."""
        return (
            self._conn()
            .execute(
                "SELECT seq, record FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", (since, limit)
            )
            .fetchall()
        )

    def audit_last_seq(self) -> int:
        return int(self._one("SELECT COALESCE(MAX(seq), 0) FROM audit"))

    def audit_last_hash(self) -> tuple[int, str] | None:
        """``(seq, hash)`` of the newest record, read by SQLite's JSON functions."""
        row = self._conn().execute(_LAST_HASH).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def audit_checkpointed_hashes(self) -> dict[int, str]:
        """The stored hash of each record a checkpoint seals (absent: the record is gone)."""
        rows = self._conn().execute(
            "SELECT c.seq, json_extract(a.record, '$.hash') FROM audit_checkpoints c "
            "JOIN audit a ON a.seq = c.seq"
        )
        return {int(seq): str(found) for seq, found in rows.fetchall()}

    def audit_checkpoints(self) -> list[tuple[int, str, str]]:
        rows = self._conn().execute("SELECT seq, hash, mac FROM audit_checkpoints ORDER BY seq")
        return [(int(seq), str(h), str(mac)) for seq, h, mac in rows.fetchall()]

    def audit_records(self, since: int = 0) -> list[dict[str, Any]]:
        return [
            json.loads(raw)
            for raw in self._all("SELECT record FROM audit WHERE seq > ? ORDER BY seq", since)
        ]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_disown_after_fork)
