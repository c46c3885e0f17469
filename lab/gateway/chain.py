"""The chain the gateway runs for the AI client, kept fresh: sign-in → ID-JAG → access token.

Every link is the agent library's (:class:`lab.agent.Agent`): the gateway adds only *when*. It
holds the ID token and the access token with their expiry and renews each before it runs out
(``margin_s`` ahead, at most half the token's lifetime), so the AI client never meets an expired
token. An ID-JAG is never kept: MCP's enterprise-managed authorization requires ``jti`` replay
detection, so each renewal asks for a fresh one (turn2-facts, SEP-990). A refusal raises
:class:`~lab.gateway.links.ChainBroken` naming the link.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.agent import DEFAULT_SCOPE, Agent, SignIn, TokenResponse
from lab.config import LEARNER_USERNAME
from lab.gateway.links import ChainBroken
from lab.oauth.jose import unverified_claims

HEADLESS = "headless"
BROWSER = "browser"
DEFAULT_MARGIN_S = 60.0
LEARNER_PASSWORD = "password"  # the lab's learner (realm file); headless mode is for CI


@dataclass(frozen=True)
class SignInPlan:
    """How the user signs in: ``headless`` (the lab's learner, for CI) or in their ``browser``."""

    mode: str = BROWSER
    username: str = LEARNER_USERNAME
    password: str = LEARNER_PASSWORD
    opener: Callable[[str], Any] | None = None
    timeout_s: float = 300.0


@dataclass(frozen=True)
class HeldToken:
    token: str
    issued_at: float
    expires_at: float

    @classmethod
    def of(cls, token: str, fallback_lifetime_s: float, now: float) -> HeldToken:
        try:
            claims = unverified_claims(token)
            issued, expires = float(claims.get("iat", now)), float(claims["exp"])
        except Exception:  # noqa: BLE001 - an opaque token: trust expires_in instead
            issued, expires = now, now + fallback_lifetime_s
        return cls(token, issued, expires)

    def fresh(self, now: float, margin_s: float) -> bool:
        lifetime = max(self.expires_at - self.issued_at, 0.0)
        return self.expires_at - min(margin_s, lifetime / 2) > now


class TokenKeeper:
    """Hands out a valid access token for the MCP server, renewing the chain when needed."""

    def __init__(
        self,
        agent: Agent,
        plan: SignInPlan,
        *,
        scope: str = DEFAULT_SCOPE,
        margin_s: float = DEFAULT_MARGIN_S,
        clock: Callable[[], float] = time.time,
        reuse: bool = True,
    ) -> None:
        self.agent = agent
        self.plan = plan
        self.scope = scope
        self.margin_s = margin_s
        self.clock = clock
        self.reuse = reuse  # False: a new ID-JAG and access token for every request (teaching)
        self.renewals = 0
        self.subject: str | None = None
        #: Requested roles the PDP left out of the last ID-JAG: Athenz issues for the roles the
        #: user holds now and refuses only when none is held (STEPS.md step 13).
        self.dropped_roles: tuple[str, ...] = ()
        self._id_token: HeldToken | None = None
        self._access: HeldToken | None = None
        self._lock = threading.Lock()

    def access_token(self) -> str:
        """A token good for at least ``margin_s`` more seconds; raises ChainBroken if refused."""
        with self._lock:
            held = self._access
            if self.reuse and held is not None and held.fresh(self.clock(), self.margin_s):
                return held.token
            self._access = self._renew()
            self.renewals += 1
            return self._access.token

    def drop_access_token(self) -> None:
        """The MCP server refused the token (401): the next call renews it."""
        with self._lock:
            self._access = None

    def held(self) -> dict[str, float | None]:
        """Expiry times of what is held (for status output and tests)."""
        return {
            "id_token_expires_at": self._id_token.expires_at if self._id_token else None,
            "access_token_expires_at": self._access.expires_at if self._access else None,
        }

    # -- the links -----------------------------------------------------------------------------

    def _renew(self) -> HeldToken:
        id_token = self._fresh_id_token()
        id_jag = self.agent.request_id_jag(id_token, self.scope)
        if not id_jag.ok or id_jag.token is None:
            raise _refused("id_jag", id_jag)
        granted = str(unverified_claims(id_jag.token).get("scope") or "").split()
        self.dropped_roles = tuple(r for r in self.scope.split() if granted and r not in granted)
        access = self.agent.redeem_id_jag(id_jag.token)
        if not access.ok or access.token is None:
            raise _refused("redeem", access)
        held = HeldToken.of(access.token, _expires_in(access), self.clock())
        self.subject = str(unverified_claims(access.token).get("sub") or "") or None
        return held

    def _fresh_id_token(self) -> str:
        if self._id_token is not None and self._id_token.fresh(self.clock(), self.margin_s):
            return self._id_token.token
        signed = self._sign_in()
        if not signed.ok or signed.id_token is None:
            detail = f"{signed.error}: {signed.error_description or ''}".rstrip(": ")
            status = f"HTTP {signed.status} " if signed.status else ""
            raise ChainBroken("sign_in", f"{status}{detail}", signed.status, signed.error)
        expires_in = float(signed.body.get("expires_in") or 300)
        self._id_token = HeldToken.of(signed.id_token, expires_in, self.clock())
        return signed.id_token

    def _sign_in(self) -> SignIn:
        if self.plan.mode == HEADLESS:
            return self.agent.sign_in(self.plan.username, self.plan.password, method="code")
        return self.agent.sign_in_browser(opener=self.plan.opener, timeout_s=self.plan.timeout_s)


def _refused(link: str, response: TokenResponse) -> ChainBroken:
    if response.status:
        detail = f"HTTP {response.status} {response.error}: {response.message}"
    else:  # no answer at all (connection refused): the message says why
        detail = str(response.error)
    return ChainBroken(link, detail, response.status, response.error)


def _expires_in(response: TokenResponse) -> float:
    try:
        return float(response.body.get("expires_in") or 300)
    except (TypeError, ValueError):
        return 300.0
