"""The ``scope`` parameter's one reading (RFC 6749 §3.3), for the IdP and the PDP alike.

``scope = scope-token *( SP scope-token )`` and ``scope-token = 1*( %x21 / %x23-5B / %x5D-7E )``:
only the space separates, and a value is printable ASCII without ``"`` or ``\\``. Python's
``str.split()`` also splits on tab, line breaks, NBSP, U+3000 and the other Unicode spaces, so
``api:role.a\\u00a0mcp:role.b`` was read as two roles where Keycloak and Athenz (both split on
``" "``) read one malformed value; and a value's ``str.lower()`` folded the Kelvin sign onto
``k``, so ``api:role.\\u212aey`` named ``api:role.key``. Here anything outside the grammar is
refused before a value is lower-cased or compared. Runs of spaces are tolerated (clients join
lists carelessly; no value is lost or merged by them).

The IdP stands in for Keycloak, which reads a request's scope more narrowly
(:func:`keycloak_scope_values`): an empty value - a leading space, two spaces in a row, an
empty ``scope=`` - is an unknown scope there. ``tests/keycloak`` checks both against it.
"""

from __future__ import annotations

import re

SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


class ScopeSyntaxError(ValueError):
    """A scope value outside RFC 6749 §3.3's grammar; ``value`` is that value as sent."""

    def __init__(self, value: str) -> None:
        self.value = value
        odd = next((c for c in value if not SCOPE_TOKEN.fullmatch(c)), "")
        where = f" (U+{ord(odd):04X} is not allowed in a scope value)" if odd else ""
        super().__init__(f"invalid scope value {value[:80]!r}{where}")


def scope_values(text: str) -> list[str]:
    """The scope values of ``text`` in order, split on spaces only; raises
    :class:`ScopeSyntaxError` for the first value outside the grammar."""
    values = [value for value in text.split(" ") if value]
    for value in values:
        if not SCOPE_TOKEN.fullmatch(value):
            raise ScopeSyntaxError(value)
    return values


def keycloak_scope_values(text: str) -> list[str]:
    """A request's scope values as Keycloak 26 reads them, for the IdP standing in for it.

    Keycloak splits with Java's ``String.split(" ")`` (``TokenManager.parseScopeParameter``),
    which keeps every empty value but the trailing ones: ``"openid  profile"``, ``" openid"``
    and ``""`` each hold an empty value, an unknown scope (400 ``invalid_scope``), while
    ``"openid "`` and ``"   "`` do not. A value outside RFC 6749 §3.3 is refused as by
    :func:`scope_values`. (Keycloak drops control characters from a form's values, and refuses
    them in a query; here they are refused everywhere - docs/dev/contracts.md §5.)"""
    values = text.rstrip(" ").split(" ") if text.strip(" ") or not text else []
    for value in values:
        if not SCOPE_TOKEN.fullmatch(value):
            raise ScopeSyntaxError(value)
    return values
