"""The lab's admin credential: a short-lived JWT signed by ``user.athenz_admin``'s key.

ZMS writes and every component's ``/lab/*`` maintenance endpoints (state export/import,
settings) accept ``Authorization: Bearer <admin assertion>``. There is no shared static API
key: each call carries a fresh signature the server checks against the admin's public key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from lab.oauth.errors import InvalidToken, MissingToken
from lab.oauth.jose import (
    LEEWAY,
    TYP_JWT_HEADER,
    JwtValidationError,
    KeyResolver,
    SigningKey,
    make_client_assertion,
    verify_jwt,
)

ADMIN_ASSERTION_LIFETIME_S = 120
#: Longest principal assertion accepted (minutes, as Athenz and Keycloak bound assertions).
MAX_ASSERTION_LIFETIME_S = 300


def make_admin_assertion(principal: str, key: SigningKey, audience: str) -> str:
    """A principal's signed request credential for ``audience`` (a server's base URL)."""
    return make_client_assertion(principal, key, audience, lifetime_s=ADMIN_ASSERTION_LIFETIME_S)


def __getattr__(name: str) -> Any:
    """``AdminAssertionAuth`` moved to :mod:`lab.oauth.http`: commands that only sign an
    assertion (``lab reset``) no longer import httpx (issue #21)."""
    if name == "AdminAssertionAuth":
        from lab.oauth.http import AdminAssertionAuth

        return AdminAssertionAuth
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization") or headers.get("Authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


#: ``use(jti, exp)`` records a jti; False when it was seen before (a replay).
SingleUse = Callable[[str, int], bool]


class ReplayCache:
    """In-memory single-use jtis for a part without a store (document API, MCP server, IdP).

    Entries live until their ``exp`` (plus leeway); the cache is bounded, and when it is full of
    live entries new assertions are refused rather than memory growing without limit.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: dict[str, int] = {}
        self._max = max_entries
        self._lock = threading.Lock()

    def use(self, jti: str, exp: int) -> bool:
        now = time.time()
        with self._lock:
            if len(self._seen) >= self._max:
                self._seen = {k: v for k, v in self._seen.items() if v + LEEWAY >= now}
                if len(self._seen) >= self._max:
                    return False
            if jti in self._seen:
                return False
            self._seen[jti] = exp
            return True

    __call__ = use


def verify_principal_assertion(
    token: str | None,
    resolve_key: KeyResolver,
    audience: str,
    *,
    expected_principal: str | None = None,
    single_use: SingleUse | None = None,
) -> dict[str, Any]:
    """Check a principal-signed request JWT; returns its claims (``sub`` = principal).

    ``resolve_key`` is chosen by the caller from the claimed principal (unverified ``iss``),
    then the signature proves it. The assertion must be typed ``JWT`` (never an access token
    or ID-JAG), addressed to exactly ``audience`` (a ZTS-addressed assertion is not good at
    ZMS and vice versa), live at most :data:`MAX_ASSERTION_LIFETIME_S`, and — with
    ``single_use`` — carry a ``jti`` never seen before (RFC 7523 §3 item 7).
    Raises :class:`MissingToken` / :class:`InvalidToken`.
    """
    if token is None:
        raise MissingToken("this endpoint needs a signed principal assertion as a Bearer token")
    try:
        claims = verify_jwt(
            token,
            resolve_key,
            typ=(TYP_JWT_HEADER, None),
            audience=audience,
            required=("exp", "iat", "iss", "sub", "jti"),
            max_lifetime=MAX_ASSERTION_LIFETIME_S,
        )
    except JwtValidationError as exc:
        raise InvalidToken(exc.reason) from None
    aud = claims.get("aud")
    if aud != audience and aud != [audience]:
        raise InvalidToken("assertion must be addressed to exactly this server")
    if claims.get("iss") != claims.get("sub"):
        raise InvalidToken("assertion iss and sub must both name the calling principal")
    if expected_principal is not None and claims["sub"] != expected_principal:
        raise InvalidToken(f"only {expected_principal} may call this endpoint")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 128:
        raise InvalidToken("assertion jti must be a string of at most 128 characters")
    if single_use is not None and not single_use(f"assertion:{claims['sub']}:{jti}", claims["exp"]):
        raise InvalidToken("assertion has already been used")
    return claims
