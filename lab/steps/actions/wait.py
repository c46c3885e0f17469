"""``wait``: pause, or wait until resource servers hold the policy a step just changed.

``wait: {seconds: 1.0}`` sleeps. ``wait: {policy: [docapi, mcp]}`` waits until each named
resource server's signed policy data was fetched (or confirmed unchanged by a 304) after this
action started, so after the ZMS writes that came before it. Each server refreshes its copy on
its own schedule, at most every ``LAB_POLICY_REFRESH_S`` (like Athenz's ZPU), and answers
``GET /healthz/policy`` with the version it holds and when it fetched it. The wait asks with
``Cache-Control: max-age=0``, which makes the server revalidate its copy with the PDP at once
(one conditional request, shared and rate-bounded by the server), so a wait is usually one
round trip; it polls until the copy is new enough, as a server inside its rate bound answers
with the copy it last fetched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lab.steps.actions.base import ActionError, Produced, origin
from lab.steps.queries import Outcome

if TYPE_CHECKING:
    from lab.config import Endpoints
    from lab.steps.engine import RunContext

MAX_WAIT_S = 60.0
#: How long a policy wait may take before it fails: many refresh intervals on a loaded machine.
POLICY_TIMEOUT_S = 15.0
POLL_S = 0.02
#: The resource servers a step can wait for, and where each answers ``/healthz/policy``.
POLICY_PARTS: dict[str, Callable[[Endpoints], str]] = {
    "docapi": lambda endpoints: endpoints.docapi_protected,
    "mcp": lambda endpoints: origin(endpoints.mcp),
}
PART_NAMES = {"docapi": "the document API", "mcp": "the MCP server"}


def run(spec: dict[str, Any], ctx: RunContext) -> Produced:
    if "policy" in spec:
        return wait_for_policy(spec, ctx)
    seconds = float(spec["seconds"])
    if not 0 <= seconds <= MAX_WAIT_S:
        raise ActionError(f"wait.seconds must be between 0 and {MAX_WAIT_S:g}, got {seconds:g}")
    time.sleep(seconds)
    return Produced(
        outcome=Outcome(result={"seconds": seconds}), command=" ".join(command(spec, ctx))
    )


def wait_for_policy(spec: dict[str, Any], ctx: RunContext) -> Produced:
    from lab.oauth import http as lab_http

    assert ctx.endpoints is not None
    started = time.time()
    clock = time.monotonic()
    held: dict[str, Any] = {}
    # max-age=0: revalidate now (RFC 9111 §5.2.1.1) rather than at the server's next refresh.
    with lab_http.client(timeout=5.0, headers={"Cache-Control": "max-age=0"}) as http:
        for part in spec["policy"]:
            url = f"{POLICY_PARTS[part](ctx.endpoints)}/healthz/policy"
            while True:
                report = _held(http, url)
                fetched = report.get("fetched_at") if report is not None else None
                if isinstance(fetched, int | float) and fetched >= started:
                    held[part] = report
                    break
                if time.monotonic() - clock > POLICY_TIMEOUT_S:
                    raise ActionError(
                        f"{PART_NAMES[part]} did not fetch the new policy within "
                        f"{POLICY_TIMEOUT_S:g} s (GET {url} answered {report!r}); "
                        "see `lab logs` for its policy refresh"
                    )
                time.sleep(POLL_S)
    seconds = round(time.monotonic() - clock, 3)
    return Produced(
        outcome=Outcome(result={"seconds": seconds, "policy": held}),
        command=" ".join(command(spec, ctx)),
    )


def _held(http: Any, url: str) -> dict[str, Any] | None:
    """The server's report, or None while it cannot say (starting, PDP busy: retried)."""
    import httpx

    try:
        response = http.get(url)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def command(spec: dict[str, Any], ctx: RunContext) -> list[str]:
    if "policy" in spec:
        # By hand a learner is slower than the refresh interval, but the header makes asking
        # once enough anyway: the answer is the version the PDP has now.
        assert ctx.endpoints is not None
        words: list[str] = []
        for part in spec["policy"]:
            words += [*(["&&"] if words else []), "curl", "-s", "-H", "'Cache-Control: max-age=0'"]
            words.append(f"{POLICY_PARTS[part](ctx.endpoints)}/healthz/policy")
        return words
    return ["sleep", f"{float(spec['seconds']):g}"]
