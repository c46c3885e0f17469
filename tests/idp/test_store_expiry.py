"""The IdP forgets expired logins, codes and sessions, and keeps the ones still alive."""

from __future__ import annotations

from lab.idp.store import _Expiring


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
