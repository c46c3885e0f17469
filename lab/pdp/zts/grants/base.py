"""What every ZTS grant shares: the request context, scope grammar, and minting tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from lab.oauth.errors import InvalidRequest, InvalidScope
from lab.oauth.jose import new_jti, now
from lab.oauth.tokens import TYP_ACCESS_TOKEN
from lab.pdp.core import Pdp
from lab.pdp.names import DOMAIN_RE, SIMPLE_RE

DEFAULT_LIFETIME_S = 3600
MAX_LIFETIME_S = 7200
ID_JAG_LIFETIME_S = 300


@dataclass
class TokenRequest:
    """One token request, filled in as the grant learns who and what it is about (for audit)."""

    form: dict[str, str]
    client: str
    correlation_id: str
    subject: str | None = None
    resource: str | None = None
    action: str = "token"
    jti: str | None = None
    reason: str = ""
    #: jtis to mark used when the decision is recorded (client assertion, ID-JAG).
    single_use: list[tuple[str, int]] = field(default_factory=list)

    def param(self, name: str) -> str | None:
        value = self.form.get(name)
        return value if value else None

    def require(self, name: str, athenz: str) -> str:
        value = self.param(name)
        if value is None:
            raise InvalidRequest(f"missing required parameter {name}", athenz_message=athenz)
        return value


@dataclass
class GrantResult:
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class Grant:
    grant_type: ClassVar[str]

    def __init__(self, pdp: Pdp) -> None:
        self.pdp = pdp

    def validate(self, request: TokenRequest) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def issue(self, request: TokenRequest, validated: Any) -> GrantResult:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class Scope:
    domain: str
    roles: tuple[str, ...]  # short names; empty with all_roles
    all_roles: bool = False

    def full(self, role: str) -> str:
        return f"{self.domain}:role.{role}"


def parse_scope(scope: str | None, *, default_domain: str | None = None) -> Scope:
    """Athenz scope grammar (OAuthTokenScope): ``D:role.R`` (space separated) or ``D:domain``.

    ``openid`` is ignored; a bare role name is read in ``default_domain`` when one is known (the
    jwt-bearer grant, whose ID-JAG fixes the domain). One domain per request.
    """
    if scope is None or not scope.strip():
        raise InvalidRequest(
            "missing required parameter scope", athenz_message="Invalid request: no scope provided"
        )
    domains: set[str] = set()
    roles: list[str] = []
    all_roles = False
    for item in scope.split():
        item = item.lower()
        if item == "openid":
            continue
        if ":role." in item:
            domain, _, role = item.partition(":role.")
        elif item.endswith(":domain"):
            domain, role, all_roles = item[: -len(":domain")], "", True
        elif default_domain and SIMPLE_RE.fullmatch(item):
            domain, role = default_domain, item
        else:
            raise InvalidScope(
                f"invalid scope value {item!r}", athenz_message=f"Invalid scope: {item}"
            )
        if not DOMAIN_RE.fullmatch(domain) or (role and not SIMPLE_RE.fullmatch(role)):
            raise InvalidScope(
                f"invalid scope value {item!r}", athenz_message=f"Invalid scope: {item}"
            )
        domains.add(domain)
        if role and role not in roles:
            roles.append(role)
    if not domains:
        raise InvalidScope(
            "scope names no domain", athenz_message="Scope value does not contain any roles"
        )
    if len(domains) > 1:
        raise InvalidScope("only one domain per scope", athenz_message="Multiple domains in scope")
    return Scope(domain=domains.pop(), roles=tuple(roles), all_roles=all_roles)


def not_included(principal: str, domain: str) -> InvalidScope:
    """Athenz: 403 when the principal holds none of the requested roles (contracts §3.2)."""
    message = f"principal {principal} is not included in the requested role(s) in domain {domain}"
    return InvalidScope(message, status=403, athenz_message=message)


def granted_roles(pdp: Pdp, principal: str, scope: Scope) -> list[str]:
    """Short names of requested roles the principal holds right now (partial grants allowed)."""
    held = pdp.roles_of(scope.domain, principal)
    prefix = f"{scope.domain}:role."
    held_short = [role[len(prefix) :] for role in held if role.startswith(prefix)]
    if scope.all_roles:
        return sorted(held_short)
    return [role for role in scope.roles if role in held_short]


def lifetime(request: TokenRequest) -> int:
    raw = request.param("expires_in")
    if raw is None:
        return DEFAULT_LIFETIME_S
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest("expires_in must be a number of seconds") from None
    if value <= 0:
        raise InvalidRequest("expires_in must be positive")
    return min(value, MAX_LIFETIME_S)


def mint_access_token(
    pdp: Pdp,
    *,
    subject: str,
    client: str,
    audience: str,
    roles: list[str],
    lifetime_s: int,
    act: dict[str, Any] | None = None,
    uid: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """An RFC 9068 access token in Athenz's claim layout (contracts §3.1)."""
    issued = now()
    claims: dict[str, Any] = {
        "ver": 1,
        "iss": pdp.issuer,
        "aud": audience,
        "sub": subject,
        "client_id": client,
        "uid": uid or subject,
        "scp": list(roles),
        "scope": " ".join(roles),
        "jti": new_jti(),
        "iat": issued,
        "auth_time": issued,
        "exp": issued + lifetime_s,
    }
    if act is not None:
        claims["act"] = act
    return pdp.signing_key.sign(claims, typ=TYP_ACCESS_TOKEN), claims


def bearer_response(token: str, claims: dict[str, Any], domain: str) -> dict[str, Any]:
    full = " ".join(f"{domain}:role.{role}" for role in claims["scp"])
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": claims["exp"] - claims["iat"],
        "scope": full,
    }
