"""ZMS HTTP routes under ``/zms/v1``: domains, roles, members, policies, services (Athenz JSON).

Every request carries a principal assertion (contracts §2) verified against the principal's
registered key; writes need an admin of the domain, top-level domains the system admin.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lab.config import ADMIN_PRINCIPAL
from lab.oauth.admin import bearer_token, verify_principal_assertion
from lab.oauth.errors import (
    AccessDenied,
    Conflict,
    InvalidRequest,
    InvalidToken,
    NotFound,
    OAuthError,
)
from lab.oauth.jose import (
    JwtValidationError,
    load_public_key,
    new_jti,
    new_secret,
    unverified_claims,
    ybase64_decode,
)
from lab.oauth.starlette import NO_STORE, read_json, single_query_params
from lab.oauth.text import checked_text, correlation_label
from lab.pdp.audit import AuditEvent
from lab.pdp.core import Pdp, hash_secret
from lab.pdp.names import (
    MAX_NAME,
    PRINCIPAL_RE,
    action_name,
    domain_name,
    member_name,
    principal_name,
    resource_name,
    role_reference,
    short_entity,
    simple_name,
)
from lab.pdp.store import parse_timestamp, timestamp

Handler = Callable[[Request], Awaitable[Response]]

#: Longest accepted principal assertion (the lab mints 120 s ones; allow some slack).
MAX_ASSERTION_LIFETIME_S = 300

log = logging.getLogger("lab.pdp.zms")


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _obj(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{what} must be a list of strings")
    return value


#: Store tables of the entities addressed as ``<domain>:<kind>.<name>``.
ENTITY_TABLES = {"role": "roles", "policy": "policies"}


class Zms:
    def __init__(self, pdp: Pdp) -> None:
        self.pdp = pdp
        self.store = pdp.store

    # ------------------------------------------------------------------ authentication
    def principal(self, request: Request) -> str:
        token = bearer_token(request.headers)
        claimed = ""
        if token is not None:
            try:
                claimed = str(unverified_claims(token).get("iss", "")).lower()
            except JwtValidationError as exc:
                raise InvalidToken(exc.reason) from None
            if not PRINCIPAL_RE.fullmatch(claimed):
                raise InvalidToken("assertion iss must name a principal")
        claims = verify_principal_assertion(
            token,
            self.pdp.key_resolver(claimed),
            self.pdp.settings.endpoints.zms,  # exactly ZMS: a ZTS-addressed one is refused
            single_use=self.pdp.store.use_jti,
        )
        # Contracts §2: a request credential is short-lived, never a long-term API key.
        lifetime = claims["exp"] - claims["iat"] if _numbers(claims["exp"], claims["iat"]) else None
        if lifetime is None or lifetime > MAX_ASSERTION_LIFETIME_S:
            raise InvalidToken(
                f"assertion lifetime must be at most {MAX_ASSERTION_LIFETIME_S} seconds"
            )
        return str(claims["sub"]).lower()

    def require_admin(self, principal: str, domain: str) -> None:
        if not self.pdp.is_domain_admin(principal, domain):
            raise AccessDenied(
                f"principal {principal} is not an admin of domain {domain}",
                athenz_message=(
                    f"Forbidden: principal {principal} is not authorized to update domain {domain}"
                ),
            )

    def require_domain(self, domain: str) -> dict[str, Any]:
        data = self.store.get_domain(domain)
        if data is None:
            raise NotFound(f"No such domain: {domain}", athenz_message=f"No such domain: {domain}")
        return data

    def audited(
        self, request: Request, principal: str, method: Callable[..., Any], args: list[Any]
    ) -> Any:
        """Run one ZMS write and record it in the audit chain, applied or refused. Only
        authenticated writes reach here (an unauthenticated request adds no record); refused
        ones are recorded at a bounded rate per principal (lab.pdp.audit), so a registered
        non-admin key cannot flood the trail."""
        action = f"zms:{request.method.lower()}"
        resource = request.url.path.removeprefix("/zms/v1")
        # As at the ZTS: only a plain label reaches the audit trail (lab.oauth.text).
        correlation_id = (
            correlation_label(request.headers.get("x-correlation-id")) or new_jti()[:16]
        )

        def audit(allowed: bool, reason: str) -> None:
            record = self.pdp.audit.record(
                AuditEvent(
                    correlation_id=correlation_id,
                    client=principal,
                    subject=None,
                    resource=resource,
                    action=action,
                    allowed=allowed,
                    reason=reason,
                )
            )
            if record is None:
                log.info("zms deny %s by %s (over the refused-record rate)", action, principal)

        try:
            result = method(*args)
        except OAuthError as exc:
            audit(False, f"{exc.error}: {exc.athenz_message}")
            raise
        audit(True, f"{principal} changed {resource}")
        return result

    # ------------------------------------------------------------------ domains
    def create_domain(self, principal: str, body: Any, parent: str | None = None) -> dict[str, Any]:
        body = _obj(body)
        name = domain_name(body.get("name"))
        if parent is not None:
            parent = domain_name(parent)
            self.require_domain(parent)
            self.require_admin(principal, parent)
            name = f"{parent}.{name}"
        elif "." in name:
            raise InvalidRequest(
                "a top-level domain name has no dots; use POST /subdomain/{parent}"
            )
        elif principal != ADMIN_PRINCIPAL:
            raise AccessDenied(
                "only the system admin creates top-level domains",
                athenz_message=f"Forbidden: principal {principal} is not a system administrator",
            )
        if self.store.get_domain(name) is not None:
            raise Conflict(
                f"domain {name} already exists", athenz_message=f"Domain already exists: {name}"
            )
        admins = [principal_name(a) for a in _strings(body.get("adminUsers"), "adminUsers")] or [
            principal
        ]
        stamp = timestamp()
        data = {
            "name": name,
            "description": _free_text(body, "description"),
            "org": _one_line(body, "org"),
            "enabled": _flag(body, "enabled", True),
            "auditEnabled": _flag(body, "auditEnabled", False),
            "modified": stamp,
        }
        if parent:
            data["parent"] = parent
        admin_role = {
            "name": f"{name}:role.admin",
            "modified": stamp,
            "roleMembers": [{"memberName": a} for a in admins],
        }
        admin_policy = {
            "name": f"{name}:policy.admin",
            "modified": stamp,
            "assertions": [
                {
                    "role": f"{name}:role.admin",
                    "resource": f"{name}:*",
                    "action": "*",
                    "effect": "ALLOW",
                    "id": self.store.next_assertion_id(),
                }
            ],
        }
        # Athenz: a new domain comes with role admin (adminUsers) and policy admin (all on d:*).
        self.store.put_domain(data, roles=[admin_role], policies=[admin_policy])
        return self.store.get_domain(name) or data

    def get_domain(self, principal: str, domain: str) -> dict[str, Any]:
        return self.require_domain(domain_name(domain))

    def delete_domain(self, principal: str, domain: str) -> None:
        domain = domain_name(domain)
        self.require_domain(domain)
        if "." not in domain and principal != ADMIN_PRINCIPAL:
            raise AccessDenied("only the system admin deletes top-level domains")
        self.require_admin(principal, domain.rsplit(".", 1)[0] if "." in domain else domain)
        if any(d.startswith(domain + ".") for d in self.store.list_domains()):
            raise Conflict(
                f"domain {domain} has subdomains", athenz_message=f"Domain has subdomains: {domain}"
            )
        self.store.delete_domain(domain)

    def list_domains(self, principal: str) -> dict[str, Any]:
        return {"names": self.store.list_domains()}

    # ------------------------------------------------------------------ roles
    def _members(self, value: Any) -> list[dict[str, Any]]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise InvalidRequest("roleMembers must be a list")
        members: dict[str, dict[str, Any]] = {}
        for item in value:
            member = _obj(item)
            entry: dict[str, Any] = {"memberName": member_name(member.get("memberName"))}
            if member.get("expiration") is not None:
                entry["expiration"] = self._expiration(member["expiration"])
            # A member named twice is stored once (the last entry wins, as in put_member).
            members.pop(entry["memberName"], None)
            members[entry["memberName"]] = entry
        return list(members.values())

    def _expiration(self, value: Any) -> str:
        # A number, list or object is refused, never read as "no expiration" (falsy) or str()ed.
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return timestamp(parse_timestamp(value))
        except ValueError:
            raise InvalidRequest(
                f"expiration {value!r} is not a timestamp with a time zone"
            ) from None

    def put_role(self, principal: str, domain: str, role: str, body: Any) -> dict[str, Any]:
        domain = domain_name(domain)
        self.require_domain(domain)
        self.require_admin(principal, domain)
        role = short_entity(domain, role, "role")
        body = _obj(body)
        if body.get("name") is not None and short_entity(domain, body["name"], "role") != role:
            raise InvalidRequest("role name in the body does not match the path")
        data: dict[str, Any] = {
            "name": f"{domain}:role.{role}",
            "modified": timestamp(),
            "roleMembers": self._members(body.get("roleMembers")),
        }
        if body.get("trust") is not None:
            data["trust"] = _one_line(body, "trust")
        if body.get("description") is not None:
            data["description"] = _free_text(body, "description")
        self.store.put_object("roles", domain, role, data)
        return data

    def get_role(self, principal: str, domain: str, role: str) -> dict[str, Any]:
        return self._get_entity(domain, "role", role)

    def list_roles(self, principal: str, domain: str) -> dict[str, Any]:
        return self._list_entities(domain, "role")

    def _get_entity(self, domain: str, kind: str, name: str) -> dict[str, Any]:
        """A role or policy (``kind``), stored in its table under its short name."""
        domain = domain_name(domain)
        self.require_domain(domain)
        short = short_entity(domain, name, kind)
        data = self.store.get_object(ENTITY_TABLES[kind], domain, short)
        if data is None:
            full = f"{domain}:{kind}.{short}"
            raise NotFound(
                f"{kind} {full} not found",
                athenz_message=f"get{kind.title()}: {kind.title()} not found: '{full}'",
            )
        return data

    def _list_entities(self, domain: str, kind: str) -> dict[str, Any]:
        domain = domain_name(domain)
        self.require_domain(domain)
        items = self.store.list_objects(ENTITY_TABLES[kind], domain)
        return {"names": [i["name"].split(f":{kind}.", 1)[1] for i in items], "list": items}

    def delete_role(self, principal: str, domain: str, role: str) -> None:
        domain = domain_name(domain)
        self.require_domain(domain)
        self.require_admin(principal, domain)
        role = short_entity(domain, role, "role")
        if role == "admin":
            raise InvalidRequest(
                "the admin role cannot be deleted",
                athenz_message="deleteRole: admin role cannot be deleted",
            )
        if not self.store.delete_object("roles", domain, role):
            raise NotFound(
                f"role {domain}:role.{role} not found",
                athenz_message=f"deleteRole: Role not found: '{domain}:role.{role}'",
            )

    def put_member(
        self, principal: str, domain: str, role: str, member: str, body: Any
    ) -> dict[str, Any]:
        domain = domain_name(domain)
        self.require_domain(domain)
        self.require_admin(principal, domain)
        role = short_entity(domain, role, "role")
        member = member_name(member)
        body = _obj(body) if body is not None else {}
        if body.get("memberName") is not None and member_name(body["memberName"]) != member:
            raise InvalidRequest("memberName in the body does not match the path")
        entry: dict[str, Any] = {"memberName": member}
        if body.get("expiration") is not None:
            entry["expiration"] = self._expiration(body["expiration"])

        def add(data: dict[str, Any]) -> None:
            members = [m for m in data.get("roleMembers") or [] if m["memberName"] != member]
            data["roleMembers"] = [*members, entry]

        if self.store.update_object("roles", domain, role, add) is None:
            raise NotFound(
                f"role {domain}:role.{role} not found",
                athenz_message=f"putMembership: Role not found: '{domain}:role.{role}'",
            )
        return {**entry, "roleName": role, "isMember": True}

    def delete_member(self, principal: str, domain: str, role: str, member: str) -> None:
        domain = domain_name(domain)
        self.require_domain(domain)
        self.require_admin(principal, domain)
        role = short_entity(domain, role, "role")
        member = member_name(member)
        found: list[bool] = []

        def remove(data: dict[str, Any]) -> None:
            members = data.get("roleMembers") or []
            kept = [m for m in members if m["memberName"] != member]
            found.append(len(kept) != len(members))
            data["roleMembers"] = kept

        if self.store.update_object("roles", domain, role, remove) is None or not found[0]:
            raise NotFound(
                f"{member} is not a member of {domain}:role.{role}",
                athenz_message=f"deleteMembership: Member not found: '{member}'",
            )

    # ------------------------------------------------------------------ policies
    def _assertion(self, domain: str, body: Any) -> dict[str, Any]:
        item = _obj(body)
        role = role_reference(item.get("role"))
        if not role.startswith(f"{domain}:role."):
            role = f"{domain}:role.{role}" if ":" not in role else role
        # Absent means ALLOW (Athenz's default); a value of another type is an error, never
        # silently ALLOW because it is falsy (0, [], {}).
        raw_effect = item.get("effect")
        effect = "ALLOW" if raw_effect is None else raw_effect
        if not isinstance(effect, str) or effect.upper() not in ("ALLOW", "DENY"):
            raise InvalidRequest("effect must be ALLOW or DENY")
        resource = resource_name(item.get("resource"))
        return {
            "role": role,
            "resource": resource,
            "action": action_name(item.get("action")),
            "effect": effect.upper(),
            "id": self.store.next_assertion_id(),
        }

    def put_policy(self, principal: str, domain: str, policy: str, body: Any) -> dict[str, Any]:
        domain = domain_name(domain)
        self.require_domain(domain)
        self.require_admin(principal, domain)
        policy = short_entity(domain, policy, "policy")
        body = _obj(body)
        if body.get("name") is not None and short_entity(domain, body["name"], "policy") != policy:
            raise InvalidRequest("policy name in the body does not match the path")
        assertions = [] if body.get("assertions") is None else body["assertions"]
        if not isinstance(assertions, list):
            raise InvalidRequest("assertions must be a list")
        data = {
            "name": f"{domain}:policy.{policy}",
            "modified": timestamp(),
            "assertions": [self._assertion(domain, a) for a in assertions],
        }
        self.store.put_object("policies", domain, policy, data)
        return data

    def get_policy(self, principal: str, domain: str, policy: str) -> dict[str, Any]:
        return self._get_entity(domain, "policy", policy)

    def list_policies(self, principal: str, domain: str) -> dict[str, Any]:
        return self._list_entities(domain, "policy")

    def delete_policy(self, principal: str, domain: str, policy: str) -> None:
        domain = domain_name(domain)
        self.require_domain(domain)
        self.require_admin(principal, domain)
        policy = short_entity(domain, policy, "policy")
        if policy == "admin":
            raise InvalidRequest("the admin policy cannot be deleted")
        if not self.store.delete_object("policies", domain, policy):
            raise NotFound(
                f"policy {domain}:policy.{policy} not found",
                athenz_message=f"deletePolicy: Policy not found: '{domain}:policy.{policy}'",
            )

    def put_assertion(self, principal: str, domain: str, policy: str, body: Any) -> dict[str, Any]:
        domain = domain_name(domain)
        self.require_domain(domain)
        self.require_admin(principal, domain)
        policy = short_entity(domain, policy, "policy")
        assertion = self._assertion(domain, body)

        def add(data: dict[str, Any]) -> dict[str, Any]:
            data["assertions"] = [*(data.get("assertions") or []), assertion]
            return assertion

        if self.store.update_object("policies", domain, policy, add) is None:
            raise NotFound(
                f"policy {domain}:policy.{policy} not found",
                athenz_message=f"putAssertion: Policy not found: '{domain}:policy.{policy}'",
            )
        return assertion

    # ------------------------------------------------------------------ services
    def put_service(self, principal: str, domain: str, service: str, body: Any) -> dict[str, Any]:
        domain = domain_name(domain)
        self.require_domain(domain)
        self.require_admin(principal, domain)
        service = simple_name(service, "service")
        body = _obj(body)
        full = f"{domain}.{service}"
        if body.get("name") is not None and str(body["name"]).lower() not in (full, service):
            raise InvalidRequest("service name in the body does not match the path")
        keys = [] if body.get("publicKeys") is None else body["publicKeys"]
        if not isinstance(keys, list):
            raise InvalidRequest("publicKeys must be a list")
        public_keys = []
        for item in keys:
            entry = _obj(item)
            kid, encoded = entry.get("id"), entry.get("key")
            if not isinstance(kid, str) or not kid or not isinstance(encoded, str):
                raise InvalidRequest("each public key needs an id and a key (YBase64-encoded PEM)")
            kid = checked_text(kid, "publicKeys[].id", max_chars=MAX_NAME)
            try:
                load_public_key(ybase64_decode(encoded))
            except (ValueError, TypeError):
                raise InvalidRequest(
                    f"public key {kid} is not a YBase64-encoded PEM RSA or P-256 key"
                ) from None
            public_keys.append({"id": kid, "key": encoded})
        data: dict[str, Any] = {"name": full, "modified": timestamp(), "publicKeys": public_keys}
        endpoint = body.get("providerEndpoint")
        if endpoint is not None:
            if (
                not isinstance(endpoint, str)
                or not endpoint.startswith(("http://", "https://"))
                or len(endpoint) > 2048
            ):
                raise InvalidRequest("providerEndpoint must be an http(s) URL")
            checked_text(endpoint, "providerEndpoint", max_chars=2048)
            # The endpoint is how ZTS maps an RFC 8707 resource to a domain (a token for the MCP
            # server's URL belongs to domain mcp): the first service to register a URL owns it,
            # so no other service - in any domain - can claim tokens meant for it.
            holder = self.store.service_by_endpoint(endpoint)
            if holder is not None and str(holder.get("name")) != full:
                raise Conflict(
                    f"providerEndpoint {endpoint} is already registered by service "
                    f"{holder.get('name')}",
                    athenz_message=(
                        f"putServiceIdentity: providerEndpoint {endpoint} is already "
                        f"registered by service {holder.get('name')}"
                    ),
                )
            data["providerEndpoint"] = endpoint
        if body.get("description") is not None:
            data["description"] = _free_text(body, "description")
        self.store.put_object("services", domain, service, data)
        return data

    def get_service(self, principal: str, domain: str, service: str) -> dict[str, Any]:
        domain = domain_name(domain)
        self.require_domain(domain)
        service = simple_name(service, "service")
        data = self.store.get_object("services", domain, service)
        if data is None:
            raise NotFound(
                f"service {domain}.{service} not found",
                athenz_message=f"getServiceIdentity: Service not found: '{domain}.{service}'",
            )
        return data

    def delete_service(self, principal: str, domain: str, service: str) -> None:
        domain = domain_name(domain)
        self.require_domain(domain)
        self.require_admin(principal, domain)
        service = simple_name(service, "service")
        if not self.store.delete_object("services", domain, service):
            raise NotFound(
                f"service {domain}.{service} not found",
                athenz_message=f"deleteServiceIdentity: Service not found: '{domain}.{service}'",
            )

    def new_secret(self, principal: str, domain: str, service: str) -> dict[str, Any]:
        self.get_service(principal, domain, service)
        domain, service = domain_name(domain), simple_name(service, "service")
        self.require_admin(principal, domain)
        secret = new_secret()
        self.store.set_secret_hash(f"{domain}.{service}", hash_secret(secret))
        return {"clientId": f"{domain}.{service}", "clientSecret": secret}

    # ------------------------------------------------------------------ access check
    def access(self, principal: str, action: str, resource: str, who: str | None) -> dict[str, Any]:
        target = principal_name(who) if who else principal
        decision = self.pdp.check_access(target, action_name(action), resource_name(resource))
        return {"granted": decision.allowed, "effect": decision.effect, "reason": decision.reason}

    # ------------------------------------------------------------------ lab maintenance
    def require_system_admin(self, principal: str) -> None:
        if principal != ADMIN_PRINCIPAL:
            raise AccessDenied(f"only {ADMIN_PRINCIPAL} may call this endpoint")

    def get_state(self, principal: str) -> dict[str, Any]:
        self.require_system_admin(principal)
        return self.store.export_state()

    def put_state(self, principal: str, body: Any) -> dict[str, Any]:
        self.require_system_admin(principal)
        state = _validate_state(_obj(body))
        self.store.import_state(state)
        return {"domains": self.store.list_domains()}

    def get_audit_page(
        self, principal: str, since: int, limit: int | None, last: int | None
    ) -> bytes:
        """One page of the trail as JSON bytes, built from the stored text without parsing it:
        ``{"records": [...], "next": <seq to pass as since, or null>, "last_seq": n}``.
        ``last`` = the last N records (an export of recent decisions)."""
        self.require_system_admin(principal)
        last_seq = self.store.audit_last_seq()
        if last is not None:
            since, limit = max(since, last_seq - last), last
        assert limit is not None
        rows = self.store.audit_page(since, limit)
        more = bool(rows) and rows[-1][0] < last_seq
        next_seq = str(rows[-1][0]) if more else "null"
        records = ",\n".join(raw for _, raw in rows)
        return (f'{{"records":[\n{records}\n],"next":{next_seq},"last_seq":{last_seq}}}').encode()

    def get_audit_seal(self, principal: str) -> dict[str, Any]:
        """The PDP's MAC seals (only the PDP holds the key). ``lab audit --verify`` walks the
        hash chain itself as it streams the trail; this completes it without a second walk."""
        self.require_system_admin(principal)
        problems = self.pdp.audit.verify_seals()
        return {"valid": not problems, "problems": problems}

    def get_audit(self, principal: str, since: int) -> dict[str, Any]:
        self.require_system_admin(principal)
        records = self.store.audit_records(since)
        # The full check (hash chain + the PDP's MAC seals) needs the PDP's key: done here.
        return {"records": records, "problems": self.pdp.audit.verify() if since == 0 else []}


#: The most records one page of the audit export carries.
AUDIT_PAGE_MAX = 10_000


def _int_param(
    query: Any, name: str, default: int | None, *, minimum: int, maximum: int | None = None
) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    # ASCII digits only, at most 18 (inside SQLite's 64-bit integers): int() would also take
    # " 12", "1_000" and Arabic-Indic digits, and a 30-digit value overflowed the store (500).
    digits = raw[1:] if raw.startswith("-") else raw
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise InvalidRequest(f"{name} must be an integer of at most 18 digits")
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise InvalidRequest(f"{name} must be in {bounds}")
    return value


#: Longest description or other free text ZMS stores.
MAX_TEXT_CHARS = 1024


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    """A JSON boolean (absent or null: ``default``): ``"false"`` or ``0`` is refused, never
    read by truthiness (``bool("false")`` is True)."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{key}' must be true or false")
    return value


def _free_text(body: dict[str, Any], key: str) -> str:
    """An optional free-text member (absent: empty), bounded and printable."""
    value = body.get(key)
    if value is None:
        return ""
    return checked_text(value, key, max_chars=MAX_TEXT_CHARS, multiline=True, required=False)


def _one_line(body: dict[str, Any], key: str) -> str:
    """An optional one-line member (``org``, ``trust``), bounded and printable."""
    value = body.get(key)
    if value is None:
        return ""
    return checked_text(value, key, max_chars=MAX_NAME, required=False)


def _validate_state(state: dict[str, Any]) -> dict[str, Any]:
    """A state document must be well-formed before it replaces anything (atomic import)."""
    domains = state.get("domains")
    if not isinstance(domains, list):
        raise InvalidRequest("state needs a domains list")
    for domain in domains:
        domain = _obj(domain)
        domain_name(domain.get("name"))
        for table, marker in (("roles", ":role."), ("policies", ":policy."), ("services", ".")):
            items = domain.get(table) or []
            if not isinstance(items, list):
                raise InvalidRequest(f"{table} must be a list")
            for item in items:
                if (
                    not isinstance(item, dict)
                    or not isinstance(item.get("name"), str)
                    or marker not in item["name"]
                ):
                    raise InvalidRequest(f"every entry in {table} needs a full name")
        if not all(
            isinstance(k, str) and isinstance(v, str)
            for k, v in (state.get("serviceSecrets") or {}).items()
        ):
            raise InvalidRequest("serviceSecrets maps principals to hashes")
        # Every name as a write would check it, and no text a write would refuse.
        for role in domain.get("roles") or []:
            role_reference(role["name"])
        for service in domain.get("services") or []:
            principal_name(service["name"])
    _printable_strings(state, "state")
    return state


#: Longest string a state document may hold (a YBase64 PEM key is under 1 KB).
MAX_STATE_TEXT = 16_384


def _printable_strings(value: Any, where: str) -> None:
    """Every key and string in an imported state document is text a write would have stored:
    no control characters (tab and line breaks aside), no lone surrogates, bounded."""
    if isinstance(value, str):
        checked_text(value, where, max_chars=MAX_STATE_TEXT, multiline=True, required=False)
    elif isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where}.{str(key)[:40]}"
            checked_text(key, inner, max_chars=MAX_NAME, required=False)
            _printable_strings(item, inner)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _printable_strings(item, f"{where}[{index}]")


def build_routes(pdp: Pdp) -> list[Route]:
    zms = Zms(pdp)

    def endpoint(
        method: Callable[..., Any], *params: str, body: bool = False, status: int = 200
    ) -> Handler:
        async def handle(request: Request) -> Response:
            args = [request.path_params[p] for p in params]
            empty = (
                request.headers.get("content-length") in (None, "0")
                and "transfer-encoding" not in request.headers
            )
            payload = (None if empty else await read_json(request)) if body else None
            principal = await run_in_threadpool(zms.principal, request)
            call_args = [principal, *args] + ([payload] if body else [])
            if request.method == "GET":
                result = await run_in_threadpool(method, *call_args)
            else:
                result = await run_in_threadpool(zms.audited, request, principal, method, call_args)
            if result is None or (
                status == 204 and request.headers.get("athenz-return-object") != "true"
            ):
                return Response(status_code=204, headers=NO_STORE)
            return JSONResponse(result, headers=NO_STORE)

        return handle

    async def access(request: Request) -> Response:
        principal = await run_in_threadpool(zms.principal, request)
        result = await run_in_threadpool(
            zms.access,
            principal,
            request.path_params["action"],
            request.path_params["resource"],
            single_query_params(request).get("principal"),
        )
        return JSONResponse(result)

    async def audit(request: Request) -> Response:
        principal = await run_in_threadpool(zms.principal, request)
        query = single_query_params(request)
        since = _int_param(query, "since", 0, minimum=0) or 0
        limit = _int_param(query, "limit", None, minimum=1, maximum=AUDIT_PAGE_MAX)
        last = _int_param(query, "last", None, minimum=1, maximum=AUDIT_PAGE_MAX)
        if limit is None and last is None:
            return JSONResponse(
                await run_in_threadpool(zms.get_audit, principal, since), headers=NO_STORE
            )
        body = await run_in_threadpool(zms.get_audit_page, principal, since, limit, last)
        return Response(body, media_type="application/json", headers=NO_STORE)

    async def audit_seal(request: Request) -> Response:
        principal = await run_in_threadpool(zms.principal, request)
        result = await run_in_threadpool(zms.get_audit_seal, principal)
        return JSONResponse(result, headers=NO_STORE)

    async def openapi(request: Request) -> Response:
        from lab.pdp.openapi import zms_openapi

        return JSONResponse(zms_openapi(pdp))

    d = "/zms/v1/domain/{domain}"
    return [
        Route("/zms/v1/domain", endpoint(zms.create_domain, body=True), methods=["POST"]),
        Route("/zms/v1/domain", endpoint(zms.list_domains), methods=["GET"]),
        Route(
            "/zms/v1/subdomain/{parent}",
            endpoint(lambda p, parent, b: zms.create_domain(p, b, parent), "parent", body=True),
            methods=["POST"],
        ),
        Route(d, endpoint(zms.get_domain, "domain"), methods=["GET"]),
        Route(d, endpoint(zms.delete_domain, "domain"), methods=["DELETE"]),
        Route(d + "/role", endpoint(zms.list_roles, "domain"), methods=["GET"]),
        Route(
            d + "/role/{role}",
            endpoint(zms.put_role, "domain", "role", body=True, status=204),
            methods=["PUT"],
        ),
        Route(d + "/role/{role}", endpoint(zms.get_role, "domain", "role"), methods=["GET"]),
        Route(d + "/role/{role}", endpoint(zms.delete_role, "domain", "role"), methods=["DELETE"]),
        Route(
            d + "/role/{role}/member/{member}",
            endpoint(zms.put_member, "domain", "role", "member", body=True, status=204),
            methods=["PUT"],
        ),
        Route(
            d + "/role/{role}/member/{member}",
            endpoint(zms.delete_member, "domain", "role", "member"),
            methods=["DELETE"],
        ),
        Route(d + "/policy", endpoint(zms.list_policies, "domain"), methods=["GET"]),
        Route(
            d + "/policy/{policy}",
            endpoint(zms.put_policy, "domain", "policy", body=True, status=204),
            methods=["PUT"],
        ),
        Route(
            d + "/policy/{policy}", endpoint(zms.get_policy, "domain", "policy"), methods=["GET"]
        ),
        Route(
            d + "/policy/{policy}",
            endpoint(zms.delete_policy, "domain", "policy"),
            methods=["DELETE"],
        ),
        Route(
            d + "/policy/{policy}/assertion",
            endpoint(zms.put_assertion, "domain", "policy", body=True),
            methods=["PUT"],
        ),
        Route(
            d + "/service/{service}",
            endpoint(zms.put_service, "domain", "service", body=True, status=204),
            methods=["PUT"],
        ),
        Route(
            d + "/service/{service}",
            endpoint(zms.get_service, "domain", "service"),
            methods=["GET"],
        ),
        Route(
            d + "/service/{service}",
            endpoint(zms.delete_service, "domain", "service"),
            methods=["DELETE"],
        ),
        Route(
            d + "/service/{service}/secret",
            endpoint(zms.new_secret, "domain", "service"),
            methods=["POST"],
        ),
        Route("/zms/v1/access/{action}/{resource:path}", access, methods=["GET"]),
        Route("/zms/v1/lab/state", endpoint(zms.get_state), methods=["GET"]),
        Route("/zms/v1/lab/state", endpoint(zms.put_state, body=True), methods=["PUT"]),
        Route("/zms/v1/lab/audit", audit, methods=["GET"]),
        Route("/zms/v1/lab/audit/seal", audit_seal, methods=["GET"]),
        Route("/zms/v1/openapi.json", openapi, methods=["GET"]),
    ]
