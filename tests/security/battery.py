"""What every parameter battery checks of a token endpoint's answer before it looks at the token.

The PDP's (``test_parameter_battery.py``) and the IdP's (``test_idp_parameter_battery.py``)
batteries send one hostile parameter at a time with genuine credentials; each then checks the
token a 200 carries against its own genuine request. Before that, the answer itself must be
sound: no 5xx, JSON, and a refusal is a 4xx naming an error the endpoint may give (RFC 6749
§5.2), carrying no token and nothing of the server's insides.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

#: RFC 6749 §5.2's token endpoint errors.
TOKEN_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)
#: What a refusal must never show: a traceback or a path of the server.
LEAKS = re.compile(r"Traceback|File \"|site-packages|\.py\", line|/tmp/|/work/")


def answer_problems(
    response: Any, errors: Collection[str], described: str
) -> tuple[list[str], dict[str, Any] | None]:
    """(problems, the body of a 200 to check further, else ``None``)."""
    if response.status_code >= 500:
        return [f"{described}: HTTP {response.status_code} {response.text[:200]}"], None
    if LEAKS.search(response.text):
        return [f"{described}: leaks {response.text[:200]}"], None
    try:
        body = response.json()
    except ValueError:
        return [f"{described}: HTTP {response.status_code}, not JSON {response.text[:200]}"], None
    if response.status_code == 200:
        return [], body
    if not 400 <= response.status_code < 500 or body.get("error") not in errors:
        return [f"{described}: HTTP {response.status_code} {str(body)[:200]}"], None
    if "access_token" in body:
        return [f"{described}: a refusal carrying a token"], None
    return [], None
