"""``providers``: set the PDP's trusted identity providers through the backend (embedded: write
the providers file and reload ZTS; kind: ConfigMap and restart)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from lab.steps import shell
from lab.steps.actions.base import ActionError, Produced
from lab.steps.queries import Outcome

if TYPE_CHECKING:
    from lab.steps.engine import RunContext


def run(spec: dict[str, Any], ctx: RunContext) -> Produced:
    providers = list(spec["set"])
    if ctx.backend is None:
        raise ActionError("providers needs a running backend (`lab up`), and none was given")
    try:
        ctx.backend.set_providers(providers)
    except Exception as exc:  # noqa: BLE001 - any backend failure becomes a readable step error
        raise ActionError(f"setting the PDP's providers failed: {exc}") from None
    result = {"providers": providers, "count": len(providers), "status": 200}
    return Produced(
        outcome=Outcome(status=200, result=result), command=" ".join(command(spec, ctx))
    )


def command(spec: dict[str, Any], ctx: RunContext) -> list[str]:
    return ["lab", "providers", "set", shell.quote(json.dumps(spec["set"], separators=(",", ":")))]
