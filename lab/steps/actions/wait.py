"""``wait``: pause, e.g. to let a resource server's policy cache expire."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from lab.steps.actions.base import ActionError, Produced
from lab.steps.queries import Outcome

if TYPE_CHECKING:
    from lab.steps.engine import RunContext

MAX_WAIT_S = 60.0


def run(spec: dict[str, Any], ctx: RunContext) -> Produced:
    seconds = float(spec["seconds"])
    if not 0 <= seconds <= MAX_WAIT_S:
        raise ActionError(f"wait.seconds must be between 0 and {MAX_WAIT_S:g}, got {seconds:g}")
    time.sleep(seconds)
    return Produced(
        outcome=Outcome(result={"seconds": seconds}), command=" ".join(command(spec, ctx))
    )


def command(spec: dict[str, Any], ctx: RunContext) -> list[str]:
    return ["sleep", f"{float(spec['seconds']):g}"]
