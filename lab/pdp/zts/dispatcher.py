"""The token endpoint: authenticate the client, pick the grant, audit every decision."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.to_thread

from lab import nonblocking
from lab.oauth.errors import InvalidRequest, OAuthError, UnsupportedGrantType
from lab.oauth.text import correlation_label
from lab.pdp.audit import AuditEvent
from lab.pdp.client_auth import REPLAYED_CLIENT_ASSERTION, authenticate_client, refuse_client
from lab.pdp.core import Pdp
from lab.pdp.store import ReplayDetected
from lab.pdp.zts.grants.base import Grant, GrantResult, TokenRequest
from lab.pdp.zts.grants.client_credentials import ClientCredentialsGrant
from lab.pdp.zts.grants.jwt_bearer import REPLAYED_ASSERTION, JwtBearerGrant, invalid_assertion
from lab.pdp.zts.grants.token_exchange import TokenExchangeGrant

log = logging.getLogger("lab.pdp")

GRANT_CLASSES: tuple[type[Grant], ...] = (
    ClientCredentialsGrant,
    TokenExchangeGrant,
    JwtBearerGrant,
)


#: Worker threads running token requests' CPU work at once (the GIL runs one anyway; more
#: threads only add GIL hand-offs and context switches). The wait for the commit is not on them.
WORKER_THREADS = 4
#: Threads that wait on the network for a request before it runs again in a worker: a trusted
#: provider's JWKS fetched (WouldBlock.prepare). Apart from the workers, so a provider whose
#: JWKS endpoint hangs holds none of the threads every client's token request needs.
KEY_FETCH_THREADS = 16


def replay_error(jti_key: str) -> OAuthError:
    """A jti used by a concurrent request between our check and our commit."""
    if jti_key.startswith("client:"):
        return refuse_client(REPLAYED_CLIENT_ASSERTION)
    return invalid_assertion(REPLAYED_ASSERTION)


class TokenEndpoint:
    def __init__(self, pdp: Pdp) -> None:
        self.pdp = pdp
        self.grants = {cls.grant_type: cls(pdp) for cls in GRANT_CLASSES}
        self._limiter: anyio.CapacityLimiter | None = None
        self._key_limiter: anyio.CapacityLimiter | None = None

    def handle(self, form: dict[str, str], headers: Mapping[str, str]) -> GrantResult:
        request, outcome = self.decide(form, headers)
        if isinstance(outcome, GrantResult):
            try:
                # The allow record and the single-use jtis commit together, before the token
                # leaves: a crash can never hand out a token whose assertion is still unused.
                self._log(request, self.pdp.audit.record(self._allow(request)))
                return self._answer(request, outcome)
            except ReplayDetected as replayed:
                outcome = replay_error(replayed.jti)
        answer = self._replay_first(request, outcome)
        request.single_use.clear()
        self._log(request, self.pdp.audit.record(self._deny(request, answer)))
        raise answer

    async def handle_async(self, form: dict[str, str], headers: Mapping[str, str]) -> GrantResult:
        """:meth:`handle` for the route. The decision runs on the event loop when it needs no
        I/O (every key held, every policy view and index cached: the usual case), else in a
        worker thread; the wait for the audit record's commit (an fsync, shared by a batch) is
        on the loop. A request held in memory thus goes loop → committer → loop, with no
        worker thread's hand-offs. The same decisions, records and order as :meth:`handle`."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(WORKER_THREADS)
        try:
            # A JWKS fetch (served by this very loop in the embedded runtime) or a SQLite read
            # (a view rebuilt after a write, a client secret) is WouldBlock, raised before it
            # happens and before any outcome: decide only reads until then, so it runs again.
            with nonblocking.forbidden():
                request, outcome = self.decide(form, headers)
        except nonblocking.WouldBlock as blocked:
            request, outcome = await self._decide_in_workers(form, headers, blocked)
        if isinstance(outcome, GrantResult):
            try:
                self._log(request, await self.pdp.audit.record_async(self._allow(request)))
                return self._answer(request, outcome)
            except ReplayDetected as replayed:
                outcome = replay_error(replayed.jti)
        answer = outcome
        if request.single_use:
            answer = await anyio.to_thread.run_sync(
                self._replay_first, request, outcome, limiter=self._limiter
            )
        request.single_use.clear()
        self._log(request, await self.pdp.audit.record_async(self._deny(request, answer)))
        raise answer

    async def _decide_in_workers(
        self, form: dict[str, str], headers: Mapping[str, str], blocked: nonblocking.WouldBlock
    ) -> tuple[TokenRequest, GrantResult | OAuthError]:
        """:meth:`decide` on a worker, never waiting there on the network: a JWKS fetch it
        meets (``WouldBlock.prepare``) runs first on threads of its own, then decide again.
        Fetched inside decide, a trusted provider's hung JWKS held a worker for the fetch's
        timeout: four such requests held all four, and every other client's token request
        that needed a worker waited behind them. A fetch's failure is decide's to name."""
        for _ in range(2):
            if blocked.prepare is not None:
                if self._key_limiter is None:
                    self._key_limiter = anyio.CapacityLimiter(KEY_FETCH_THREADS)
                with contextlib.suppress(Exception):
                    await anyio.to_thread.run_sync(blocked.prepare, limiter=self._key_limiter)
            try:
                return await anyio.to_thread.run_sync(
                    self._decide_off_the_network, form, headers, limiter=self._limiter
                )
            except nonblocking.WouldBlock as again:
                blocked = again
        # Keys that a fetch just made could not hold (rotated again?): as before, on a worker.
        return await anyio.to_thread.run_sync(self.decide, form, headers, limiter=self._limiter)

    def _decide_off_the_network(
        self, form: dict[str, str], headers: Mapping[str, str]
    ) -> tuple[TokenRequest, GrantResult | OAuthError]:
        with nonblocking.forbidden(preparable_only=True):
            return self.decide(form, headers)

    def decide(
        self, form: dict[str, str], headers: Mapping[str, str]
    ) -> tuple[TokenRequest, GrantResult | OAuthError]:
        """Authenticate the client and run the grant: the token to hand out once its allow
        record is durable, or the refusal to record and answer. Nothing is written here."""
        # A caller's id that is no plain label is replaced, never stored or echoed as sent.
        # 16 hex characters from the OS's CSPRNG, as uuid4().hex[:16] gave, without building a
        # UUID object (3.6 against 0.9 µs).
        correlation_id = correlation_label(headers.get("x-correlation-id")) or os.urandom(8).hex()
        request = TokenRequest(form=form, client="", correlation_id=correlation_id)
        try:
            grant = self._grant_for(form)
            request.action = f"token:{grant.grant_type.rsplit(':', 1)[-1]}"
            request.client = authenticate_client(self.pdp, form, headers, request.single_use)
            validated = grant.validate(request)
            return request, grant.issue(request, validated)
        except OAuthError as refused:
            return request, refused

    @staticmethod
    def _answer(request: TokenRequest, result: GrantResult) -> GrantResult:
        result.headers["X-Correlation-Id"] = request.correlation_id
        return result

    def _replay_first(self, request: TokenRequest, refused: OAuthError) -> OAuthError:
        """A used jti is refused as a replay whatever else is wrong with the request.

        Single-use jtis are not read before the grant runs (one SQLite read per request saved):
        the insert with the allow record refuses a used one. When the grant refuses first, the
        jtis are looked up now, so a replayed client assertion is still answered
        ``invalid_client`` and never learns what the grant would have decided.
        """
        for jti_key, _ in request.single_use:
            if self.pdp.store.jti_seen(jti_key):
                return replay_error(jti_key)
        return refused

    def _grant_for(self, form: Mapping[str, Any]) -> Grant:
        grant_type = form.get("grant_type")
        if not grant_type:
            raise InvalidRequest(
                "missing required parameter grant_type",
                athenz_message="Invalid request: no grant type provided",
            )
        grant = self.grants.get(grant_type)
        if grant is None:
            raise UnsupportedGrantType(
                f"unsupported grant_type {grant_type}",
                athenz_message=f"Invalid grant request: {grant_type}",
            )
        return grant

    @staticmethod
    def _allow(request: TokenRequest) -> AuditEvent:
        return TokenEndpoint._event(request, True, request.reason or "granted")

    @staticmethod
    def _deny(request: TokenRequest, answer: OAuthError) -> AuditEvent:
        return TokenEndpoint._event(request, False, f"{answer.error}: {answer.athenz_message}")

    @staticmethod
    def _event(request: TokenRequest, allowed: bool, reason: str) -> AuditEvent:
        return AuditEvent(
            correlation_id=request.correlation_id,
            client=request.client or None,
            subject=request.subject,
            resource=request.resource,
            action=request.action,
            allowed=allowed,
            reason=reason,
            jti=request.jti,
            single_use=request.single_use,
            # An unauthenticated request, or a refused one of an authenticated client, adds
            # records at a bounded rate (lab.pdp.audit); an allowed one always does.
            authenticated=bool(request.client),
        )

    @staticmethod
    def _log(request: TokenRequest, record: dict[str, Any] | None) -> None:
        if record is None:
            log.info("token deny client=%s (over the audit rate)", request.client or "-")
            return
        log.info(
            "token %s client=%s subject=%s jti=%s seq=%s",
            record["decision"],
            request.client or "-",
            request.subject or "-",
            request.jti or "-",
            record["seq"],
        )
