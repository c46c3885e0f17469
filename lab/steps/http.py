"""The engine's HTTP client: httpx with the agent's recorder on its event hooks, so every
exchange of a step (ours and the agent's) is recorded the same way, secrets already redacted.
"""

from __future__ import annotations

import httpx

from lab.agent.recorder import Recorder
from lab.oauth import http as lab_http

TIMEOUT_S = 15.0


def recording_client(recorder: Recorder, timeout_s: float = TIMEOUT_S) -> httpx.Client:
    return lab_http.client(
        event_hooks=recorder.sync_hooks(), timeout=timeout_s, follow_redirects=False
    )


def describe_transport_error(exc: httpx.HTTPError, method: str, url: str) -> str:
    """One line a learner can act on: what failed, where, and the usual cause."""
    if isinstance(exc, httpx.ConnectError):
        hint = "is the lab running? (`lab up`, then `lab status`)"
        return f"{method} {url}: connection refused — {hint}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{method} {url}: no answer within the timeout"
    return f"{method} {url}: {type(exc).__name__}: {exc}"
