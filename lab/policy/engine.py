"""Athenz policy evaluation without HTTP (the lab's "ZPE library").

Semantics follow Athenz's ZTS authorizer and ZPE (reference/athenz.md §8):

- assertion ``role``, ``resource`` and ``action`` are globs: ``*`` any run of characters,
  ``?`` exactly one, everything else literal, anchored at both ends;
- matching is case-insensitive (Athenz lowercases action and resource before matching) for
  ASCII letters only (:func:`fold_case`): ``str.lower`` maps the Kelvin sign onto ``k``, so a
  request for ``doc.\u212aey`` was decided by a policy about ``doc.key``;
- a matching DENY wins at once, ALLOW only sets a flag (DENY beats ALLOW);
- nothing matching means deny (``NO_MATCH``).

``actor_roles`` are the roles of the client acting for the subject (``client_id`` / ``act.sub``
when it differs from ``sub``). They are matched against DENY assertions only, so policy can say
"deny deletion when an agent acts", but they never grant anything (contracts §4).

Every decision carries a human-readable reason naming the assertion that decided it.
"""

from __future__ import annotations

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


#: ASCII upper case to lower case, nothing else: see :func:`fold_case`.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_case(text: str) -> str:
    """Lower-case the ASCII letters of ``text`` and leave every other character as it is.

    Policy names are compared case-insensitively, but no non-ASCII character may fold onto an
    ASCII one (``str.lower``: Kelvin sign -> ``k``, and ``casefold`` more), or a request naming
    a resource nobody wrote a policy for is decided by the policy of a look-alike (issue #16's
    Kelvin-sign finding, for usernames, in its resource form)."""
    return text.translate(_ASCII_LOWER)


#: Longest resource, action or role string (request or assertion) the engine evaluates.
#: Athenz caps resource names too; a bound keeps every decision cheap whatever policy says.
MAX_NAME_LENGTH = 1024


@lru_cache(maxsize=4096)
def _compile_glob(pattern: str) -> tuple[tuple[str, ...], bool, bool]:
    """Split a lower-cased glob on ``*``: (literal segments, leading star, trailing star)."""
    lowered = fold_case(pattern)
    return tuple(lowered.split("*")), lowered.startswith("*"), lowered.endswith("*")


def _segment_at(segment: str, text: str, start: int) -> bool:
    """``segment`` (``?`` = any one character) matches ``text`` exactly at ``start``."""
    if "?" not in segment:
        # Most segments are literal: one C comparison instead of a Python loop per character.
        return text.startswith(segment, start)
    if start + len(segment) > len(text):
        return False
    return all(p == "?" or p == t for p, t in zip(segment, text[start:], strict=False))


def _find_segment(segment: str, text: str, start: int, end: int) -> int:
    """Leftmost index >= ``start`` where ``segment`` matches inside ``text[:end]``, or -1."""
    if "?" not in segment:
        return text.find(segment, start, end)
    for index in range(start, end - len(segment) + 1):
        if _segment_at(segment, text, index):
            return index
    return -1


def glob_match(pattern: str, value: str) -> bool:
    """Athenz glob: ``*`` any run, ``?`` one character, anchored at both ends, case-insensitive.

    No regular expressions: a policy such as ``x:*a*a*a*a*b`` made a backtracking regex take
    seconds on a 150-character request. Here the pattern is split on ``*`` and each literal
    segment is placed at its leftmost possible position (greedy leftmost placement is exact for
    globs without character classes), so the cost is at most len(pattern) x len(value).
    """
    if len(pattern) > MAX_NAME_LENGTH or len(value) > MAX_NAME_LENGTH:
        return False
    segments, _, _ = _compile_glob(pattern)
    text = fold_case(value)
    if len(segments) == 1:  # no star: same length, every position matches
        only = segments[0]
        return len(only) == len(text) and _segment_at(only, text, 0)
    first, last = segments[0], segments[-1]
    if len(first) + len(last) > len(text):
        return False
    if not _segment_at(first, text, 0) or not _segment_at(last, text, len(text) - len(last)):
        return False
    position, end = len(first), len(text) - len(last)
    for segment in segments[1:-1]:
        if not segment:
            continue
        found = _find_segment(segment, text, position, end)
        if found < 0:
            return False
        position = found + len(segment)
    return True


def member_matches(member: str, principal: str) -> bool:
    """Athenz role members may be ``*``, ``prefix*`` or an exact name (case-insensitive)."""
    if member.endswith("*"):
        return fold_case(principal).startswith(fold_case(member[:-1]))
    return fold_case(member) == fold_case(principal)


def _matches(assertion: Assertion, roles: Sequence[str], action: str, resource: str) -> bool:
    if not glob_match(assertion.action, action):
        return False
    if not glob_match(assertion.resource, resource):
        return False
    return any(glob_match(assertion.role, role) for role in roles)


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
