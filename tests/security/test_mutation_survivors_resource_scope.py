"""Tests written for mutants of ``lab/pdp/zts/grants/resource_scope.py`` (docs/dev/mutation.md):
which assertions make a role part of a registered resource's default scope, and which do not.
"""

from __future__ import annotations

from lab.config import ADMIN_PRINCIPAL
from lab.pdp.core import Pdp
from lab.pdp.zts.grants.resource_scope import all_roles, roles_for_resource
from tests.pdp.conftest import MCP, PdpLab

# The admin policy (ALLOW * on mcp:*) names role.admin, which is never a default (see
# resource_scope's docstring); the grants then keep only what the caller holds and, for
# ID-JAGs, may carry (zts.jag_exchange).
MCP_DEFAULT = ["mcp:role.mcp-accessor", "api:role.docs-getter"]


def _needed(lab: PdpLab) -> list[str]:
    return roles_for_resource(Pdp.open(lab.settings), lab.settings.endpoints.mcp)


def test_the_mcp_servers_default_scope_is_read_from_the_policies(world: PdpLab) -> None:
    assert _needed(world) == MCP_DEFAULT
    assert roles_for_resource(Pdp.open(world.settings), "http://127.0.0.1:1/unregistered") == []


def test_deny_glob_and_zts_assertions_add_no_role(world: PdpLab) -> None:
    world.role("mcp", "blocked", [])
    world.allow("mcp", "deny", "blocked", "access", "mcp:mcp", effect="DENY")
    world.role("mcp", "admin-ish", [])
    world.allow("mcp", "zts", "admin-ish", "zts.jag_exchange", "mcp:role.mcp-accessor")
    world.role("mcp", "Mixed-Case", [])
    world.allow("mcp", "mixed", "Mixed-Case", "ACCESS", "MCP:Tools")
    assert _needed(world) == [*MCP_DEFAULT[:1], "mcp:role.mixed-case", *MCP_DEFAULT[1:]]


def test_target_exchange_counts_only_literal_allowed_roles_the_service_holds(
    world: PdpLab,
) -> None:
    world.role("api", "docs-poster", [])
    world.role("api", "poster-exchanger", [])  # the MCP service is not a member
    world.allow(
        "api", "poster", "poster-exchanger", "zts.token_target_exchange", "api:mcp:role.docs-poster"
    )
    for name, glob in (("star", "api:mcp:role.docs-*"), ("mark", "api:mcp:role.docs-?")):
        world.allow("api", name, "docs-getter-exchanger", "zts.token_target_exchange", glob)
    world.allow(
        "api",
        "denied",
        "docs-getter-exchanger",
        "zts.token_target_exchange",
        "api:mcp:role.docs-deleter",
        effect="DENY",
    )
    world.allow("api", "other", "docs-getter-exchanger", "zts.other", "api:mcp:role.docs-x")
    assert _needed(world) == MCP_DEFAULT
    world.role("api", "poster-exchanger", [MCP])
    assert sorted(_needed(world)) == sorted([*MCP_DEFAULT, "api:role.docs-poster"])


def test_scopes_supported_lists_every_role_but_admin_sorted_per_domain(world: PdpLab) -> None:
    names = all_roles(Pdp.open(world.settings))
    assert not any(name.endswith(":role.admin") for name in names)
    api = [name for name in names if name.startswith("api:")]
    assert api == sorted(api) and "api:role.docs-getter" in api


def test_a_service_in_a_subdomain_belongs_to_the_subdomain(world: PdpLab) -> None:
    # The domain is everything before the service's last dot: mcp.tools, not mcp.
    world.ok("POST", "/subdomain/mcp", {"name": "tools", "adminUsers": [ADMIN_PRINCIPAL]})
    gate = "http://127.0.0.1:1/gate"
    world.register_service("mcp.tools.gate", provider_endpoint=gate)
    world.role("mcp.tools", "gate-user", [])
    world.allow("mcp.tools", "use", "gate-user", "use", "mcp.tools:gate")
    needed = roles_for_resource(Pdp.open(world.settings), gate)
    assert needed == ["mcp.tools:role.gate-user"]


def test_target_exchange_adds_a_role_once_and_never_the_admin_role(world: PdpLab) -> None:
    # A second grant of the same role, and one naming the target domain's admin role: the
    # default scope stays as it was (no duplicate; role.admin is never a default).
    exchange = "zts.token_target_exchange"
    world.allow("api", "again", "docs-getter-exchanger", exchange, "api:mcp:role.docs-getter")
    world.allow("api", "to-admin", "docs-getter-exchanger", exchange, "api:mcp:role.admin")
    assert _needed(world) == MCP_DEFAULT
