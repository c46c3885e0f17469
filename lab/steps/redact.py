"""Secrets never reach the terminal or a report: every known secret value becomes ``***``.

The run collects secrets as it meets them (captures marked ``redact: true``, the realm's client
secret, passwords, client secrets, private keys, the assertions the engine signs) and passes
every string it shows through :func:`redact_text`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

REDACTED = "***"
#: Field names whose values are secrets wherever they appear (form fields, JSON keys, results).
SECRET_FIELDS = frozenset(
    {
        "password",
        "client_secret",
        "clientsecret",
        "client_assertion",
        "assertion",
        "private_key",
        "code_verifier",
    }
)
_MIN_SECRET_LEN = 4  # never blank out short common strings such as "a"
#: Credentials typed into a step (not captured with ``redact: true``) are replaced everywhere only
#: when they are long enough to be high-entropy; shorter ones are masked by field name.
MIN_GLOBAL_SECRET = 16
#: The lab users' published password (realm file, tutorial). Blanking the word "password"
#: everywhere would garble the narrative, so it is masked by field name only.
PUBLIC_PASSWORDS = frozenset({"password"})


def password_secrets(values: Iterable[str]) -> set[str]:
    """Passwords to blank out everywhere: any but the lab's published one."""
    return {v for v in values if v and v not in PUBLIC_PASSWORDS}


def redact_text(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(
        {s for s in secrets if s and len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True
    ):
        text = text.replace(secret, REDACTED)
    return text


def redact_value(value: Any, secrets: Iterable[str]) -> Any:
    """A copy of a JSON-like value with secret fields and known secret strings replaced."""
    secrets = set(secrets)
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, list | tuple):
        return [redact_value(item, secrets) for item in value]
    if isinstance(value, dict):
        return {
            key: REDACTED
            if str(key).lower() in SECRET_FIELDS and value[key]
            else redact_value(item, secrets)
            for key, item in value.items()
        }
    return value
