"""Athenz name rules (reference/athenz.md §1), checked on every write; names are lower-cased."""

from __future__ import annotations

import re

from lab.oauth.errors import InvalidRequest

_SIMPLE = r"[a-z0-9_][a-z0-9_-]*"
DOMAIN_RE = re.compile(rf"{_SIMPLE}(\.{_SIMPLE})*")
SIMPLE_RE = re.compile(_SIMPLE)
#: A role member: ``domain.service``, ``user.name``, or a wildcard ``*`` / ``prefix*``.
MEMBER_RE = re.compile(rf"(\*|{_SIMPLE}(\.{_SIMPLE})+(\.\*|\*)?|{_SIMPLE}\.\*)")
PRINCIPAL_RE = re.compile(rf"{_SIMPLE}(\.{_SIMPLE})+")
#: Resources and actions are globs; keep them printable, no whitespace.
RESOURCE_RE = re.compile(r"[a-z0-9_.*?-]+:[\x21-\x7e]*")
ACTION_RE = re.compile(r"[a-z0-9_.*?:-]+")
ROLE_REF_RE = re.compile(r"[a-z0-9_.*?-]+:role\.[a-z0-9_*?.-]+")

MAX_NAME = 256


#: Anything but printable ASCII: Athenz names are ASCII, so a control character, a lone
#: surrogate or a look-alike (the Kelvin sign lower-cases to "k") is refused as sent, never
#: stripped or case-folded into an ASCII name.
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")


def _check(pattern: re.Pattern[str], value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise InvalidRequest(
            f"Invalid {what}: must be a non-empty string of at most {MAX_NAME} characters"
        )
    _printable_ascii(value, what)
    lowered = value.strip().lower()
    if not pattern.fullmatch(lowered):
        raise InvalidRequest(f"Invalid {what}: {value!r} does not match {pattern.pattern}")
    return lowered


def _printable_ascii(value: str, what: str) -> None:
    odd = _NOT_PRINTABLE_ASCII.search(value)
    if odd is not None:
        raise InvalidRequest(
            f"Invalid {what}: U+{ord(odd.group()):04X} at position {odd.start()} is not "
            "allowed (names are printable ASCII)"
        )


def domain_name(value: object) -> str:
    return _check(DOMAIN_RE, value, "domain name")


def simple_name(value: object, what: str) -> str:
    return _check(SIMPLE_RE, value, f"{what} name")


def member_name(value: object) -> str:
    return _check(MEMBER_RE, value, "member name")


def principal_name(value: object) -> str:
    return _check(PRINCIPAL_RE, value, "principal name")


def resource_name(value: object) -> str:
    return _check(RESOURCE_RE, value, "resource")


def action_name(value: object) -> str:
    return _check(ACTION_RE, value, "action")


def role_reference(value: object) -> str:
    return _check(ROLE_REF_RE, value, "role")


def short_entity(domain: str, value: object, kind: str) -> str:
    """Accept ``docs-getter`` or ``api:role.docs-getter`` (must be this domain) → short name."""
    if not isinstance(value, str):
        raise InvalidRequest(f"Invalid {kind} name: must be a string")
    _printable_ascii(value[: MAX_NAME + 1], f"{kind} name")
    text = value.strip().lower()
    prefix = f"{domain}:{kind}."
    if text.startswith(prefix):
        text = text[len(prefix) :]
    elif ":" in text:
        raise InvalidRequest(f"Invalid {kind} name: {value!r} does not belong to domain {domain}")
    return simple_name(text, kind)


def split_principal(principal: str) -> tuple[str, str]:
    """``mcp.api-mcp`` → (``mcp``, ``api-mcp``): the service is the last label."""
    domain, _, service = principal.rpartition(".")
    return domain, service
