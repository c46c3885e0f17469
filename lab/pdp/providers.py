"""Trusted identity providers (Athenz ``oauth_provider_config_file``, reference/athenz.md §6).

``settings.providers_file`` is a JSON array of
``{"issuerUri", "jwksUri", "principalTemplate", "idJagIssuer"}``; a provider is found by an exact
match of the token's ``iss``. Trusting an IdP's ID tokens (the PDP then issues its own ID-JAG,
the tutorial's topology) is not trusting it to *grant* access: only a provider with
``"idJagIssuer": true`` may issue ID-JAGs the PDP redeems (ID-JAG draft -04 §9.3's two trust
domains; Keycloak's equivalent is ``jwtAuthorizationGrantEnabled`` on an identity provider).
Each provider keeps a :class:`~lab.oauth.jose.JwksCache` (fetched lazily, cached, refreshed
on an unknown ``kid``). ``reload()`` re-reads the file without a restart.
"""

from __future__ import annotations

import json
import logging
import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.oauth.jose import JwksCache
from lab.oauth.usernames import normalize_username

log = logging.getLogger("lab.pdp")

DEFAULT_TEMPLATE = "human.{preferred_username}"


class ProvidersFileError(ValueError):
    pass


@dataclass(frozen=True)
class Provider:
    issuer: str
    jwks_uri: str
    principal_template: str
    jwks: JwksCache
    id_jag_issuer: bool = False

    def principal_for(self, claims: Mapping[str, Any]) -> str | None:
        """The Athenz principal for these ID-token claims, or None if a field is missing."""
        fields = [
            name for _, name, _, _ in string.Formatter().parse(self.principal_template) if name
        ]
        values: dict[str, str] = {}
        for name in fields:
            value = claims.get(name)
            if name == "preferred_username" and not value:
                value = claims.get("sub")  # the upstream plugin falls back to sub
            # NFKC + casefold, refusing names that normalization would change (issue #16:
            # the Kelvin sign lower-cased onto an existing principal).
            normalized = normalize_username(value)
            if normalized is None:
                return None
            values[name] = normalized
        try:
            return self.principal_template.format(**values)
        except (KeyError, IndexError, ValueError):
            return None


class Providers:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_issuer: dict[str, Provider] = {}
        self._lock = threading.Lock()
        try:
            self.reload()
        except ProvidersFileError as exc:
            # A broken file must not keep the PDP down: start trusting nobody, say why, and
            # let POST /zts/v1/lab/reload pick up the fixed file.
            log.error("providers file ignored: %s", exc)

    def reload(self) -> list[dict[str, Any]]:
        entries = self._read()
        providers: dict[str, Provider] = {}
        for entry in entries:
            issuer = entry["issuerUri"]
            old = self._by_issuer.get(issuer)
            jwks = (
                old.jwks
                if old is not None and old.jwks_uri == entry["jwksUri"]
                else JwksCache(entry["jwksUri"])
            )
            providers[issuer] = Provider(
                issuer=issuer,
                jwks_uri=entry["jwksUri"],
                principal_template=entry.get("principalTemplate") or DEFAULT_TEMPLATE,
                jwks=jwks,
                id_jag_issuer=entry.get("idJagIssuer") is True,
            )
        with self._lock:
            self._by_issuer = providers
        log.info("trusted identity providers: %s", ", ".join(providers) or "none")
        return entries

    def get(self, issuer: str) -> Provider | None:
        with self._lock:
            return self._by_issuer.get(issuer)

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "issuerUri": p.issuer,
                    "jwksUri": p.jwks_uri,
                    "principalTemplate": p.principal_template,
                    **({"idJagIssuer": True} if p.id_jag_issuer else {}),
                }
                for p in self._by_issuer.values()
            ]

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ProvidersFileError(f"{self.path}: not valid JSON ({exc})") from None
        if not isinstance(data, list):
            raise ProvidersFileError(f"{self.path}: expected a JSON array of providers")
        entries: list[dict[str, Any]] = []
        for index, entry in enumerate(data):
            if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), str) and entry.get(k) for k in ("issuerUri", "jwksUri")
            ):
                raise ProvidersFileError(
                    f"{self.path}: entry {index} needs issuerUri and jwksUri strings"
                )
            template = entry.get("principalTemplate")
            if template is not None and not isinstance(template, str):
                raise ProvidersFileError(
                    f"{self.path}: entry {index} principalTemplate must be a string"
                )
            flag = entry.get("idJagIssuer")
            if flag is not None and not isinstance(flag, bool):
                raise ProvidersFileError(
                    f"{self.path}: entry {index} idJagIssuer must be true or false"
                )
            kept: dict[str, Any] = {k: v for k, v in entry.items() if isinstance(v, str)}
            if flag is not None:
                kept["idJagIssuer"] = flag
            entries.append(kept)
        return entries
