"""Which roles a registered resource needs: the default ``scope`` and ``scopes_supported``.

RFC 8693 §2.1 and the ID-JAG draft (-04 §4.3) make ``scope`` optional, and the MCP SDK's and
SEP-990 clients send none unless a challenge told them one. When a request names a registered
resource (RFC 8707 ``resource``: a service's ``providerEndpoint``) but no scope, the PDP derives
the scope from stored policy, never from a list in code:

1. roles of the resource's own domain that an ALLOW assertion grants a non-``zts.*`` action on
   a resource of that domain - for the MCP server, ``mcp:role.mcp-accessor`` (``access`` on
   ``mcp:mcp``, step 8);
2. roles the resource's service may obtain by token exchange from its domain - ALLOW
   ``zts.token_target_exchange`` on ``<target>:<domain>:role.<role>`` for a role the service is
   a member of - for the MCP server, ``api:role.docs-getter`` (step 7), and ``docs-poster`` /
   ``docs-deleter`` once steps 14 and 15 grant them.

That is what a caller needs to use the resource and everything behind it. Glob assertions
(``*``) name no particular role and are skipped, and so is every ``<domain>:role.admin``: a
domain's admin policy (``ALLOW *`` on ``<domain>:*``, made with the domain) would otherwise put
its admin role into every default scope of that domain's resources, so a domain admin asking
without a scope would get a token carrying ``role.admin``. The admin role administers ZMS; it is
no default. A client that really wants it names it in ``scope`` and is checked like any role
(Athenz behaves the same: ``<domain>:domain`` or an explicit role, never implied).
"""

from __future__ import annotations

from lab.pdp.core import Pdp

SOURCE_EXCHANGE_PREFIX = "zts."
TARGET_EXCHANGE = "zts.token_target_exchange"


def _literal(text: str) -> bool:
    return "*" not in text and "?" not in text


def _is_admin_role(role: str) -> bool:
    """``<domain>:role.admin``: administers the domain at ZMS, never a default or advertised
    scope (see the module docstring)."""
    return role.endswith(":role.admin")


def roles_for_resource(pdp: Pdp, resource: str) -> list[str]:
    """Full role names the registered ``resource`` needs (empty if it is not registered)."""
    service = pdp.store.service_by_endpoint(resource)
    if service is None:
        return []
    principal = str(service["name"]).lower()
    domain = principal.rsplit(".", 1)[0]
    needed: list[str] = []
    view = pdp.store.domain_view(domain)
    for assertion in view.assertions if view is not None else []:
        role = assertion.role.lower()
        if (
            assertion.effect == "ALLOW"
            and not assertion.action.lower().startswith(SOURCE_EXCHANGE_PREFIX)
            and assertion.resource.lower().startswith(f"{domain}:")
            and _literal(role)
            and not _is_admin_role(role)
            and role not in needed
        ):
            needed.append(role)
    for target in pdp.store.list_domains():
        target_view = pdp.store.domain_view(target)
        if target_view is None:
            continue
        held = set(target_view.roles_of(principal))
        prefix = f"{target}:{domain}:role."
        for assertion in target_view.assertions:
            resource = assertion.resource.lower()
            if (
                assertion.effect == "ALLOW"
                and assertion.action.lower() == TARGET_EXCHANGE
                and resource.startswith(prefix)
                and _literal(resource)
                and assertion.role.lower() in held
            ):
                role = f"{target}:role.{resource[len(prefix) :]}"
                if role not in needed and not _is_admin_role(role):
                    needed.append(role)
    return needed


def all_roles(pdp: Pdp) -> list[str]:
    """Every role of every domain by full name: the scopes this PDP can issue (RFC 8414
    ``scopes_supported``). ``<domain>:role.admin`` is left out: it administers ZMS, which takes
    signed assertions, and is no scope a client should ask a token for."""
    names: list[str] = []
    for domain in pdp.store.list_domains():
        view = pdp.store.domain_view(domain)
        if view is not None:
            names.extend(
                sorted(role.lower() for role in view.roles if not _is_admin_role(role.lower()))
            )
    return names
