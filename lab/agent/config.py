"""How the agent is provisioned: its client at the authorization server and where ID-JAGs come from.

Everything has a default that reproduces the tutorial's topology (the PDP issues and redeems the
ID-JAG; ``ai.agent`` authenticates with ``private_key_jwt``). ``LAB_AGENT_*`` variables change it:

- ``LAB_AGENT_CLIENT_ID``: the agent's client id at the authorization server (``ai.agent``).
- ``LAB_AGENT_AUTH_METHOD``: ``private_key_jwt``, ``client_secret_basic`` or
  ``client_secret_post``; unset, the strongest one the server's
  ``token_endpoint_auth_methods_supported`` lists and the agent holds credentials for.
- ``LAB_AGENT_CLIENT_SECRET``: the agent's own secret, registered in the PDP (ZMS
  ``.../service/agent/secret``), for the secret methods. Never logged.
- ``LAB_AGENT_ISSUER``: the authorization server the agent is provisioned for (the lab's ZTS).
- ``LAB_AGENT_ID_JAG_FROM``: ``pdp`` (the tutorial: the PDP issues the ID-JAG) or ``idp``
  (draft -04 §9.3: the enterprise IdP issues it, the PDP redeems it).
- ``LAB_AGENT_IDP_TOKEN_ENDPOINT``: the IdP token endpoint for the ID-JAG (default: from the
  IdP's metadata); ``LAB_AGENT_IDP_AUTH_METHOD``: client authentication there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from lab.agent.client_auth import METHODS
from lab.config import AGENT_PRINCIPAL, SettingsError

ID_JAG_SOURCES = ("pdp", "idp")


@dataclass(frozen=True)
class AgentConfig:
    client_id: str = AGENT_PRINCIPAL
    auth_method: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    issuer: str | None = None
    id_jag_from: str = "pdp"
    idp_token_endpoint: str | None = None
    idp_auth_method: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentConfig:
        env = os.environ if env is None else env
        auth_method = _choice(env, "LAB_AGENT_AUTH_METHOD", METHODS)
        id_jag_from = _choice(env, "LAB_AGENT_ID_JAG_FROM", ID_JAG_SOURCES) or "pdp"
        return cls(
            client_id=env.get("LAB_AGENT_CLIENT_ID") or AGENT_PRINCIPAL,
            auth_method=auth_method,
            client_secret=env.get("LAB_AGENT_CLIENT_SECRET") or None,
            issuer=env.get("LAB_AGENT_ISSUER") or None,
            id_jag_from=id_jag_from,
            idp_token_endpoint=env.get("LAB_AGENT_IDP_TOKEN_ENDPOINT") or None,
            idp_auth_method=_choice(env, "LAB_AGENT_IDP_AUTH_METHOD", METHODS),
        )


def _choice(env: Mapping[str, str], variable: str, allowed: tuple[str, ...]) -> str | None:
    value = env.get(variable) or None
    if value is not None and value not in allowed:
        raise SettingsError(variable, value, "one of " + ", ".join(allowed))
    return value
