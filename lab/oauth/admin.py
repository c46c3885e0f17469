"""The lab's admin credential: a short-lived JWT signed by ``user.athenz_admin``'s key.

ZMS writes and every component's ``/lab/*`` maintenance endpoints (state export/import,
settings) accept ``Authorization: Bearer <admin assertion>``. There is no shared static API
key: each call carries a fresh signature the server checks against the admin's public key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lab.oauth.errors import InvalidToken, MissingToken
from lab.oauth.jose import (
    JwtValidationError,
    KeyResolver,
    SigningKey,
    make_client_assertion,
    verify_jwt,
)

ADMIN_ASSERTION_LIFETIME_S = 120


def make_admin_assertion(principal: str, key: SigningKey, audience: str) -> str:
    """A principal's signed request credential for ``audience`` (a server's base URL)."""
    return make_client_assertion(principal, key, audience, lifetime_s=ADMIN_ASSERTION_LIFETIME_S)


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization") or headers.get("Authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def verify_principal_assertion(
    token: str | None,
    resolve_key: KeyResolver,
    audience: str | list[str],
    *,
    expected_principal: str | None = None,
) -> dict[str, Any]:
    """Check a principal-signed request JWT; returns its claims (``sub`` = principal).

    ``resolve_key`` is chosen by the caller from the claimed principal (unverified ``iss``),
    then the signature proves it. Raises :class:`MissingToken` / :class:`InvalidToken`.
    """
    if token is None:
        raise MissingToken("this endpoint needs a signed principal assertion as a Bearer token")
    try:
        claims = verify_jwt(
            token, resolve_key, audience=audience, required=("exp", "iat", "iss", "sub")
        )
    except JwtValidationError as exc:
        raise InvalidToken(exc.reason) from None
    if claims.get("iss") != claims.get("sub"):
        raise InvalidToken("assertion iss and sub must both name the calling principal")
    if expected_principal is not None and claims["sub"] != expected_principal:
        raise InvalidToken(f"only {expected_principal} may call this endpoint")
    return claims
