"""Signed policy data: what the PDP publishes and resource servers evaluate locally.

Athenz's ``/domain/{d}/signed_policy_data`` shape plus the lab extension ``roles`` (role →
current members, expired members already removed) so a resource server can compute the
acting client's roles (contracts §4). The signature is a compact JWS whose payload is the
canonical JSON of ``signedPolicyData``; it is verified with the PDP's JWKS (``keyId``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
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
from lab.policy.engine import Assertion, Decision, decide, fold_case, member_matches


class PolicyDataError(ValueError):
    """The document is malformed, its signature does not verify, or it has expired."""


def _canonical_encoder() -> Callable[[Any, int], list[str]] | None:
    """``json.dumps``'s own C encoder for :func:`canonical_json`'s settings, built once.

    ``json.dumps`` with sorted keys builds a ``JSONEncoder`` and a C encoder on every call: over
    a million audit records (``lab audit --verify`` hashes each) that setup cost as much as
    the encoding itself. This is the encoder ``json.dumps`` builds for those settings
    (``JSONEncoder.iterencode``, one-shot path) with one difference: no circular-reference
    markers (a markers dict in an encoder built once would be shared by every thread), never
    needed for data parsed from JSON or built from stored rows. ``None`` where the C
    accelerator is missing; ``json.dumps`` is used then."""
    make_encoder = getattr(json.encoder, "c_make_encoder", None)  # not in the type stubs
    if make_encoder is None:  # pragma: no cover - CPython ships it
        return None
    return make_encoder(  # type: ignore[no-any-return]
        None,  # markers: no circular check (see above)
        json.JSONEncoder().default,  # raises TypeError for what JSON cannot hold, as dumps
        json.encoder.encode_basestring,  # ensure_ascii=False
        None,  # indent
        ":",  # key separator
        ",",  # item separator
        True,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan, json.dumps's default
    )


_CANONICAL_ENCODER = _canonical_encoder()


def canonical_json(data: Any) -> bytes:
    """The one byte form that is signed and hashed: sorted keys, no spaces, UTF-8 —
    ``json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, byte for
    byte (tests/pdp/test_audit_hash.py compares them), with its encoder built once."""
    if _CANONICAL_ENCODER is None:  # pragma: no cover
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "".join(_CANONICAL_ENCODER(data, 0)).encode()


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
        held = set(exact.get(fold_case(principal), ()))
        held.update(role for member, role in patterns if member_matches(member, principal))
        return held

    def assertions_for(self, roles: Iterable[str]) -> list[Assertion]:
        """The assertions that can match a holder of ``roles`` (literal role names by index,
        role globs always), in their original order: ``decide`` over them decides as it would
        over all of them, without a pass over every assertion of a 100k-assertion domain."""
        literal, globs = self._role_index
        chosen = set(globs)
        for role in roles:
            chosen.update(literal.get(fold_case(role), ()))
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
                    exact.setdefault(fold_case(member), set()).add(role)
        return exact, patterns

    @cached_property
    def _role_index(self) -> tuple[dict[str, list[int]], list[int]]:
        literal: dict[str, list[int]] = {}
        globs: list[int] = []
        for index, assertion in enumerate(self.assertions):
            if _has_glob(assertion.role):
                globs.append(index)
            else:
                literal.setdefault(fold_case(assertion.role), []).append(index)
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
    """The assertions of the active policies and the role members of ``policyData``.

    Malformed data is refused as a whole, never skipped or guessed at: a DENY assertion dropped
    for being malformed, or an unknown effect read as ALLOW, would turn a refusal into a grant.
    The resource server keeps no such copy and denies (fail closed). A missing list is empty;
    a missing ``effect`` is ALLOW (Athenz's default, as ZMS stores it).
    """
    if not isinstance(policy_data, dict):
        raise PolicyDataError("policyData must be an object")
    domain = policy_data.get("domain")
    if not isinstance(domain, str) or not domain:
        raise PolicyDataError("policyData.domain must be a non-empty string")
    assertions: list[Assertion] = []
    for policy in _objects(policy_data, "policies", "policyData"):
        name = _text(policy, "name", "every policy")
        active = policy.get("active", True)
        if not isinstance(active, bool):
            raise PolicyDataError(f"policy {name}: active must be true or false")
        if not active:  # an inactive Athenz policy version grants and denies nothing
            continue
        for item in _objects(policy, "assertions", f"policy {name}"):
            assertions.append(_assertion(item, name))
    roles: dict[str, list[str]] = {}
    for role in _objects(policy_data, "roles", "policyData"):
        role_name = _text(role, "name", "every role")
        members = role.get("members", [])
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise PolicyDataError(f"role {role_name}: members must be a list of strings")
        roles[role_name] = members
    signed = signed or {}
    return PolicyData(
        domain=domain,
        assertions=assertions,
        roles=roles,
        modified=str(signed.get("modified", "")),
        expires=str(signed.get("expires", "")),
    )


def _objects(container: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    """``container[key]``: absent is empty; otherwise a list of JSON objects, or an error."""
    items = container.get(key, [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise PolicyDataError(f"{where}: {key} must be a list of objects")
    return items


def _text(item: Mapping[str, Any], key: str, what: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise PolicyDataError(f"{what}: {key} must be a non-empty string")
    return value


def _assertion(item: Mapping[str, Any], policy: str) -> Assertion:
    where = f"an assertion of policy {policy}"
    effect = item.get("effect", "ALLOW")
    if not isinstance(effect, str) or effect.upper() not in ("ALLOW", "DENY"):
        raise PolicyDataError(f"{where}: effect must be ALLOW or DENY, not {effect!r}")
    return Assertion(
        role=_text(item, "role", where),
        resource=_text(item, "resource", where),
        action=_text(item, "action", where),
        effect=effect.upper(),
        policy=policy,
    )


def _check_not_expired(expires: Any) -> float:
    """Epoch seconds of ``expires``; a document without one, or past it, is refused."""
    if not isinstance(expires, str) or not expires:
        raise PolicyDataError("signed policy data has no expires timestamp")
    try:
        # Athenz writes UTC as "...T12:00:00.000Z"; %z reads that Z (and any +hh:mm offset).
        stamp = datetime.strptime(expires, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        raise PolicyDataError(f"expires {expires!r} is not an Athenz timestamp") from None
    if stamp.timestamp() < time.time():
        raise PolicyDataError(f"signed policy data expired at {expires}")
    return stamp.timestamp()
