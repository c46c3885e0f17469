"""What the ui serves of a run: every token by fingerprint, claims and verdict, never whole.

A run model (``$LAB_HOME/runs/step-NN.json``, 0600) keeps the step's raw tokens so the terminal
and the signature check can use them; the browser page needs only their decoded form. A whole
token on a page is a bearer credential any script of that page, or a screenshot, carries away
(RFC 6750 §5.3: don't pass bearer tokens in page URLs or store them in cleartext). So the ui
drops the raw list after the signature check and blanks every JWT-shaped string (headers,
form and JSON bodies, commands, results) and every token-valued field the record still holds.
"""

from __future__ import annotations

import re
from typing import Any

from lab.steps.redact import REDACTED

#: A compact JWS/JWT (RFC 7515 §7.1): base64url JSON header, payload, signature (maybe empty).
JWT_SHAPED = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
#: Fields whose values are tokens or credentials whatever their shape (opaque ones too).
TOKEN_FIELDS = frozenset(
    {
        "access_token",
        "id_token",
        "refresh_token",
        "subject_token",
        "actor_token",
        "assertion",
        "client_assertion",
        "client_secret",
        "code_verifier",
        "token",
    }
)


def redact_run(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (already annotated with signature verdicts) fit for the page."""
    kept = {key: value for key, value in record.items() if key != "tokens"}
    redacted = _redact(kept)
    assert isinstance(redacted, dict)
    return redacted


def _redact(value: Any, field: str | None = None) -> Any:
    if isinstance(value, dict):
        return {key: _redact(item, str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item, field) for item in value]
    if isinstance(value, str):
        if field is not None and field.lower() in TOKEN_FIELDS and value:
            return REDACTED
        return JWT_SHAPED.sub(REDACTED, value)
    return value
