"""Keycloak's brute-force detection for password logins (realm ``bruteForceProtected``).

Keycloak counts a user's consecutive login failures; every ``failureFactor`` failures lock the
user for ``waitIncrementSeconds`` more (at most ``maxFailureWaitSeconds``), and failures older
than ``maxDeltaTimeSeconds`` are forgotten. While locked, even the right password is refused
with the same answer as a wrong one, so a guesser learns nothing. A success resets the count.
With ``permanentLockout`` the first lock lasts until the lab restarts (Keycloak: until an
admin re-enables the user). Off unless the realm turns it on, as in Keycloak.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class BruteForcePolicy:
    failure_factor: int = 30
    wait_increment_s: int = 60
    max_wait_s: int = 900
    max_delta_s: int = 43_200
    permanent_lockout: bool = False


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class BruteForceDetector:
    """Per-user failure counts in memory (the embedded IdP keeps sessions in memory too)."""

    def __init__(self, policy: BruteForcePolicy | None) -> None:
        self.policy = policy
        self._users: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def locked(self, user_id: str, now: float | None = None) -> bool:
        if self.policy is None:
            return False
        moment = time.time() if now is None else now
        with self._lock:
            entry = self._users.get(user_id)
            return entry is not None and entry.locked_until > moment

    def failure(self, user_id: str, now: float | None = None) -> None:
        policy = self.policy
        if policy is None:
            return
        moment = time.time() if now is None else now
        with self._lock:
            entry = self._users.setdefault(user_id, _Failures())
            if moment - entry.last > policy.max_delta_s:
                entry.count = 0
            entry.count += 1
            entry.last = moment
            if entry.count % policy.failure_factor == 0:
                if policy.permanent_lockout:
                    entry.locked_until = float("inf")
                else:
                    steps = entry.count // policy.failure_factor
                    wait = min(policy.wait_increment_s * steps, policy.max_wait_s)
                    entry.locked_until = moment + wait

    def success(self, user_id: str) -> None:
        with self._lock:
            entry = self._users.get(user_id)
            if entry is not None and entry.locked_until != float("inf"):
                self._users.pop(user_id, None)
