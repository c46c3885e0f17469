"""What the IdP remembers between requests: pending logins, codes, user sessions. In memory.

Like a Keycloak started without a database, a restart forgets sessions (refresh tokens then
fail with "Session not active") but not keys. Everything expires; expired entries are dropped
whenever the store is touched, so memory stays bounded by what is live.
"""

from __future__ import annotations

import heapq
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

#: A login page left open longer than this must be reloaded (Keycloak: accessCodeLifespanLogin).
LOGIN_PAGE_LIFESPAN_S = 1800
#: How long after its expiry a redeemed code is remembered, so a replay can revoke its session.
SPENT_CODE_MEMORY_S = 600
#: Live sessions one user may hold with one client; a new sign-in beyond it ends the oldest
#: (Keycloak's "User session limits" with "Terminate oldest session"). Without a bound, an agent
#: signing in again and again grows the IdP by one session per sign-in for the whole idle
#: timeout (30 minutes): issue #21's RSS creep.
MAX_SESSIONS_PER_USER_CLIENT = 32
#: A sign-in still on its way (its session started, its first code not redeemed yet, within the
#: code's lifespan) is not ended for that bound: a burst of concurrent sign-ins of one user (200
#: agent chains over six users) would otherwise end sign-ins before they finish ("Session not
#: active" at the code redemption). Those in flight are bounded by this hard cap instead.
MAX_SIGN_INS_IN_FLIGHT_PER_USER_CLIENT = 256


@dataclass(frozen=True)
class AuthRequest:
    """A validated authorization request (RFC 6749 §4.1.1) waiting for the user to log in."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str | None
    nonce: str | None
    response_mode: str
    code_challenge: str | None
    code_challenge_method: str | None


@dataclass(frozen=True)
class PendingLogin:
    tab_id: str
    #: Value of the AUTH_SESSION_ID cookie the login form is bound to (login CSRF defence).
    browser_key: str
    request: AuthRequest
    expires_at: float


@dataclass(frozen=True)
class AuthCode:
    code: str
    request: AuthRequest
    user_id: str
    sid: str
    auth_time: int
    expires_at: float


@dataclass(frozen=True)
class UserSession:
    sid: str
    user_id: str
    client_id: str
    auth_time: int
    started_at: float
    last_seen_at: float


T = TypeVar("T")


@dataclass
class _Expiring(Generic[T]):
    """Items with an expiry. Expired ones are swept in expiry order from a heap, so a sweep
    costs what it removes, not one pass over every live session per sign-in (issue #21)."""

    items: dict[str, tuple[float, T]] = field(default_factory=dict)
    #: (expires_at, key) for every put; an entry whose item was re-put since is skipped.
    heap: list[tuple[float, str]] = field(default_factory=list)

    def put(self, key: str, value: T, expires_at: float) -> None:
        self.items[key] = (expires_at, value)
        heapq.heappush(self.heap, (expires_at, key))

    def get(self, key: str, now: float) -> T | None:
        entry = self.items.get(key)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    def pop(self, key: str) -> T | None:
        entry = self.items.pop(key, None)
        if len(self.heap) > 2 * len(self.items) + 64:
            # Popped and re-put items leave their heap entries behind until they would have
            # expired (a login page's: 30 minutes): rebuild once they outnumber the live ones.
            self.heap = [(expires_at, k) for k, (expires_at, _) in self.items.items()]
            heapq.heapify(self.heap)
        return None if entry is None else entry[1]

    def sweep(self, now: float) -> None:
        while self.heap and self.heap[0][0] <= now:
            _, key = heapq.heappop(self.heap)
            entry = self.items.get(key)
            if entry is not None and entry[0] <= now:
                del self.items[key]


class IdpStore:
    """Thread-safe in-memory state. Keys are random (``secrets``), never derived from input."""

    def __init__(self, *, code_lifespan_s: int, session_idle_s: int, session_max_s: int) -> None:
        self._lock = threading.Lock()
        self._logins: _Expiring[PendingLogin] = _Expiring()
        self._codes: _Expiring[AuthCode] = _Expiring()
        self._sessions: _Expiring[UserSession] = _Expiring()
        #: Redeemed codes -> the session they started, to detect replays (kept a while).
        self._spent: _Expiring[str] = _Expiring()
        #: (user, client) -> their live session ids, oldest first (MAX_SESSIONS_PER_USER_CLIENT).
        self._sessions_of: dict[tuple[str, str], list[str]] = {}
        #: session id -> codes redeemed for it (forgotten with the session: nothing to revoke).
        self._spent_of: dict[str, list[str]] = {}
        self.code_lifespan_s = code_lifespan_s
        self.session_idle_s = session_idle_s
        self.session_max_s = session_max_s

    # -- pending logins ---------------------------------------------------------------------

    def start_login(self, request: AuthRequest, browser_key: str) -> PendingLogin:
        now = time.time()
        login = PendingLogin(
            secrets.token_urlsafe(16), browser_key, request, now + LOGIN_PAGE_LIFESPAN_S
        )
        with self._lock:
            self._sweep(now)
            self._logins.put(login.tab_id, login, login.expires_at)
        return login

    def pending_login(self, tab_id: str) -> PendingLogin | None:
        with self._lock:
            return self._logins.get(tab_id, time.time())

    def finish_login(self, tab_id: str) -> None:
        with self._lock:
            self._logins.pop(tab_id)

    # -- authorization codes ------------------------------------------------------------------

    def issue_code(self, request: AuthRequest, session: UserSession) -> AuthCode:
        now = time.time()
        code = AuthCode(
            code=f"{secrets.token_urlsafe(24)}.{session.sid}",
            request=request,
            user_id=session.user_id,
            sid=session.sid,
            auth_time=session.auth_time,
            expires_at=now + self.code_lifespan_s,
        )
        with self._lock:
            self._codes.put(code.code, code, code.expires_at)
        return code

    def redeem_code(self, code: str) -> AuthCode | None:
        """Single use (RFC 6749 §4.1.2): the code is removed whether or not it is then accepted."""
        now = time.time()
        with self._lock:
            found = self._codes.pop(code)
            if found is None:
                spent_sid = self._spent.get(code, now)
                if spent_sid is not None:
                    # RFC 6749 §4.1.2: a code used twice SHOULD revoke the tokens issued from
                    # it. Keycloak ends the session, so the first redemption's refresh token dies.
                    self._forget_session(spent_sid)
                return None
            self._spent.put(code, found.sid, found.expires_at + SPENT_CODE_MEMORY_S)
            self._spent_of.setdefault(found.sid, []).append(code)
        if found.expires_at <= now:
            return None
        return found

    # -- user sessions ------------------------------------------------------------------------

    def start_session(self, user_id: str, client_id: str) -> UserSession:
        now = time.time()
        session = UserSession(str(uuid.uuid4()), user_id, client_id, int(now), now, now)
        with self._lock:
            self._sweep(now)
            self._sessions.put(session.sid, session, self._session_expiry(session))
            live = self._sessions_of.setdefault((user_id, client_id), [])
            live[:] = [sid for sid in live if sid in self._sessions.items]
            live.append(session.sid)
            while len(live) > MAX_SESSIONS_PER_USER_CLIENT:
                finished = next((sid for sid in live if not self._in_flight(sid, now)), None)
                if finished is None and len(live) <= MAX_SIGN_INS_IN_FLIGHT_PER_USER_CLIENT:
                    break
                self._forget_session(live[0] if finished is None else finished)
        return session

    def _in_flight(self, sid: str, now: float) -> bool:
        """A sign-in not finished yet (lock held): no code of its session redeemed, and started
        recently enough for its first code to be redeemed still."""
        session = self._sessions.items.get(sid)
        return (
            session is not None
            and sid not in self._spent_of
            and session[1].started_at > now - self.code_lifespan_s
        )

    def active_session(self, sid: str) -> UserSession | None:
        with self._lock:
            return self._sessions.get(sid, time.time())

    def touch_session(self, sid: str) -> UserSession | None:
        """A refresh keeps the session alive up to its maximum lifespan."""
        now = time.time()
        with self._lock:
            session = self._sessions.get(sid, now)
            if session is None:
                return None
            session = replace(session, last_seen_at=now)
            self._sessions.put(sid, session, self._session_expiry(session))
            return session

    def end_session(self, sid: str) -> bool:
        with self._lock:
            return self._forget_session(sid)

    def _forget_session(self, sid: str) -> bool:
        """End a session (lock held) with what was kept only for it."""
        session = self._sessions.pop(sid)
        for code in self._spent_of.pop(sid, ()):
            self._spent.pop(code)
        if session is not None:
            key = (session.user_id, session.client_id)
            live = self._sessions_of.get(key)
            if live is not None:
                if sid in live:
                    live.remove(sid)
                if not live:
                    del self._sessions_of[key]
        return session is not None

    def session_expiry(self, session: UserSession) -> float:
        return self._session_expiry(session)

    def _session_expiry(self, session: UserSession) -> float:
        return min(
            session.last_seen_at + self.session_idle_s, session.started_at + self.session_max_s
        )

    def _sweep(self, now: float) -> None:
        self._logins.sweep(now)
        self._codes.sweep(now)
        self._sessions.sweep(now)
        self._spent.sweep(now)
        if len(self._spent_of) > 2 * len(self._spent.items) + 64:
            # Codes of sessions that expired (not ended) leave their index entries: drop them.
            self._spent_of = {
                sid: kept
                for sid, codes in self._spent_of.items()
                if (kept := [c for c in codes if c in self._spent.items])
            }
        if len(self._sessions_of) > 2 * len(self._sessions.items) + 64:
            self._sessions_of = {
                key: kept
                for key, sids in self._sessions_of.items()
                if (kept := [sid for sid in sids if sid in self._sessions.items])
            }
