"""What token decisions need from one domain, indexed, and patched object by object.

With N roles, members and assertions in a domain, a decision must not cost O(N): the token
endpoint asks "which roles hold this principal?" and "which assertions name those roles?" on
every request. A :class:`DomainView` answers both from indexes:

- member → roles: exact members in a dict keyed by the lower-cased name; ``prefix*`` and ``*``
  members (Athenz wildcards) in a short list matched with ``member_matches`` on each lookup;
- role → assertions: assertions whose ``role`` is a literal name in a dict keyed by the
  lower-cased role; assertions whose role is a glob in a list always considered.

Candidate assertions are returned in the order the full list has (policies by name, then
assertion order), so :func:`lab.policy.engine.decide` names the same assertion it would have
named scanning everything; the matching itself stays in ``lab.policy``.

Views are immutable once published: a write to one role or policy yields a *new* view that
shares every untouched index entry with the old one (a shallow dict copy is C speed even at 100k
entries), so readers in other threads never see a half-updated index and need no lock.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from lab.policy.engine import Assertion, fold_case, member_matches

#: Position of an assertion in the domain's full, ordered list: (policy short name, index).
Position = tuple[str, int]


def _is_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def member_expiry(member: Mapping[str, Any]) -> float | None:
    """Epoch seconds a membership ends, None when it does not (or cannot be read: never live)."""
    from lab.pdp.store import parse_timestamp

    expiration = member.get("expiration")
    if not expiration:
        return None
    try:
        return parse_timestamp(str(expiration))
    except ValueError:
        return float("-inf")


def member_live(member: Mapping[str, Any], now: float) -> bool:
    """Expired memberships are ignored everywhere (Athenz: they do not count)."""
    expiry = member_expiry(member)
    return expiry is None or expiry > now


def policy_assertions(policy: Mapping[str, Any], short: str) -> list[tuple[Position, Assertion]]:
    if policy.get("active") is False:
        return []
    return [
        (
            (short, index),
            Assertion(
                role=item["role"],
                resource=item["resource"],
                action=item["action"],
                effect=str(item.get("effect") or "ALLOW").upper(),
                policy=policy["name"],
            ),
        )
        for index, item in enumerate(policy.get("assertions") or [])
    ]


@dataclass(frozen=True)
class DomainView:
    """One domain at one version. Build with :meth:`build`, change with :meth:`patched`."""

    name: str
    modified: str
    version: int = 0
    #: short role name → the role's full name and its members (member dicts as stored)
    role_rows: Mapping[str, tuple[str, tuple[dict[str, Any], ...]]] = field(default_factory=dict)
    #: short policy name → the policy as stored
    policy_rows: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    #: lower-cased exact member → {full role name: member dict}
    members_exact: Mapping[str, Mapping[str, dict[str, Any]]] = field(default_factory=dict)
    #: (member pattern, full role name, member dict) for ``prefix*`` (glob) members
    members_wild: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    #: lower-cased literal role → {position: assertion}
    by_role: Mapping[str, Mapping[Position, Assertion]] = field(default_factory=dict)
    #: assertions whose role is a glob, by position
    glob_roles: Mapping[Position, Assertion] = field(default_factory=dict)

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        name: str,
        modified: str,
        roles: Iterable[tuple[str, dict[str, Any]]],
        policies: Iterable[tuple[str, dict[str, Any]]],
        version: int = 0,
    ) -> DomainView:
        view = cls(name=name, modified=modified, version=version)
        return view.patched(
            modified, version, roles={s: r for s, r in roles}, policies={s: p for s, p in policies}
        )

    def patched(
        self,
        modified: str,
        version: int,
        roles: Mapping[str, dict[str, Any] | None] | None = None,
        policies: Mapping[str, dict[str, Any] | None] | None = None,
    ) -> DomainView:
        """A new view with the given roles/policies replaced (None = deleted)."""
        # Only the indexes a patch touches are copied (a shallow copy of a 100k-entry dict is
        # a few milliseconds): a membership write leaves the assertion indexes shared, and a
        # policy write the member indexes.
        role_rows: Any = dict(self.role_rows) if roles else self.role_rows
        policy_rows: Any = dict(self.policy_rows) if policies else self.policy_rows
        exact: Any = dict(self.members_exact) if roles else self.members_exact
        wild = list(self.members_wild)
        by_role: Any = dict(self.by_role) if policies else self.by_role
        glob_roles: Any = dict(self.glob_roles) if policies else self.glob_roles
        touched: set[str] = set()  # exact-member keys copied already in this patch
        touched_roles: set[str] = set()

        for short, role in (roles or {}).items():
            old = role_rows.pop(short, None)
            if old is not None:
                full = old[0]
                for member in old[1]:
                    key = str(member.get("memberName", ""))
                    if _is_glob(key):
                        continue
                    key = fold_case(key)
                    if key not in touched:
                        exact[key] = dict(exact.get(key, {}))
                        touched.add(key)
                    exact[key].pop(full, None)  # type: ignore[attr-defined]
                    if not exact[key]:
                        del exact[key]
                        touched.discard(key)
                wild = [w for w in wild if w[1] != full]
            if role is None:
                continue
            full = str(role["name"])
            members = tuple(dict(m) for m in role.get("roleMembers") or [])
            role_rows[short] = (full, members)
            for member in members:
                name = str(member.get("memberName", ""))
                if _is_glob(name):
                    wild.append((name, full, member))  # matched by member_matches itself
                    continue
                key = fold_case(name)
                if key not in touched:
                    exact[key] = dict(exact.get(key, {}))
                    touched.add(key)
                exact[key][full] = member  # type: ignore[index]

        for short, policy in (policies or {}).items():
            old_policy = policy_rows.pop(short, None)
            if old_policy is not None:
                for position, assertion in policy_assertions(old_policy, short):
                    if _is_glob(assertion.role):
                        glob_roles.pop(position, None)
                        continue
                    key = fold_case(assertion.role)
                    if key not in touched_roles:
                        by_role[key] = dict(by_role.get(key, {}))
                        touched_roles.add(key)
                    by_role[key].pop(position, None)  # type: ignore[attr-defined]
                    if not by_role[key]:
                        del by_role[key]
                        touched_roles.discard(key)
            if policy is None:
                continue
            policy_rows[short] = policy
            for position, assertion in policy_assertions(policy, short):
                if _is_glob(assertion.role):
                    glob_roles[position] = assertion
                    continue
                key = fold_case(assertion.role)
                if key not in touched_roles:
                    by_role[key] = dict(by_role.get(key, {}))
                    touched_roles.add(key)
                by_role[key][position] = assertion  # type: ignore[index]

        return replace(
            self,
            modified=modified,
            version=version,
            role_rows=role_rows,
            policy_rows=policy_rows,
            members_exact=exact,
            members_wild=tuple(wild),
            by_role=by_role,
            glob_roles=glob_roles,
        )

    # ------------------------------------------------------------------ decisions
    def roles_of(self, principal: str) -> list[str]:
        """Full names of the roles whose live members include ``principal``."""
        return self.roles_until(principal, time.time())[0]

    def roles_until(self, principal: str, now: float) -> tuple[list[str], float]:
        """:meth:`roles_of` at ``now``, and until when that answer holds: the first end of a
        membership it counted (a view never changes and memberships only end, so nothing else
        can change it; ``inf`` when none of them ends)."""
        lowered = fold_case(principal)
        held: set[str] = set()
        until = math.inf
        named = (self.members_exact.get(lowered) or {}).items()
        matched = (
            (role, member)
            for pattern, role, member in self.members_wild
            if member_matches(pattern, principal)
        )
        for role, member in itertools.chain(named, matched):
            expiry = member_expiry(member)
            if expiry is None or expiry > now:
                held.add(role)
                until = until if expiry is None else min(until, expiry)
        # The store lists roles by short name; within one domain that is the full name's order.
        return sorted(held, key=lambda role: role.split(":role.", 1)[-1]), until

    def assertions_for(self, *role_sets: Iterable[str]) -> list[Assertion]:
        """Every assertion that can match a principal holding any of these roles, in the order
        of :attr:`assertions` (literal roles by index, glob roles always)."""
        chosen: dict[Position, Assertion] = dict(self.glob_roles)
        for roles in role_sets:
            for role in roles:
                chosen.update(self.by_role.get(fold_case(role)) or {})
        return [chosen[position] for position in sorted(chosen)]

    # ------------------------------------------------------------------ whole-domain views
    @cached_property
    def roles(self) -> dict[str, list[dict[str, Any]]]:
        """Full role name → its members, roles by name (as the store lists them)."""
        return {self.role_rows[s][0]: list(self.role_rows[s][1]) for s in sorted(self.role_rows)}

    @cached_property
    def policies(self) -> list[dict[str, Any]]:
        return [self.policy_rows[short] for short in sorted(self.policy_rows)]

    @cached_property
    def assertions(self) -> list[Assertion]:
        """Every active assertion, policies by name then assertion order."""
        return [
            assertion
            for short in sorted(self.policy_rows)
            for _, assertion in policy_assertions(self.policy_rows[short], short)
        ]

    def live_members(self, now: float | None = None) -> dict[str, list[str]]:
        at = time.time() if now is None else now
        return {
            role: [str(m["memberName"]) for m in members if member_live(m, at)]
            for role, members in self.roles.items()
        }

    @cached_property
    def expiries(self) -> tuple[float, ...]:
        """Every membership end time in the domain, sorted (signed policy data changes then)."""
        found = (member_expiry(m) for _, members in self.role_rows.values() for m in members)
        return tuple(sorted(e for e in found if e is not None and e != float("-inf")))

    def next_expiry(self, now: float | None = None) -> float | None:
        """The first membership end after ``now``: what live members are changes then."""
        at = time.time() if now is None else now
        import bisect

        index = bisect.bisect_right(self.expiries, at)
        return self.expiries[index] if index < len(self.expiries) else None
