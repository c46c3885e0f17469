"""``setting``: switch a component setting with an admin-signed ``PUT {part}/lab/settings``
(step 8's ``require_access`` at the MCP server)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lab.steps.actions import request
from lab.steps.actions.base import ActionError, Produced, origin

if TYPE_CHECKING:
    from lab.steps.engine import RunContext


def part_base(part: str, ctx: RunContext) -> str:
    """Where a part's ``/lab/*`` endpoints live: its origin."""
    ep = ctx.endpoints
    urls = {
        "mcpserver": ep.mcp,
        "docapi": ep.docapi_protected,
        "docapi_protected": ep.docapi_protected,
        "pdp": ep.zts,
        "zts": ep.zts,
        "zms": ep.zms,
        "idp": ep.idp_issuer,
    }
    if part not in urls:
        raise ActionError(f"setting.part {part!r} is not one of {', '.join(urls)}")
    return origin(urls[part])


def as_request(spec: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    return {
        "method": "PUT",
        "url": f"{part_base(str(spec['part']), ctx)}/lab/settings",
        "json": {str(spec["name"]): spec["value"]},
        "auth": "admin",
    }


def run(spec: dict[str, Any], ctx: RunContext) -> Produced:
    return request.run(as_request(spec, ctx), ctx)


def command(spec: dict[str, Any], ctx: RunContext) -> list[str]:
    return [request.curl_command(as_request(spec, ctx), ctx)]
