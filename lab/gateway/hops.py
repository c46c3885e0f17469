"""Every hop the gateway makes, logged with token fingerprints — never a whole token.

The agent's :class:`~lab.agent.recorder.Recorder` already sees each HTTP exchange with its
tokens set aside; this module turns each new exchange into one log line: which hop, the status,
the correlation id the PDP writes into its audit records, and for each token sent or received its
``jti`` (when it is a JWT) and the first 12 hex characters of its SHA-256 (``token_fingerprint``).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lab.agent.recorder import Exchange, Recorder
from lab.oauth.jose import token_fingerprint, unverified_claims

log = logging.getLogger("lab.gateway")

MAX_HOPS_KEPT = 500

#: Which token a recorded ``where`` is, in words a learner reads in the log.
_TOKEN_NAMES = {
    "request.form.subject_token": "ID token",
    "request.form.assertion": "ID-JAG",
    "request.form.client_assertion": "client assertion",
    "request.header.authorization": "access token",
    "response.json.id_token": "ID token",
    "response.json.refresh_token": "refresh token",
}
#: What ``access_token`` in a token response is, by what the request sent: RFC 8693 issues the
#: ID-JAG in ``access_token`` (ID-JAG draft §4.3.4), the jwt-bearer grant the access token.
_ISSUED_FOR = {"request.form.subject_token": "ID-JAG", "request.form.assertion": "access token"}


def fingerprint(token: str) -> str:
    """``jti=<jti> sha256=<12 hex>``: enough to find the token in the audit, nothing to reuse."""
    try:
        jti = unverified_claims(token).get("jti")
    except Exception:  # noqa: BLE001 - an opaque token simply has no jti to show
        jti = None
    digest = f"sha256={token_fingerprint(token)}"
    return f"jti={jti} {digest}" if jti else digest


@dataclass(frozen=True)
class Hop:
    """One HTTP exchange of the chain, safe to print."""

    number: int
    hop: str
    method: str
    url: str
    status: int | None
    correlation_id: str | None
    tokens: tuple[str, ...] = field(default_factory=tuple)

    def line(self) -> str:
        cid = f" cid={self.correlation_id}" if self.correlation_id else ""
        tokens = f" [{'; '.join(self.tokens)}]" if self.tokens else ""
        status = self.status if self.status is not None else "no answer"
        return f"hop {self.number} {self.hop}: {self.method} {self.url} -> {status}{cid}{tokens}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "hop": self.hop,
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "correlation_id": self.correlation_id,
            "tokens": list(self.tokens),
        }


class HopLog:
    """Reads new exchanges off a recorder and logs each as a :class:`Hop`."""

    def __init__(
        self, recorder: Recorder, names: dict[str, str], retain: list[Exchange] | None = None
    ) -> None:
        self.recorder = recorder
        self.names = names  # URL prefix -> hop name, e.g. the ZTS token endpoint -> "pdp"
        self.retain = retain  # a step run keeps the exchanges to show them
        #: The latest hops (a long-running gateway must not grow without bound).
        self.hops: deque[Hop] = deque(maxlen=MAX_HOPS_KEPT)
        self.count = 0
        self._lock = threading.Lock()

    def flush(self) -> list[Hop]:
        """Log the exchanges recorded since the last flush; returns their hops."""
        with self._lock:
            fresh = list(self.recorder.exchanges)
            self.recorder.clear()  # logged once; the recorder keeps bodies, the log does not
            if self.retain is not None:
                self.retain.extend(fresh)
            hops = [self._hop(exchange, self.count + i + 1) for i, exchange in enumerate(fresh)]
            self.count += len(hops)
            self.hops.extend(hops)
        for hop in hops:
            log.info("%s", hop.line())
        return hops

    def _hop(self, exchange: Exchange, number: int) -> Hop:
        name = next(
            (hop for prefix, hop in self.names.items() if exchange.url.startswith(prefix)), "http"
        )
        tokens = tuple(
            f"{'sent' if t.where.startswith('request') else 'got'} "
            f"{_token_name(exchange, t.where)} {fingerprint(t.value)}"
            for t in exchange.tokens
        )
        cid = exchange.request_headers.get("x-correlation-id")
        return Hop(
            number,
            name,
            exchange.method,
            exchange.url.split("?", 1)[0],
            exchange.status,
            cid,
            tokens,
        )


def _token_name(exchange: Exchange, where: str) -> str:
    if where != "response.json.access_token":
        return _TOKEN_NAMES.get(where, where)
    sent = {t.where for t in exchange.tokens}
    return next((name for key, name in _ISSUED_FOR.items() if key in sent), "IdP access token")
