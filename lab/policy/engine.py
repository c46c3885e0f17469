"""Athenz policy evaluation without HTTP (the lab's "ZPE library").

Semantics follow Athenz's ZTS authorizer and ZPE (reference/athenz.md §8):

- assertion ``role``, ``resource`` and ``action`` are globs: ``*`` any run of characters,
  ``?`` exactly one, everything else literal, anchored at both ends;
- matching is case-insensitive (Athenz lowercases action and resource before matching);
- a matching DENY wins at once, ALLOW only sets a flag (DENY beats ALLOW);
- nothing matching means deny (``NO_MATCH``).

``actor_roles`` are the roles of the client acting for the subject (``client_id`` / ``act.sub``
when it differs from ``sub``). They are matched against DENY assertions only, so policy can say
"deny deletion when an agent acts", but they never grant anything (contracts §4).

Every decision carries a human-readable reason naming the assertion that decided it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

Effect = Literal["ALLOW", "DENY"]
DecisionEffect = Literal["ALLOW", "DENY", "NO_MATCH"]


@dataclass(frozen=True)
class Assertion:
    """One policy assertion: ``effect`` ``action`` on ``resource`` for members of ``role``."""

    role: str
    resource: str
    action: str
    effect: str = "ALLOW"
    policy: str | None = None

    def describe(self) -> str:
        where = f" in {self.policy}" if self.policy else ""
        return f"{self.effect.upper()} {self.action} on {self.resource} for {self.role}{where}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    effect: DecisionEffect
    reason: str
    assertion: Assertion | None = None


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """An Athenz glob as an anchored, case-insensitive regex (compiled once, then cached)."""
    parts: list[str] = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def glob_match(pattern: str, value: str) -> bool:
    return compile_glob(pattern).fullmatch(value) is not None


def member_matches(member: str, principal: str) -> bool:
    """Athenz role members may be ``*``, ``prefix*`` or an exact name (case-insensitive)."""
    if member.endswith("*"):
        return principal.lower().startswith(member[:-1].lower())
    return member.lower() == principal.lower()


def _matches(assertion: Assertion, roles: Sequence[str], action: str, resource: str) -> bool:
    if not glob_match(assertion.action, action):
        return False
    if not glob_match(assertion.resource, resource):
        return False
    role_pattern = compile_glob(assertion.role)
    return any(role_pattern.fullmatch(role) for role in roles)


def decide(
    assertions: Iterable[Assertion],
    roles: Iterable[str],
    action: str,
    resource: str,
    actor_roles: Iterable[str] = (),
) -> Decision:
    """Decide ``action`` on ``resource`` for a principal holding ``roles`` (full names)."""
    held = tuple(roles)
    actors = tuple(actor_roles)
    allowed_by: Assertion | None = None
    for assertion in assertions:
        is_deny = assertion.effect.upper() == "DENY"
        if is_deny:
            if _matches(assertion, held, action, resource):
                return Decision(False, "DENY", f"denied by {assertion.describe()}", assertion)
            # Actor roles only ever match DENY assertions: an agent can lose, never gain.
            if actors and _matches(assertion, actors, action, resource):
                return Decision(
                    False,
                    "DENY",
                    f"denied for the acting client by {assertion.describe()}",
                    assertion,
                )
        elif allowed_by is None and _matches(assertion, held, action, resource):
            allowed_by = assertion  # keep scanning: a later DENY still wins
    if allowed_by is not None:
        return Decision(True, "ALLOW", f"allowed by {allowed_by.describe()}", allowed_by)
    held_text = ", ".join(held) if held else "no roles"
    return Decision(
        False,
        "NO_MATCH",
        f"no assertion allows {action} on {resource} for {held_text}",
        None,
    )
