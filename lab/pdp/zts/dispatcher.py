"""The token endpoint: authenticate the client, pick the grant, audit every decision."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.concurrency import run_in_threadpool

from lab.oauth.errors import InvalidRequest, OAuthError, UnsupportedGrantType
from lab.pdp.audit import AuditEvent
from lab.pdp.client_auth import REPLAYED_CLIENT_ASSERTION, authenticate_client, refuse_client
from lab.pdp.core import Pdp
from lab.pdp.store import PendingAppend, ReplayDetected
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

#: What a worker hands the event loop: the request, its answer, and its queued audit record
#: (``None`` when a refusal was over the audit rate).
Settled = tuple[TokenRequest, GrantResult | OAuthError, PendingAppend | None]


def replay_error(jti_key: str) -> OAuthError:
    """A jti used by a concurrent request between our check and our commit."""
    if jti_key.startswith("client:"):
        return refuse_client(REPLAYED_CLIENT_ASSERTION)
    return invalid_assertion(REPLAYED_ASSERTION)


class TokenEndpoint:
    def __init__(self, pdp: Pdp) -> None:
        self.pdp = pdp
        self.grants = {cls.grant_type: cls(pdp) for cls in GRANT_CLASSES}
        self._workers: ThreadPoolExecutor | None = None
        self._workers_lock = threading.Lock()

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
        """:meth:`handle` for the route, with the same decisions, records and order.

        A worker thread decides and queues the audit record; the committer wakes the event
        loop once the record is durable (one fsync per batch). The loop hands a request to a
        thread once and hears back once: the worker never reports to the loop only to have it
        queue the record, and a worker is busy only while there is work (the wait for the
        commit is on the loop, so more requests than workers can wait for one commit)."""
        loop = asyncio.get_running_loop()
        settled: asyncio.Future[Settled] = loop.create_future()
        self._pool().submit(self._work, form, headers, loop, settled)
        request, outcome, pending = await settled
        if pending is None:
            self._log(request, None)  # a refusal over the audit rate: answered, not recorded
            if isinstance(outcome, OAuthError):
                raise outcome
            raise RuntimeError("an allowed token request was not recorded")  # allows always are
        try:
            record = pending.result()
        except ReplayDetected as replayed:
            # A jti used by a concurrent request between the grant and the commit: refused as
            # the replay it is, after the same look-up a refusal gets.
            answer = await run_in_threadpool(
                self._replay_first, request, replay_error(replayed.jti)
            )
            request.single_use.clear()
            self._log(request, await self.pdp.audit.record_async(self._deny(request, answer)))
            raise answer from None
        self._log(request, record)
        if isinstance(outcome, GrantResult):
            return self._answer(request, outcome)
        raise outcome

    def _pool(self) -> ThreadPoolExecutor:
        if self._workers is None:
            with self._workers_lock:
                if self._workers is None:
                    self._workers = ThreadPoolExecutor(WORKER_THREADS, "token-worker")
        return self._workers

    def _work(
        self,
        form: dict[str, str],
        headers: Mapping[str, str],
        loop: asyncio.AbstractEventLoop,
        settled: asyncio.Future[Settled],
    ) -> None:
        """In a worker thread: decide, queue the audit record, and let the committer settle
        ``settled`` on ``loop`` once it is durable (or settle it here when nothing is queued)."""

        def reply(value: Settled) -> None:
            # The loop may be gone (its request cancelled, a test's loop closed): nothing to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, settled, value)

        try:
            request, outcome = self.decide(form, headers)
            if isinstance(outcome, GrantResult):
                # The allow record and the single-use jtis commit together, before the token
                # leaves: a crash can never hand out a token whose assertion is still unused.
                event = self._allow(request)
            else:
                if request.single_use:
                    outcome = self._replay_first(request, outcome)
                request.single_use.clear()
                event = self._deny(request, outcome)
            answer = outcome

            def committed(pending: PendingAppend) -> None:
                reply((request, answer, pending))

            if self.pdp.audit.submit(event, committed) is None:
                reply((request, answer, None))
        except BaseException as exc:  # noqa: BLE001 - the loop raises it in the request's task
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_fail, settled, exc)

    def decide(
        self, form: dict[str, str], headers: Mapping[str, str]
    ) -> tuple[TokenRequest, GrantResult | OAuthError]:
        """Authenticate the client and run the grant: the token to hand out once its allow
        record is durable, or the refusal to record and answer. Nothing is written here."""
        correlation_id = headers.get("x-correlation-id", "")[:64] or uuid.uuid4().hex[:16]
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


def _resolve(future: asyncio.Future[Settled], value: Settled) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Settled], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
