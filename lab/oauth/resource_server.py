"""What a resource server needs from the PDP: access-token checks and local policy decisions.

The document API and the MCP server both accept PDP access tokens (RFC 9068) and decide access
locally from the PDP's signed policy data, the way Athenz's ZPE library does: no call to the
PDP per request, only a cached, signature-checked copy of the domain's policies that is
refreshed often enough for a revoked grant to stop working within ``refresh_s`` seconds.

Everything here is synchronous (the JWKS cache is); async servers call it through a thread so
that an embedded PDP served by the same event loop can answer the fetches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from lab.oauth import http as lab_http
from lab.oauth.errors import InvalidToken, OAuthError
from lab.oauth.jose import JwksCache, JwtValidationError, token_fingerprint, verify_jwt
from lab.oauth.tokens import TYP_ACCESS_TOKEN

log = logging.getLogger("lab.oauth.resource_server")


class PolicyUnavailable(OAuthError):
    """The signed policy data could not be fetched or verified, and no good copy is cached."""

    error = "temporarily_unavailable"
    status = 503


def verify_access_token(
    token: str,
    jwks: JwksCache,
    *,
    issuer: str,
    audience: str | Iterable[str],
) -> dict[str, Any]:
    """Check a PDP access token; return its claims or raise :class:`InvalidToken`.

    RFC 9068 §4: the header ``typ`` must be ``at+jwt`` (so an ID token or ID-JAG cannot be used
    as an access token), ``iss`` must be the PDP, ``aud`` must name this resource server, and
    the token must be signed by a key in the PDP's JWKS and not expired.
    """
    try:
        return verify_jwt(
            token,
            jwks,
            typ=TYP_ACCESS_TOKEN,
            issuer=issuer,
            audience=audience,
            required=("exp", "iat", "iss", "sub", "aud"),
        )
    except JwtValidationError as exc:
        reason = exc.reason
        if "audience" in reason:
            # Say which audience is expected: this is how a token passthrough shows up (step 16).
            accepted = [audience] if isinstance(audience, str) else list(audience)
            reason = f"{reason} (accepted: {', '.join(accepted)})"
        log.info("access token %s refused: %s", token_fingerprint(token), reason)
        raise InvalidToken(reason) from None


def token_roles(claims: Mapping[str, Any], domain: str) -> list[str]:
    """Full role names a token carries: ``scp`` (or ``scope``) names → ``<domain>:role.<name>``."""
    raw = claims.get("scp")
    if not isinstance(raw, list):
        scope = claims.get("scope")
        raw = scope.split() if isinstance(scope, str) else []
    roles: list[str] = []
    for name in raw:
        if not isinstance(name, str) or not name:
            continue
        roles.append(name if ":role." in name else f"{domain}:role.{name}")
    return roles


def actor_principals(claims: Mapping[str, Any]) -> list[str]:
    """Principals acting for the subject: ``client_id`` and every ``act.sub`` (RFC 8693 §4.1).

    Their roles are matched against DENY assertions only (contracts §4), so an agent in the
    chain can be stopped even when the user may act directly.
    """
    subject = claims.get("sub")
    actors: list[str] = []
    client_id = claims.get("client_id")
    if isinstance(client_id, str) and client_id != subject:
        actors.append(client_id)
    act = claims.get("act")
    depth = 0
    while isinstance(act, Mapping) and depth < 10:
        actor = act.get("sub")
        if isinstance(actor, str) and actor != subject and actor not in actors:
            actors.append(actor)
        act = act.get("act")
        depth += 1
    return actors


def caller_summary(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The claims a learner needs to see who reached the API (never the token itself)."""
    return {key: claims.get(key) for key in ("sub", "client_id", "act", "aud", "scope", "jti")}


@dataclass
class _Cached:
    policy: Any
    etag: str | None
    fetched_at: float


class PolicyCache:
    """The PDP's signed policy data for one domain, verified and refreshed when stale.

    ``refresh_s`` bounds how long a revoked grant keeps working. Refreshes send
    ``If-None-Match`` so an unchanged policy costs a 304. Thread-safe.
    """

    def __init__(
        self,
        zts: str,
        domain: str,
        jwks: JwksCache,
        *,
        refresh_s: float,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = f"{zts}/domain/{domain}/signed_policy_data"
        self.domain = domain
        self._jwks = jwks
        self._refresh_s = refresh_s
        self._timeout = timeout_s
        self._cached: _Cached | None = None
        self._lock = threading.Lock()

    def current(self) -> Any:
        """The verified :class:`lab.policy.signed.PolicyData`; ``None`` if there is no domain."""
        with self._lock:
            cached = self._cached
            if cached is not None and time.monotonic() - cached.fetched_at < self._refresh_s:
                return cached.policy
            return self._fetch(cached)

    def _fetch(self, cached: _Cached | None) -> Any:
        from lab.policy.signed import verify_signed_policy_data

        headers = {"If-None-Match": cached.etag} if cached is not None and cached.etag else {}
        try:
            response = lab_http.get(self.url, headers=headers, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise PolicyUnavailable(
                f"signed policy data could not be fetched from the PDP: {exc}"
            ) from None
        if response.status_code == 304 and cached is not None:
            cached.fetched_at = time.monotonic()
            return cached.policy
        if response.status_code == 404:
            # No such domain (yet): nothing is granted.
            self._cached = _Cached(policy=None, etag=None, fetched_at=time.monotonic())
            return None
        if response.status_code != 200:
            raise PolicyUnavailable(
                f"the PDP answered {response.status_code} "
                f"for the signed policy data of {self.domain}"
            )
        try:
            policy = verify_signed_policy_data(response.json(), self._jwks)
        except Exception as exc:  # noqa: BLE001 - a bad document must never be used, nor crash
            raise PolicyUnavailable(f"signed policy data failed verification: {exc}") from None
        self._cached = _Cached(
            policy=policy, etag=response.headers.get("etag"), fetched_at=time.monotonic()
        )
        return policy


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    effect: str
    reason: str


def decide_locally(
    policy: Any,
    claims: Mapping[str, Any],
    *,
    domain: str,
    action: str,
    resource: str,
) -> AccessDecision:
    """Athenz ZPE-style check of ``action`` on ``resource`` for the token's roles."""
    from lab.policy.engine import decide

    if policy is None:
        return AccessDecision(False, "NO_MATCH", f"domain {domain} has no policies")
    actor_roles: set[str] = set()
    for actor in actor_principals(claims):
        actor_roles.update(policy.roles_of(actor))
    roles = token_roles(claims, domain)
    # Only assertions naming a held or acting role (or a role glob) can match: indexed.
    candidates = (
        policy.assertions_for([*roles, *actor_roles])
        if hasattr(policy, "assertions_for")
        else policy.assertions
    )
    decision = decide(
        candidates,
        roles=roles,
        action=action,
        resource=resource,
        actor_roles=tuple(sorted(actor_roles)),
    )
    return AccessDecision(bool(decision.allowed), str(decision.effect), str(decision.reason))


def verify_admin_request(
    headers: Mapping[str, str], admin_public_pem: Any, audience: str
) -> dict[str, Any]:
    """Check a ``/lab/*`` maintenance call: a ``user.athenz_admin`` assertion for ``audience``.

    ``admin_public_pem`` is the path of ``keys/user.athenz_admin.pub.pem`` (contracts §2).
    Raises :class:`MissingToken` / :class:`InvalidToken`, never anything else.
    """
    from pathlib import Path

    from lab.config import ADMIN_PRINCIPAL
    from lab.oauth.admin import bearer_token, verify_principal_assertion
    from lab.oauth.jose import key_id, load_public_key, static_key_resolver

    token = bearer_token(headers)
    path = Path(admin_public_pem)
    try:
        public = load_public_key(path.read_bytes())
    except (OSError, ValueError):
        if token is None:
            verify_principal_assertion(None, static_key_resolver({}), audience)
        raise InvalidToken(f"the admin public key {path.name} is not provisioned yet") from None
    resolver = static_key_resolver({key_id(public): public})
    return verify_principal_assertion(token, resolver, audience, expected_principal=ADMIN_PRINCIPAL)
