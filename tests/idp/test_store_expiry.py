"""The IdP forgets expired logins, codes and sessions, and keeps the ones still alive."""

from __future__ import annotations

import time

import pytest

from lab.idp.store import (
    MAX_SESSIONS_PER_USER_CLIENT,
    MAX_SIGN_INS_IN_FLIGHT_PER_USER_CLIENT,
    AuthRequest,
    IdpStore,
    UserSession,
    _Expiring,
)

REQUEST = AuthRequest("ai.agent", "http://127.0.0.1/cb", "openid", None, None, "query", None, None)


def test_a_sweep_removes_what_expired_and_keeps_what_lives() -> None:
    items: _Expiring[str] = _Expiring()
    items.put("old", "a", expires_at=10.0)
    items.put("young", "b", expires_at=100.0)
    items.put("refreshed", "c", expires_at=10.0)
    items.put("refreshed", "c2", expires_at=200.0)  # a refresh moves its expiry on
    items.sweep(now=50.0)
    assert set(items.items) == {"young", "refreshed"}
    assert items.get("refreshed", now=150.0) == "c2"
    items.sweep(now=150.0)
    assert set(items.items) == {"refreshed"}
    items.pop("refreshed")
    items.sweep(now=1000.0)
    assert items.items == {} and items.heap == []


def test_an_expired_item_is_not_served_before_a_sweep() -> None:
    items: _Expiring[str] = _Expiring()
    items.put("k", "v", expires_at=10.0)
    assert items.get("k", now=9.0) == "v"
    assert items.get("k", now=10.0) is None


def test_popped_items_do_not_leave_their_heap_entries_behind_for_ever() -> None:
    items: _Expiring[str] = _Expiring()
    for index in range(10_000):
        items.put(f"login-{index}", "v", expires_at=1e12)  # a login page lives 30 minutes
        items.pop(f"login-{index}")  # ... but is finished at once
    assert items.items == {}
    assert len(items.heap) <= 64


def _store() -> IdpStore:
    return IdpStore(code_lifespan_s=60, session_idle_s=1800, session_max_s=36000)


def _signed_in(store: IdpStore, user: str, client: str) -> UserSession:
    """A finished sign-in: its session's code redeemed."""
    session = store.start_session(user, client)
    assert store.redeem_code(store.issue_code(REQUEST, session).code) is not None
    return session


def test_a_user_holds_a_bounded_number_of_sessions_per_client_the_oldest_ends() -> None:
    store = _store()
    first = _signed_in(store, "u1", "ai.agent")
    other_client = _signed_in(store, "u1", "other")
    other_user = _signed_in(store, "u2", "ai.agent")
    later = [_signed_in(store, "u1", "ai.agent") for _ in range(MAX_SESSIONS_PER_USER_CLIENT)]
    assert store.active_session(first.sid) is None  # the oldest ended (Keycloak: terminate oldest)
    assert all(store.active_session(s.sid) is not None for s in later)
    assert store.active_session(other_client.sid) is not None
    assert store.active_session(other_user.sid) is not None
    assert len(store._sessions.items) == MAX_SESSIONS_PER_USER_CLIENT + 2


def test_a_redeemed_code_is_remembered_while_its_session_lives_only() -> None:
    store = _store()
    session = store.start_session("u1", "ai.agent")
    request = AuthRequest(
        "ai.agent", "http://127.0.0.1/cb", "openid", None, None, "query", None, None
    )
    code = store.issue_code(request, session)
    assert store.redeem_code(code.code) is not None
    assert store.redeem_code(code.code) is None  # a replay ends the session (RFC 6749 §4.1.2)
    assert store.active_session(session.sid) is None
    assert store._spent.items == {} and store._spent_of == {}


def test_many_sign_ins_of_one_user_keep_the_store_bounded() -> None:
    store = _store()
    request = AuthRequest(
        "ai.agent", "http://127.0.0.1/cb", "openid", None, None, "query", None, None
    )
    for _ in range(2_000):
        session = store.start_session("u1", "ai.agent")
        store.redeem_code(store.issue_code(request, session).code)
    assert len(store._sessions.items) == MAX_SESSIONS_PER_USER_CLIENT
    assert len(store._spent.items) <= MAX_SESSIONS_PER_USER_CLIENT
    assert len(store._sessions.heap) <= 2 * MAX_SESSIONS_PER_USER_CLIENT + 64
    assert len(store._spent.heap) <= 2 * MAX_SESSIONS_PER_USER_CLIENT + 64


def test_sign_ins_still_on_their_way_are_not_ended_for_a_burst_of_newer_ones() -> None:
    """200 concurrent agent chains over six users: every sign-in starts its session before any
    redeems its code. Ending the oldest then failed a chain with "Session not active"."""
    store = _store()
    finished = _signed_in(store, "u1", "ai.agent")
    burst = [store.start_session("u1", "ai.agent") for _ in range(MAX_SESSIONS_PER_USER_CLIENT + 8)]
    codes = [store.issue_code(REQUEST, session) for session in burst]
    assert store.active_session(finished.sid) is None  # a finished one ends first
    assert all(store.redeem_code(code.code) is not None for code in codes)
    assert all(store.active_session(session.sid) is not None for session in burst)
    # Once they have finished, the bound holds again at the next sign-in.
    _signed_in(store, "u1", "ai.agent")
    assert len(store._sessions.items) == MAX_SESSIONS_PER_USER_CLIENT


def test_sign_ins_in_flight_are_bounded_too_and_a_stale_one_counts_as_finished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = _store()
    flood = [
        store.start_session("u1", "ai.agent")
        for _ in range(MAX_SIGN_INS_IN_FLIGHT_PER_USER_CLIENT + 10)
    ]
    assert len(store._sessions.items) == MAX_SIGN_INS_IN_FLIGHT_PER_USER_CLIENT
    assert store.active_session(flood[0].sid) is None  # past the hard cap the oldest ends
    # A session whose first code could no longer be redeemed is not on its way any more.
    later = time.time() + store.code_lifespan_s + 1
    monkeypatch.setattr(time, "time", lambda: later)
    store.start_session("u1", "ai.agent")
    assert len(store._sessions.items) == MAX_SESSIONS_PER_USER_CLIENT
