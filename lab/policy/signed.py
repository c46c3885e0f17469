"""Signed policy data: what the PDP publishes and resource servers evaluate locally.

Athenz's ``/domain/{d}/signed_policy_data`` shape plus the lab extension ``roles`` (role →
current members, expired members already removed) so a resource server can compute the
acting client's roles (contracts §4). The signature is a compact JWS whose payload is the
canonical JSON of ``signedPolicyData``; it is verified with the PDP's JWKS (``keyId``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from typing import Any

import jwt

from lab.oauth.jose import (
    ALLOWED_ALGORITHMS,
    JwtValidationError,
    KeyResolver,
    SigningKey,
    algorithm_for,
)
from lab.policy.engine import Assertion, Decision, decide, member_matches


class PolicyDataError(ValueError):
    """The document is malformed, its signature does not verify, or it has expired."""


def canonical_json(data: Any) -> bytes:
    """The one byte form that is signed and hashed: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class PolicyData:
    domain: str
    assertions: list[Assertion] = field(default_factory=list)
    roles: dict[str, list[str]] = field(default_factory=dict)
    modified: str = ""
    expires: str = ""
    #: ``expires`` as epoch seconds; a resource server stops using the copy after it.
    expires_at: float | None = None

    def decide(
        self,
        roles: Iterable[str],
        action: str,
        resource: str,
        actor_roles: Iterable[str] = (),
    ) -> Decision:
        """The ZPE decision on this document's assertions (DENY wins, no match denies); only
        the assertions that can match the held or acting roles are scanned (indexed)."""
        held, actors = tuple(roles), tuple(actor_roles)
        candidates = self.assertions_for([*held, *actors])
        return decide(candidates, held, action, resource, actor_roles=actors)

    def roles_of(self, principal: str) -> set[str]:
        """Full role names whose (unexpired) members include ``principal`` (wildcards too)."""
        exact, patterns = self._member_index
        held = set(exact.get(principal.lower(), ()))
        held.update(role for member, role in patterns if member_matches(member, principal))
        return held

    def assertions_for(self, roles: Iterable[str]) -> list[Assertion]:
        """The assertions that can match a holder of ``roles`` (literal role names by index,
        role globs always), in their original order: ``decide`` over them decides as it would
        over all of them, without a pass over every assertion of a 100k-assertion domain."""
        literal, globs = self._role_index
        chosen = set(globs)
        for role in roles:
            chosen.update(literal.get(role.lower(), ()))
        return [self.assertions[index] for index in sorted(chosen)]

    @cached_property
    def _member_index(self) -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
        """Literal members (lower-cased) → roles; members with glob characters kept aside and
        matched with :func:`member_matches` itself."""
        exact: dict[str, set[str]] = {}
        patterns: list[tuple[str, str]] = []
        for role, members in self.roles.items():
            for member in members:
                if _has_glob(member):
                    patterns.append((member, role))
                else:
                    exact.setdefault(member.lower(), set()).add(role)
        return exact, patterns

    @cached_property
    def _role_index(self) -> tuple[dict[str, list[int]], list[int]]:
        literal: dict[str, list[int]] = {}
        globs: list[int] = []
        for index, assertion in enumerate(self.assertions):
            if _has_glob(assertion.role):
                globs.append(index)
            else:
                literal.setdefault(assertion.role.lower(), []).append(index)
        return literal, globs


def _has_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def sign_policy_data(signed_policy_data: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """Wrap ``signedPolicyData`` with a JWS signature over its canonical JSON."""
    signature = jwt.api_jws.encode(
        canonical_json(signed_policy_data),
        key.key,
        algorithm=key.alg,
        headers={"kid": key.kid},
    )
    return {"signedPolicyData": signed_policy_data, "signature": signature, "keyId": key.kid}


def verify_signed_policy_data(document: Mapping[str, Any], resolve_key: KeyResolver) -> PolicyData:
    """Verify the signature (key chosen by ``keyId``) and expiry; return the parsed policy data."""
    if not isinstance(document, Mapping):
        raise PolicyDataError("signed policy data must be a JSON object")
    signed = document.get("signedPolicyData")
    signature = document.get("signature")
    if not isinstance(signed, dict) or not isinstance(signature, str):
        raise PolicyDataError("signedPolicyData and signature are required")
    try:
        header = jwt.get_unverified_header(signature)
    except jwt.PyJWTError as exc:
        raise PolicyDataError(f"malformed signature: {exc}") from None
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise PolicyDataError(f"signature algorithm {alg!r} is not allowed")
    try:
        public = resolve_key(header.get("kid") or document.get("keyId"))
    except JwtValidationError as exc:
        raise PolicyDataError(exc.reason) from None
    if algorithm_for(public) != alg:
        raise PolicyDataError("signature algorithm does not match the signing key")
    try:
        payload = jwt.api_jws.decode(signature, public, algorithms=[alg])
    except jwt.PyJWTError as exc:
        raise PolicyDataError(f"signature does not verify: {exc}") from None
    if payload != canonical_json(signed):
        raise PolicyDataError("signature does not cover this signedPolicyData")
    expires_at = _check_not_expired(signed.get("expires"))
    policy = parse_policy_data(signed.get("policyData"), signed)
    return replace(policy, expires_at=expires_at)


def parse_policy_data(policy_data: Any, signed: Mapping[str, Any] | None = None) -> PolicyData:
    if not isinstance(policy_data, dict):
        raise PolicyDataError("policyData must be an object")
    assertions: list[Assertion] = []
    for policy in policy_data.get("policies") or []:
        if not isinstance(policy, dict) or policy.get("active") is False:
            continue
        for item in policy.get("assertions") or []:
            if not isinstance(item, dict):
                continue
            assertions.append(
                Assertion(
                    role=str(item.get("role", "")),
                    resource=str(item.get("resource", "")),
                    action=str(item.get("action", "")),
                    effect=str(item.get("effect") or "ALLOW").upper(),
                    policy=policy.get("name"),
                )
            )
    roles: dict[str, list[str]] = {}
    for role in policy_data.get("roles") or []:
        if isinstance(role, dict) and isinstance(role.get("name"), str):
            roles[role["name"]] = [str(m) for m in role.get("members") or []]
    signed = signed or {}
    return PolicyData(
        domain=str(policy_data.get("domain", "")),
        assertions=assertions,
        roles=roles,
        modified=str(signed.get("modified", "")),
        expires=str(signed.get("expires", "")),
    )


def _check_not_expired(expires: Any) -> float:
    """Epoch seconds of ``expires``; a document without one, or past it, is refused."""
    if not isinstance(expires, str) or not expires:
        raise PolicyDataError("signed policy data has no expires timestamp")
    try:
        stamp = datetime.strptime(expires.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        raise PolicyDataError(f"expires {expires!r} is not an Athenz timestamp") from None
    if stamp.timestamp() < time.time():
        raise PolicyDataError(f"signed policy data expired at {expires}")
    return stamp.timestamp()
