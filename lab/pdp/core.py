"""The PDP's shared state: store, signing key, trusted providers, audit log, policy checks.

Built once by :func:`lab.pdp.app.create_app`; ZMS routes, ZTS grants and client
authentication all take this object. The signing key is loaded once (no per-request key I/O).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from lab.config import ADMIN_PRINCIPAL, Settings
from lab.oauth.errors import InvalidScope, InvalidToken
from lab.oauth.jose import (
    JwtValidationError,
    KeyResolver,
    PublicKey,
    SigningKey,
    VerifiedTokens,
    ensure_private_key,
    key_id,
    load_public_key,
    ybase64_decode,
)
from lab.pdp.audit import AuditLog, load_mac_key
from lab.pdp.names import split_principal
from lab.pdp.providers import Providers
from lab.pdp.store import Store
from lab.pdp.view import DomainView
from lab.policy.engine import Decision, decide, fold_case

log = logging.getLogger("lab.pdp")

#: Most policy answers kept (:meth:`Pdp.check_access`); the whole set is dropped when full.
ANSWERS_KEPT = 4096

BASELINE_FILE = Path(__file__).resolve().parents[2] / "athenz" / "baseline.json"


@dataclass
class Pdp:
    settings: Settings
    store: Store
    signing_key: SigningKey
    providers: Providers
    audit: AuditLog
    admin_public: PublicKey
    _key_cache: dict[str, tuple[tuple[int, int], dict[str, PublicKey]]] = field(
        default_factory=dict
    )
    #: Subject tokens verified before (ID tokens, the PDP's access tokens): see VerifiedTokens.
    verified: VerifiedTokens = field(default_factory=VerifiedTokens)
    _self_public: tuple[SigningKey, PublicKey] | None = None
    #: Policy answers per domain view (roles held, access decisions): see check_access.
    _answers: dict[tuple[str, ...], tuple[DomainView, float, Any]] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        # Asked several times per token request; Settings.endpoints builds every URL each time.
        return self._endpoints[0]

    @property
    def token_endpoint(self) -> str:
        return self._endpoints[1]

    @functools.cached_property
    def _endpoints(self) -> tuple[str, str]:
        zts = self.settings.endpoints.zts
        return zts, f"{zts}/oauth2/token"

    @classmethod
    def open(cls, settings: Settings, baseline: Path | None = None) -> Pdp:
        settings.keys_dir.mkdir(parents=True, exist_ok=True)
        signing_key = SigningKey.load_or_create(settings.key_file("pdp-signing"))
        admin_public = _admin_public_key(settings)
        store = Store(settings.pdp_db)
        pdp = cls(
            settings=settings,
            store=store,
            signing_key=signing_key,
            providers=Providers(settings.providers_file),
            audit=AuditLog(store, load_mac_key(settings.keys_dir / "audit-mac.key")),
            admin_public=admin_public,
        )
        pdp.seed(baseline or BASELINE_FILE)
        return pdp

    def close(self) -> None:
        """Close the store: its queued audit records committed, its committer stopped, every
        connection closed (a process that opens PDPs one after another, as the tests do)."""
        self.store.close()

    def seed(self, baseline: Path) -> None:
        """Load the baseline once, on the very first start (state then survives restarts)."""
        if self.store.get_meta("seeded"):
            return
        if baseline.exists():
            self.store.import_state(json.loads(baseline.read_text(encoding="utf-8")))
        self.store.set_meta("seeded", baseline.name)

    # ------------------------------------------------------------------ principals' keys
    def key_resolver(self, principal: str) -> KeyResolver:
        """Public keys a principal may sign with: the admin's file, or its ZMS service keys."""
        if principal == ADMIN_PRINCIPAL:
            keys = {key_id(self.admin_public): self.admin_public}
        else:
            keys = self.service_keys(principal)

        def resolve(kid: str | None) -> PublicKey:
            if not keys:
                raise JwtValidationError(f"principal {principal} has no registered public key")
            if kid is None and len(keys) == 1:
                return next(iter(keys.values()))
            if kid not in keys:
                raise JwtValidationError(f"unknown key id {kid!r} for principal {principal}")
            return keys[kid]

        return resolve

    def key_resolver_self(self) -> KeyResolver:
        """The PDP's own verification key, for tokens it issued (subject tokens, ID-JAGs)."""
        # One public key object per signing key: a VerifiedTokens hit requires the same object.
        if self._self_public is None or self._self_public[0] is not self.signing_key:
            self._self_public = (self.signing_key, self.signing_key.key.public_key())
        public = self._self_public[1]
        kid = self.signing_key.kid

        def resolve(requested: str | None) -> PublicKey:
            if requested != kid:
                raise JwtValidationError(f"unknown signing key id {requested!r}")
            return public

        return resolve

    def service_keys(self, principal: str) -> dict[str, PublicKey]:
        """A service's registered public keys, parsed once per version of its domain (hot path)."""
        generation = self.store.domain_version(split_principal(principal)[0] or "")
        cached = self._key_cache.get(principal)
        if cached is not None and cached[0] == generation:
            return cached[1]
        keys = self._load_service_keys(principal)
        if keys:
            self._key_cache[principal] = (generation, keys)
        else:
            # The principal comes from an unverified iss: keeping "no keys" per made-up name
            # would grow this cache without bound. Only registered keys are kept.
            self._key_cache.pop(principal, None)
        return keys

    def _load_service_keys(self, principal: str) -> dict[str, PublicKey]:
        domain, service = split_principal(principal)
        if not domain or not service:
            return {}
        data = self.store.get_object("services", domain, service)
        keys: dict[str, PublicKey] = {}
        for entry in (data or {}).get("publicKeys") or []:
            try:
                keys[str(entry["id"])] = load_public_key(ybase64_decode(entry["key"]))
            except (KeyError, TypeError, ValueError):
                continue  # a key that does not parse was refused at write time; never fatal here
        return keys

    def check_secret(self, principal: str, secret: str) -> bool:
        stored = self.store.secret_hash(principal)
        if stored is None:
            return False
        return hmac.compare_digest(stored, hash_secret(secret))

    # ------------------------------------------------------------------ policy
    def view(self, domain: str) -> DomainView:
        view = self.store.domain_view(domain)
        if view is None:
            # Contracts §3.2: at the token endpoint an unknown domain is a 404 invalid_scope.
            raise InvalidScope(
                f"No such domain: {domain}", status=404, athenz_message=f"No such domain: {domain}"
            )
        return view

    def roles_of(self, domain: str, principal: str) -> list[str]:
        view = self.view(domain)
        now = time.time()
        key = ("roles", domain, principal)
        found = self._recall(key, view, now)
        if found is not None:
            return list(found)
        held, until = view.roles_until(principal, now)
        self._remember(key, view, until, tuple(held))
        return held

    def check_access(self, principal: str, action: str, resource: str) -> Decision:
        """Athenz access check: the resource's domain (text before ':') holds the policies.

        A token request asks the same questions each time (its client's ``jag_exchange`` on
        each role, the exchange's source and target checks): the answer is kept with the view
        it came from, until the first end of a membership it counted. Any write gives the domain
        a new view, so a kept answer is never older than the policy it was decided on."""
        domain = fold_case(resource.split(":", 1)[0])
        view = self.store.domain_view(domain)
        if view is None:
            return Decision(False, "NO_MATCH", f"Domain not found: {domain}", None)
        now = time.time()
        key = ("access", principal, action, resource)
        found = self._recall(key, view, now)
        if found is not None:
            return cast(Decision, found)  # a frozen Decision: shared safely
        held, until = view.roles_until(principal, now)
        # Only assertions naming a held role (or a role glob) can match: indexed, not scanned.
        decision = decide(view.assertions_for(held), held, fold_case(action), fold_case(resource))
        self._remember(key, view, until, decision)
        return decision

    def _recall(self, key: tuple[str, ...], view: DomainView, now: float) -> Any:
        """The answer kept for ``key`` if it came from this very view and still holds, else
        None (kept answers are never None: a tuple of roles or a Decision)."""
        found = self._answers.get(key)
        if found is not None and found[0] is view and now < found[1]:
            return found[2]
        return None

    def _remember(self, key: tuple[str, ...], view: DomainView, until: float, answer: Any) -> None:
        if len(self._answers) >= ANSWERS_KEPT:
            self._answers.clear()  # bounded: principals and resources come from requests
        self._answers[key] = (view, until, answer)

    def is_domain_admin(self, principal: str, domain: str) -> bool:
        """The system admin administers everything; otherwise membership of ``<d>:role.admin``
        in the domain or one of its parents (Athenz: parent admins manage subdomains)."""
        if principal == ADMIN_PRINCIPAL:
            return True
        labels = domain.split(".")
        for index in range(len(labels), 0, -1):
            candidate = ".".join(labels[:index])
            view = self.store.domain_view(candidate)
            if view is not None and f"{candidate}:role.admin" in view.roles_of(principal):
                return True
        return False

    def require_known_principal(self, claims: dict[str, Any]) -> str:
        principal = claims.get("sub")
        if not isinstance(principal, str):
            raise InvalidToken("assertion has no principal")
        return principal


def hash_secret(secret: str) -> str:
    # Client secrets are 192-bit random values minted by the PDP, so a plain SHA-256 is enough:
    # there is nothing to brute-force (unlike passwords, which would need a slow KDF).
    return hashlib.sha256(secret.encode()).hexdigest()


def _admin_public_key(settings: Settings) -> PublicKey:
    """The admin's public key: from ``admin.pub.pem`` when only that is present (a pod's PDP never
    holds the admin's private key), else from the private key, created on first start."""
    private = settings.key_file(ADMIN_PRINCIPAL)
    public = private.with_name(f"{ADMIN_PRINCIPAL}.pub.pem")
    if not private.exists() and public.exists():
        return load_public_key(public.read_bytes())
    return ensure_private_key(private).public_key()
