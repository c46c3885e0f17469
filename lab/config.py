"""Settings shared by every part of the lab.

All values come from environment variables named ``LAB_*`` with safe defaults: loopback only,
state under ``./.lab``. A bad value raises :class:`SettingsError` naming the variable and the
value, so the fix is obvious from the message (the way starlette's ``config.py`` reports).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

REALM = "idjag"
API_DOMAIN = "api"
#: The MCP server's own domain, as in the public tutorial (its ``mcp`` domain and
#: ``mcp.idthw-api-mcp`` service); tokens for the MCP server belong to it.
MCP_DOMAIN = "mcp"
ADMIN_PRINCIPAL = "user.athenz_admin"
MCP_PRINCIPAL = "mcp.api-mcp"
AGENT_PRINCIPAL = "ai.agent"
LEARNER_USERNAME = "idjag-learner"
LEARNER_PRINCIPAL = "human.idjag-learner"

#: name -> (environment variable, default port). Steps, docs and tests rely on these defaults.
PORTS: dict[str, tuple[str, int]] = {
    "idp": ("LAB_IDP_PORT", 9090),
    "zms": ("LAB_ZMS_PORT", 4443),
    "zts": ("LAB_ZTS_PORT", 8443),
    "docapi_protected": ("LAB_DOCAPI_PORT", 14443),
    "docapi_unprotected": ("LAB_DOCAPI_OPEN_PORT", 14442),
    "mcp": ("LAB_MCP_PORT", 8101),
}


#: How the IdP runs: the lab's own Keycloak-compatible server, or real Keycloak as a local process.
IDP_KINDS: tuple[str, ...] = ("embedded", "keycloak")


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """Downloads kept outside the repo (the Keycloak distribution): ``LAB_CACHE``, else
    ``$XDG_CACHE_HOME/idjag-lab``, else ``~/.cache/idjag-lab``."""
    if env.get("LAB_CACHE"):
        return Path(env["LAB_CACHE"]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "idjag-lab"


class SettingsError(ValueError):
    """A ``LAB_*`` setting has a value the lab cannot use."""

    def __init__(self, variable: str, value: str, expected: str) -> None:
        super().__init__(f"{variable}={value!r} is not valid: expected {expected}")
        self.variable = variable
        self.value = value


@dataclass(frozen=True)
class Endpoints:
    """Where each part answers. Steps only ever see these URLs, never ports."""

    idp_issuer: str
    zms: str
    zts: str
    docapi_protected: str
    docapi_unprotected: str
    mcp: str

    @property
    def idp_base(self) -> str:
        """The IdP's server URL without the realm path (what Keycloak clients call server_url)."""
        return self.idp_issuer.rsplit("/realms/", 1)[0]

    @property
    def zts_token(self) -> str:
        return f"{self.zts}/oauth2/token"

    @property
    def zts_jwks(self) -> str:
        return f"{self.zts}/oauth2/keys"

    @property
    def idp_token(self) -> str:
        return f"{self.idp_issuer}/protocol/openid-connect/token"

    @property
    def idp_jwks(self) -> str:
        return f"{self.idp_issuer}/protocol/openid-connect/certs"

    @property
    def mcp_origin(self) -> str:
        """Scheme and authority of the MCP server (where its ``/lab/settings`` lives)."""
        scheme, _, rest = self.mcp.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"

    @property
    def mcp_metadata(self) -> str:
        """The MCP server's protected-resource metadata URL (RFC 9728 §3.1: the well-known
        segment goes between the authority and the resource's path)."""
        path = self.mcp[len(self.mcp_origin) :]
        return f"{self.mcp_origin}/.well-known/oauth-protected-resource{path}"

    def as_dict(self) -> dict[str, str]:
        return {
            "idp_issuer": self.idp_issuer,
            "idp_base": self.idp_base,
            "idp_token": self.idp_token,
            "idp_jwks": self.idp_jwks,
            "zms": self.zms,
            "zts": self.zts,
            "zts_token": self.zts_token,
            "zts_jwks": self.zts_jwks,
            "docapi_protected": self.docapi_protected,
            "docapi_unprotected": self.docapi_unprotected,
            "mcp": self.mcp,
            "mcp_origin": self.mcp_origin,
            "mcp_metadata": self.mcp_metadata,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> Endpoints:
        return cls(
            idp_issuer=data["idp_issuer"],
            zms=data["zms"],
            zts=data["zts"],
            docapi_protected=data["docapi_protected"],
            docapi_unprotected=data["docapi_unprotected"],
            mcp=data["mcp"],
        )

    @classmethod
    def for_ports(cls, host: str, ports: Mapping[str, int], realm: str = REALM) -> Endpoints:
        def url(name: str) -> str:
            return f"http://{host}:{ports[name]}"

        return cls(
            idp_issuer=f"{url('idp')}/realms/{realm}",
            zms=f"{url('zms')}/zms/v1",
            zts=f"{url('zts')}/zts/v1",
            docapi_protected=url("docapi_protected"),
            docapi_unprotected=url("docapi_unprotected"),
            mcp=f"{url('mcp')}/mcp",
        )


@dataclass(frozen=True)
class Settings:
    """Everything a part needs to start. Build with :meth:`from_env`; tests use :func:`replace`."""

    home: Path = Path(".lab")
    host: str = "127.0.0.1"
    ports: Mapping[str, int] = field(default_factory=lambda: {k: v[1] for k, v in PORTS.items()})
    backend: str = "embedded"
    #: Seconds the document API and MCP server may serve cached signed policy data (step 13
    #: needs a revoked grant to stop working within a second).
    policy_refresh_s: float = 0.5
    #: Optional OpenAI-compatible chat-completions URL for the agent's LLM planner (off by default).
    llm_url: str | None = None
    log_level: str = "info"
    #: ``embedded`` (the lab's IdP) or ``keycloak`` (real Keycloak, a local Java process).
    idp: str = "embedded"
    #: Where downloads are cached (``LAB_CACHE``); see :func:`default_cache_dir`.
    cache_dir: Path = field(default_factory=lambda: default_cache_dir(os.environ))
    #: The IdP realm (``LAB_REALM``): ``idjag``, or a workshop room learner's own ``idjag-NN``.
    realm: str = REALM

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        ports = {name: _port(env, var, default) for name, (var, default) in PORTS.items()}
        # An empty variable means "unset", as for the ports: `LAB_HOST= lab up` must not bind
        # every interface (uvicorn reads "" as all of them), nor `LAB_HOME=` scatter the
        # stores, keys and logs into whatever folder the learner happens to be in.
        backend = env.get("LAB_BACKEND") or "embedded"
        if backend not in ("embedded", "kind"):
            raise SettingsError("LAB_BACKEND", backend, "'embedded' or 'kind'")
        idp = env.get("LAB_IDP") or "embedded"
        if idp not in IDP_KINDS:
            raise SettingsError("LAB_IDP", idp, "'embedded' or 'keycloak'")
        return cls(
            home=Path(env.get("LAB_HOME") or ".lab"),
            host=env.get("LAB_HOST") or "127.0.0.1",
            ports=ports,
            backend=backend,
            policy_refresh_s=_float(env, "LAB_POLICY_REFRESH_S", 0.5),
            llm_url=env.get("LAB_LLM_URL") or None,
            log_level=env.get("LAB_LOG_LEVEL") or "info",
            idp=idp,
            cache_dir=default_cache_dir(env),
            realm=env.get("LAB_REALM") or REALM,
        )

    def with_home(self, home: Path) -> Settings:
        return replace(self, home=home)

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints.for_ports(self.host, self.ports, self.realm)

    # Paths inside $LAB_HOME. Parts create what they need; keys are always written 0600.
    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def checkpoints_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def pdp_db(self) -> Path:
        return self.home / "pdp.sqlite3"

    @property
    def docapi_db(self) -> Path:
        return self.home / "docapi.sqlite3"

    @property
    def providers_file(self) -> Path:
        return self.home / "providers.json"

    @property
    def runtime_file(self) -> Path:
        """The running backend's endpoints and pid, written by ``lab up``."""
        return self.home / "runtime.json"

    def key_file(self, principal: str) -> Path:
        """Private key of a lab principal, e.g. ``user.athenz_admin`` (PEM, 0600).

        Only a principal's name: ``lab keygen ../../x`` wrote a key outside LAB_HOME."""
        if not is_principal_name(principal):
            raise ValueError(f"{principal!r} is not a principal name ({PRINCIPAL_NAME_RULE})")
        return self.keys_dir / f"{principal}.pem"

    def port_variable(self, name: str) -> str:
        return PORTS[name][0]


#: An Athenz principal, ``domain.service`` (its ResourceName characters): never a path.
PRINCIPAL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,255}")
PRINCIPAL_NAME_RULE = "letters, digits, '_', '-' and '.', e.g. human.idjag-learner"


def is_principal_name(name: str) -> bool:
    return PRINCIPAL_NAME.fullmatch(name) is not None


def _port(env: Mapping[str, str], variable: str, default: int) -> int:
    raw = env.get(variable)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(variable, raw, "a port number between 0 and 65535") from None
    if not 0 <= value <= 65535:
        raise SettingsError(variable, raw, "a port number between 0 and 65535")
    return value


def _float(env: Mapping[str, str], variable: str, default: float) -> float:
    raw = env.get(variable)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(variable, raw, "a number of seconds") from None
