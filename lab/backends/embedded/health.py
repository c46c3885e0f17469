"""Each part's health URL and the probe ``lab up`` and ``lab status`` wait on."""

from __future__ import annotations

import json

from lab.backends.base import PART_NAMES, PartStatus
from lab.config import Endpoints

HEALTH_TIMEOUT_S = 1.0


def health_urls(endpoints: Endpoints, idp: str = "embedded") -> dict[str, str]:
    """Each part's ``/healthz`` URL (contracts §0), keyed by part name.

    Real Keycloak has no ``/healthz`` on its HTTP port (its health checks live on the
    management port): it is healthy when realm ``idjag`` serves its discovery document.
    """
    origins = {
        "idp": endpoints.idp_base,
        "zms": _origin(endpoints.zms),
        "zts": _origin(endpoints.zts),
        "docapi_protected": endpoints.docapi_protected,
        "docapi_unprotected": endpoints.docapi_unprotected,
        "mcp": _origin(endpoints.mcp),
    }
    urls = {name: f"{origins[name]}/healthz" for name in PART_NAMES}
    if idp == "keycloak":
        urls["idp"] = f"{endpoints.idp_issuer}/.well-known/openid-configuration"
    return urls


def part_urls(endpoints: Endpoints) -> dict[str, str]:
    """The URL a learner uses for each part (shown by ``lab up`` and ``lab status``)."""
    return {
        "idp": endpoints.idp_issuer,
        "zms": endpoints.zms,
        "zts": endpoints.zts,
        "docapi_protected": endpoints.docapi_protected,
        "docapi_unprotected": endpoints.docapi_unprotected,
        "mcp": endpoints.mcp,
    }


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def probe_part(name: str, url: str, timeout_s: float = HEALTH_TIMEOUT_S) -> PartStatus:
    """``GET /healthz``: 200 = healthy; a stand-in's 503 carries why the part failed to build.

    Plain ``http.client``: it imports in milliseconds, and ``lab up``/``lab status`` wait on it.
    """
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    shown = url.removesuffix("/healthz").removesuffix("/.well-known/openid-configuration")
    connection = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s
    )
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        status, raw = response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        return PartStatus(name, shown, False, f"not answering ({type(exc).__name__})")
    finally:
        connection.close()
    if status == 200:
        return PartStatus(name, shown, True, "ok")
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    if isinstance(body, dict) and body.get("status") == "unavailable":
        return PartStatus(name, shown, False, f"unavailable: {body.get('detail', '')}")
    return PartStatus(name, shown, False, f"/healthz answered {status}")


def check_parts(endpoints: Endpoints, idp: str = "embedded") -> tuple[PartStatus, ...]:
    return tuple(probe_part(name, url) for name, url in health_urls(endpoints, idp).items())
