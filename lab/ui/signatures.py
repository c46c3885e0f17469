"""Each token of a run, its signature checked against the JWKS of the part that issued it.

The page shows a decoded token; a learner's next question is whether that part really signed
it. The check runs here, server-side, with the lab's own validator
(:func:`lab.oauth.jose.signature_check`: pyjwt, the allowed algorithms, the key named by ``kid``
in the issuer's JWKS, fetched and cached by :class:`lab.oauth.jose.JwksCache` as the parts do).
Only the signature: expiry is the page's countdown, audience is the next hop's business.

The MCP server's exchanged token never leaves the MCP server (lab.mcpserver.hops); its verdict
is the MCP server's own check against the same JWKS, and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lab.config import Endpoints
from lab.oauth.jose import JwksCache, signature_check, token_fingerprint, unverified_claims


class Signatures:
    """The verdicts for a run model; one cached key set per issuer of the running lab."""

    def __init__(self, endpoints: Callable[[], Endpoints]) -> None:
        self.endpoints = endpoints
        self.caches: dict[str, JwksCache] = {}

    def key_set(self, issuer: object) -> tuple[JwksCache, str] | None:
        """The JWKS of the part whose issuer this is, and its name for the verdict."""
        here = self.endpoints()
        known = {
            here.zts: (here.zts_jwks, "the PDP's JWKS"),
            here.idp_issuer: (here.idp_jwks, "the IdP's JWKS"),
        }
        found = known.get(str(issuer).rstrip("/")) if isinstance(issuer, str) else None
        if found is None:
            return None
        url, name = found
        cache = self.caches.get(url)
        if cache is None:
            cache = self.caches[url] = JwksCache(url, max_age_s=30.0)
        return cache, name

    def check(self, token: str) -> dict[str, Any]:
        try:
            issuer = unverified_claims(token).get("iss")
        except Exception:  # noqa: BLE001 - a token the engine decoded once; malformed is a verdict
            return {"valid": False, "reason": "the token cannot be decoded", "keys": None}
        try:
            found = self.key_set(issuer)
        except Exception:  # noqa: BLE001 - no running lab (its endpoints unknown) is a verdict
            return {"valid": False, "keys": None, "reason": "the lab is not running"}
        if found is None:
            return {
                "valid": False,
                "keys": None,
                "reason": f"issuer {issuer!r} is not a part of this lab: no JWKS to check with",
            }
        cache, name = found
        return signature_check(token, cache, name)

    def annotate(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with a ``signature`` verdict on each token the run's actions hold.

        The run model keeps each raw token once in ``tokens`` (action id, label, token); the
        actions' decoded copies carry its fingerprint."""
        raw = {
            token_fingerprint(t["token"]): t["token"]
            for t in record.get("tokens") or []
            if isinstance(t, dict) and isinstance(t.get("token"), str)
        }
        for action in record.get("actions") or []:
            for token in action.get("tokens") or []:
                value = raw.get(str(token.get("fingerprint")))
                if value is None:
                    token["signature"] = {
                        "valid": False,
                        "keys": None,
                        "reason": "the run did not keep this token",
                    }
                else:
                    token["signature"] = {**self.check(value), "checked_by": "lab ui"}
        return record
