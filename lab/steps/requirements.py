"""What a step needs from the IdP beyond OpenID Connect, declared in its front matter.

``requires: [idp-issues-id-jag]`` names a capability the step cannot do without. Before the
step runs, the engine asks the running IdP (never the configuration) whether it has it; when it
does not, the step is *skipped* with the reason, e.g. a real Keycloak release that does not yet
issue ID-JAGs. The embedded IdP has every capability, and the all-steps test requires every
step to pass there, so a skip can never hide a regression of the lab's own IdP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.config import Endpoints

ID_JAG_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id-jag"


def _idp_issues_id_jag(endpoints: Endpoints) -> str | None:
    """ID-JAG draft -04 §7: an IdP that issues ID-JAGs lists their token type in its metadata."""
    import httpx

    from lab.oauth import http as lab_http

    url = f"{endpoints.idp_issuer}/.well-known/openid-configuration"
    try:
        metadata = lab_http.get(url, timeout=5.0).json()
    except (httpx.HTTPError, ValueError):
        return None  # not a missing feature: let the step run and fail, saying what broke
    listed = metadata.get("identity_chaining_requested_token_types_supported") or []
    if ID_JAG_TOKEN_TYPE in listed:
        return None
    return (
        "the IdP does not issue ID-JAGs: its discovery document lists no "
        f"{ID_JAG_TOKEN_TYPE} in identity_chaining_requested_token_types_supported"
        f"{_served_by(endpoints)}"
    )


def _served_by(endpoints: Endpoints) -> str:
    from lab.backends.keycloak_process import server_identity

    name = server_identity(endpoints.idp_base)
    return f" (served by {name})" if name != "unknown" else ""


#: capability name -> check returning None when the IdP has it, else why not.
REQUIREMENTS: dict[str, Callable[[Endpoints], str | None]] = {
    "idp-issues-id-jag": _idp_issues_id_jag,
}


def unmet(requires: tuple[str, ...], endpoints: Endpoints) -> str | None:
    """The first requirement the running lab does not meet, as a sentence; None if all hold."""
    for name in requires:
        reason = REQUIREMENTS[name](endpoints)
        if reason is not None:
            return f"skipped: {reason}"
    return None
