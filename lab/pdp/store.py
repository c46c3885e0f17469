"""The PDP's SQLite store: ZMS objects, used assertion ids and the audit chain.

One connection per thread (sqlite3 connections are not shared across threads), WAL journal and
``synchronous=FULL`` so an acknowledged write survives ``kill -9``. Every write runs inside one
``BEGIN IMMEDIATE`` transaction. Objects are stored as their Athenz JSON shape, one row each.

Token requests read a per-domain :class:`DomainView` (roles with live members, compiled policy
assertions) cached until the next write, so the token endpoint does no JSON parsing per request.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lab.policy.engine import Assertion, member_matches

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
    """``api:role.docs-getter`` → ``docs-getter``; ``api.api-mcp`` → ``api-mcp``."""
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
class DomainView:
    """What token decisions need from one domain, precomputed once per store generation."""

    name: str
    modified: str
    roles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    assertions: list[Assertion] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)

    def roles_of(self, principal: str) -> list[str]:
        """Full names of the roles whose live members include ``principal``."""
        now = time.time()
        return [
            role
            for role, members in self.roles.items()
            if any(
                member_matches(m["memberName"], principal) and member_is_live(m, now)
                for m in members
            )
        ]

    def live_members(self) -> dict[str, list[str]]:
        now = time.time()
        return {
            role: [m["memberName"] for m in members if member_is_live(m, now)]
            for role, members in self.roles.items()
        }


class ReplayDetected(Exception):
    """A single-use jti was already recorded."""

    def __init__(self, jti: str) -> None:
        super().__init__(jti)
        self.jti = jti


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._generation = 0
        self._views: dict[str, tuple[int, DomainView | None]] = {}
        self._lock = threading.Lock()
        self._conn().executescript(SCHEMA)

    # ------------------------------------------------------------------ connections
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=30, check_same_thread=True
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def write(self, *, changes_policy: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction per write. Writes that change ZMS objects drop the cached views after
        they commit; bookkeeping writes (used jtis, audit) leave them alone."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if changes_policy:
            with self._lock:
                self._generation += 1

    def _one(self, sql: str, *args: Any) -> Any:
        row = self._conn().execute(sql, args).fetchone()
        return None if row is None else row[0]

    def _all(self, sql: str, *args: Any) -> list[Any]:
        return [row[0] for row in self._conn().execute(sql, args).fetchall()]

    @property
    def generation(self) -> int:
        """Bumped by every committed write; caches built from the store compare against it."""
        with self._lock:
            return self._generation

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        return self._one("SELECT value FROM meta WHERE key = ?", key)

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as conn:
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
        with self.write() as conn:
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
        with self.write() as conn:
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
        with self.write() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO {table} (domain, name, data) VALUES (?, ?, ?)",  # noqa: S608
                (domain, name, json.dumps(data)),
            )
            self._touch_domain(conn, domain)

    def delete_object(self, table: str, domain: str, name: str) -> bool:
        with self.write() as conn:
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
        with self.write() as conn:
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
        with self.write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'assertion_id'").fetchone()
            value = (int(row[0]) if row else 0) + 1
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('assertion_id', ?)", (str(value),)
            )
        return value

    # ------------------------------------------------------------------ secrets
    def set_secret_hash(self, principal: str, digest: str) -> None:
        with self.write() as conn:
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
    def domain_view(self, domain: str) -> DomainView | None:
        with self._lock:
            generation = self._generation
            cached = self._views.get(domain)
        if cached is not None and cached[0] == generation:
            return cached[1]
        view = self._build_view(domain)
        with self._lock:
            self._views[domain] = (generation, view)
        return view

    def _build_view(self, domain: str) -> DomainView | None:
        data = self.get_domain(domain)
        if data is None:
            return None
        view = DomainView(name=domain, modified=str(data.get("modified", "")))
        for role in self.list_objects("roles", domain):
            view.roles[role["name"]] = list(role.get("roleMembers") or [])
        for policy in self.list_objects("policies", domain):
            view.policies.append(policy)
            if policy.get("active") is False:
                continue
            for item in policy.get("assertions") or []:
                view.assertions.append(
                    Assertion(
                        role=item["role"],
                        resource=item["resource"],
                        action=item["action"],
                        effect=str(item.get("effect") or "ALLOW").upper(),
                        policy=policy["name"],
                    )
                )
        return view

    def service_by_endpoint(self, url: str) -> dict[str, Any] | None:
        """The service whose ``providerEndpoint`` is ``url`` (RFC 8707 resource → domain)."""
        for raw in self._all("SELECT data FROM services"):
            data = json.loads(raw)
            if data.get("providerEndpoint") and data["providerEndpoint"].rstrip("/") == url.rstrip(
                "/"
            ):
                return data
        return None

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
        with self.write() as conn:
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
        self, build: Any, single_use: Sequence[tuple[str, int]] = ()
    ) -> dict[str, Any]:
        """Append one record; ``build(seq, prev_hash)`` returns it complete with its hash.

        ``single_use`` jtis are marked used in the same transaction (one fsync per token
        request): if one was used meanwhile, nothing is written and :class:`ReplayDetected`
        is raised.
        """
        with self.write(changes_policy=False) as conn:
            for jti, exp in single_use:
                try:
                    conn.execute("INSERT INTO used_jti (jti, exp) VALUES (?, ?)", (jti, exp))
                except sqlite3.IntegrityError:
                    raise ReplayDetected(jti) from None
            if single_use and int(time.time()) % 60 == 0:
                conn.execute("DELETE FROM used_jti WHERE exp < ?", (int(time.time()) - 3600,))
            row = conn.execute("SELECT seq, record FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq = 1 if row is None else row[0] + 1
            prev_hash = "" if row is None else json.loads(row[1])["hash"]
            record = build(seq, prev_hash)
            conn.execute("INSERT INTO audit (seq, record) VALUES (?, ?)", (seq, json.dumps(record)))
        return record

    def audit_records(self, since: int = 0) -> list[dict[str, Any]]:
        return [
            json.loads(raw)
            for raw in self._all("SELECT record FROM audit WHERE seq > ? ORDER BY seq", since)
        ]
