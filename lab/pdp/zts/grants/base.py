"""What every ZTS grant shares: the request context, scope grammar, and minting tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from lab.oauth.errors import InvalidRequest, InvalidScope, InvalidTarget
from lab.oauth.jose import new_jti, now
from lab.oauth.scopes import ScopeSyntaxError, scope_values
from lab.oauth.tokens import TYP_ACCESS_TOKEN
from lab.pdp.core import Pdp
from lab.pdp.names import DOMAIN_RE, SIMPLE_RE

DEFAULT_LIFETIME_S = 3600
MAX_LIFETIME_S = 7200
ID_JAG_LIFETIME_S = 300
#: Longest ID-JAG redeemed (``exp - iat``): the draft's ID-JAGs are short-lived (-04 §3).
MAX_ID_JAG_LIFETIME_S = 600
#: Bounds on a requested scope: every value is checked against policy, so their number and
#: size bound the work one request can cause.
MAX_SCOPE_LENGTH = 2048
MAX_SCOPE_ITEMS = 32


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
    """Requested roles by full name (``api:role.docs-getter``), in request order.

    ``all_domains`` holds the domains asked for as ``D:domain`` (every role the principal holds
    there). Athenz allows one domain per scope; the lab, like the multi-domain ZTS build the
    tutorial uses (``athenz.zts.access_token_max_domains``), allows several when the token is
    for a registered resource (RFC 8707 ``resource``) or is an ID-JAG.
    """

    roles: tuple[str, ...]
    all_domains: tuple[str, ...] = ()

    @property
    def domains(self) -> tuple[str, ...]:
        seen: list[str] = []
        for role in self.roles:
            domain = role_domain(role)
            if domain not in seen:
                seen.append(domain)
        for domain in self.all_domains:
            if domain not in seen:
                seen.append(domain)
        return tuple(seen)

    @property
    def domain(self) -> str:
        """The first domain named: the one Athenz's single-domain messages speak of."""
        return self.domains[0]

    def text(self) -> str:
        return " ".join([*self.roles, *(f"{d}:domain" for d in self.all_domains)])


def role_domain(role: str) -> str:
    return role.partition(":role.")[0]


def parse_scope(
    scope: str | None, *, default_domain: str | None = None, multi_domain: bool = False
) -> Scope:
    """Athenz scope grammar (OAuthTokenScope): ``D:role.R`` (space separated) or ``D:domain``.

    ``openid`` is ignored; a bare role name is read in ``default_domain`` when one is known (the
    jwt-bearer grant, whose ID-JAG fixes the domain). One domain per request unless
    ``multi_domain``.
    """
    if scope is None or not scope.strip():
        raise InvalidRequest(
            "missing required parameter scope", athenz_message="Invalid request: no scope provided"
        )
    too_long = InvalidScope(
        f"scope is longer than {MAX_SCOPE_LENGTH} characters or {MAX_SCOPE_ITEMS} values",
        athenz_message="Invalid scope: too long",
    )
    if len(scope) > MAX_SCOPE_LENGTH:
        raise too_long
    try:
        # RFC 6749 §3.3: split on spaces only, printable ASCII only, before lower-casing
        # (a tab or NBSP is no separator; the Kelvin sign is no "k"): lab.oauth.scopes.
        items = scope_values(scope)
    except ScopeSyntaxError as odd:
        raise InvalidScope(str(odd), athenz_message=f"Invalid scope: {odd.value[:80]!r}") from None
    if len(items) > MAX_SCOPE_ITEMS:
        raise too_long
    roles: list[str] = []
    all_domains: list[str] = []
    for item in items:
        item = item.lower()
        if item == "openid":
            continue
        whole_domain = False
        if ":role." in item:
            domain, _, role = item.partition(":role.")
        elif item.endswith(":domain"):
            domain, role, whole_domain = item[: -len(":domain")], "", True
        elif default_domain and SIMPLE_RE.fullmatch(item):
            domain, role = default_domain.lower(), item
        else:
            raise InvalidScope(
                f"invalid scope value {item!r}", athenz_message=f"Invalid scope: {item}"
            )
        # A named role must have a name: "api:role." is malformed, never "api:domain".
        if not DOMAIN_RE.fullmatch(domain) or not (whole_domain or SIMPLE_RE.fullmatch(role)):
            raise InvalidScope(
                f"invalid scope value {item!r}", athenz_message=f"Invalid scope: {item}"
            )
        if whole_domain:
            if domain not in all_domains:
                all_domains.append(domain)
        elif f"{domain}:role.{role}" not in roles:
            roles.append(f"{domain}:role.{role}")
    parsed = Scope(roles=tuple(roles), all_domains=tuple(all_domains))
    if not parsed.domains:
        raise InvalidScope(
            "scope names no domain", athenz_message="Scope value does not contain any roles"
        )
    if len(parsed.domains) > 1 and not multi_domain:
        raise InvalidScope(
            "only one domain per scope (several only for a registered resource, RFC 8707)",
            athenz_message="Multiple domains in scope",
        )
    return parsed


def not_included(principal: str, domain: str) -> InvalidScope:
    """Athenz: 403 when the principal holds none of the requested roles (contracts §3.2).

    ZTS prefixes the message with its method name, ``postaccesstokenrequest: ``."""
    message = f"principal {principal} is not included in the requested role(s) in domain {domain}"
    return InvalidScope(message, status=403, athenz_message=f"postaccesstokenrequest: {message}")


def granted_roles(pdp: Pdp, principal: str, scope: Scope) -> list[str]:
    """Full names of requested roles the principal holds right now (partial grants allowed).

    Every domain named must exist (404 ``No such domain``)."""
    granted: list[str] = []
    for domain in scope.domains:
        held = pdp.roles_of(domain, principal)
        if domain in scope.all_domains:
            granted.extend(role for role in sorted(held) if role not in granted)
        else:
            granted.extend(
                role
                for role in scope.roles
                if role_domain(role) == domain and role in held and role not in granted
            )
    return granted


def explicit_scope(pdp: Pdp, principal: str, scope: Scope) -> Scope:
    """``D:domain`` spelled out as the roles of ``D`` the principal holds now, beside the roles
    named explicitly. Grants run their checks on this explicit list, so every role in an issued
    token has passed exactly the checks a named role passes (issue #16: ``api:domain`` carried
    roles past ``zts.jag_exchange``). Unknown domains are 404 ``No such domain``; a scope that
    spells out to nothing is the 403 "not included" refusal."""
    if not scope.all_domains:
        return scope
    roles = list(scope.roles)
    for domain in scope.all_domains:
        roles.extend(role for role in sorted(pdp.roles_of(domain, principal)) if role not in roles)
    if not roles:
        raise not_included(principal, scope.all_domains[0])
    return Scope(roles=tuple(roles))


def short_names(roles: list[str], domain: str) -> list[str]:
    """Athenz's ``scp``: roles of the token's own domain by short name, others by full name
    (the multi-domain layout, e.g. ``["mcp-accessor", "api:role.docs-getter"]``)."""
    prefix = f"{domain}:role."
    return [role[len(prefix) :] if role.startswith(prefix) else role for role in roles]


def lifetime(request: TokenRequest, cap: int = MAX_LIFETIME_S) -> int:
    """The token lifetime: the client's ``expires_in`` (decimal seconds) capped at ``cap``."""
    raw = request.param("expires_in")
    if raw is None:
        return min(DEFAULT_LIFETIME_S, cap)
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise InvalidRequest("expires_in must be a number of seconds")
    value = int(raw)
    if value <= 0:
        raise InvalidRequest("expires_in must be positive")
    return min(value, cap)


def mint_access_token(
    pdp: Pdp,
    *,
    subject: str,
    client: str,
    audience: str,
    domain: str,
    roles: list[str],
    lifetime_s: int,
    act: dict[str, Any] | None = None,
    uid: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """An RFC 9068 access token in Athenz's claim layout (contracts §3.1).

    ``audience`` is a domain name or a registered resource URL; ``domain`` is the domain the
    audience belongs to, whose roles ``scp`` names by short name."""
    issued = now()
    scp = short_names(roles, domain)
    claims: dict[str, Any] = {
        "ver": 1,
        "iss": pdp.issuer,
        "aud": audience,
        "sub": subject,
        "client_id": client,
        "uid": uid or subject,
        "scp": scp,
        "scope": " ".join(scp),
        "jti": new_jti(),
        "iat": issued,
        "auth_time": issued,
        "exp": issued + lifetime_s,
    }
    if act is not None:
        claims["act"] = act
    return pdp.signing_key.sign(claims, typ=TYP_ACCESS_TOKEN), claims


def bearer_response(token: str, claims: dict[str, Any], roles: list[str]) -> dict[str, Any]:
    """RFC 6749 §5.1 response; ``scope`` lists the granted roles by full name (RFC 6749 §3.3:
    the issued scope, which may differ from the requested one)."""
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": claims["exp"] - claims["iat"],
        "scope": " ".join(roles),
    }


def registered_resource(pdp: Pdp, resource: str) -> tuple[str, str]:
    """RFC 8707: a ``resource`` must be a registered resource - the ``providerEndpoint`` a
    service recorded in ZMS - and the token's audience becomes that URL. Returns the domain of
    the service that owns it and the URL as registered; anything else is ``invalid_target``
    (RFC 8707 §2)."""
    service = pdp.store.service_by_endpoint(resource)
    if service is None:
        raise InvalidTarget(
            f"resource {resource} is not a registered resource "
            "(no service registered it as its providerEndpoint)",
            athenz_message=f"Invalid resource: {resource}",
        )
    return str(service["name"]).rsplit(".", 1)[0], str(service["providerEndpoint"])
