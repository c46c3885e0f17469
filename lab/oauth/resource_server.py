"""What a resource server needs from the PDP: access-token checks and local policy decisions.

The document API and the MCP server both accept PDP access tokens (RFC 9068) and decide access
locally from the PDP's signed policy data, the way Athenz's ZPE library does: no call to the
PDP per request, only a cached, signature-checked copy of the domain's policies that is
refreshed often enough for a revoked grant to stop working within ``refresh_s`` seconds.

Everything here is synchronous (the JWKS cache is); async servers call it through a thread so
that an embedded PDP served by the same event loop can answer the fetches.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.to_thread

from lab.oauth.admin import ReplayCache
from lab.oauth.errors import InvalidToken, OAuthError
from lab.oauth.jose import (
    JwksCache,
    JwtValidationError,
    KeyResolver,
    VerifiedTokens,
    token_fingerprint,
    verify_jwt,
)
from lab.oauth.tokens import TYP_ACCESS_TOKEN

if TYPE_CHECKING:
    import httpx

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
    cache: VerifiedTokens | None = None,
) -> dict[str, Any]:
    """Check a PDP access token; return its claims or raise :class:`InvalidToken`.

    RFC 9068 §4: the header ``typ`` must be ``at+jwt`` (so an ID token or ID-JAG cannot be used
    as an access token), ``iss`` must be the PDP, ``aud`` must name this resource server, and
    the token must be signed by a key in the PDP's JWKS and not expired. ``cache``: a token
    that passed these checks before is answered from it while it holds (see
    :class:`~lab.oauth.jose.VerifiedTokens`).
    """
    try:
        return verify_jwt(
            token,
            jwks,
            typ=TYP_ACCESS_TOKEN,
            issuer=issuer,
            audience=audience,
            required=("exp", "iat", "iss", "sub", "aud"),
            cache=cache,
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


class LocalPolicy(Protocol):
    """A verified policy document (``lab.policy.signed.PolicyData`` is one).

    The resource server does not import the policy engine (it sits below it); the part that
    builds the server hands in the verifier, and the verified document brings its own decision.
    """

    @property
    def expires_at(self) -> float | None: ...

    def roles_of(self, principal: str) -> set[str]: ...

    def decide(
        self, roles: Iterable[str], action: str, resource: str, actor_roles: Iterable[str]
    ) -> Any: ...


#: ``verify(document, key_resolver)`` → the verified policy; raises on a bad document.
PolicyVerifier = Callable[[Any, KeyResolver], LocalPolicy]


@dataclass(frozen=True)
class _Cached:
    policy: LocalPolicy | None
    etag: str | None
    fetched_at: float  # time.monotonic() of the fetch (or the 304 that confirmed the copy)
    #: When the request that fetched (or confirmed) this copy was *sent*, on the wall clock,
    #: reported by :meth:`PolicyCache.held`: a step that changed the policy at time T waits
    #: until a resource server's copy was fetched after T. The send time, not the answer's:
    #: a request sent before T may be answered after T with the policy as it was before.
    fetched_wall: float = field(default_factory=time.time)

    def usable(self, wall_now: float) -> bool:
        """Signed policy data past its ``expires`` is never used (Athenz ZPE refuses it too)."""
        expires_at = self.policy.expires_at if self.policy is not None else None
        return expires_at is None or expires_at > wall_now


class PolicyCache:
    """The PDP's signed policy data for one domain, verified and refreshed when stale.

    ``refresh_s`` bounds how long a revoked grant keeps working. Refreshes send
    ``If-None-Match`` so an unchanged policy costs a 304.

    No lock is ever held across the network call. One caller at a time refreshes
    (single-flight); every other caller gets the last good copy at once, so a slow or busy
    PDP cannot pile up the server's worker threads behind it (the wedge under load: 39 of 40
    threads waited on a lock while the 40th waited for a PDP that needed a free thread).
    Only when no usable copy exists (first use, or the copy expired) does a caller wait, and
    then with a deadline, never on a lock.

    :meth:`revalidate_async` is the on-demand form (``Cache-Control: max-age=0`` on
    ``/healthz/policy``): one conditional fetch now instead of at the next refresh, so a step
    that just changed the policy waits one round trip. Any caller can ask, so it is bounded:
    callers that ask while a fetch is in flight share that fetch, and at most one on-demand
    fetch starts per ``revalidate_min_s``; a caller inside that window gets the copy the last
    one brought. The PDP sees at most ``1 / revalidate_min_s`` extra conditional requests per
    second from a server, whatever the number of callers.
    """

    def __init__(
        self,
        zts: str,
        domain: str,
        jwks: JwksCache,
        *,
        verify: PolicyVerifier,
        refresh_s: float,
        timeout_s: float = 5.0,
        revalidate_min_s: float = 0.1,
    ) -> None:
        self.url = f"{zts}/domain/{domain}/signed_policy_data"
        self.domain = domain
        self._jwks = jwks
        self._verify = verify
        self._refresh_s = refresh_s
        self._timeout = timeout_s
        self._cached: _Cached | None = None
        self._refreshing = threading.Lock()  # taken without blocking: the single-flight flag
        self._last_error: str | None = None
        #: Fetches finished (written only by the holder of ``_refreshing``): a caller sharing
        #: a fetch in flight waits until this moves past the value it saw.
        self._fetches_done = 0
        self._revalidate_min_s = revalidate_min_s
        self._revalidation_started = float("-inf")  # time.monotonic() of the last on-demand one
        self._revalidation_gate = threading.Lock()  # held for two assignments, never over I/O
        #: The client every fetch uses, built by the first (only the holder of ``_refreshing``
        #: fetches, so one at a time): see :meth:`_http`.
        self._client: httpx.Client | None = None

    # ------------------------------------------------------------------ readers
    def _fresh(self, cached: _Cached | None) -> bool:
        return (
            cached is not None
            and time.monotonic() - cached.fetched_at < self._refresh_s
            and cached.usable(time.time())
        )

    def current(self) -> LocalPolicy | None:
        """The verified policy; ``None`` if there is no such domain. Blocking (thread) form."""
        cached = self._cached
        if self._fresh(cached):
            return cached.policy if cached is not None else None
        deadline = time.monotonic() + self._timeout
        while True:
            outcome = self._try_refresh()
            if outcome is not None:
                return outcome.policy
            time.sleep(0.01)
            if time.monotonic() > deadline:
                raise PolicyUnavailable(self._unavailable())

    async def current_async(self) -> LocalPolicy | None:
        """As :meth:`current`, for async servers: the fetch runs in a worker thread and a
        caller waiting for a first copy sleeps on the event loop, holding no worker thread."""
        cached = self._cached
        if self._fresh(cached):
            return cached.policy if cached is not None else None
        deadline = time.monotonic() + self._timeout
        while True:
            outcome = await anyio.to_thread.run_sync(self._try_refresh)
            if outcome is not None:
                return outcome.policy
            await anyio.sleep(0.01)
            if time.monotonic() > deadline:
                raise PolicyUnavailable(self._unavailable())

    def _try_refresh(self) -> _Cached | None:
        """Refresh if nobody else is; return what a caller may use now (None: wait and retry)."""
        cached = self._cached
        usable = cached if cached is not None and cached.usable(time.time()) else None
        if not self._refreshing.acquire(blocking=False):
            return usable  # someone else refreshes: serve the last good copy meanwhile
        try:
            if self._fresh(self._cached):  # refreshed while we were getting here
                return self._cached
            return self._fetch_holding_flag(usable)
        finally:
            self._fetches_done += 1
            self._refreshing.release()

    def _fetch_holding_flag(self, usable: _Cached | None) -> _Cached:
        """The fetch itself; the caller holds the single-flight flag (not a lock anyone waits
        on: every other caller tests it without blocking)."""
        try:
            self._cached = self._fetch(self._cached)
            self._last_error = None
            return self._cached
        except PolicyUnavailable as exc:
            self._last_error = exc.description
            if usable is not None:
                log.warning("policy refresh failed, serving the last good copy: %s", exc)
                return usable
            raise

    # ------------------------------------------------------------------ on demand
    async def revalidate_async(self) -> LocalPolicy | None:
        """Ask the PDP now whether the copy is current (a conditional fetch: 304 if it is),
        then answer as :meth:`current_async` does. Shared and rate-bounded, see the class."""
        seen = self._fetches_done
        if (
            not self._refreshing.locked()
            and self._claim_revalidation()
            and await anyio.to_thread.run_sync(self._revalidate)
        ):
            return await self._held_copy()
        # A fetch is in flight (ours lost the race to it, or it was there first): share it.
        # Waiting sleeps on the event loop and holds no worker thread and no lock.
        deadline = time.monotonic() + self._timeout
        while self._refreshing.locked() and self._fetches_done == seen:
            if time.monotonic() > deadline:
                break
            await anyio.sleep(0.005)
        return await self._held_copy()

    async def _held_copy(self) -> LocalPolicy | None:
        """The copy just fetched or confirmed (or the last one's, inside the rate bound); only
        without a usable copy does this fall back to the ordinary path, which may fetch."""
        cached = self._cached
        if cached is not None and cached.usable(time.time()):
            return cached.policy
        return await self.current_async()

    def _claim_revalidation(self) -> bool:
        """True for at most one caller per ``revalidate_min_s``: that caller fetches."""
        now = time.monotonic()
        with self._revalidation_gate:
            if now - self._revalidation_started < self._revalidate_min_s:
                return False
            self._revalidation_started = now
            return True

    def _revalidate(self) -> bool:
        """One conditional fetch now, fresh or not; False if another fetch was in flight."""
        cached = self._cached
        usable = cached if cached is not None and cached.usable(time.time()) else None
        if not self._refreshing.acquire(blocking=False):
            return False
        try:
            # A failure is recorded in _last_error; _held_copy() answers for it.
            with contextlib.suppress(PolicyUnavailable):
                self._fetch_holding_flag(usable)
            return True
        finally:
            self._fetches_done += 1
            self._refreshing.release()

    def _unavailable(self) -> str:
        return self._last_error or "signed policy data is being fetched; try again"

    def held(self) -> dict[str, Any]:
        """Which signed policy data this server holds: the PDP's ETag of it (its version) and
        when it was fetched or last confirmed unchanged (a 304). Nothing is fetched here."""
        cached = self._cached
        return {
            "domain": self.domain,
            "version": cached.etag if cached is not None else None,
            "fetched_at": round(cached.fetched_wall, 6) if cached is not None else None,
            "age_s": (
                round(time.monotonic() - cached.fetched_at, 6) if cached is not None else None
            ),
            "refresh_s": self._refresh_s,
        }

    def health(self) -> tuple[bool, str]:
        """Whether a request could be decided now: a usable copy, or no failed fetch yet."""
        cached = self._cached
        if cached is not None and cached.usable(time.time()):
            return True, "policy data cached"
        if self._last_error is not None:
            return False, self._last_error
        return True, "policy data not fetched yet"

    # ------------------------------------------------------------------ the one network call
    def _http(self) -> httpx.Client:
        """One client, and one keep-alive connection to the PDP, for every refresh.

        A client per fetch meant, every ``refresh_s`` (0.5 s) and per resource server, building
        an ``httpx.Client`` and its pool, a TCP connect that the PDP's server accepted and set
        up, and a close on both sides: ~1.5 ms of the runtime's CPU for a 304 (issue #21). The
        pool is a :class:`~lab.oauth.http.KeptTransport` (a forked child gets its own); an idle
        connection is dropped after ``KEEPALIVE_EXPIRY_S``, before the server would drop it.
        """
        from lab.oauth import http as lab_http

        if self._client is None:
            self._client = lab_http.client(
                transport=lab_http.KeptTransport(), timeout=self._timeout
            )
        return self._client

    def _fetch(self, cached: _Cached | None) -> _Cached:
        # httpx loads with the first fetch, not with the server: not on `lab up`'s path.
        import httpx

        headers = {"If-None-Match": cached.etag} if cached is not None and cached.etag else {}
        sent = time.time()
        try:
            response = self._http().get(self.url, headers=headers)
        except httpx.HTTPError as exc:
            raise PolicyUnavailable(
                f"signed policy data could not be fetched from the PDP: {exc}"
            ) from None
        if response.status_code == 304 and cached is not None and cached.usable(time.time()):
            return _Cached(cached.policy, cached.etag, time.monotonic(), sent)
        if response.status_code == 404:
            # No such domain (yet): nothing is granted (decide_locally denies on None).
            return _Cached(policy=None, etag=None, fetched_at=time.monotonic(), fetched_wall=sent)
        if response.status_code != 200:
            raise PolicyUnavailable(
                f"the PDP answered {response.status_code} "
                f"for the signed policy data of {self.domain}"
            )
        try:
            policy = self._verify(response.json(), self._jwks)
        except Exception as exc:  # noqa: BLE001 - a bad document must never be used, nor crash
            raise PolicyUnavailable(f"signed policy data failed verification: {exc}") from None
        return _Cached(policy, response.headers.get("etag"), time.monotonic(), sent)


def asks_revalidation(cache_control: str | None) -> bool:
    """Whether a request's ``Cache-Control`` asks for a copy validated now: ``max-age=0`` or
    ``no-cache`` (RFC 9111 §5.2.1.1, §5.2.1.4). Other directives and malformed values: no."""
    for directive in (cache_control or "").split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name == "no-cache" or (name == "max-age" and value.strip().strip('"') == "0"):
            return True
    return False


async def policy_held(policy: PolicyCache, cache_control: str | None) -> dict[str, Any]:
    """``GET /healthz/policy``: the copy a server decides with, refreshed first when older than
    its refresh interval (as any request would) or, when the caller asks for it, revalidated
    now with the PDP (shared and rate-bounded: see :class:`PolicyCache`)."""
    if asks_revalidation(cache_control):
        await policy.revalidate_async()
    else:
        await policy.current_async()
    return policy.held()


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    effect: str
    reason: str


def decide_locally(
    policy: LocalPolicy | None,
    claims: Mapping[str, Any],
    *,
    domain: str,
    action: str,
    resource: str,
) -> AccessDecision:
    """Athenz ZPE-style check of ``action`` on ``resource`` for the token's roles.

    Fails closed: no policy document (no such domain) denies, whatever the token carries.
    """
    if policy is None:
        return AccessDecision(False, "NO_MATCH", f"domain {domain} has no policies")
    actor_roles: set[str] = set()
    for actor in actor_principals(claims):
        actor_roles.update(policy.roles_of(actor))
    decision = policy.decide(
        token_roles(claims, domain), action, resource, tuple(sorted(actor_roles))
    )
    allowed = decision.allowed is True and str(decision.effect) == "ALLOW"
    return AccessDecision(allowed, str(decision.effect), str(decision.reason))


#: Admin assertions seen by this process's document API and MCP server (single use).
_ADMIN_ASSERTIONS_SEEN = ReplayCache()


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
    return verify_principal_assertion(
        token,
        resolver,
        audience,
        expected_principal=ADMIN_PRINCIPAL,
        single_use=_ADMIN_ASSERTIONS_SEEN,
    )
