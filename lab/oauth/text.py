"""The one check of names and free text that a write API stores (document API, ZMS).

A stored value is shown again - in a terminal, a report, a browser, a log - so what may be
stored is bounded and printable: never NUL or another C0/C1 control character (a terminal
obeys them; NUL truncates C strings), never a lone UTF-16 surrogate (not a Unicode scalar
value: RFC 8259 §8.2 leaves its meaning undefined, and SQLite or UTF-8 encoding fails on it),
and a one-line name never a line separator or a bidirectional override (a name displayed
reversed, "Trojan Source", CVE-2021-42574). Free text keeps tab, line feed and carriage return.

Refusals are ``InvalidRequest`` (400) naming the field, the character (as ``U+XXXX``) and its
position, so the sender can find it.
"""

from __future__ import annotations

import re

from lab.oauth.errors import InvalidRequest

#: C0 and C1 controls, DEL, surrogates, line/paragraph separators, bidi embeddings/overrides and
#: isolates: refused in one-line names.
_NOT_IN_NAMES = re.compile(
    r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
#: The same less tab, line feed and carriage return: refused in free text.
_NOT_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def checked_text(
    value: object,
    field: str,
    *,
    max_chars: int,
    multiline: bool = False,
    required: bool = True,
) -> str:
    """``value`` if it is a string fit to store as ``field``; else 400 ``invalid_request``.

    ``multiline``: free text (tab and line breaks allowed); otherwise a one-line name.
    ``required``: an empty or all-blank value is refused.
    """
    if not isinstance(value, str):
        raise InvalidRequest(f"'{field}' must be a {'non-empty ' if required else ''}string")
    if len(value) > max_chars:
        raise InvalidRequest(f"'{field}' must be at most {max_chars} characters (got {len(value)})")
    if required and not value.strip():
        raise InvalidRequest(f"'{field}' must be a non-empty string")
    found = (_NOT_IN_TEXT if multiline else _NOT_IN_NAMES).search(value)
    if found is not None:
        kind = "free text" if multiline else "a one-line name"
        raise InvalidRequest(
            f"'{field}' contains U+{ord(found.group()):04X} at position {found.start()}: "
            f"control characters, lone surrogates"
            f"{'' if multiline else ', line separators and bidirectional overrides'}"
            f" are not allowed in {kind}"
        )
    return value


#: Longest correlation id kept (what the PDP's audit record holds).
MAX_CORRELATION_ID = 64
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def correlation_label(value: str | None) -> str | None:
    """A caller's ``X-Correlation-Id`` if it is a plain label - ASCII letters, digits and
    ``-_.:``, at most 64 characters - else None. It is a label, never a credential, and it is
    written to the audit trail and echoed in a header, so nothing else is kept (a latin-1
    ``\\x9b`` is a terminal's CSI)."""
    if not value:
        return None
    value = value.strip()[:MAX_CORRELATION_ID]
    return value if value and _LABEL_CHARS.issuperset(value) else None
