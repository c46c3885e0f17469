"""``lab policy show [DOMAIN]``: the PDP's domains as a tree of roles, members and assertions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from lab.cli import common

if TYPE_CHECKING:
    import httpx

    from lab.config import Endpoints

app = typer.Typer()


@app.command("show")
def show(
    domain: str | None = typer.Argument(None, help="A domain, e.g. api (default: every domain)."),
    json_output: bool = typer.Option(False, "--json", help="Print the domain(s) as JSON."),
) -> None:
    """Show roles with their members, policies with their assertions, and services."""
    import httpx

    settings = common.settings()
    endpoints = common.backend(settings).endpoints()
    with httpx.Client(timeout=10, trust_env=False, auth=admin_auth(settings, endpoints)) as client:
        names = [domain.lower()] if domain else domain_names(client, endpoints)
        domains = [read_domain(client, endpoints, name) for name in names]
    if json_output:
        common.print_json({"domains": domains})
        return
    if not domains:
        common.out().print("The PDP holds no domains yet. Step 2 creates domain api.")
        return
    for data in domains:
        common.out().print(domain_tree(data))


def admin_auth(settings: Any, endpoints: Endpoints) -> Any:
    """ZMS reads are open in Athenz; the lab signs them anyway so one call works everywhere.
    Each request carries a fresh assertion (they are single use)."""
    from lab.config import ADMIN_PRINCIPAL
    from lab.oauth.http import AdminAssertionAuth
    from lab.oauth.jose import SigningKey

    key = SigningKey.load_or_create(settings.key_file(ADMIN_PRINCIPAL))
    return AdminAssertionAuth(ADMIN_PRINCIPAL, key, endpoints.zms)


def _get(client: httpx.Client, url: str) -> Any:
    response = client.get(url)
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        common.fail(f"GET {url} answered {response.status_code}", "see `lab logs pdp`")
    return response.json()


def _names(listing: Any) -> list[str]:
    """Athenz lists come as ``{"names": [...]}``; some as ``{"list": [{"name": ...}]}``."""
    if not isinstance(listing, dict):
        return []
    if isinstance(listing.get("names"), list):
        return [str(n) for n in listing["names"]]
    return [str(i.get("name")) for i in listing.get("list", []) if isinstance(i, dict)]


def _short(name: str) -> str:
    """``api:role.docs-getter`` → ``docs-getter``; ``mcp.api-mcp`` stays."""
    return name.split(":", 1)[-1].split(".", 1)[-1] if ":" in name else name


def domain_names(client: httpx.Client, endpoints: Endpoints) -> list[str]:
    return _names(_get(client, f"{endpoints.zms}/domain"))


def _objects(client: httpx.Client, base: str, kind: str) -> list[dict[str, Any]]:
    """Every role or policy of a domain: from the list's objects, else one GET per name."""
    listing = _get(client, f"{base}/{kind}")
    if isinstance(listing, dict) and isinstance(listing.get("list"), list):
        return [item for item in listing["list"] if isinstance(item, dict)]
    return [
        _get(client, f"{base}/{kind}/{_short(name)}") or {"name": name} for name in _names(listing)
    ]


def read_domain(client: httpx.Client, endpoints: Endpoints, name: str) -> dict[str, Any]:
    base = f"{endpoints.zms}/domain/{name}"
    if _get(client, base) is None:
        common.fail(f"the PDP has no domain {name!r}", "list them with `lab policy show`", 1)
    roles = [
        {
            "name": role.get("name"),
            "members": [
                m.get("memberName") for m in role.get("roleMembers", []) if isinstance(m, dict)
            ],
        }
        for role in _objects(client, base, "role")
    ]
    policies = [
        {"name": policy.get("name"), "assertions": policy.get("assertions", [])}
        for policy in _objects(client, base, "policy")
    ]
    services = _names(_get(client, f"{base}/service"))
    return {"name": name, "roles": roles, "policies": policies, "services": services}


def domain_tree(data: dict[str, Any]) -> object:
    from rich.tree import Tree

    # What the PDP answered: names shown, never obeyed by the terminal nor read as markup.
    from lab.render.shown import shown_markup as escape

    tree = Tree(f"[bold]domain {escape(data['name'])}[/]")
    roles = tree.add("roles")
    for role in data["roles"]:
        branch = roles.add(escape(str(role["name"])))
        for member in role["members"] or []:
            branch.add(f"member {escape(str(member))}")
        if not role["members"]:
            branch.add("[dim](no members)[/]")
    policies = tree.add("policies")
    for policy in data["policies"]:
        branch = policies.add(escape(str(policy["name"])))
        for a in policy["assertions"]:
            effect = str(a.get("effect", "ALLOW")).upper()
            color = "red" if effect == "DENY" else "green"
            branch.add(
                f"[{color}]{effect}[/] {escape(str(a.get('action')))} on "
                f"{escape(str(a.get('resource')))} to {escape(str(a.get('role')))}"
            )
    if data["services"]:
        services = tree.add("services")
        for service in data["services"]:
            services.add(escape(service))
    return tree
